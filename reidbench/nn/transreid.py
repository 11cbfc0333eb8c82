"""A TransReID-style ViT (He et al., ICCV 2021) with its camera embedding (SIE), the backbone of TOP-ReID
and its descendants.

What makes it TransReID's rather than timm's ViT (read in 924973292/TOP-ReID @921dd7c,
``modeling/backbones/vit_pytorch.py``):

* SIE: a learnable ``(cameras, 1, D)`` embedding; ``camera_coef x E[cam]`` (3.0 in TOP-ReID) is added to
  **every token** in the same sum as the position embedding (after the CLS token is prepended, before
  the first block). It exists only with more than one camera and is used at test with the test camid.
* The checkpoint's 14x14 position grid is resized to the input's grid **bilinearly** (``align_corners``
  off, no antialias; timm resamples bicubic), the CLS position kept; ``head`` / ``dist`` keys are skipped.
* qkv bias, LayerNorm eps 1e-6, GELU MLP ratio 4, stochastic depth rising linearly to ``drop_path``;
  random init as the official code: trunc-normal 0.02 linears / CLS / positions / SIE, zero biases,
  the patch conv normal(0, sqrt(2 / (k*k*out))).

Weights: timm's ``vit_base_patch16_224`` state dict (``orig_in21k_ft_in1k`` is the file TransReID's
README points to) from ``backbone.weights=FILE`` (.pth / .bin / .safetensors), or from the hub when
``backbone.pretrained`` and there is network. The file and its sha256 are kept in ``weights_tags``
(``backbone_weights``, ``backbone_weights_sha256``; the runner logs them as run tags).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from reidbench.errors import UserError
from reidbench.protocol import BackboneCfg

DEFAULT_CAMERA_COEF = 3.0  # TOP-ReID's MODEL.SIE_COE
# name fragment -> (embed_dim, depth, num_heads) of timm's ViT families
SIZES = {"tiny": (192, 12, 3), "small": (384, 12, 6), "base": (768, 12, 12), "large": (1024, 24, 16)}


class TransReIDViT(nn.Module):
    """Token encoder with the ImageBackbone interface: ``forward(x, mask=None, camids=None) -> (B, 1+N, D)``
    after the final LayerNorm, ``dim``, ``num_prefix_tokens``, ``patch_size``, ``grid``, ``cls(x, camids)``.

    ``camids`` (B,) select the camera embedding; None, or an id outside ``[0, num_cameras)`` (another
    dataset's camera), adds no camera term.
    """

    def __init__(
        self,
        image_size: tuple[int, int],
        patch_size: int = 16,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        drop_path: float = 0.1,
        num_cameras: int = 0,
        camera_coef: float = DEFAULT_CAMERA_COEF,
        mask_token: bool = False,
    ) -> None:
        from timm.models.vision_transformer import Block

        super().__init__()
        self.dim, self.num_prefix_tokens, self.patch_size = embed_dim, 1, patch_size
        self.grid = (image_size[0] // patch_size, image_size[1] // patch_size)
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(3, embed_dim, patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.grid[0] * self.grid[1], embed_dim))
        self.camera_coef = camera_coef
        use_sie = num_cameras > 1 and camera_coef != 0
        self.sie_embed = nn.Parameter(torch.zeros(num_cameras, 1, embed_dim)) if use_sie else None
        self.mask_token = nn.Parameter(torch.zeros(1, 1, embed_dim)) if mask_token else None
        rates = [drop_path * i / max(depth - 1, 1) for i in range(depth)]  # linear 0 .. drop_path
        norm = _layer_norm
        self.blocks = nn.Sequential(
            *[Block(embed_dim, num_heads, 4.0, qkv_bias=True, drop_path=r, norm_layer=norm) for r in rates]
        )
        self.norm = norm(embed_dim)
        self.weights_tags: dict[str, str] = {}  # backbone_weights (file), backbone_weights_sha256
        self._init_weights()

    @property
    def num_cameras(self) -> int:
        return 0 if self.sie_embed is None else self.sie_embed.shape[0]

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        conv = self.patch_embed.proj
        fan_out = conv.kernel_size[0] * conv.kernel_size[1] * conv.out_channels
        nn.init.normal_(conv.weight, 0.0, (2.0 / fan_out) ** 0.5)
        for p in (self.cls_token, self.pos_embed, self.sie_embed, self.mask_token):
            if p is not None:
                nn.init.trunc_normal_(p, std=0.02)

    def camera_term(self, camids: torch.Tensor | None) -> torch.Tensor | None:
        """``camera_coef x E[camid]`` as ``(B, 1, D)`` (zero for unknown ids), or None without SIE."""
        if self.sie_embed is None or camids is None:
            return None
        known = (camids >= 0) & (camids < self.num_cameras)
        term = self.sie_embed[camids.clamp(0, self.num_cameras - 1)]
        return self.camera_coef * term * known[:, None, None].to(term.dtype)

    def embed(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, camids: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The first block's input: ``[CLS; patches] + pos_embed (+ coef x E[cam])``."""
        x = self.patch_embed.proj(x).flatten(2).transpose(1, 2)
        if mask is not None:
            if self.mask_token is None:
                raise RuntimeError("this backbone was built without a mask token (mask_token=True)")
            x = torch.where(mask[..., None], self.mask_token.to(x.dtype), x)
        x = torch.cat([self.cls_token.expand(len(x), -1, -1).to(x.dtype), x], dim=1) + self.pos_embed
        camera = self.camera_term(camids)
        return x if camera is None else x + camera

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, camids: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.norm(self.blocks(self.embed(x, mask, camids)))

    def cls(self, x: torch.Tensor, camids: torch.Tensor | None = None) -> torch.Tensor:
        """The CLS token's output, ``(B, D)``."""
        return self(x, camids=camids)[:, 0]


def _layer_norm(dim: int, **kwargs) -> nn.LayerNorm:
    return nn.LayerNorm(dim, eps=1e-6, **kwargs)


def resize_position_embedding_bilinear(posemb: torch.Tensor, new_grid: tuple[int, int]) -> torch.Tensor:
    """``(1, 1 + g*g, D)`` (a square grid after the CLS position) resized to ``(1, 1 + h*w, D)`` by bilinear
    interpolation (``align_corners`` off), as TransReID's ``resize_pos_embed``."""
    cls, grid = posemb[:, :1], posemb[0, 1:]
    side = int(round(len(grid) ** 0.5))
    if side * side != len(grid):
        raise UserError(f"position embedding of {len(grid)} patches is not a square grid")
    if (side, side) == tuple(new_grid):
        return posemb
    grid = grid.reshape(1, side, side, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=tuple(new_grid), mode="bilinear", align_corners=False)
    return torch.cat([cls, grid.permute(0, 2, 3, 1).reshape(1, new_grid[0] * new_grid[1], -1)], dim=1)


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A checkpoint file's tensors (safetensors or a torch pickle, unwrapped from ``model`` /
    ``state_dict``, ``module.`` prefixes stripped)."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's to fix
        why = f"{type(exc).__name__}: {exc}"
        raise UserError(f"backbone.weights={path}: cannot read a checkpoint ({why})") from None
    for key in ("model", "state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise UserError(f"backbone.weights={path}: expected a state dict, got {type(state).__name__}")
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_timm_vit_state(model: TransReIDViT, state: dict[str, torch.Tensor], where: str) -> None:
    """Load a timm ViT state dict into ``model`` strictly (head / dist keys skipped, positions resized;
    only the SIE and mask token, which no ImageNet checkpoint has, may be missing)."""
    state = {k: v for k, v in state.items() if not (k.startswith("head") or "dist" in k)}
    if "pos_embed" in state:
        posemb = state["pos_embed"]
        if posemb.shape[1] != model.pos_embed.shape[1] and "dist_token" in state:
            posemb = torch.cat([posemb[:, :1], posemb[:, 2:]], dim=1)  # DeiT-distilled: drop its position
        state["pos_embed"] = resize_position_embedding_bilinear(posemb, model.grid)
    hint = "expected timm's vit_*_patch16_224 layout at the configured size"
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # a tensor of another shape
        first = str(exc).splitlines()[1:2]
        raise UserError(f"backbone weights {where}: not a timm ViT of this size ({hint}): {first}") from None
    missing = [k for k in missing if k not in ("sie_embed", "mask_token")]
    if missing or unexpected:
        raise UserError(
            f"backbone weights {where}: not a timm ViT of this size ({hint}): missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}"
        )


def build_transreid_backbone(
    cfg: BackboneCfg, image_size: tuple[int, int], mask_token: bool = False, num_cameras: int = 0
) -> TransReIDViT:
    """The TransReID ViT ``cfg`` describes (sizes from the name's family, ``cfg`` overrides them), with
    weights from ``cfg.weights`` or the hub (``cfg.pretrained``)."""
    dim, depth, heads = next((v for k, v in SIZES.items() if f"_{k}_" in cfg.name), SIZES["base"])
    patch = re.search(r"patch(\d+)", cfg.name)
    model = TransReIDViT(
        image_size,
        patch_size=cfg.patch_size or (int(patch.group(1)) if patch else 16),
        embed_dim=cfg.embed_dim or dim,
        depth=cfg.depth or depth,
        num_heads=cfg.num_heads or heads,
        drop_path=cfg.drop_path,
        num_cameras=num_cameras,
        camera_coef=DEFAULT_CAMERA_COEF if cfg.camera_coef is None else cfg.camera_coef,
        mask_token=mask_token,
    )
    path = _checkpoint_file(cfg)
    if path is not None:
        load_timm_vit_state(model, read_state_dict(path), str(path))
        source = cfg.weights or f"hf-hub:{cfg.name}"
        model.weights_tags = {"backbone_weights": source, "backbone_weights_sha256": sha256_file(path)}
    return model


def _checkpoint_file(cfg: BackboneCfg) -> Path | None:
    """The local checkpoint file: ``cfg.weights``, else the hub's ``model.safetensors`` of the timm model
    (when ``cfg.pretrained``), else None (random init)."""
    if cfg.weights:
        path = Path(cfg.weights).expanduser()
        if not path.is_file():
            raise UserError(f"backbone.weights={cfg.weights}: no such file (a timm ViT state dict)")
        return path
    if not cfg.pretrained:
        return None
    import timm
    from huggingface_hub import hf_hub_download

    from reidbench.util.hub import hub_download

    pretrained = timm.models.get_pretrained_cfg(cfg.name)
    if pretrained is None or not pretrained.hf_hub_id:
        raise UserError(
            f"backbone.name={cfg.name!r}: timm knows no hub weights for it; pass backbone.weights=FILE"
        )
    with hub_download(f"backbone {cfg.name!r}", "backbone.weights=FILE"):
        return Path(hf_hub_download(pretrained.hf_hub_id, "model.safetensors"))
