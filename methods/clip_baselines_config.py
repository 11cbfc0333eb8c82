"""The CLIP baselines (torch-free registrations): the single-modality and late-fusion baselines of
methods/late_fusion.py on the OpenAI CLIP ViT-B/16 visual tower (reidbench.nn.clip: projection on every
token, the CLS camera embedding of CLIP-ReID, bilinear position resize) instead of the protocol's timm ViT.

They are the shared track's answer to "how far does the backbone alone go": CLIP-ReID's and PromptSG's
single-modality CLIP numbers match the multimodal state of the art on RGBNT100 and MSVR310. Not CLIP-ReID
itself: no prompt-learning stage, no text tower; one stage with the protocol's recipe (the retrieval
feature is the projected CLS, 512-d per modality). Any other method runs on the same tower with
``--set backbone.source=clip --set backbone.name=ViT-B-16``.
"""

from __future__ import annotations

from reidbench.methods.late_fusion_config import LateFusionConfig, SingleModalityConfig
from reidbench.registry import METHODS

CLIP_BACKBONE = {"backbone.source": "clip", "backbone.name": "ViT-B-16"}

METHODS.add(
    "clip_single",
    "reidbench.methods.late_fusion:single_modality",
    "one modality (RGB by default) on the CLIP ViT-B/16 visual tower: projected CLS, BNNeck",
    config=SingleModalityConfig,
    defaults=CLIP_BACKBONE,
)
METHODS.add(
    "clip_late_fusion",
    "reidbench.methods.late_fusion:late_fusion",
    "late fusion on one shared CLIP ViT-B/16 visual tower: projected CLS per modality, fused, BNNeck",
    config=LateFusionConfig,
    defaults=CLIP_BACKBONE,
)
