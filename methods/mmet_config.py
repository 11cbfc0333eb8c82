"""MMET's knobs, registration defaults and registration (torch-free; the model is in methods/mmet.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from reidbench.registry import METHODS

Mode = Literal["multimodal", "image", "text"]


@dataclass
class MMETConfig:
    mode: Mode = "multimodal"  # input that trains the head: image | text | multimodal (image + text)
    eval_mode: Mode | None = None  # input used for retrieval (None: as mode)
    mm_layers: int = 6
    mm_heads: int = 12
    image_mask_ratio: float = 0.3827  # share of patches masked in training (75 of 196, BEiT blocks); 0: off
    mask_min_block: int = 16
    text_mask_prob: float = 0.15  # whole-word masking in training; 0: off
    feature: Literal["post_bn", "pre_bn"] = "post_bn"  # triplet + retrieval feature (official: post_bn)
    mlm_weight: float = 1.0
    mpr_weight: float = 1.0
    modality_embedding: bool = True  # per-stream embedding into the multimodal encoder
    text_model: str = "bert-base-uncased"
    text_pretrained: bool = True
    text_weights: str | None = None  # local HF directory of the text encoder (wins over the hub)
    tokenizer: str | None = None  # vocab.txt or tokenizer directory (None: text_weights, else text_model);
    # a relative path is looked up in the dataset's folder first
    text_hidden: int | None = None  # sizes of a randomly initialised text encoder (None: BERT-base)
    text_layers: int | None = None
    text_heads: int | None = None
    text_max_len: int = 77
    drop_missing: bool = False  # missing-modality evaluation: fuse the present streams (else zero-fill)

    def modes(self) -> set[str]:
        """The inputs the model is trained and evaluated on."""
        return {self.mode, self.eval_mode or self.mode}

    def needs_text(self) -> bool:
        """Whether training or retrieval reads captions."""
        return bool(self.modes() & {"text", "multimodal"})


# Every track: captions (the architecture reads them), and ReID fine-tuning on unmasked inputs, as the
# official fine-tuning does (FLAVAClassificationLightningModule passes the plain image and text); masked
# modeling (masks + the mlm / mpr loss terms) is MMET's pretraining and an ablation axis here.
MMET_DEFAULTS = {
    "data.text": True,
    "method.image_mask_ratio": 0.0,
    "method.text_mask_prob": 0.0,
}

# The official fine-tuning recipe (examples/flava/finetune.py, finetuning/debug_real_market.yaml).
MMET_OFFICIAL = {
    "loss.variant": "ce+triplet",
    "loss.label_smoothing": 0.0,
    "loss.triplet_margin": None,  # soft margin, batch-hard, on the post-BN feature (method.feature)
    "optim.name": "adamw",
    "optim.lr": 1.0e-5,
    "optim.weight_decay": 0.1,
    "optim.betas": [0.9, 0.98],
    "optim.eps": 1.0e-6,
}

MMET_DEVIATIONS = [
    "no FLAVA pretraining on the synthetic transfer_market images: the backbone and text encoder start "
    "from the protocol's weights (ImageNet ViT, BERT) or at random on the synthetic protocol",
    "epochs, warmup and schedule are the protocol's (official: 2,000 warmup steps, cosine to 230,000 steps)",
    "a PK sampler (the protocol's P x K) where the official loader shuffles at random, which breaks its "
    "batch-hard triplet (see the reference notes)",
    "image size and augmentation are the protocol's",
    "the model after the last epoch is evaluated (official: checkpoints monitored on test mAP)",
]

METHODS.add(
    "mmet",
    "reidbench.methods.mmet:mmet",
    "MMET: ViT + BERT + multimodal encoder, one shared BNNeck head for image / text / "
    "image+text CLS, masked multimodal modeling",
    config=MMETConfig,
    defaults=MMET_DEFAULTS,
    official=MMET_OFFICIAL,
    deviations=MMET_DEVIATIONS,
    loss_terms="reidbench.methods.mmet:mmet_loss_terms",
    tokenizer="reidbench.methods.mmet:mmet_tokenizer",
)
