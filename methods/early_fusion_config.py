"""Early fusion's knobs and registration (torch-free; the model is in methods/early_fusion.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from reidbench.registry import METHODS


@dataclass
class EarlyFusionConfig:
    depth: int = 1
    heads: int = 8
    dim_feedforward: int = 2048
    dropout: float = 0.1
    readout: Literal["mean", "token"] = "mean"
    token: int = 0  # readout=token: position in the concatenated sequence (0 = first modality's CLS)
    modality_embedding: bool = False


METHODS.add(
    "early_fusion",
    "reidbench.methods.early_fusion:early_fusion",
    "all modalities' ViT tokens concatenated into one fusion transformer (GraFT's vanilla-fusion baseline)",
    config=EarlyFusionConfig,
)
