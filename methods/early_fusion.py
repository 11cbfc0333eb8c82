"""Early ("vanilla") fusion: GraFT's ablation baseline (official ``models/DeiT_vanilla_fusion.py``).

The shared backbone encodes every modality; all modalities' tokens are concatenated into one sequence
(M x T tokens) that a single stack of ``nn.TransformerEncoderLayer``s (PyTorch defaults, 8 heads, as in
GraFT) attends over jointly. The embedding is the mean over all output tokens (``readout=mean``, the
official ``avg_output_tokens``) or the output at position ``token`` (``readout=token``, the official
``token_step_to_decode``); BNNeck head. ``modality_embedding`` adds a learned per-modality embedding to
the tokens (not in the official code, which gives the fusion layer no way to tell modalities apart).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from reidbench.data.types import DatasetInfo
from reidbench.errors import UserError
from reidbench.nn import BNNeckHead, ModelOutput, build_image_backbone
from reidbench.nn.tokens import post_norm_stack
from reidbench.protocol import Protocol
from reidbench.registry import METHODS


class EarlyFusion(nn.Module):
    """Architecture: shared ``backbone`` per modality -> tokens concatenated -> ``encoder`` -> readout -> ``head``."""

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

    def forward(self, batch: dict) -> ModelOutput:
        size = batch[self.modalities[0]].shape[0]
        tokens = self.backbone(torch.cat([batch[m] for m in self.modalities]))  # (M*B, T, D)
        tokens = tokens.view(len(self.modalities), size, *tokens.shape[1:]).transpose(0, 1)  # (B, M, T, D)
        if self.modality_embedding is not None:
            tokens = tokens + self.modality_embedding.to(tokens.dtype)[None, :, None]
        out = self.encoder(tokens.flatten(1, 2))
        embedding = out.mean(1) if self.readout == "mean" else out[:, self.token]
        _, logits = self.head(embedding)
        return ModelOutput(embedding=embedding, logits=logits)


@dataclass
class EarlyFusionConfig:
    depth: int = 1
    heads: int = 8
    dim_feedforward: int = 2048
    dropout: float = 0.1
    readout: Literal["mean", "token"] = "mean"
    token: int = 0  # readout=token: position in the concatenated sequence (0 = first modality's CLS)
    modality_embedding: bool = False


def early_fusion_model(
    modalities: list[str],
    num_classes: int,
    protocol: Protocol,
    depth: int = 1,
    heads: int = 8,
    dim_feedforward: int = 2048,
    dropout: float = 0.1,
    readout: str = "mean",
    token: int = 0,
    modality_embedding: bool = False,
) -> EarlyFusion:
    """Model builder: joint attention over all modalities' backbone tokens."""
    backbone = build_image_backbone(protocol.backbone, protocol.data.image_size)
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


@METHODS.register(
    "early_fusion",
    "all modalities' ViT tokens concatenated into one fusion transformer (GraFT's vanilla-fusion baseline)",
    config=EarlyFusionConfig,
)
def early_fusion(
    cfg: EarlyFusionConfig, protocol: Protocol, info: DatasetInfo, num_classes: int
) -> EarlyFusion:
    """Registered builder: reads the method knobs from ``cfg``."""
    return early_fusion_model(
        protocol.data.modalities,
        num_classes,
        protocol,
        cfg.depth,
        cfg.heads,
        cfg.dim_feedforward,
        cfg.dropout,
        cfg.readout,
        cfg.token,
        cfg.modality_embedding,
    )
