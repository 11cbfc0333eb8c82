"""Late fusion baselines: one encoder per modality (shared or separate), CLS embeddings fused, BNNeck.

Registered as ``late_fusion`` (fusion concat | mean | max | attention, shared or separate backbone),
``multi_stream_vit`` (a separate ViT per modality, CLS tokens concatenated: the multi-stream ViT baseline
of TOP-ReID / the GraFT table) and ``single_modality`` (one modality alone, RGB by default).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from reidbench.data.types import DatasetInfo
from reidbench.errors import UserError
from reidbench.nn import BNNeckHead, ModelOutput, build_image_backbone
from reidbench.nn.fusion import build_fusion
from reidbench.protocol import Protocol
from reidbench.registry import METHODS


class LateFusion(nn.Module):
    """Architecture: ``encoders[m](x_m)`` per modality -> ``fusion`` -> ``head``.

    ``encoders`` maps modality -> module returning ``(B, D)``; the same module object under several
    keys shares weights (and then runs once on all those modalities stacked along the batch). The
    embedding for retrieval is the fused feature before the BNNeck.
    """

    def __init__(self, encoders: dict[str, nn.Module], fusion: nn.Module, head: BNNeckHead) -> None:
        super().__init__()
        self.modalities = list(encoders)
        self.encoders = nn.ModuleDict(encoders)
        self.fusion = fusion
        self.head = head
        self.shared = len({id(e) for e in encoders.values()}) == 1 and len(encoders) > 1

    def forward(self, batch: dict) -> ModelOutput:
        if self.shared:
            size = batch[self.modalities[0]].shape[0]
            cls = self.encoders[self.modalities[0]](torch.cat([batch[m] for m in self.modalities]))
            feats = cls.view(len(self.modalities), size, -1).transpose(0, 1)
        else:
            feats = torch.stack([self.encoders[m](batch[m]) for m in self.modalities], dim=1)
        embedding = self.fusion(feats)
        _, logits = self.head(embedding)
        return ModelOutput(embedding=embedding, logits=logits)


class CLSEncoder(nn.Module):
    """Backbone -> CLS token."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.cls(x)


@dataclass
class LateFusionConfig:
    fusion: Literal["concat", "mean", "max", "attention"] = "concat"
    shared_backbone: bool = True


def late_fusion_model(
    modalities: list[str],
    num_classes: int,
    protocol: Protocol,
    fusion: str = "concat",
    shared_backbone: bool = True,
) -> LateFusion:
    """Model builder: a late-fusion network over ``modalities`` with the protocol's backbone."""
    size = tuple(protocol.data.image_size)

    def encoder() -> CLSEncoder:
        return CLSEncoder(build_image_backbone(protocol.backbone, size))

    shared = encoder() if shared_backbone else None
    encoders = {m: shared if shared is not None else encoder() for m in modalities}
    dim = next(iter(encoders.values())).backbone.dim
    fusion_module, out_dim = build_fusion(fusion, dim, len(modalities))
    return LateFusion(encoders, fusion_module, BNNeckHead(out_dim, num_classes))


@METHODS.register(
    "late_fusion",
    "per-modality ViT encoders, embeddings fused (concat|mean|max|attention), BNNeck",
    config=LateFusionConfig,
)
def late_fusion(cfg: LateFusionConfig, protocol: Protocol, info: DatasetInfo, num_classes: int) -> LateFusion:
    """Registered builder: reads the method knobs from ``cfg``."""
    return late_fusion_model(protocol.data.modalities, num_classes, protocol, cfg.fusion, cfg.shared_backbone)


@METHODS.register(
    "multi_stream_vit",
    "a separate ViT per modality, CLS tokens concatenated, BNNeck (TOP-ReID-style multi-stream baseline)",
)
def multi_stream_vit(cfg: None, protocol: Protocol, info: DatasetInfo, num_classes: int) -> LateFusion:
    """Registered builder: late fusion with separate backbones and concatenation."""
    return late_fusion_model(protocol.data.modalities, num_classes, protocol, "concat", shared_backbone=False)


@dataclass
class SingleModalityConfig:
    modality: str = "rgb"  # the one modality used; the others are ignored


@METHODS.register(
    "single_modality", "one modality alone (RGB by default): ViT CLS, BNNeck", config=SingleModalityConfig
)
def single_modality(
    cfg: SingleModalityConfig, protocol: Protocol, info: DatasetInfo, num_classes: int
) -> LateFusion:
    """Registered builder: a one-encoder network on ``cfg.modality``."""
    if cfg.modality not in protocol.data.modalities:
        raise UserError(
            f"single_modality: method.modality={cfg.modality!r} is not among data.modalities "
            f"{protocol.data.modalities}"
        )
    return late_fusion_model([cfg.modality], num_classes, protocol, "concat")
