"""Reading CLIP visual-tower weights into OpenAI's layout (:class:`reidbench.nn.clip.VisionTower`).

Accepted, from a local file (``backbone.weights=PATH``) or the Hugging Face hub (open_clip's file of the
named model, ``backbone.pretrained=true``):

- OpenAI's ``ViT-B-16.pt``: a TorchScript archive; its ``state_dict()`` is taken (fp16 -> fp32).
- open_clip checkpoints (``.pt`` / ``.bin`` / ``.safetensors``): the same ``visual.*`` keys as OpenAI,
  possibly under ``state_dict`` / ``model`` and with DDP's ``module.`` prefix; the text tower is ignored.
- timm's layout of the same weights (``patch_embed.proj``, ``blocks.N.attn.qkv``, ``head``; e.g. timm's
  ``vit_base_patch16_clip_224.openai`` ``model.safetensors``), mapped back to OpenAI's names.

The tower's size is read from the state dict (as OpenAI's ``build_model`` does); the position embedding
is resized bilinearly to the protocol's grid. The checkpoint's sha256 goes to the backbone's
``weights_tags`` (``backbone_weights``, ``backbone_weights_sha256``).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from reidbench.errors import UserError
from reidbench.nn.transreid import read_state_dict, resize_position_embedding_bilinear

# timm name fragment -> OpenAI name fragment (applied in order)
_TIMM_TO_OPENAI = [
    ("patch_embed.proj.", "conv1."),
    ("norm_pre.", "ln_pre."),
    ("blocks.", "transformer.resblocks."),
    (".norm1.", ".ln_1."),
    (".norm2.", ".ln_2."),
    (".attn.qkv.", ".attn.in_proj_"),
    (".attn.proj.", ".attn.out_proj."),
    (".mlp.fc1.", ".mlp.c_fc."),
    (".mlp.fc2.", ".mlp.c_proj."),
]


def read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a CLIP checkpoint: a TorchScript archive (OpenAI's), else a state dict (safetensors or
    a torch pickle, :func:`reidbench.nn.transreid.read_state_dict`)."""
    if path.suffix != ".safetensors":
        try:
            return dict(torch.jit.load(str(path), map_location="cpu").state_dict())
        except RuntimeError:  # not TorchScript
            pass
    return read_state_dict(path)


def openai_visual_state(state: dict[str, torch.Tensor], where: str) -> dict[str, torch.Tensor]:
    """The visual tower's tensors of ``state`` in OpenAI's names (no ``visual.`` prefix), as float32."""
    state = {k.removeprefix("module."): v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if any(k.startswith("visual.") for k in state):
        state = {k.removeprefix("visual."): v for k, v in state.items() if k.startswith("visual.")}
    if "patch_embed.proj.weight" in state:
        state = _from_timm(state, where)
    if "conv1.weight" not in state or "proj" not in state:
        raise UserError(
            f"{where}: no CLIP ViT visual tower found (expected visual.conv1.weight and visual.proj, "
            f"OpenAI / open_clip layout, or timm's patch_embed / head); found keys like {list(state)[:4]}"
        )
    return {k: v.float() for k, v in state.items()}


def _from_timm(state: dict[str, torch.Tensor], where: str) -> dict[str, torch.Tensor]:
    """timm's CLIP ViT layout -> OpenAI's (the inverse of timm's ``_convert_openai_clip``)."""
    out = {}
    for key, value in state.items():
        if key == "head.bias":
            if value.abs().max() > 0:
                raise UserError(f"{where}: timm head.bias is not zero; CLIP's projection has no bias")
            continue
        if key == "head.weight":
            out["proj"] = value.t()
        elif key == "cls_token":
            out["class_embedding"] = value.reshape(-1)
        elif key == "pos_embed":
            out["positional_embedding"] = value.reshape(-1, value.shape[-1])
        elif key.startswith("norm."):
            out["ln_post." + key.removeprefix("norm.")] = value
        else:
            for old, new in _TIMM_TO_OPENAI:
                key = key.replace(old, new)
            out[key] = value
    return out


def tower_size(state: dict[str, torch.Tensor]) -> dict[str, int]:
    """Width, layers, heads (width / 64, OpenAI's rule), patch, projection width and pretraining grid."""
    width = state["conv1.weight"].shape[0]
    layers = len({k.split(".")[2] for k in state if k.startswith("transformer.resblocks.")})
    tokens = state["positional_embedding"].shape[0] - 1
    return {
        "width": width,
        "layers": layers,
        "heads": max(width // 64, 1),
        "patch": state["conv1.weight"].shape[-1],
        "proj_dim": state["proj"].shape[1],
        "grid": math.isqrt(tokens),
    }


def resize_position_embedding(posemb: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """``(1 + g*g, D)`` position embedding -> ``(1 + h*w, D)`` for ``grid`` (h, w): the class position kept,
    the square grid resized bilinearly (``align_corners=False``, no antialiasing, as CLIP-ReID / DeMo's
    ``resize_pos_embed``; the same function as TransReID's)."""
    return resize_position_embedding_bilinear(posemb[None], grid)[0]


def hub_checkpoint(repo: str) -> Path:
    """open_clip's weights file of ``repo`` from the Hugging Face hub (or its local cache)."""
    from huggingface_hub import hf_hub_download

    from reidbench.util.hub import hub_download

    with hub_download(f"CLIP weights {repo!r}", "backbone.weights=PATH (e.g. OpenAI's ViT-B-16.pt)"):
        return Path(hf_hub_download(repo, "open_clip_model.safetensors"))
