"""Token-level transformer blocks shared by the fusion methods."""

from __future__ import annotations

import torch
from torch import nn


def post_norm_stack(dim: int, depth: int, heads: int, dim_feedforward: int, dropout: float) -> nn.Sequential:
    """``depth`` independently initialised ``nn.TransformerEncoderLayer``s with PyTorch's defaults
    (ReLU, post-LN), batch first: GraFT's per-modality fusion layers and its vanilla-fusion baseline."""
    if dim % heads:
        raise ValueError(f"width {dim} is not a multiple of {heads} heads")
    return nn.Sequential(
        *[
            nn.TransformerEncoderLayer(dim, heads, dim_feedforward, dropout, batch_first=True)
            for _ in range(depth)
        ]
    )


class PreNormEncoder(nn.Module):
    """ViT/FLAVA-style encoder: pre-LN layers (GELU, MLP ratio 4) and a final LayerNorm.

    ``forward(x, pad)`` takes ``pad`` (B, L) True where a token is padding and must not be attended to.
    """

    def __init__(
        self,
        dim: int,
        depth: int,
        heads: int,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        eps: float = 1e-12,
    ) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"width {dim} is not a multiple of {heads} heads")
        self.layers = nn.ModuleList(
            [
                nn.TransformerEncoderLayer(
                    dim,
                    heads,
                    int(dim * mlp_ratio),
                    dropout,
                    activation="gelu",
                    layer_norm_eps=eps,
                    batch_first=True,
                    norm_first=True,
                )
                for _ in range(depth)
            ]
        )
        self.norm = nn.LayerNorm(dim, eps=eps)

    def forward(self, x: torch.Tensor, pad: torch.Tensor | None = None) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, src_key_padding_mask=pad)
        return self.norm(x)
