"""TOP-ReID's knobs, recipes and registration (torch-free; the model is in methods/top_reid.py).

TOP-ReID (Wang et al., AAAI 2024; code 924973292/TOP-ReID @921dd7c): a separate TransReID ViT-B/16 with a
camera embedding per modality, the Token Permutation Module (TPM) over their tokens and the Complementary
Reconstruction Module (CRM) that is trained to rebuild each modality's tokens from the others and used at
test only when a modality is missing.
"""

from __future__ import annotations

from dataclasses import dataclass

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
# shipped RGBNT201 yml says DIRECT: 1): SGD momentum 0.9, lr 0.009, weight decay 1e-4, cosine over 120 epochs
# with 10 warmup epochs from 0.01 x lr to a floor of 0.001 x lr, 8 ids x 16 images, 256x128, soft-margin
# triplet, label smoothing 0.1, flip / pad 10 / random erasing 0.5, mean = std = 0.5.
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
    "schedule.kind": "cosine",
    "schedule.warmup_epochs": 10,
    "schedule.warmup_factor": 0.01,
    "schedule.min_lr_factor": 0.001,
    "train.epochs": 120,
    "backbone.drop_path": 0.1,
    "backbone.camera_coef": 3.0,
    "loss.triplet_margin": None,
    "loss.label_smoothing": 0.1,
    "loss.id_weight": 1.0,
    "loss.triplet_weight": 1.0,
}

TOP_REID_DEVIATIONS = [
    "the model after the last epoch is evaluated (official: the best epoch on the test split, every epoch)",
    "augmentation is drawn once per sample and applied to every modality alike (official: torchvision "
    "transforms drawn per modality image)",
    "camera ids absent from training (another dataset's) add no camera term (official: index error)",
]

METHODS.add(
    "top_reid",
    "methods.top_reid:top_reid",
    "TOP-ReID: a TransReID ViT (SIE) per modality, token permutation (TPM), CRM reconstruction of missing "
    "modalities, 2304-d TPM descriptor",
    config=TopReIDConfig,
    defaults=TOP_REID_DEFAULTS,
    official=TOP_REID_OFFICIAL,
    deviations=TOP_REID_DEVIATIONS,
    loss_terms="methods.top_reid:top_reid_loss_terms",
)
