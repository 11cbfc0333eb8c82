"""The late-fusion baselines' knobs and registrations (torch-free; the models are in
methods/late_fusion.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from reidbench.registry import METHODS


@dataclass
class LateFusionConfig:
    fusion: Literal["concat", "mean", "max", "attention"] = "concat"
    shared_backbone: bool = True


@dataclass
class SingleModalityConfig:
    modality: str = "rgb"  # the one modality used; the others are ignored


METHODS.add(
    "late_fusion",
    "reidbench.methods.late_fusion:late_fusion",
    "per-modality ViT encoders, embeddings fused (concat|mean|max|attention), BNNeck",
    config=LateFusionConfig,
)
METHODS.add(
    "multi_stream_vit",
    "reidbench.methods.late_fusion:multi_stream_vit",
    "a separate ViT per modality, CLS tokens concatenated, BNNeck (TOP-ReID-style multi-stream baseline)",
)
METHODS.add(
    "single_modality",
    "reidbench.methods.late_fusion:single_modality",
    "one modality alone (RGB by default): ViT CLS, BNNeck",
    config=SingleModalityConfig,
)
