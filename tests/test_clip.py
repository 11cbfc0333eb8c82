"""The OpenAI-layout CLIP visual tower: strict loading of OpenAI / open_clip / TorchScript / timm-layout
checkpoints written here with random values, the tokens against a plain reference computation (camera
term on the CLS before the position embedding, bilinear position resize, projection of every token)."""

from __future__ import annotations

import hashlib
import math

import pytest
import torch

from reidbench.errors import UserError
from reidbench.nn.backbones import build_image_backbone
from reidbench.protocol import BackboneCfg

WIDTH, LAYERS, HEADS, PATCH, PROJ, GRID = 32, 2, 2, 8, 24, 4  # pretraining grid 4x4 (32x32 images)
SIZE = (48, 24)  # the protocol's image: a 6x3 grid, so the position embedding is resized


def openai_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """A random CLIP checkpoint in OpenAI's key layout (visual tower + a token of the text tower)."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * 0.2

    s = {
        "visual.conv1.weight": r(WIDTH, 3, PATCH, PATCH),
        "visual.class_embedding": r(WIDTH),
        "visual.positional_embedding": r(GRID * GRID + 1, WIDTH),
        "visual.ln_pre.weight": 1 + r(WIDTH),
        "visual.ln_pre.bias": r(WIDTH),
        "visual.ln_post.weight": 1 + r(WIDTH),
        "visual.ln_post.bias": r(WIDTH),
        "visual.proj": r(WIDTH, PROJ),
        "token_embedding.weight": r(10, 8),  # text tower: ignored
        "logit_scale": torch.tensor(4.6),
    }
    for i in range(LAYERS):
        p = f"visual.transformer.resblocks.{i}."
        s |= {
            p + "attn.in_proj_weight": r(3 * WIDTH, WIDTH),
            p + "attn.in_proj_bias": r(3 * WIDTH),
            p + "attn.out_proj.weight": r(WIDTH, WIDTH),
            p + "attn.out_proj.bias": r(WIDTH),
            p + "ln_1.weight": 1 + r(WIDTH),
            p + "ln_1.bias": r(WIDTH),
            p + "mlp.c_fc.weight": r(4 * WIDTH, WIDTH),
            p + "mlp.c_fc.bias": r(4 * WIDTH),
            p + "mlp.c_proj.weight": r(WIDTH, 4 * WIDTH),
            p + "mlp.c_proj.bias": r(WIDTH),
            p + "ln_2.weight": 1 + r(WIDTH),
            p + "ln_2.bias": r(WIDTH),
        }
    return s


def clip_cfg(weights=None, **kw) -> BackboneCfg:
    common = dict(name="ViT-B-16", source="clip", pretrained=False, num_heads=HEADS, drop_path=0.0)
    return BackboneCfg(weights=weights, **common, **kw)


# ---- the plain reference -----------------------------------------------------------------------------


def layer_norm(x, w, b):
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + 1e-5) * w + b


def bilinear(grid: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(H, W, D) -> (h, w, D): half-pixel centres, edges clamped (``align_corners=False``), no antialias."""
    H, W = grid.shape[:2]
    out = torch.empty(h, w, grid.shape[2])
    for i in range(h):
        y = min(max((i + 0.5) * H / h - 0.5, 0.0), H - 1)
        y0, fy = int(math.floor(y)), y - math.floor(y)
        y1 = min(y0 + 1, H - 1)
        for j in range(w):
            x = min(max((j + 0.5) * W / w - 0.5, 0.0), W - 1)
            x0, fx = int(math.floor(x)), x - math.floor(x)
            x1 = min(x0 + 1, W - 1)
            top = grid[y0, x0] * (1 - fx) + grid[y0, x1] * fx
            bottom = grid[y1, x0] * (1 - fx) + grid[y1, x1] * fx
            out[i, j] = top * (1 - fy) + bottom * fy
    return out


def reference_tokens(s: dict, x: torch.Tensor, cls_shift: torch.Tensor | None = None) -> torch.Tensor:
    """CLIP's visual forward written out: patches, [CLS (+camera); patches] + resized position, ln_pre,
    pre-LN blocks (multi-head attention, QuickGELU MLP), ln_post, projection of every token."""
    v = {k.removeprefix("visual."): t for k, t in s.items() if k.startswith("visual.")}
    B, h, w = x.shape[0], x.shape[2] // PATCH, x.shape[3] // PATCH
    patches = x.reshape(B, 3, h, PATCH, w, PATCH).permute(0, 2, 4, 1, 3, 5).reshape(B, h * w, -1)
    tokens = patches @ v["conv1.weight"].reshape(WIDTH, -1).T
    cls = v["class_embedding"].expand(B, WIDTH)
    if cls_shift is not None:
        cls = cls + cls_shift
    pos_grid = bilinear(v["positional_embedding"][1:].reshape(GRID, GRID, WIDTH), h, w).reshape(h * w, WIDTH)
    pos = torch.cat([v["positional_embedding"][:1], pos_grid])
    t = torch.cat([cls[:, None], tokens], 1) + pos
    t = layer_norm(t, v["ln_pre.weight"], v["ln_pre.bias"])
    d = WIDTH // HEADS
    for i in range(LAYERS):
        p = f"transformer.resblocks.{i}."
        a = layer_norm(t, v[p + "ln_1.weight"], v[p + "ln_1.bias"])
        q, k, val = (a @ v[p + "attn.in_proj_weight"].T + v[p + "attn.in_proj_bias"]).chunk(3, -1)
        heads = []
        for j in range(HEADS):
            sl = slice(j * d, (j + 1) * d)
            att = torch.softmax(q[..., sl] @ k[..., sl].transpose(1, 2) / math.sqrt(d), -1)
            heads.append(att @ val[..., sl])
        t = t + torch.cat(heads, -1) @ v[p + "attn.out_proj.weight"].T + v[p + "attn.out_proj.bias"]
        m = layer_norm(t, v[p + "ln_2.weight"], v[p + "ln_2.bias"])
        m = m @ v[p + "mlp.c_fc.weight"].T + v[p + "mlp.c_fc.bias"]
        m = m * torch.sigmoid(1.702 * m)
        t = t + m @ v[p + "mlp.c_proj.weight"].T + v[p + "mlp.c_proj.bias"]
    return layer_norm(t, v["ln_post.weight"], v["ln_post.bias"]) @ v["proj"]


# ---- tests -------------------------------------------------------------------------------------------


def test_openai_layout_loads_strictly_and_matches_the_plain_reference(tmp_path):
    state = openai_state()
    path = tmp_path / "ViT-B-16-tiny.pt"
    torch.save(state, path)
    backbone = build_image_backbone(clip_cfg(str(path)), SIZE, num_cameras=3).eval()
    assert (backbone.dim, backbone.grid, backbone.patch_size) == (PROJ, (6, 3), 8)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    assert backbone.weights_tags == {"backbone_weights": str(path), "backbone_weights_sha256": sha}
    x = torch.randn(2, 3, *SIZE)
    camids = torch.tensor([2, 0])
    with torch.no_grad():
        ours = backbone(x, camids=camids)
        plain = backbone(x)
    shift = backbone.camera_coef * backbone.camera_embed.detach()[camids]
    torch.testing.assert_close(ours, reference_tokens(state, x, shift), atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(plain, reference_tokens(state, x), atol=2e-5, rtol=1e-4)
    assert ours.shape == (2, 1 + 6 * 3, PROJ)
    torch.testing.assert_close(backbone.cls(x, camids), ours[:, 0])


def test_open_clip_checkpoint_wrapped_in_state_dict_with_module_prefix(tmp_path):
    state = openai_state(1)
    path = tmp_path / "epoch_1.pt"
    torch.save({"epoch": 1, "state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    backbone = build_image_backbone(clip_cfg(str(path)), SIZE).eval()
    x = torch.randn(1, 3, *SIZE)
    with torch.no_grad():
        torch.testing.assert_close(backbone(x), reference_tokens(state, x), atol=2e-5, rtol=1e-4)


def test_openai_torchscript_archive_gives_its_state_dict_in_float32(tmp_path):
    """OpenAI ships ViT-B-16.pt as a TorchScript archive of the whole fp16 model: take its state dict."""
    from reidbench.nn.clip import VisionTower

    state = openai_state(2)

    class Whole(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.visual = VisionTower(WIDTH, LAYERS, HEADS, PATCH, PROJ, (GRID, GRID))
            self.logit_scale = torch.nn.Parameter(torch.tensor(4.6))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.visual(x)

    whole = Whole()
    whole.visual.load_state_dict({k.removeprefix("visual."): v for k, v in state.items() if "visual." in k})
    path = tmp_path / "ViT-B-16.pt"
    torch.jit.save(torch.jit.trace(whole.half().float(), torch.randn(1, 3, 32, 32)), str(path))
    backbone = build_image_backbone(clip_cfg(str(path)), SIZE).eval()
    x = torch.randn(1, 3, *SIZE)
    halved = {k: v.half().float() for k, v in state.items()}
    with torch.no_grad():
        torch.testing.assert_close(backbone(x), reference_tokens(halved, x), atol=2e-5, rtol=1e-4)


def test_timm_layout_is_mapped_back(tmp_path):
    """timm's layout of the same weights (its own OpenAI conversion, written as safetensors) loads too."""
    from safetensors.torch import save_file
    from timm.models.vision_transformer import _convert_openai_clip

    state = openai_state(3)
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in _convert_openai_clip(state, None).items()}, str(path))
    backbone = build_image_backbone(clip_cfg(str(path)), SIZE).eval()
    x = torch.randn(1, 3, *SIZE)
    with torch.no_grad():
        torch.testing.assert_close(backbone(x), reference_tokens(state, x), atol=2e-5, rtol=1e-4)


def test_loading_is_strict_and_sizes_must_agree(tmp_path):
    state = openai_state()
    missing = {k: v for k, v in state.items() if k != "visual.ln_post.bias"}
    torch.save(missing, tmp_path / "missing.pt")
    with pytest.raises(UserError, match="do not fit a CLIP tower.*ln_post.bias"):
        build_image_backbone(clip_cfg(str(tmp_path / "missing.pt")), SIZE)
    torch.save({**state, "visual.extra": torch.zeros(1)}, tmp_path / "extra.pt")
    with pytest.raises(UserError, match="do not fit a CLIP tower.*extra"):
        build_image_backbone(clip_cfg(str(tmp_path / "extra.pt")), SIZE)
    torch.save(state, tmp_path / "ok.pt")
    with pytest.raises(UserError, match="backbone.embed_dim=64 but the checkpoint has 32"):
        build_image_backbone(clip_cfg(str(tmp_path / "ok.pt"), embed_dim=64), SIZE)
    (tmp_path / "junk.pt").write_text("not a checkpoint")
    with pytest.raises(UserError, match="cannot read a checkpoint"):
        build_image_backbone(clip_cfg(str(tmp_path / "junk.pt")), SIZE)
    with pytest.raises(UserError, match="no such file"):
        build_image_backbone(clip_cfg(str(tmp_path / "absent.pt")), SIZE)
    with pytest.raises(UserError, match="not a CLIP model.*ViT-B-16"):
        build_image_backbone(BackboneCfg(name="vit_base_patch16_224", source="clip", pretrained=False), SIZE)


def test_paper_size_tower_and_camera_switch():
    cfg = BackboneCfg(name="ViT-B-16", source="clip", pretrained=False)
    backbone = build_image_backbone(cfg, (256, 128), num_cameras=4)
    # DeMo's CLIP visual at 16x8 (86,140,416, counted from the official code) + a 4 x 768 camera table
    assert sum(p.numel() for p in backbone.parameters()) == 86_140_416 + 4 * 768
    assert backbone.grid == (16, 8) and backbone.dim == 512
    off = build_image_backbone(BackboneCfg(**{**cfg.__dict__, "camera_coef": 0.0}), (256, 128), num_cameras=4)
    assert off.camera_embed is None
    shift = backbone.camera_shift(torch.tensor([3, 4, -1]))  # unknown ids (another dataset's): no term
    torch.testing.assert_close(shift[0], backbone.camera_embed[3])
    assert not shift[1:].any()


def test_hub_unreachable_names_the_local_setting(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HOME", "/nonexistent-reidbench-hf-home")
    with pytest.raises(UserError, match="backbone.weights=PATH"):
        build_image_backbone(BackboneCfg(name="ViT-B-16", source="clip", pretrained=True), (32, 32))


def test_clip_baselines_run_on_the_clip_tower_with_a_camera_embedding(synthetic_dataset):
    from reidbench.nn.clip import CLIPBackbone
    from reidbench.spec import make_spec
    from tests.presets import build_model, make_datamodule

    for method in ("clip_single", "clip_late_fusion"):
        spec = make_spec(method, "synthetic", 0)
        assert (spec.protocol.backbone.source, spec.protocol.backbone.name) == ("clip", "ViT-B-16")
        model = build_model(spec, synthetic_dataset, make_datamodule(spec, synthetic_dataset))
        backbones = [m for m in model.modules() if isinstance(m, CLIPBackbone)]
        assert len(backbones) == 1 and backbones[0].dim == 64 and backbones[0].camera_embed is not None
    # the one-override recipe turns any method's backbone into the CLIP tower
    graft = make_spec("graft", "rgbnt201", 0, ["backbone.source=clip", "backbone.name=ViT-B-16"])
    assert graft.protocol.backbone.source == "clip"


@pytest.mark.slow
def test_clip_late_fusion_learns_from_a_local_checkpoint(synthetic_dataset, tmp_path):
    """A CLIP baseline trains from a local checkpoint (written here, tiny: the file fixes the tower's size),
    beats chance and the untrained model; the model reports the checkpoint and its sha256."""
    from reidbench.nn.backbones import weights_tags
    from reidbench.spec import make_spec
    from tests.presets import assert_method_learns, build_model, make_datamodule, write_vocab

    path = tmp_path / "tiny-clip.pt"
    torch.save(openai_state(), path)
    sizes = ["embed_dim=32", "depth=2", "num_heads=2", "proj_dim=24", "patch_size=8", f"weights={path}"]
    overrides = tuple(f"backbone.{s}" for s in sizes)
    assert_method_learns(
        "clip_late_fusion", synthetic_dataset, write_vocab(tmp_path / "v.txt"), overrides=overrides
    )
    spec = make_spec("clip_late_fusion", "synthetic", 0, list(overrides))
    model = build_model(spec, synthetic_dataset, make_datamodule(spec, synthetic_dataset))
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    assert weights_tags(model) == {"backbone_weights": str(path), "backbone_weights_sha256": sha}
