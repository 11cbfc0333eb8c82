"""Image backbones from timm, returning all tokens (prefix tokens first) for a non-square input."""

from __future__ import annotations

import torch
from torch import nn

from reidbench.errors import UserError
from reidbench.protocol import BackboneCfg


class ImageBackbone(nn.Module):
    """A ViT returning ``(B, T, D)`` tokens; ``dim`` and ``num_prefix_tokens`` describe them."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.dim: int = model.num_features
        self.num_prefix_tokens: int = getattr(model, "num_prefix_tokens", 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(x)

    def cls(self, x: torch.Tensor) -> torch.Tensor:
        """The first (CLS) token's output, ``(B, D)``."""
        return self.forward(x)[:, 0]


def build_image_backbone(cfg: BackboneCfg, image_size: tuple[int, int]) -> ImageBackbone:
    """A timm ViT at ``image_size`` (H, W); sizes set in ``cfg`` override the named model's."""
    import timm

    kwargs = {k: getattr(cfg, k) for k in ("patch_size", "embed_dim", "depth", "num_heads")
              if getattr(cfg, k) is not None}
    try:
        model = timm.create_model(cfg.name, pretrained=False, num_classes=0, img_size=tuple(image_size),
                                  drop_path_rate=cfg.drop_path, **kwargs)
    except RuntimeError as exc:  # unknown model name
        raise UserError(f"backbone {cfg.name!r}: {exc}") from None
    if cfg.pretrained or cfg.weights:
        raise UserError("pretrained backbones are not available in this build; set backbone.pretrained=false")
    return ImageBackbone(model)
