"""An outside method in one file: ``tiny_cnn``, a small CNN shared by every modality, the per-modality
embeddings averaged, a BNNeck head.

What reidbench needs from a method: a config dataclass (its knobs, ``--set method.KEY=...``), a builder
``fn(cfg, info) -> nn.Module`` and one ``METHODS.add`` call. The module's forward takes the batch dict
(modality keys ``rgb`` / ``nir`` / ``tir``: float tensors B x 3 x H x W) and returns a ``ModelOutput``
(``embedding`` for retrieval, ``logits`` for the ID loss); ``embed_dim`` is the embedding's width.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from reidbench.nn import BNNeckHead, ModelOutput
from reidbench.nn.factory import BuildInfo
from reidbench.registry import METHODS

__version__ = "0.1.0"


@dataclass
class TinyCNNConfig:
    width: int = 32  # channels of the last conv layer = the embedding width
    layers: int = 3  # conv blocks, each halving the resolution


class TinyCNN(nn.Module):
    """Every modality through one CNN, global average pooled, averaged over modalities, BNNeck."""

    def __init__(self, modalities: tuple[str, ...], num_classes: int, width: int, layers: int) -> None:
        super().__init__()
        blocks, channels = [], 3
        for i in range(layers):
            out = max(8, width >> (layers - 1 - i))
            blocks += [nn.Conv2d(channels, out, 3, stride=2, padding=1), nn.BatchNorm2d(out), nn.ReLU()]
            channels = out
        self.modalities = modalities
        self.encoder = nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = BNNeckHead(channels, num_classes)
        self.embed_dim = channels

    def forward(self, batch: dict) -> ModelOutput:
        present = [m for m in self.modalities if m in batch]
        embedding = torch.stack([self.encoder(batch[m]) for m in present]).mean(0)
        _, logits = self.head(embedding)
        return ModelOutput(embedding=embedding, logits=logits)


def tiny_cnn(cfg: TinyCNNConfig, info: BuildInfo) -> TinyCNN:
    """The registered builder: the run's modalities and identity count come in ``info``."""
    return TinyCNN(info.modalities, info.num_classes, cfg.width, cfg.layers)


METHODS.add(
    "tiny_cnn",
    tiny_cnn,
    "example plugin: one small CNN shared by the modalities, embeddings averaged, BNNeck",
    config=TinyCNNConfig,
)
