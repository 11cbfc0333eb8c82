"""Early ("vanilla") fusion: GraFT's ablation baseline (official ``models/DeiT_vanilla_fusion.py``).

The shared backbone encodes every modality; all modalities' tokens are concatenated into one sequence
(M x T tokens) that a single stack of ``nn.TransformerEncoderLayer``s (PyTorch defaults, 8 heads, as in
GraFT) attends over jointly. The embedding is the mean over all output tokens (``readout=mean``, the
official ``avg_output_tokens``) or the output at position ``token`` (``readout=token``, the official
``token_step_to_decode``); BNNeck head. ``modality_embedding`` adds a learned per-modality embedding to
the tokens (not in the official code, which gives the fusion layer no way to tell modalities apart).
"""

from __future__ import annotations

import torch
from torch import nn

from reidbench.errors import UserError
from reidbench.methods.early_fusion_config import EarlyFusionConfig
from reidbench.nn import BNNeckHead, ModelOutput, batch_camids, build_image_backbone
from reidbench.nn.factory import BuildInfo
from reidbench.nn.tokens import post_norm_stack


class EarlyFusion(nn.Module):
    """Architecture: shared ``backbone`` per modality -> tokens concatenated -> ``encoder`` -> readout ->
    ``head``."""

    def __init__(
        self,
        modalities: list[str],
        backbone: nn.Module,
        encoder: nn.Module,
        head: BNNeckHead,
        readout: str = "mean",
        token: int = 0,
        modality_embedding: nn.Parameter | None = None,
    ) -> None:
        super().__init__()
        self.modalities = list(modalities)
        self.backbone = backbone
        self.encoder = encoder
        self.head = head
        self.readout, self.token = readout, token
        self.modality_embedding = modality_embedding
        self.embed_dim: int = head.bn.num_features

    def forward(self, batch: dict) -> ModelOutput:
        size = batch[self.modalities[0]].shape[0]
        images = torch.cat([batch[m] for m in self.modalities])
        tokens = self.backbone(images, camids=batch_camids(batch, len(self.modalities)))  # (M*B, T, D)
        tokens = tokens.view(len(self.modalities), size, *tokens.shape[1:]).transpose(0, 1)  # (B, M, T, D)
        if self.modality_embedding is not None:
            tokens = tokens + self.modality_embedding.to(tokens.dtype)[None, :, None]
        out = self.encoder(tokens.flatten(1, 2))
        embedding = out.mean(1) if self.readout == "mean" else out[:, self.token]
        _, logits = self.head(embedding)
        return ModelOutput(embedding=embedding, logits=logits)


def early_fusion_model(
    backbone: nn.Module,
    modalities: list[str],
    num_classes: int,
    depth: int = 1,
    heads: int = 8,
    dim_feedforward: int = 2048,
    dropout: float = 0.1,
    readout: str = "mean",
    token: int = 0,
    modality_embedding: bool = False,
) -> EarlyFusion:
    """Model builder: joint attention over all modalities' tokens of the shared ``backbone``."""
    dim = backbone.dim
    if dim % heads:
        raise UserError(f"early_fusion: backbone width {dim} is not a multiple of method.heads={heads}")
    length = len(modalities) * (backbone.num_prefix_tokens + backbone.grid[0] * backbone.grid[1])
    if readout == "token" and not 0 <= token < length:
        raise UserError(f"early_fusion: method.token={token} must lie in [0, {length - 1}]")
    embed = None
    if modality_embedding:
        embed = nn.Parameter(torch.zeros(len(modalities), dim))
        nn.init.trunc_normal_(embed, std=0.02)
    return EarlyFusion(
        modalities,
        backbone,
        post_norm_stack(dim, depth, heads, dim_feedforward, dropout),
        BNNeckHead(dim, num_classes),
        readout,
        token,
        embed,
    )


def early_fusion(cfg: EarlyFusionConfig, info: BuildInfo) -> EarlyFusion:
    """Registered builder: the protocol's backbone, then early fusion with the knobs of ``cfg``."""
    return early_fusion_model(
        build_image_backbone(info.backbone, info.image_size, num_cameras=info.num_cameras),
        list(info.modalities),
        info.num_classes,
        cfg.depth,
        cfg.heads,
        cfg.dim_feedforward,
        cfg.dropout,
        cfg.readout,
        cfg.token,
        cfg.modality_embedding,
    )
