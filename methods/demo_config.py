"""DeMo's knobs, registration defaults, official recipe and registration (torch-free; the model is in
methods/demo.py). Per-dataset settings of the official configs (HEAD, DIRECT) are the protocols'
``method_settings: {demo: ...}``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from reidbench.registry import METHODS


@dataclass
class DemoConfig:
    heads: int = 8  # ATMoE heads (official HEAD: 4 on RGBNT201, 8 on RGBNT100 / MSVR310)
    direct: bool = False  # DIRECT: the concatenated globals get one head (True) or each modality its own
    pife: bool = True  # GLOBAL_LOCAL: global = reducer([CLS ; mean of patches]) per modality
    hdm: bool = True  # HDM: one query token per modality subset
    atm: bool = True  # ATMoE over the HDM features (needs hdm); off: the HDM features concatenated
    hdm_dropout: float = 0.1  # attention dropout of the HDM cross-attentions
    descriptor: Literal["concat+moe", "concat", "moe"] = "concat+moe"  # return_pattern 3 / 1 / 2


# Both tracks: DeMo's backbone is the OpenAI CLIP ViT-B/16 visual tower (a protocol's size overrides apply).
DEMO_DEFAULTS = {"backbone.source": "clip", "backbone.name": "ViT-B-16"}

DEMO_DEVIATIONS = [
    "the model after the last epoch is evaluated (official: the best epoch on the test split, by the "
    "5120-d descriptor's mAP)",
    "bf16 autocast on CUDA (official: fp16 autocast with a GradScaler)",
    "augmentation is the protocol's: one flip / pad-crop / erasing draw per sample, applied to every "
    "modality alike (official: drawn per image)",
    "the shared CLIP tower runs once over the modalities stacked along the batch (official: three calls; "
    "the same function, the tower has no batch statistics)",
]

METHODS.add(
    "demo",
    "methods.demo:demo",
    "DeMo: shared CLIP ViT-B/16, PIFE reducers, HDM (a query per modality subset), ATMoE (dense soft gating)",
    config=DemoConfig,
    defaults=DEMO_DEFAULTS,
    deviations=DEMO_DEVIATIONS,
    loss_terms="methods.demo:demo_loss_terms",
    missing=("zero",),
)
