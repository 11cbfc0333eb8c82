"""The TransReID ViT: a timm ViT state dict loads strictly (14x14 -> 16x8 bilinear positions), the tokens
equal a plainly written ViT forward, SIE adds 3.0 x E[cam] to every token with the position embedding."""

from __future__ import annotations

import hashlib
import math

import pytest
import torch
import torch.nn.functional as F

from reidbench.errors import UserError
from reidbench.nn import build_image_backbone
from reidbench.nn.backbones import weights_tags
from reidbench.nn.transreid import TransReIDViT
from reidbench.protocol import BackboneCfg

TINY = dict(embed_dim=64, depth=2, num_heads=2)


def timm_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """A timm ViT-B/16-layout state dict (224x224, 14x14 grid, 1000-way head), tiny widths, random values."""
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(seed)
    model = VisionTransformer(img_size=224, patch_size=16, qkv_bias=True, **TINY)
    state = model.state_dict()
    for v in state.values():  # no zero / one LayerNorm parameters: every tensor must matter
        v.copy_(torch.randn_like(v) * 0.05 + (1.0 if v.dim() == 1 and v.shape[0] == 64 else 0.0))
    return state


def cfg(path=None, **kw) -> BackboneCfg:
    return BackboneCfg(
        source="transreid", pretrained=False, weights=str(path) if path else None, **TINY, **kw
    )


def reference_bilinear(grid: torch.Tensor, out_h: int, out_w: int) -> torch.Tensor:
    """(h, w, D) -> (out_h, out_w, D): half-pixel-centre bilinear interpolation, borders clamped."""
    h, w, _ = grid.shape
    out = torch.empty(out_h, out_w, grid.shape[2], dtype=grid.dtype)
    for i in range(out_h):
        y = max((i + 0.5) * h / out_h - 0.5, 0.0)
        y0 = min(int(math.floor(y)), h - 1)
        y1, fy = min(y0 + 1, h - 1), y - y0
        for j in range(out_w):
            x = max((j + 0.5) * w / out_w - 0.5, 0.0)
            x0 = min(int(math.floor(x)), w - 1)
            x1, fx = min(x0 + 1, w - 1), x - x0
            top = grid[y0, x0] * (1 - fx) + grid[y0, x1] * fx
            bottom = grid[y1, x0] * (1 - fx) + grid[y1, x1] * fx
            out[i, j] = top * (1 - fy) + bottom * fy
    return out


def reference_forward(state: dict[str, torch.Tensor], tokens: torch.Tensor, heads: int) -> torch.Tensor:
    """A pre-LN ViT written out: LN(eps 1e-6) -> qkv -> softmax(q k^T / sqrt(d)) v -> proj; LN -> GELU MLP."""

    def ln(x, key):
        return F.layer_norm(x, x.shape[-1:], state[f"{key}.weight"], state[f"{key}.bias"], eps=1e-6)

    def linear(x, key):
        return x @ state[f"{key}.weight"].T + state[f"{key}.bias"]

    x = tokens
    depth = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks."))
    for i in range(depth):
        b = f"blocks.{i}"
        q, k, v = linear(ln(x, f"{b}.norm1"), f"{b}.attn.qkv").chunk(3, dim=-1)
        split = [t.reshape(*t.shape[:2], heads, -1).transpose(1, 2) for t in (q, k, v)]
        attn = (split[0] @ split[1].transpose(-2, -1) / math.sqrt(split[0].shape[-1])).softmax(-1)
        x = x + linear((attn @ split[2]).transpose(1, 2).reshape(x.shape), f"{b}.attn.proj")
        x = x + linear(F.gelu(linear(ln(x, f"{b}.norm2"), f"{b}.mlp.fc1")), f"{b}.mlp.fc2")
    return ln(x, "norm")


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_timm_state_dict_loads_strictly_with_bilinear_positions_and_its_sha256(tmp_path, suffix):
    state = timm_state()
    path = tmp_path / f"vit{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    else:
        torch.save({"model": state}, path)
    model = build_image_backbone(cfg(path), (256, 128), num_cameras=4)
    assert isinstance(model, TransReIDViT) and model.grid == (16, 8)
    own = model.state_dict()
    assert set(own) == {k for k in state if not k.startswith("head")} | {"sie_embed"}
    for key, value in state.items():
        if not key.startswith("head") and key != "pos_embed":
            assert torch.equal(own[key], value), key
    pos = state["pos_embed"]
    expected = reference_bilinear(pos[0, 1:].reshape(14, 14, -1), 16, 8).reshape(1, 128, -1)
    assert torch.equal(own["pos_embed"][:, :1], pos[:, :1])
    torch.testing.assert_close(own["pos_embed"][:, 1:], expected, rtol=1e-5, atol=1e-6)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    tags = {"backbone_weights": str(path), "backbone_weights_sha256": sha}
    assert model.weights_tags == tags
    other = build_image_backbone(cfg(path), (256, 128), num_cameras=4)
    assert weights_tags(torch.nn.ModuleDict({"rgb": model, "nir": other})) == tags  # one file: one set
    other.weights_tags = {**tags, "backbone_weights_sha256": "0" * 64}
    both = weights_tags(torch.nn.ModuleDict({"rgb": model, "nir": other}))
    assert both["backbone_weights_sha256.rgb"] == sha and both["backbone_weights_sha256.nir"] == "0" * 64
    fresh = TransReIDViT((256, 128), 16, **TINY, num_cameras=4)
    fresh.load_state_dict(own, strict=True)  # what the backbone holds is its own strict layout


def test_tokens_equal_a_plain_vit_forward(tmp_path):
    path = tmp_path / "vit.pth"
    torch.save(timm_state(1), path)
    model = build_image_backbone(cfg(path), (32, 16)).eval()
    x = torch.randn(3, 3, 32, 16)
    state = model.state_dict()
    patches = F.conv2d(x, state["patch_embed.proj.weight"], state["patch_embed.proj.bias"], stride=16)
    tokens = torch.cat([state["cls_token"].expand(3, -1, -1), patches.flatten(2).transpose(1, 2)], 1)
    expected = reference_forward(state, tokens + state["pos_embed"], heads=2)
    torch.testing.assert_close(model(x), expected, rtol=1e-4, atol=1e-5)


def test_sie_adds_three_times_the_camera_embedding_to_every_token_after_the_positions():
    torch.manual_seed(0)
    model = TransReIDViT((32, 16), 16, **TINY, num_cameras=3).eval()
    assert model.sie_embed.shape == (3, 1, 64) and model.camera_coef == 3.0
    x, cams = torch.randn(4, 3, 32, 16), torch.tensor([0, 2, 1, 2])
    seen = {}
    hook = model.blocks[0].register_forward_pre_hook(lambda m, args: seen.update(input=args[0]))
    model(x, camids=cams)
    hook.remove()
    patches = model.patch_embed.proj(x).flatten(2).transpose(1, 2)
    plain = torch.cat([model.cls_token.expand(4, -1, -1), patches], 1) + model.pos_embed
    for i, cam in enumerate(cams.tolist()):  # CLS and every patch token get the same 3.0 x E[cam]
        torch.testing.assert_close(seen["input"][i] - plain[i], (3.0 * model.sie_embed[cam]).expand(3, -1))
    torch.testing.assert_close(model.embed(x), plain)  # no camids: no camera term
    unknown = model.embed(x, camids=torch.tensor([5, 0, -1, 1]))  # another dataset's cameras: none either
    torch.testing.assert_close(unknown[0], plain[0])
    torch.testing.assert_close(unknown[2], plain[2])
    assert not torch.allclose(unknown[1], plain[1])
    assert not torch.allclose(model(x, camids=cams)[:, 0], model(x, camids=cams.flip(0))[:, 0])


def test_sie_exists_with_more_than_one_camera_and_a_nonzero_coefficient():
    assert TransReIDViT((32, 16), 16, **TINY, num_cameras=1).sie_embed is None  # official: camera > 1
    assert TransReIDViT((32, 16), 16, **TINY, num_cameras=4, camera_coef=0.0).sie_embed is None
    model = build_image_backbone(cfg(camera_coef=1.5), (32, 16), num_cameras=4)
    assert model.camera_coef == 1.5 and model.num_cameras == 4


def test_sizes_follow_the_name_and_mask_tokens_replace_patches():
    # ViT-B/16 at 16x8 with SIE over 4 cameras: the official Trans as built (86,518,504) less its unused
    # 1000-way fc (769,000), counted by building the official model (reference notes, section 7)
    base = TransReIDViT((256, 128), num_cameras=4)
    assert sum(p.numel() for p in base.parameters()) == 86_518_504 - 769_000
    model = build_image_backbone(cfg(), (32, 16), mask_token=True).eval()
    mask = torch.zeros(2, 2, dtype=torch.bool)
    mask[0, 1] = True
    x = torch.randn(2, 3, 32, 16)
    assert model(x, mask).shape == (2, 3, 64)
    assert not torch.allclose(model(x, mask)[0], model(x)[0]) and torch.allclose(
        model(x, mask)[1], model(x)[1]
    )


def test_bad_checkpoints_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        build_image_backbone(cfg(tmp_path / "absent.pth"), (32, 16))
    wrong = tmp_path / "wrong.pth"
    torch.save({"blocks.0.norm1.weight": torch.ones(8)}, wrong)
    with pytest.raises(UserError, match="not a timm ViT"):
        build_image_backbone(cfg(wrong), (32, 16))
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="cannot read a checkpoint"):
        build_image_backbone(cfg(garbage), (32, 16))
