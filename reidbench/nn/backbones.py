"""Image backbones (ViTs from timm or transformers) returning all tokens, prefix tokens first.

Both adapters share one interface: ``forward(x, mask=None, camids=None) -> (B, T, D)`` tokens after the
final LayerNorm, ``dim``, ``num_prefix_tokens`` (CLS, plus the distillation token of DeiT-distilled),
``patch_size``, ``grid`` (patch rows, columns) and ``cls(x)``. ``mask`` (B, N patches, bool) replaces
masked patch embeddings by a learnable mask token (built with ``mask_token=True``). ``camids`` (B,) are
the batch's camera ids (``batch["camid"]``, see :func:`batch_camids`): backbones with a camera embedding
(reidbench.nn.transreid) use them, these two ignore them. ``forward(x, mask, final_norm=False)`` (these
two) returns the tokens before the final LayerNorm (FLAVA feeds those to its multimodal encoder) and
``final_norm(tokens)`` applies it.

Inputs may be non-square (256x128, 128x256): a pretrained checkpoint's absolute position embedding is
resampled (bicubic, antialiased, prefix tokens kept) from its grid to the model's. Weights come from the
hub (``backbone.pretrained=true``) or from ``backbone.weights=PATH`` (a checkpoint file, a timm / HF
directory). Attention uses PyTorch SDPA (timm's fused attention; transformers' ``sdpa``).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from reidbench.errors import UserError
from reidbench.protocol import BackboneCfg
from reidbench.util.hub import hub_download

WEIGHTS_HINT = "backbone.weights=PATH"


class ImageBackbone(nn.Module):
    """A timm VisionTransformer (ViT, DeiT, DeiT-distilled, CLIP ViT) as a token encoder."""

    def __init__(self, model: nn.Module, mask_token: bool = False) -> None:
        super().__init__()
        self.model = model
        self.dim: int = model.num_features
        self.num_prefix_tokens: int = getattr(model, "num_prefix_tokens", 1)
        self.patch_size: int = model.patch_embed.patch_size[0]
        self.grid: tuple[int, int] = tuple(model.patch_embed.grid_size)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, self.dim)) if mask_token else None
        if self.mask_token is not None:
            nn.init.trunc_normal_(self.mask_token, std=0.02)

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        camids: torch.Tensor | None = None,
        final_norm: bool = True,
    ) -> torch.Tensor:
        """Tokens after the final LayerNorm (``final_norm=False``: before it, the last block's output)."""
        m = self.model
        if mask is None and final_norm:
            return m.forward_features(x)
        if mask is not None and self.mask_token is None:
            raise RuntimeError("this backbone was built without a mask token (mask_token=True)")
        x = m.patch_embed(x)
        if mask is not None:
            x = torch.where(mask[..., None], self.mask_token.to(x.dtype), x)
        x = m.blocks(m.norm_pre(m.patch_drop(m._pos_embed(x))))  # the rest of timm's forward_features
        return m.norm(x) if final_norm else x

    def final_norm(self, tokens: torch.Tensor) -> torch.Tensor:
        """The final LayerNorm applied to tokens taken before it."""
        return self.model.norm(tokens)

    def cls(self, x: torch.Tensor, camids: torch.Tensor | None = None) -> torch.Tensor:
        """The first (CLS) token's output, ``(B, D)``."""
        return self(x, camids=camids)[:, 0]


class HFImageBackbone(nn.Module):
    """A transformers ``ViTModel`` / ``DeiTModel`` (no pooler) as a token encoder."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        cfg = model.config
        self.dim: int = cfg.hidden_size
        self.num_prefix_tokens: int = 2 if cfg.model_type == "deit" else 1
        self.patch_size: int = _pair(cfg.patch_size)[0]
        size = _pair(cfg.image_size)
        self.grid = (size[0] // self.patch_size, size[1] // self.patch_size)
        self.mask_token = model.embeddings.mask_token

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        camids: torch.Tensor | None = None,
        final_norm: bool = True,
    ) -> torch.Tensor:
        """Tokens after the final LayerNorm (``final_norm=False``: before it, the last layer's output)."""
        if mask is not None and self.mask_token is None:
            raise RuntimeError("this backbone was built without a mask token (mask_token=True)")
        out = self.model(pixel_values=x, bool_masked_pos=mask, output_hidden_states=not final_norm)
        return out.last_hidden_state if final_norm else out.hidden_states[-1]

    def final_norm(self, tokens: torch.Tensor) -> torch.Tensor:
        """The final LayerNorm applied to tokens taken before it."""
        return self.model.layernorm(tokens)

    def cls(self, x: torch.Tensor, camids: torch.Tensor | None = None) -> torch.Tensor:
        """The first (CLS) token's output, ``(B, D)``."""
        return self(x, camids=camids)[:, 0]


def batch_camids(batch: dict, times: int = 1) -> torch.Tensor | None:
    """The batch's camera ids (``camid``), repeated ``times`` for modalities stacked along the batch
    (modality-major, as ``torch.cat([batch[m] for m in modalities])``); None when the batch has none."""
    camids = batch.get("camid")
    if camids is None:
        return None
    return camids.repeat(times) if times > 1 else camids


def build_image_backbone(
    cfg: BackboneCfg,
    image_size: tuple[int, int] | list[int],
    mask_token: bool = False,
    num_cameras: int = 0,
) -> nn.Module:
    """The backbone ``cfg`` describes at ``image_size`` (H, W); sizes set in ``cfg`` override the model's.

    ``cfg.weights`` (a local file or directory) wins over ``cfg.pretrained`` (hub download).
    ``cfg.source``: ``timm`` / ``hf`` (this module), ``clip`` (:mod:`reidbench.nn.clip`) or ``transreid``
    (:mod:`reidbench.nn.transreid`), the last two with a camera embedding over ``num_cameras`` cameras.
    """
    size = (int(image_size[0]), int(image_size[1]))
    if cfg.source == "clip":
        from reidbench.nn.clip import build_clip_backbone

        return build_clip_backbone(cfg, size, mask_token, num_cameras)
    if cfg.source == "transreid":
        from reidbench.nn.transreid import build_transreid_backbone

        return build_transreid_backbone(cfg, size, mask_token, num_cameras)
    if cfg.source == "hf":
        return HFImageBackbone(_hf_vit(cfg, size, mask_token))
    return ImageBackbone(_timm_vit(cfg, size), mask_token)


def _local_path(text: str, key: str) -> Path:
    path = Path(text).expanduser()
    if not path.exists():
        raise UserError(f"{key}={text}: no such file or directory")
    return path


def _timm_vit(cfg: BackboneCfg, size: tuple[int, int]) -> nn.Module:
    import timm

    kwargs = {
        k: getattr(cfg, k)
        for k in ("patch_size", "embed_dim", "depth", "num_heads")
        if getattr(cfg, k) is not None
    }
    common = dict(num_classes=0, img_size=size, drop_path_rate=cfg.drop_path, **kwargs)
    if not timm.is_model(cfg.name):
        raise UserError(
            f"backbone.name={cfg.name!r} is not a timm model (set backbone.source=hf for a "
            f"transformers model, or see timm.list_models())"
        )
    try:
        if cfg.weights:
            path = _local_path(cfg.weights, "backbone.weights")
            overlay = {"source": "local-dir", "file": str(path)} if path.is_dir() else {"file": str(path)}
            return timm.create_model(cfg.name, pretrained=True, pretrained_cfg_overlay=overlay, **common)
        if cfg.pretrained:
            with hub_download(f"backbone {cfg.name!r}", WEIGHTS_HINT):
                return timm.create_model(cfg.name, pretrained=True, **common)
        return timm.create_model(cfg.name, pretrained=False, **common)
    except RuntimeError as exc:  # no pretrained weights for the name, or a checkpoint that does not fit
        raise UserError(f"backbone {cfg.name!r} (weights {cfg.weights or 'from the hub'}): {exc}") from None


def _hf_vit(cfg: BackboneCfg, size: tuple[int, int], mask_token: bool) -> nn.Module:
    from transformers import AutoModel, DeiTConfig, DeiTModel, ViTConfig, ViTModel

    state = None
    if cfg.weights or cfg.pretrained:
        source = str(_local_path(cfg.weights, "backbone.weights")) if cfg.weights else cfg.name
        if cfg.weights:
            pretrained = _hf_load(AutoModel, source)
        else:
            with hub_download(f"backbone {cfg.name!r}", WEIGHTS_HINT):
                pretrained = AutoModel.from_pretrained(source)
        config, state = pretrained.config, pretrained.state_dict()
        del pretrained
    else:  # random init: the family's base configuration (DeiT-B / ViT-B), offline
        config = DeiTConfig() if "deit" in cfg.name.lower() else ViTConfig()
    classes = {"deit": DeiTModel, "vit": ViTModel}
    if config.model_type not in classes:
        raise UserError(
            f"backbone {cfg.name!r}: transformers model type {config.model_type!r} is not "
            f"supported (use a ViT or DeiT checkpoint, or backbone.source=timm)"
        )
    if cfg.embed_dim is not None:
        config.hidden_size, config.intermediate_size = cfg.embed_dim, 4 * cfg.embed_dim
    for key, attr in (
        ("depth", "num_hidden_layers"),
        ("num_heads", "num_attention_heads"),
        ("patch_size", "patch_size"),
    ):
        if getattr(cfg, key) is not None:
            setattr(config, attr, getattr(cfg, key))
    patch = _pair(config.patch_size)[0]
    old_grid = tuple(s // patch for s in _pair(config.image_size))
    config.image_size = list(size)
    model = classes[config.model_type](config, add_pooling_layer=False, use_mask_token=mask_token)
    if state is not None:
        prefix = 2 if config.model_type == "deit" else 1
        key = "embeddings.position_embeddings"
        state[key] = resample_position_embedding(
            state[key], (size[0] // patch, size[1] // patch), old_grid, prefix
        )
        state = {k: v for k, v in state.items() if not k.startswith("pooler.")}
        try:
            missing, unexpected = model.load_state_dict(state, strict=False)
        except RuntimeError as exc:
            raise UserError(
                f"backbone weights {cfg.weights or cfg.name} do not fit the configured model: {exc}"
            ) from None
        missing = [k for k in missing if k != "embeddings.mask_token"]
        if missing or unexpected:
            raise UserError(
                f"backbone weights {cfg.weights or cfg.name}: missing {missing[:5]}, "
                f"unexpected {unexpected[:5]}"
            )
    return model


def _hf_load(cls: type, source: str) -> nn.Module:
    try:
        return cls.from_pretrained(source)
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot load a transformers model from {source}: {exc}") from None


def resample_position_embedding(
    posemb: torch.Tensor, new_grid: tuple[int, int], old_grid: tuple[int, int], num_prefix_tokens: int
) -> torch.Tensor:
    """``(1, prefix + h*w, D)`` absolute position embedding resampled to ``new_grid`` (bicubic, antialias)."""
    from timm.layers import resample_abs_pos_embed

    if tuple(new_grid) == tuple(old_grid):
        return posemb
    return resample_abs_pos_embed(posemb, list(new_grid), list(old_grid), num_prefix_tokens=num_prefix_tokens)


def _pair(value: int | list[int] | tuple[int, int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def weights_tags(model: nn.Module) -> dict[str, str]:
    """Where the model's pretrained backbones came from: the union of their ``weights_tags``
    (``backbone_weights``: the file or hub id, ``backbone_weights_sha256``: the file's sha256), which the
    runner logs as run tags. Backbones loaded from different files are told apart by module path."""
    found = [(name, m.weights_tags) for name, m in model.named_modules() if getattr(m, "weights_tags", None)]
    if len({tuple(sorted(tags.items())) for _, tags in found}) <= 1:
        return dict(found[0][1]) if found else {}
    return {f"{key}.{name}": value for name, tags in found for key, value in tags.items()}
