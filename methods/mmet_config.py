"""MMET's knobs, registration defaults and registration (torch-free; the model is in methods/mmet.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from reidbench.fidelity import Fidelity
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
    modality_embedding_single: bool = True  # ... also with a single image modality (official FLAVA: none)
    mm_attend_padding: bool = False  # the multimodal encoder attends to caption padding (official: true)
    mm_input: Literal["post_norm", "pre_norm"] = "post_norm"  # unimodal tokens after / before the final LN
    text_encoder: Literal["bert", "flava"] = "bert"  # transformers BertModel / FlavaTextModel
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

# The official fine-tuning recipe (examples/flava/finetune.py, finetuning/debug_real_market.yaml,
# torchmultimodal/models/flava/model.py): optimiser, schedule, losses and the official FLAVA forward.
MMET_OFFICIAL = {
    "loss.variant": "ce+triplet",
    "loss.label_smoothing": 0.0,
    "loss.triplet_margin": None,  # soft margin, batch-hard, on the post-BN feature (method.feature)
    "optim.name": "adamw",
    "optim.lr": 1.0e-5,
    "optim.weight_decay": 0.1,
    "optim.betas": [0.9, 0.98],
    "optim.eps": 1.0e-6,
    "optim.no_decay": [],  # torch.optim.AdamW(model.parameters(), ...): every tensor decays
    "schedule.kind": "cosine",  # transformers.get_cosine_schedule_with_warmup, stepped per batch
    "schedule.step_per": "step",
    "schedule.warmup_steps": 2000,
    "schedule.warmup_factor": 0.0,
    "schedule.min_lr_factor": 0.0,
    "schedule.cosine": "after_warmup",
    "backbone.drop_path": 0.0,  # FLAVA's encoders: dropout 0, no stochastic depth
    "method.mm_attend_padding": True,  # encode_mm: self.mm_encoder(fused_state), no attention mask
    "method.mm_input": "pre_norm",  # hidden_states[-1]: "the hidden state without final layernorm"
    "method.text_encoder": "flava",  # flava_text_encoder: pre-LN, final LayerNorm, dropout 0
    "method.text_model": "facebook/flava-full",
    "method.tokenizer": "bert-large-uncased-whole-word-masking",
    "method.modality_embedding_single": False,  # FLAVA has no stream embedding
}

MMET_FIDELITY = [
    Fidelity(
        "pretraining",
        "FLAVA pretraining (MIM, MLM, MMM, ITM, contrastive) on the synthetic transfer_market images, then "
        "ReID fine-tuning",
        ours="ReID fine-tuning only, from ImageNet ViT-B/16 and FLAVA-full's text encoder "
        "(facebook/flava-full; random on the synthetic protocol)",
        why="the MMET-pretrained weights are not released; masked modeling is an ablation here "
        "(loss.variant with mlm / mpr)",
        keys=("method.text_model",),
        shared="ImageNet ViT-B/16 and BERT-base",
        shared_why="the shared track's encoders",
    ),
    Fidelity(
        "image encoder",
        "FLAVA ViT-B/16, pre-LN, LayerNorm eps 1e-12, dropout 0, no stochastic depth",
        ours="timm ViT-B/16 (LayerNorm eps 1e-6), no stochastic depth",
        why="FLAVA's image weights are not available; the ImageNet ViT-B/16 is the closest pretrained start",
        keys=("backbone.drop_path",),
        shared="timm ViT-B/16 with stochastic depth 0.1",
        shared_why="the shared track's backbone",
    ),
    Fidelity(
        "text encoder",
        "FLAVA text encoder: BERT embeddings, 12 pre-LN layers, final LayerNorm, dropout 0; tokenizer "
        "bert-large-uncased-whole-word-masking, 77 tokens padded",
        keys=("method.text_encoder", "method.tokenizer"),
        shared="BERT-base (post-LN, dropout 0.1), its uncased tokenizer",
        shared_why="a pretrained BERT is the common text encoder",
    ),
    Fidelity(
        "multimodal encoder input",
        "each encoder's tokens before its final LayerNorm (hidden_states[-1])",
        keys=("method.mm_input",),
        shared="after the final LayerNorm",
        shared_why="no parameter goes unused (documented improvement)",
    ),
    Fidelity(
        "multimodal attention over caption padding",
        "attends to the padded 77-token caption (encode_mm passes no attention mask)",
        keys=("method.mm_attend_padding",),
        shared="padding masked",
        shared_why="the fused embedding does not depend on the padding length (documented improvement)",
    ),
    Fidelity(
        "stream embedding",
        "none (one image and one text stream)",
        ours="none with one image modality; with several, a learned zero-initialised embedding per stream",
        why="the official code has one image modality; several need telling apart",
        keys=("method.modality_embedding_single",),
        shared="one per stream, also with a single image modality",
        shared_why="the shared track's choice",
    ),
    Fidelity(
        "ReID head and losses",
        "BNNeck (bias frozen) + bias-free classifier; CE without label smoothing + soft-margin batch-hard "
        "triplet, both on the post-BN feature, also the retrieval feature",
        keys=("loss",),
        shared="CE (label smoothing 0.1) + batch-hard triplet margin 0.3 on the post-BN feature",
        shared_why="the shared track's loss",
    ),
    Fidelity(
        "optimiser",
        "AdamW lr 1e-5, betas (0.9, 0.98), eps 1e-6, weight decay 0.1 on every tensor",
        keys=("optim",),
        shared="AdamW with the protocol's lr and weight decay, betas (0.9, 0.999), eps 1e-8; biases and "
        "1-D tensors exempt",
        shared_why="the shared track's optimiser",
    ),
    Fidelity(
        "schedule",
        "get_cosine_schedule_with_warmup per step: 2,000 warmup steps from 0, cosine to 0 at 230,000 steps",
        ours="the same formula; 2,000 warmup steps, cosine to 0 at the end of the protocol's epochs",
        why="training length follows the dataset protocol",
        keys=("schedule",),
        shared="warmup from 0.01 x lr over the protocol's warmup epochs, cosine to 0",
        shared_why="the shared track's schedule",
    ),
    Fidelity(
        "batches",
        "64 samples shuffled at random (RandomIdentitySampler commented out), which breaks the batch-hard "
        "triplet",
        ours="the protocol's PK batches",
        why="a batch-hard triplet needs several samples per identity",
    ),
    Fidelity(
        "inputs",
        "224x224 (RandomResizedCrop scale 0.9-1 in training), CLIP mean / std",
        ours="the protocol's image size, augmentation and normalisation",
        why="every method of a dataset reads the same inputs",
    ),
    Fidelity(
        "reported model",
        "checkpoints monitored on test mAP",
        ours="the model after the last epoch",
        why="no model selection on test data",
    ),
]

METHODS.add(
    "mmet",
    "reidbench.methods.mmet:mmet",
    "MMET: ViT + BERT + multimodal encoder, one shared BNNeck head for image / text / "
    "image+text CLS, masked multimodal modeling",
    config=MMETConfig,
    defaults=MMET_DEFAULTS,
    official=MMET_OFFICIAL,
    fidelity=MMET_FIDELITY,
    loss_terms="reidbench.methods.mmet:mmet_loss_terms",
    tokenizer="reidbench.methods.mmet:mmet_tokenizer",
)
