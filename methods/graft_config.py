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

# The official recipe (--recipe official): two stages, the augmented triplet, the official loss weights
# and augmentation. The shared track trains GraFT's architecture with the protocol's recipe instead.
GRAFT_OFFICIAL = {
    "loss.variant": "ce+aug_triplet+center",
    "loss.id_weight": 0.5,
    "loss.triplet_weight": 0.5,
    "loss.center_weight": 0.0005,
    "loss.center_learnable": False,  # the official optimizer never sees the centers (loss/reid_loss.py)
    "loss.triplet_margin": None,
    "data.augment": {"flip": 0.0, "pad": 0, "erase": 0.5, "erase_scale": [0.02, 0.33]},
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

GRAFT_DEVIATIONS = [
    "image size and normalisation are the dataset protocol's (official: 224x224 on its re-split data)",
    "random erasing (p 0.5, scale 0.02-0.33) is drawn once per sample and applied to every modality alike "
    "(official: drawn per image, modality and triplet member)",
    "triplets come from the PK batch, positive and negative drawn at random per anchor (official: fixed "
    "offline triplets, np.random.seed(0) inside the loop)",
    "stage 2 uses its own optimizer settings (official: the stage-1 optimizer state, lr and betas restored "
    "from the checkpoint); weight decay and betas are the protocol's in both stages (official stage 2: "
    "1.3e-3, betas 0.836/0.979)",
    "the model after the last epoch is evaluated (official: the best epoch on the test split)",
]

METHODS.add(
    "graft",
    "reidbench.methods.graft:graft",
    "GraFT: shared ViT, per-modality fusion layers with shared fusion tokens, augmented triplet, two stages",
    config=GraftConfig,
    official=GRAFT_OFFICIAL,
    deviations=GRAFT_DEVIATIONS,
    loss_terms="reidbench.methods.graft:graft_loss_terms",
)
