"""Late fusion baselines: one encoder per modality (shared or separate), CLS embeddings fused, BNNeck.

Registered as ``late_fusion`` (fusion concat | mean | max | attention, shared or separate backbone),
``multi_stream_vit`` (a separate ViT per modality, CLS tokens concatenated: the multi-stream ViT baseline
of TOP-ReID / the GraFT table) and ``single_modality`` (one modality alone, RGB by default).
"""

from __future__ import annotations

import torch
from torch import nn

from reidbench.errors import UserError
from reidbench.methods.late_fusion_config import LateFusionConfig, SingleModalityConfig
from reidbench.nn import BNNeckHead, ModelOutput, batch_camids, build_image_backbone
from reidbench.nn.factory import BuildInfo
from reidbench.nn.fusion import build_fusion


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
        self.embed_dim: int = head.bn.num_features

    def forward(self, batch: dict) -> ModelOutput:
        if self.shared:
            size = batch[self.modalities[0]].shape[0]
            camids = batch_camids(batch, len(self.modalities))
            cls = self.encoders[self.modalities[0]](torch.cat([batch[m] for m in self.modalities]), camids)
            feats = cls.view(len(self.modalities), size, -1).transpose(0, 1)
        else:
            camids = batch_camids(batch)
            feats = torch.stack([self.encoders[m](batch[m], camids) for m in self.modalities], dim=1)
        embedding = self.fusion(feats)
        _, logits = self.head(embedding)
        return ModelOutput(embedding=embedding, logits=logits)


class CLSEncoder(nn.Module):
    """Backbone -> CLS token."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, x: torch.Tensor, camids: torch.Tensor | None = None) -> torch.Tensor:
        return self.backbone.cls(x, camids)


def late_fusion_model(
    backbones: dict[str, nn.Module], num_classes: int, fusion: str = "concat"
) -> LateFusion:
    """Model builder: late fusion of the CLS tokens of ``backbones`` (modality -> token backbone; the same
    object under several modalities is one shared encoder)."""
    wrapped: dict[int, CLSEncoder] = {}
    encoders = {m: wrapped.setdefault(id(b), CLSEncoder(b)) for m, b in backbones.items()}
    dim = next(iter(backbones.values())).dim
    fusion_module, out_dim = build_fusion(fusion, dim, len(backbones))
    return LateFusion(encoders, fusion_module, BNNeckHead(out_dim, num_classes))


def image_backbones(info: BuildInfo, modalities: list[str], shared: bool) -> dict[str, nn.Module]:
    """The protocol's backbone for each of ``modalities``: one shared object, or one each (in order)."""
    if shared:
        backbone = build_image_backbone(info.backbone, info.image_size, num_cameras=info.num_cameras)
        return dict.fromkeys(modalities, backbone)
    return {
        m: build_image_backbone(info.backbone, info.image_size, num_cameras=info.num_cameras)
        for m in modalities
    }


def late_fusion(cfg: LateFusionConfig, info: BuildInfo) -> LateFusion:
    """Registered builder: shared or separate backbones over the protocol's modalities, fused by ``cfg``."""
    backbones = image_backbones(info, list(info.modalities), cfg.shared_backbone)
    return late_fusion_model(backbones, info.num_classes, cfg.fusion)


def multi_stream_vit(cfg: None, info: BuildInfo) -> LateFusion:
    """Registered builder: late fusion with separate backbones and concatenation."""
    return late_fusion_model(image_backbones(info, list(info.modalities), False), info.num_classes, "concat")


def single_modality(cfg: SingleModalityConfig, info: BuildInfo) -> LateFusion:
    """Registered builder: a one-encoder network on ``cfg.modality``."""
    if cfg.modality not in info.modalities:
        raise UserError(
            f"single_modality: method.modality={cfg.modality!r} is not among data.modalities "
            f"{list(info.modalities)}"
        )
    return late_fusion_model(image_backbones(info, [cfg.modality], True), info.num_classes, "concat")
