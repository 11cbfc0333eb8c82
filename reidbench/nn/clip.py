"""The OpenAI CLIP visual tower (ViT) as a token encoder, in OpenAI's parameter layout.

Same interface as :class:`reidbench.nn.backbones.ImageBackbone`: ``forward(x, mask=None, camids=None)``
gives every token after ``ln_post`` **and the projection** (``(B, 1 + h*w, proj_dim)``: CLIP-ReID / DeMo
project all tokens, not only the CLS), with ``dim`` (the projection width), ``num_prefix_tokens`` (1),
``patch_size``, ``grid`` and ``cls(x, camids=None)``.

The camera embedding follows CLIP-ReID and DeMo (``make_model_clipreid.py`` / ``meta_arch.py``): a learnable
``(cameras, width)`` table (truncated normal, std 0.02) whose row ``camids[b]``, times ``camera_coef``
(their ``SIE_COE``: 1.0), is added to the CLS token **before** the position embedding; patch tokens get
none. ``camids=None`` adds nothing. The position embedding of a checkpoint is resized **bilinearly**
(``F.interpolate``, ``align_corners=False``, no antialiasing, as their ``resize_pos_embed``) from the
checkpoint's square grid to the protocol's ``image_size // patch`` grid; the class position is kept.

Blocks are OpenAI's: pre-LN, ``nn.MultiheadAttention`` (``in_proj_weight``, ``out_proj``), QuickGELU MLP
(``c_fc``, ``c_proj``), LayerNorm eps 1e-5, ``ln_pre`` before the blocks. ``drop_path`` (stochastic depth on
both residual branches) is 0 in OpenAI's model; the protocol's ``backbone.drop_path`` applies here as it
does to the timm ViTs (DeMo's official recipe sets it to 0). Weights: see :mod:`reidbench.nn.clip_weights`.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from reidbench.errors import UserError
from reidbench.nn.clip_weights import (
    hub_checkpoint,
    openai_visual_state,
    read_checkpoint,
    resize_position_embedding,
    tower_size,
)
from reidbench.nn.transreid import sha256_file
from reidbench.protocol import BackboneCfg


@dataclass(frozen=True)
class ClipArch:
    """One CLIP visual tower's size; ``hub``: the Hugging Face repo holding its open_clip weights."""

    width: int
    layers: int
    heads: int
    patch: int
    proj_dim: int
    grid: int  # pretraining grid (224 / patch)
    hub: str


CLIP_MODELS: dict[str, ClipArch] = {
    "ViT-B-16": ClipArch(768, 12, 12, 16, 512, 14, "timm/vit_base_patch16_clip_224.openai"),
    "ViT-B-32": ClipArch(768, 12, 12, 32, 512, 7, "timm/vit_base_patch32_clip_224.openai"),
    "ViT-L-14": ClipArch(1024, 24, 16, 14, 768, 16, "timm/vit_large_patch14_clip_224.openai"),
}


class QuickGELU(nn.Module):
    """OpenAI CLIP's activation, ``x * sigmoid(1.702 x)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class ResidualAttentionBlock(nn.Module):
    """OpenAI's pre-LN block (batch-first here; the parameters are the same)."""

    def __init__(self, width: int, heads: int, drop_path: float = 0.0) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln_1 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            OrderedDict(
                [
                    ("c_fc", nn.Linear(width, width * 4)),
                    ("gelu", QuickGELU()),
                    ("c_proj", nn.Linear(width * 4, width)),
                ]
            )
        )
        self.ln_2 = nn.LayerNorm(width)
        self.drop_path = nn.Identity()
        if drop_path > 0:
            from timm.layers import DropPath  # imported only when used: timm's import is slow

            self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.ln_1(x)
        x = x + self.drop_path(self.attn(h, h, h, need_weights=False)[0])
        return x + self.drop_path(self.mlp(self.ln_2(x)))


class Transformer(nn.Module):
    """``resblocks``: the blocks, named as in OpenAI's state dict."""

    def __init__(self, width: int, layers: int, heads: int, drop_path: float = 0.0) -> None:
        super().__init__()
        # timm's stochastic-depth decay rule (linspace 0 .. drop_path), in Python: the meta device has no data
        rates = [drop_path * i / (layers - 1) for i in range(layers)] if layers > 1 else [0.0]
        self.resblocks = nn.Sequential(*[ResidualAttentionBlock(width, heads, r) for r in rates])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.resblocks(x)


class VisionTower(nn.Module):
    """OpenAI's ``VisionTransformer`` (the ``visual.*`` keys of a CLIP state dict) at a ``grid`` of
    patch rows x columns; ``forward`` returns the projected tokens."""

    def __init__(
        self,
        width: int,
        layers: int,
        heads: int,
        patch: int,
        proj_dim: int,
        grid: tuple[int, int],
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"CLIP width {width} is not a multiple of {heads} heads")
        self.grid = grid
        self.patch = patch
        scale = width**-0.5
        self.conv1 = nn.Conv2d(3, width, kernel_size=patch, stride=patch, bias=False)
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn(grid[0] * grid[1] + 1, width))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = Transformer(width, layers, heads, drop_path)
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(scale * torch.randn(width, proj_dim))

    def embed(
        self,
        x: torch.Tensor,
        cls_shift: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        mask_token: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``[CLS (+ cls_shift); patches] + position``: ``(B, 1 + h*w, width)``; ``mask`` (B, h*w) bool
        replaces those patch embeddings by ``mask_token``."""
        x = self.conv1(x).flatten(2).transpose(1, 2)
        if mask is not None:
            x = torch.where(mask[..., None], mask_token.to(x.dtype), x)
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        if cls_shift is not None:
            cls = cls + cls_shift.to(x.dtype)[:, None]
        return torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)

    def forward(
        self, x: torch.Tensor, cls_shift: torch.Tensor | None = None, **embed: torch.Tensor
    ) -> torch.Tensor:
        x = self.transformer(self.ln_pre(self.embed(x, cls_shift, **embed)))
        return self.ln_post(x) @ self.proj


class CLIPBackbone(nn.Module):
    """The CLIP visual tower with an optional camera embedding on the CLS token (see the module doc).

    ``visual`` holds exactly the ``visual.*`` parameters of an OpenAI CLIP checkpoint (it loads strictly);
    ``camera_embed`` (cameras, width) and ``mask_token`` are ours. ``weights_tags``: the checkpoint the tower
    was loaded from and its sha256 (empty: random init); the runner tags the run with them.
    """

    def __init__(
        self,
        visual: VisionTower,
        num_cameras: int = 0,
        camera_coef: float = 1.0,
        mask_token: bool = False,
    ) -> None:
        super().__init__()
        self.visual = visual
        width = visual.class_embedding.shape[0]
        self.dim: int = visual.proj.shape[1]
        self.num_prefix_tokens = 1
        self.patch_size: int = visual.patch
        self.grid: tuple[int, int] = tuple(visual.grid)
        self.camera_coef = camera_coef
        self.camera_embed: nn.Parameter | None = None
        if num_cameras > 0 and camera_coef != 0:
            self.camera_embed = nn.Parameter(torch.zeros(num_cameras, width))
            nn.init.trunc_normal_(self.camera_embed, std=0.02)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, width)) if mask_token else None
        if self.mask_token is not None:
            nn.init.trunc_normal_(self.mask_token, std=0.02)
        self.weights_tags: dict[str, str] = {}  # backbone_weights (file or hub id), backbone_weights_sha256

    def camera_shift(self, camids: torch.Tensor | None) -> torch.Tensor | None:
        """``camera_coef * camera_embed[camids]`` (B, width), or None without ids or a camera table. Ids
        outside the table (another dataset's cameras, in a cross-domain test) get no camera term."""
        if camids is None or self.camera_embed is None:
            return None
        known = (camids >= 0) & (camids < self.camera_embed.shape[0])
        rows = self.camera_embed[camids.clamp(0, self.camera_embed.shape[0] - 1)]
        return self.camera_coef * rows * known[:, None].to(rows.dtype)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, camids: torch.Tensor | None = None
    ) -> torch.Tensor:
        if mask is not None and self.mask_token is None:
            raise RuntimeError("this backbone was built without a mask token (mask_token=True)")
        embed = {} if mask is None else {"mask": mask, "mask_token": self.mask_token}
        return self.visual(x, self.camera_shift(camids), **embed)

    def cls(self, x: torch.Tensor, camids: torch.Tensor | None = None) -> torch.Tensor:
        """The projected CLS token, ``(B, dim)``."""
        return self.forward(x, camids=camids)[:, 0]


def build_clip_backbone(
    cfg: BackboneCfg, image_size: tuple[int, int], mask_token: bool = False, num_cameras: int = 0
) -> CLIPBackbone:
    """The CLIP tower ``cfg.name`` (a :data:`CLIP_MODELS` name) at ``image_size`` (H, W).

    Weights: ``cfg.weights`` (a local file) wins over ``cfg.pretrained`` (open_clip's file on the hub); with
    neither, random init at the named size with ``cfg``'s size overrides (``embed_dim``, ``depth``,
    ``num_heads``, ``patch_size``, ``proj_dim``). A checkpoint fixes the size; overrides must agree with it.
    ``num_cameras`` > 0 adds the CLS camera embedding (``cfg.camera_coef``, default 1.0; 0 turns it off).
    """
    arch = CLIP_MODELS.get(cfg.name)
    if arch is None:
        raise UserError(
            f"backbone.name={cfg.name!r} is not a CLIP model (backbone.source=clip); "
            f"CLIP models: {', '.join(CLIP_MODELS)}"
        )
    state, path = None, None
    if cfg.weights or cfg.pretrained:
        path = _local_file(cfg.weights) if cfg.weights else hub_checkpoint(arch.hub)
        state = openai_visual_state(read_checkpoint(path), f"backbone weights {path}")
    size = _tower_size(cfg, arch, state)
    grid = (int(image_size[0]) // size["patch"], int(image_size[1]) // size["patch"])
    tower = VisionTower(
        size["width"], size["layers"], size["heads"], size["patch"], size["proj_dim"], grid, cfg.drop_path
    )
    if state is not None:
        state["positional_embedding"] = resize_position_embedding(state["positional_embedding"], grid)
        _load_strictly(tower, state, str(path))
    coef = 1.0 if cfg.camera_coef is None else cfg.camera_coef
    backbone = CLIPBackbone(tower, num_cameras, coef, mask_token)
    if path is not None:
        source = cfg.weights or f"hf-hub:{arch.hub}"
        backbone.weights_tags = {"backbone_weights": source, "backbone_weights_sha256": sha256_file(path)}
    return backbone


def _load_strictly(tower: VisionTower, state: dict[str, torch.Tensor], where: str) -> None:
    """Every tower parameter from ``state`` and nothing else; a one-line UserError otherwise."""
    what = f"backbone weights {where} do not fit a CLIP tower"
    try:
        missing, unexpected = tower.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # a shape mismatch
        raise UserError(f"{what}: {' '.join(str(exc).split())}") from None
    if missing or unexpected:
        raise UserError(f"{what}: missing {missing[:5]}, unexpected {unexpected[:5]}")


def _local_file(text: str) -> Path:
    path = Path(text).expanduser()
    if not path.is_file():
        raise UserError(f"backbone.weights={text}: no such file (expected a CLIP checkpoint file)")
    return path


def _tower_size(cfg: BackboneCfg, arch: ClipArch, state: dict[str, torch.Tensor] | None) -> dict[str, int]:
    """The tower's size: the checkpoint's (``cfg``'s overrides must agree), else ``arch`` with ``cfg``'s
    overrides."""
    named = {"width": arch.width, "layers": arch.layers, "heads": arch.heads, "patch": arch.patch}
    named["proj_dim"] = arch.proj_dim
    keys = {"width": "embed_dim", "layers": "depth", "heads": "num_heads", "patch": "patch_size"}
    keys["proj_dim"] = "proj_dim"
    given = {k: getattr(cfg, key) for k, key in keys.items() if getattr(cfg, key) is not None}
    if state is None:
        return {**named, **given}
    found = tower_size(state)
    if "heads" in given:  # not recorded in a state dict (OpenAI's rule: width / 64)
        found["heads"] = given["heads"]
    clash = {keys[k]: (v, found[k]) for k, v in given.items() if found[k] != v}
    if clash:
        said = ", ".join(f"backbone.{key}={v} but the checkpoint has {f}" for key, (v, f) in clash.items())
        raise UserError(f"CLIP weights do not match the configured size: {said}")
    return found
