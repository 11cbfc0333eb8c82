"""TOP-ReID's knobs, recipes and registration (torch-free; the model is in methods/top_reid.py).

TOP-ReID (Wang et al., AAAI 2024; code 924973292/TOP-ReID @921dd7c): a separate TransReID ViT-B/16 with a
camera embedding per modality, the Token Permutation Module (TPM) over their tokens and the Complementary
Reconstruction Module (CRM) that is trained to rebuild each modality's tokens from the others and used at
test only when a modality is missing.
"""

from __future__ import annotations

from dataclasses import dataclass

from reidbench.fidelity import Fidelity
from reidbench.registry import METHODS


@dataclass
class TopReIDConfig:
    direct: bool = False  # True: the concatenated-CLS pair; False (the shipped logs): one pair per modality
    crm: bool = True  # build the CRM (official MODEL.RE=1)
    crm_depth: int = 1  # self-attention layers per reconstruction (official MODEL.RE_LAYER)
    crm_weight: float = 1.0  # weight of the summed reconstruction MSEs (official: 1, unweighted)
    heads: int | None = None  # TPM / CRM attention heads (None: the backbone's)


# Every track: the backbone is TransReID's (SIE x 3.0 on every token, bilinear positions) with the
# protocol's weights; the architecture's loss pairs: the TPM pair (ce + triplet), the side pairs (per
# modality, or the concatenated CLS with method.direct) and the CRM reconstruction MSE.
TOP_REID_DEFAULTS = {
    "backbone.source": "transreid",
    "loss.variant": "ce+triplet+side_ce+side_triplet+crm",
}

# The official recipe as the shipped logs ran it (train_RGBNT201.txt / train_RGBNT100.txt, DIRECT=0; the
# shipped RGBNT201 yml says DIRECT: 1). solver/make_optimizer.py: SGD momentum 0.9, one group per tensor,
# lr 0.009 (x2 for every name containing "bias"), weight decay 1e-4 on every tensor (WEIGHT_DECAY_BIAS is
# 1e-4 too). solver/scheduler_factory.py: timm CosineLRScheduler stepped once per epoch with the epoch
# number from 1 (scheduler.step(epoch)), t_initial 120, warmup_t 10 from warmup_lr_init = 0.01 x lr, lr_min
# 0.001 x lr (both scalars: every group warms from and decays to them), no warmup prefix (the cosine runs
# over t / 120 from t = 0), no noise. 8 ids x 16 images, 256x128, soft-margin triplet, label smoothing 0.1,
# flip / pad 10 / random erasing 0.5, mean = std = 0.5.
TOP_REID_OFFICIAL = {
    "method.direct": False,
    "backbone.name": "vit_base_patch16_224.orig_in21k_ft_in1k",  # the file TransReID's README points to
    "data.image_size": [256, 128],
    "data.augment": {"flip": 0.5, "pad": 10, "erase": 0.5, "erase_scale": [0.02, 0.4]},
    "sampler.p": 8,
    "sampler.k": 16,
    "optim.name": "sgd",
    "optim.lr": 0.009,
    "optim.momentum": 0.9,
    "optim.weight_decay": 1.0e-4,
    "optim.nesterov": False,
    "optim.no_decay": [],
    "optim.groups": [{"name": "bias", "match": ["bias"], "lr_scale": 2.0}],
    "optim.grad_clip": None,
    "schedule.kind": "cosine",
    "schedule.warmup_epochs": 10,
    "schedule.warmup_steps": None,
    "schedule.warmup_factor": 0.01,
    "schedule.min_lr_factor": 0.001,
    "schedule.bounds": "shared",
    "schedule.cosine": "whole",
    "schedule.step_per": "epoch",
    "schedule.first_epoch": 1,
    "schedule.noise_pct": 0.0,
    "train.epochs": 120,
    "backbone.drop_path": 0.1,
    "backbone.camera_coef": 3.0,
    "loss.triplet_margin": None,
    "loss.label_smoothing": 0.1,
    "loss.id_weight": 1.0,
    "loss.triplet_weight": 1.0,
}

# configs/MSVR310/TOP-ReID.yml: "a smaller learning rate", 1000 epochs ("the setting of CCNet"), 100 warmup.
TOP_REID_OFFICIAL_DATASETS = {
    "msvr310": {"optim.lr": 0.001, "train.epochs": 1000, "schedule.warmup_epochs": 100},
}

TOP_REID_FIDELITY = [
    Fidelity(
        "variant (MODEL.DIRECT)",
        "DIRECT=0 in both shipped logs (train_RGBNT201.txt, train_RGBNT100.txt); the shipped RGBNT201 "
        "yml says 1",
        keys=("method.direct",),
    ),
    Fidelity(
        "backbone",
        "three TransReID ViT-B/16 (vit_pytorch.Trans: qkv bias, LayerNorm eps 1e-6, 16x16 stride-16 "
        "patches), "
        "vitb_16_224_21k.pth (Baidu; lineage: timm's jx_vit_base_p16_224, ImageNet-21k -> 1k), positions "
        "resized bilinearly 14x14 -> 16x8, head / dist keys skipped",
        ours="the same architecture; timm vit_base_patch16_224.orig_in21k_ft_in1k",
        why="the official file is only on Baidu; the TransReID README's lineage points to this file (pin "
        "it by the sha256 logged with the run)",
        keys=("backbone.name", "backbone.source"),
        shared="the same architecture; the protocol's weights (timm vit_base_patch16_224)",
        shared_why="one set of pretrained weights for every method in the main table",
    ),
    Fidelity(
        "camera embedding (SIE)",
        "3.0 x E[camera] added to every token with the position embedding, train and test "
        "(MODEL.SIE_CAMERA, SIE_COE 3.0); cameras = the training set's",
        ours="the same; cameras = 1 + the largest camera id of the dataset's splits; an id outside them "
        "(another dataset's) adds no term",
        why="cross-dataset evaluation meets cameras the embedding has no row for (the official code would "
        "fail with an index error)",
        keys=("backbone.camera_coef",),
        shared="3.0 (the TransReID backbone's default)",
        shared_why="same value: the backbone's default",
    ),
    Fidelity(
        "stochastic depth",
        "0.1, rising linearly over the 12 blocks (MODEL.DROP_PATH)",
        keys=("backbone.drop_path",),
    ),
    Fidelity(
        "input size and normalisation",
        "256x128 for every dataset, vehicles too (INPUT.SIZE_TRAIN); mean = std = 0.5",
        keys=("data.image_size", "data.mean", "data.std"),
        shared="the protocol's size and normalisation",
        shared_why="every method of a dataset reads the same inputs",
    ),
    Fidelity(
        "augmentation",
        "flip 0.5, pad 10 + random crop, random erasing 0.5 (area 0.02-0.4, aspect 0.3-3.3), torchvision "
        "transforms drawn per modality image",
        ours="the same operations, drawn once per sample and applied to every modality alike",
        why="the data pipeline augments the modalities of a sample alike",
        keys=("data.augment",),
        shared="the protocol's augmentation, drawn once per sample",
        shared_why="the shared track's augmentation",
    ),
    Fidelity(
        "batch",
        "8 identities x 16 images (IMS_PER_BATCH 128, NUM_INSTANCE 16), softmax_triplet sampler",
        keys=("sampler",),
        shared="the protocol's P x K",
        shared_why="the shared track's batch",
    ),
    Fidelity(
        "optimiser",
        "SGD momentum 0.9, no Nesterov, no gradient clipping, one group per tensor "
        "(solver/make_optimizer.py)",
        keys=(
            "optim.name",
            "optim.momentum",
            "optim.nesterov",
            "optim.grad_clip",
            "optim.betas",
            "optim.eps",
        ),
        shared="the protocol's optimiser (AdamW)",
        shared_why="the shared track's optimiser",
    ),
    Fidelity(
        "learning rate",
        "0.009 (MSVR310 0.001: configs/MSVR310/TOP-ReID.yml), x2 for every name containing 'bias' "
        "(BIAS_LR_FACTOR 2)",
        keys=("optim.lr", "optim.groups"),
        shared="the protocol's lr, one group",
        shared_why="the shared track's optimiser",
    ),
    Fidelity(
        "weight decay",
        "1e-4 on every tensor, biases and norms included (WEIGHT_DECAY, WEIGHT_DECAY_BIAS)",
        keys=("optim.weight_decay", "optim.no_decay"),
        shared="the protocol's, none on 1-D tensors",
        shared_why="the shared track's optimiser",
    ),
    Fidelity(
        "schedule",
        "timm CosineLRScheduler stepped once per epoch with the epoch number 1..120 (scheduler.step(epoch)): "
        "warmup 10 epochs from warmup_lr_init = 0.01 x lr, then cosine over t / 120 (no warmup prefix) to "
        "lr_min = 0.001 x lr, both scalars shared by every group; no noise (MSVR310: warmup 100)",
        keys=("schedule",),
        shared="the protocol's cosine (per step, per-group bounds)",
        shared_why="the shared track's schedule",
    ),
    Fidelity(
        "epochs",
        "120 (MSVR310: 1000, 'the setting of CCNet')",
        keys=("train.epochs",),
        shared="the protocol's",
        shared_why="the shared track's budget",
    ),
    Fidelity(
        "losses",
        "per (score, feature) pair: CE with label smoothing 0.1 + soft-margin batch-hard triplet on the "
        "pre-BN feature, weights 1 / 1, summed over the TPM pair and the per-modality CLS pairs, plus the "
        "six "
        "CRM MSEs (layers/make_loss.py, engine/processor.py)",
        keys=(
            "loss.triplet_margin",
            "loss.label_smoothing",
            "loss.id_weight",
            "loss.triplet_weight",
            "loss.variant",
        ),
        shared="the same pairs and CRM loss with the protocol's triplet margin and weights",
        shared_why="the shared track's loss settings",
    ),
    Fidelity(
        "mixed precision",
        "fp16 autocast with a GradScaler",
        ours="bf16 autocast on CUDA (train.amp), fp32 on CPU",
        why="the harness's precision for every method",
    ),
    Fidelity(
        "reported model",
        "the best epoch on the test split (evaluated every epoch)",
        ours="the model after the last epoch",
        why="no model selection on test data",
    ),
]

METHODS.add(
    "top_reid",
    "reidbench.methods.top_reid:top_reid",
    "TOP-ReID: a TransReID ViT (SIE) per modality, token permutation (TPM), CRM reconstruction of missing "
    "modalities, 2304-d TPM descriptor",
    config=TopReIDConfig,
    defaults=TOP_REID_DEFAULTS,
    official=TOP_REID_OFFICIAL,
    official_datasets=TOP_REID_OFFICIAL_DATASETS,
    fidelity=TOP_REID_FIDELITY,
    loss_terms="reidbench.methods.top_reid:top_reid_loss_terms",
    missing=("reconstruct", "zero"),  # its own: the CRM rebuilds an absent modality (method.crm=false: zero)
)
