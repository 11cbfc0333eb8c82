"""GraFT's knobs, registration defaults and registration (torch-free; the model is in methods/graft.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from reidbench.registry import METHODS


@dataclass
class GraftConfig:
    fusion_tokens: int = 1  # F learnable tokens shared by the modalities (paper: 1)
    depth: int = 1  # fusion layers per modality (paper: 1; the "scalable" variant: 4)
    heads: int = 8
    dim_feedforward: int = 2048
    dropout: float = 0.1
    learnable_fusion_weights: bool = False  # official model_lrnable_fusion_avg
    data_token: int = 0  # backbone output index of the triplet negative (0 = CLS; official data_token_step)
    triplet_mining: Literal["random", "hard"] = "random"
    drop_missing: bool = False  # missing-modality evaluation: average the present modalities (else zero-fill)


STAGE2_LR_SCALE = 5.7433e-6 / 2.54e-5  # official RGBNT100 stage-2 / stage-1 learning rate

GRAFT_DEFAULTS = {
    "loss.variant": "ce+aug_triplet+center",
    "loss.id_weight": 0.5,
    "loss.triplet_weight": 0.5,
    "loss.center_weight": 0.0005,
    "loss.triplet_margin": None,
    "train.stages": [
        {
            "name": "frozen",
            "epoch_share": 0.4,
            "freeze": ["backbone"],
            "label_smoothing": 0.0,
            "loss": "ce+aug_triplet",
            "schedule": "warmup_sqrt",
        },
        {
            "name": "unfrozen",
            "epoch_share": 0.6,
            "label_smoothing": 0.1,
            "loss": "ce+aug_triplet+center",
            "schedule": "constant",
            "warmup_epochs": 0,
            "lr_scale": round(STAGE2_LR_SCALE, 4),
        },
    ],
}

METHODS.add(
    "graft",
    "methods.graft:graft",
    "GraFT: shared ViT, per-modality fusion layers with shared fusion tokens, augmented triplet, two stages",
    config=GraftConfig,
    defaults=GRAFT_DEFAULTS,
    loss_terms="methods.graft:graft_loss_terms",
)
