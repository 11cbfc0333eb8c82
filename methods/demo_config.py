"""DeMo's knobs, registration defaults, official recipe and registration (torch-free; the model is in
methods/demo.py). Per-dataset settings of the official configs (HEAD, DIRECT) are the protocols'
``method_settings: {demo: ...}``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from reidbench.fidelity import Fidelity
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

# The official recipe (configs/RGBNT201/DeMo.yml over config/defaults.py, solver/make_optimizer.py,
# solver/scheduler_factory.py, layers/make_loss.py): Adam lr 3.5e-4 with L2 weight decay 1e-4 on every
# tensor, biases x2, every CLIP-tower tensor hard-set to 5e-6 (biases too); timm's cosine stepped per epoch
# from epoch 1 with one warmup start (0.1 x 3.5e-4) and floor (0.001 x 3.5e-4) for every group (the tower
# "warms down" from 3.5e-5), cosine over the whole run, lr noise seeded 42 + epoch; CE (label smoothing 0.1)
# x 0.25 + soft-margin triplet x 1.0 on every pair; no stochastic depth in the CLIP tower; camera x 1.0.
# PK, epochs and image size are the protocols' (RGBNT201 8x8, 50 epochs, 256x128 and MSVR310 16x4,
# 128x256 are DeMo's; RGBNT100 see the fidelity row "batches and epochs").
DEMO_OFFICIAL = {
    "optim.name": "adam",
    "optim.lr": 3.5e-4,
    "optim.weight_decay": 1.0e-4,
    "optim.betas": [0.9, 0.999],
    "optim.eps": 1.0e-8,
    "optim.no_decay": [],
    "optim.groups": [
        {"name": "bias x2", "match": ["bias"], "lr_scale": 2.0},
        {"name": "CLIP tower", "match": ["in:backbone.visual"], "lr": 5.0e-6},
    ],
    "schedule.kind": "cosine",
    "schedule.step_per": "epoch",
    "schedule.first_epoch": 1,
    "schedule.warmup_epochs": 10,
    "schedule.warmup_factor": 0.1,
    "schedule.min_lr_factor": 0.001,
    "schedule.bounds": "shared",
    "schedule.cosine": "whole",
    "schedule.noise_pct": 0.67,
    "schedule.noise_seed": 42,
    "loss.variant": "ce+triplet",
    "loss.id_weight": 0.25,
    "loss.triplet_weight": 1.0,
    "loss.triplet_margin": None,
    "loss.label_smoothing": 0.1,
    "data.augment": {"flip": 0.5, "pad": 10, "erase": 0.5},
    "backbone.drop_path": 0.0,
    "backbone.camera_coef": 1.0,
}

DEMO_FIDELITY = [
    Fidelity(
        "backbone",
        "OpenAI CLIP ViT-B/16 visual tower (ViT-B-16.pt), fully fine-tuned, shared by the modalities; "
        "projection on every token; position embedding resized bilinearly to the input grid",
        keys=("backbone.source", "backbone.name"),
    ),
    Fidelity(
        "camera embedding",
        "learnable (cameras, 768), x SIE_COE 1.0, added to the CLS token before the position embedding, "
        "test camera ids at test",
        keys=("backbone.camera_coef",),
    ),
    Fidelity(
        "stochastic depth",
        "none (OpenAI's blocks have none)",
        keys=("backbone.drop_path",),
        shared="0.1 (the protocol's)",
        shared_why="the shared track's regulariser",
    ),
    Fidelity(
        "optimiser",
        "Adam (weight decay as L2), lr 3.5e-4, weight decay 1e-4 on every tensor (WEIGHT_DECAY_BIAS 1e-4), "
        "betas (0.9, 0.999), eps 1e-8",
        keys=("optim.name", "optim.lr", "optim.weight_decay", "optim.betas", "optim.eps", "optim.no_decay"),
        shared="AdamW with the protocol's lr and weight decay, biases and 1-D tensors without decay",
        shared_why="the shared track's optimiser",
    ),
    Fidelity(
        "learning rate per tensor",
        "biases x2 (BIAS_LR_FACTOR); every tensor whose name contains 'base' (the CLIP tower, biases "
        "included) hard-set to 5e-6; the camera embedding at the base lr",
        keys=("optim.groups",),
        shared="one lr for every tensor",
        shared_why="the shared track's optimiser",
    ),
    Fidelity(
        "schedule",
        "timm CosineLRScheduler stepped once per epoch with epoch = 1..E: linear warmup over 10 epochs from "
        "warmup_lr_init 3.5e-5 (one value for every group: the tower warms down to 5e-6), cosine over the "
        "whole run (warmup_prefix off) to lr_min 3.5e-7, the last epoch at lr_min; lr x (1 + n), n ~ N(0, 1) "
        "redrawn until |n| < 0.67, seeded 42 + epoch, every epoch but the last",
        keys=("schedule",),
        shared="cosine per step, warmup from 0.01 x lr over the protocol's warmup epochs, floor 0, no noise",
        shared_why="the shared track's schedule",
    ),
    Fidelity(
        "losses",
        "per (score, feature) pair: 0.25 x CE with label smoothing 0.1 + 1.0 x soft-margin batch-hard "
        "triplet; pairs (MoE) + (concat) with DIRECT 1, (MoE) + (RGB) + (NIR) + (TIR) with DIRECT 0; the "
        "MoE regulariser is 0",
        keys=("loss",),
        shared="the same pairs, CE (label smoothing 0.1) x 1 + batch-hard triplet, margin 0.3",
        shared_why="the shared track's loss weights and margin",
    ),
    Fidelity(
        "per-dataset architecture",
        "HEAD 4, DIRECT 1 on RGBNT201; HEAD 8, DIRECT 0 on RGBNT100 and MSVR310 (here: the protocols' "
        "method_settings for demo, in both tracks)",
    ),
    Fidelity(
        "batches and epochs",
        "RGBNT201 8 ids x 8, 50 epochs; RGBNT100 8 x 16, 30 epochs, warmup 5; MSVR310 16 x 4, 50 epochs",
        ours="the protocol's PK and epochs: RGBNT201 and MSVR310 as official; RGBNT100 16 x 4, 50 epochs, "
        "warmup 10 (official there: --set sampler.p=8 sampler.k=16 train.epochs=30 schedule.warmup_epochs=5)",
        why="one official recipe per method; a dataset's PK and epochs are its protocol's",
    ),
    Fidelity(
        "augmentation",
        "flip 0.5, pad 10 + random crop, random erasing p 0.5 (timm, per-pixel random values), drawn per "
        "image",
        ours="flip 0.5, pad 10 + crop, random erasing p 0.5 (scale 0.02-0.4, mean fill), one draw per "
        "sample applied to every modality",
        why="the data pipeline augments the modalities of a sample alike",
        keys=("data.augment",),
        shared="the protocol's (the same values)",
        shared_why="the shared track's augmentation",
    ),
    Fidelity(
        "precision",
        "fp16 autocast with a GradScaler",
        ours="bf16 autocast on CUDA, fp32 on CPU",
        why="one precision policy for every method (bf16 needs no loss scaling)",
    ),
    Fidelity(
        "missing modality at test",
        "the missing modality's normalised input replaced by zeros, in query and gallery",
        ours="zero-filled input (convention zero)",
        why="same convention; stated for the missing-modality tables",
    ),
    Fidelity(
        "reported model",
        "the best epoch on the test split (evaluated every epoch, by the 5120-d descriptor's mAP)",
        ours="the model after the last epoch",
        why="no model selection on test data",
    ),
]

METHODS.add(
    "demo",
    "reidbench.methods.demo:demo",
    "DeMo: shared CLIP ViT-B/16, PIFE reducers, HDM (a query per modality subset), ATMoE (dense soft gating)",
    config=DemoConfig,
    defaults=DEMO_DEFAULTS,
    official=DEMO_OFFICIAL,
    fidelity=DEMO_FIDELITY,
    loss_terms="reidbench.methods.demo:demo_loss_terms",
    missing=("zero",),
)
