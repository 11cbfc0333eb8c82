"""Reusable modules: image backbones, the BNNeck head, fusion blocks and the model output type."""

from reidbench.nn.backbones import ImageBackbone, batch_camids, build_image_backbone
from reidbench.nn.heads import BNNeckHead
from reidbench.nn.output import ModelOutput

__all__ = ["BNNeckHead", "ImageBackbone", "ModelOutput", "batch_camids", "build_image_backbone"]
