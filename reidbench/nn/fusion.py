"""Fusion of per-modality embeddings ``(B, M, D)`` into one ``(B, D')``."""

from __future__ import annotations

import torch
from torch import nn


class ConcatFusion(nn.Module):
    """Concatenate modalities: ``D' = M * D``."""

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return feats.flatten(1)


class MeanFusion(nn.Module):
    """Average over modalities: ``D' = D``."""

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return feats.mean(1)


class MaxFusion(nn.Module):
    """Element-wise maximum over modalities: ``D' = D``."""

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return feats.amax(1)


class AttentionFusion(nn.Module):
    """Softmax-weighted sum over modalities with per-sample weights from a linear score."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.score = nn.Linear(dim, 1)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        weights = self.score(feats).softmax(dim=1)  # (B, M, 1)
        return (weights * feats).sum(1)


def build_fusion(kind: str, dim: int, num_modalities: int) -> tuple[nn.Module, int]:
    """A fusion module and its output width."""
    if kind == "concat":
        return ConcatFusion(), dim * num_modalities
    if kind == "mean":
        return MeanFusion(), dim
    if kind == "max":
        return MaxFusion(), dim
    if kind == "attention":
        return AttentionFusion(dim), dim
    raise ValueError(f"unknown fusion {kind!r}")
