"""Late fusion: one encoder per modality (shared or separate), embeddings fused, BNNeck head."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from reidbench.data.types import DatasetInfo
from reidbench.nn import BNNeckHead, ModelOutput, build_image_backbone
from reidbench.nn.fusion import build_fusion
from reidbench.protocol import Protocol
from reidbench.registry import METHODS


class LateFusion(nn.Module):
    """Architecture: ``encoders[m](x_m)`` per modality -> ``fusion`` -> ``head``.

    ``encoders`` maps modality -> module returning ``(B, D)``; the same module object under several
    keys shares weights. The embedding for retrieval is the fused feature before the BNNeck.
    """

    def __init__(self, encoders: dict[str, nn.Module], fusion: nn.Module, head: BNNeckHead) -> None:
        super().__init__()
        self.modalities = list(encoders)
        self.encoders = nn.ModuleDict(encoders)
        self.fusion = fusion
        self.head = head

    def forward(self, batch: dict) -> ModelOutput:
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


def late_fusion_model(modalities: list[str], num_classes: int, protocol: Protocol, fusion: str = "concat",
                      shared_backbone: bool = True) -> LateFusion:
    """Model builder: a late-fusion network over ``modalities`` with the protocol's backbone."""
    size = tuple(protocol.data.image_size)

    def encoder() -> CLSEncoder:
        return CLSEncoder(build_image_backbone(protocol.backbone, size))

    shared = encoder() if shared_backbone else None
    encoders = {m: shared if shared is not None else encoder() for m in modalities}
    dim = next(iter(encoders.values())).backbone.dim
    fusion_module, out_dim = build_fusion(fusion, dim, len(modalities))
    return LateFusion(encoders, fusion_module, BNNeckHead(out_dim, num_classes))


@METHODS.register("late_fusion", "per-modality ViT encoders, embeddings fused (concat|mean|max|attention), BNNeck",
                  config=LateFusionConfig)
def late_fusion(cfg: LateFusionConfig, protocol: Protocol, info: DatasetInfo, num_classes: int) -> LateFusion:
    """Registered builder: reads the method knobs from ``cfg``."""
    return late_fusion_model(protocol.data.modalities, num_classes, protocol, cfg.fusion, cfg.shared_backbone)
