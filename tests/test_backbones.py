"""Backbone loading: local checkpoints (timm file / directory, transformers directory), position-embedding
resampling from a square checkpoint to a non-square model, mask tokens, and fast hub failures."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from reidbench.data.text import build_tokenizer
from reidbench.errors import UserError
from reidbench.nn import build_image_backbone
from reidbench.nn.text import build_text_encoder
from reidbench.protocol import BackboneCfg
from reidbench.util import hub as hub_module
from tests.presets import write_vocab

TINY = dict(patch_size=8, embed_dim=64, depth=2, num_heads=2, drop_path=0.0)


def tiny_cfg(**kw) -> BackboneCfg:
    return BackboneCfg(**{"name": "vit_tiny_patch16_224", "pretrained": False, **TINY, **kw})


def reference_resample(
    posemb: torch.Tensor, prefix: int, old: tuple[int, int], new: tuple[int, int]
) -> torch.Tensor:
    """Bicubic (antialiased) resampling of the patch part of a (1, prefix + h*w, D) embedding."""
    grid = posemb[:, prefix:].reshape(1, old[0], old[1], -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=new, mode="bicubic", antialias=True, align_corners=False)
    return torch.cat([posemb[:, :prefix], grid.permute(0, 2, 3, 1).reshape(1, new[0] * new[1], -1)], dim=1)


@pytest.mark.slow
@pytest.mark.parametrize("name,prefix", [("vit_tiny_patch16_224", 1), ("deit_base_distilled_patch16_224", 2)])
@pytest.mark.parametrize("fmt", ["pth", "safetensors"])
def test_timm_square_checkpoint_loads_into_a_non_square_model(tmp_path, name, prefix, fmt):
    square = build_image_backbone(tiny_cfg(name=name), (32, 32))
    state = square.model.state_dict()
    path = tmp_path / f"square.{fmt}"
    if fmt == "pth":
        torch.save(state, path)
    else:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    wide = build_image_backbone(tiny_cfg(name=name, weights=str(path)), (32, 64))
    assert wide.grid == (4, 8) and wide.num_prefix_tokens == prefix
    loaded = wide.model.state_dict()
    expected = reference_resample(state["pos_embed"], prefix, (4, 4), (4, 8))
    assert loaded["pos_embed"].shape == (1, prefix + 32, 64)
    assert torch.allclose(loaded["pos_embed"], expected, atol=1e-6)
    for key, value in state.items():
        if key != "pos_embed":
            assert torch.equal(loaded[key], value), key
    assert wide(torch.randn(2, 3, 32, 64)).shape == (2, prefix + 32, 64)


@pytest.mark.slow
def test_timm_same_size_checkpoint_is_loaded_exactly_and_from_a_directory(tmp_path):
    source = build_image_backbone(tiny_cfg(), (32, 64))
    from safetensors.torch import save_file

    (tmp_path / "ckpt").mkdir()
    save_file(
        {k: v.contiguous() for k, v in source.model.state_dict().items()},
        str(tmp_path / "ckpt" / "model.safetensors"),
    )
    loaded = build_image_backbone(tiny_cfg(weights=str(tmp_path / "ckpt")), (32, 64))
    x = torch.randn(2, 3, 32, 64)
    source.eval(), loaded.eval()
    assert torch.allclose(source(x), loaded(x), atol=1e-6)


@pytest.mark.slow
def test_hf_deit_directory_loads_into_a_non_square_model(tmp_path):
    from transformers import DeiTConfig, DeiTModel

    config = DeiTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=128,
    )
    square = DeiTModel(config)
    square.save_pretrained(tmp_path / "deit")
    cfg = BackboneCfg(
        name="facebook/deit-base-distilled-patch16-224", source="hf", weights=str(tmp_path / "deit")
    )
    wide = build_image_backbone(cfg, (32, 64), mask_token=True)
    assert wide.dim == 64 and wide.num_prefix_tokens == 2 and wide.grid == (4, 8) and wide.patch_size == 8
    expected = reference_resample(square.embeddings.position_embeddings.detach(), 2, (4, 4), (4, 8))
    assert torch.allclose(wide.model.embeddings.position_embeddings, expected, atol=1e-6)
    loaded = wide.model.state_dict()
    for key, value in square.state_dict().items():
        if key != "embeddings.position_embeddings" and not key.startswith("pooler."):
            assert torch.equal(loaded[key], value), key
    wide.eval()
    x = torch.randn(2, 3, 32, 64)
    tokens = wide(x)
    assert tokens.shape == (2, 34, 64)
    mask = torch.zeros(2, 32, dtype=torch.bool)
    mask[:, :5] = True
    assert not torch.allclose(wide(x, mask), tokens)


@pytest.mark.slow
def test_hf_random_init_is_offline_and_sized_by_the_config():
    cfg = BackboneCfg(name="facebook/deit-base-distilled-patch16-224", source="hf", pretrained=False, **TINY)
    backbone = build_image_backbone(cfg, (64, 32))
    assert backbone.grid == (8, 4) and backbone.dim == 64
    assert backbone(torch.randn(1, 3, 64, 32)).shape == (1, 34, 64)


def test_timm_mask_token_replaces_masked_patches():
    backbone = build_image_backbone(tiny_cfg(), (32, 64), mask_token=True).eval()
    x = torch.randn(2, 3, 32, 64)
    none = torch.zeros(2, 32, dtype=torch.bool)
    assert torch.allclose(backbone(x, none), backbone(x), atol=1e-6)  # the manual path = forward_features
    mask = none.clone()
    mask[0, 3] = True
    out = backbone(x, mask)
    assert torch.allclose(out[1], backbone(x)[1], atol=1e-6) and not torch.allclose(out[0], backbone(x)[0])
    # a masked patch's content no longer matters
    y = x.clone()
    y[0, :, 0:8, 24:32] = 5.0  # patch (0, 3)
    assert torch.allclose(backbone(y, mask)[0], out[0], atol=1e-5)
    with pytest.raises(RuntimeError, match="mask token"):
        build_image_backbone(tiny_cfg(), (32, 64))(x, mask)


def test_missing_weights_and_unknown_names_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        build_image_backbone(tiny_cfg(weights=str(tmp_path / "nope.pth")), (32, 64))
    with pytest.raises(UserError, match="not a timm model"):
        build_image_backbone(tiny_cfg(name="not_a_model"), (32, 64))
    bad = tmp_path / "other.pth"
    torch.save({"pos_embed": torch.zeros(1, 5, 7)}, bad)
    with pytest.raises(UserError, match="backbone"):
        build_image_backbone(tiny_cfg(weights=str(bad)), (32, 64))


@pytest.fixture
def no_hub(monkeypatch, tmp_path):
    """The hub probe fails (as on a machine without network) and the cache is empty."""
    from huggingface_hub import constants

    monkeypatch.setattr(hub_module, "hub_reachable", lambda: False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))


def test_unreachable_hub_fails_fast_with_the_local_path_hint(no_hub):
    from huggingface_hub import constants

    offline_before = constants.HF_HUB_OFFLINE
    with pytest.raises(UserError, match=r"backbone\.weights=PATH"):
        build_image_backbone(tiny_cfg(pretrained=True), (32, 64))
    with pytest.raises(UserError, match=r"backbone\.weights=PATH"):
        build_image_backbone(BackboneCfg(name="facebook/deit-tiny-patch16-224", source="hf"), (32, 64))
    with pytest.raises(UserError, match=r"method\.text_weights=PATH"):
        build_text_encoder("bert-base-uncased", 30522, pretrained=True)
    with pytest.raises(UserError, match=r"method\.tokenizer=PATH"):
        build_tokenizer("bert-base-uncased")
    assert constants.HF_HUB_OFFLINE == offline_before  # the offline switch is restored


def test_tokenizer_from_a_vocab_file_and_text_encoder_from_a_directory(tmp_path):
    vocab = write_vocab(tmp_path / "vocab.txt")
    tok = build_tokenizer(str(vocab))
    enc = tok(["An object with red stripes."], return_tensors="pt")
    words = enc["input_ids"][0].tolist()
    assert words[0] == tok.cls_token_id and words[-1] == tok.sep_token_id and tok.unk_token_id not in words
    text = build_text_encoder("bert-base-uncased", len(tok), pretrained=False, hidden=32, layers=2, heads=2)
    assert text.dim == 32
    out = text(enc["input_ids"], enc["attention_mask"])
    assert out.shape == (1, len(words), 32)
    text.bert.save_pretrained(tmp_path / "bert")
    again = build_text_encoder("unused", len(tok), pretrained=True, weights=str(tmp_path / "bert")).eval()
    text.eval()
    assert torch.allclose(
        again(enc["input_ids"], enc["attention_mask"]), text(enc["input_ids"], enc["attention_mask"])
    )
    with pytest.raises(UserError, match="text_pretrained=false"):
        build_text_encoder("bert-base-uncased", len(tok), pretrained=True, hidden=32)


def test_hub_probe_follows_the_https_proxy(monkeypatch):
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    try:
        monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{port}")
        assert hub_module.hub_reachable()
    finally:
        server.close()
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{port}")
    assert not hub_module.hub_reachable()


def test_hf_classification_checkpoint_loads_its_backbone(tmp_path):
    # the official GraFT weights are facebook/deit-base-distilled-patch16-224: a classifier with a teacher
    # head
    from transformers import DeiTConfig, DeiTForImageClassificationWithTeacher

    config = DeiTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=128,
        num_labels=10,
    )
    full = DeiTForImageClassificationWithTeacher(config)
    full.save_pretrained(tmp_path / "deit-cls")
    backbone = build_image_backbone(
        BackboneCfg(name="deit", source="hf", weights=str(tmp_path / "deit-cls")), (32, 32)
    )
    assert torch.equal(
        backbone.model.embeddings.patch_embeddings.projection.weight,
        full.deit.embeddings.patch_embeddings.projection.weight,
    )
    backbone.eval(), full.eval()
    x = torch.randn(2, 3, 32, 32)
    assert torch.allclose(backbone(x), full.deit(pixel_values=x).last_hidden_state, atol=1e-5)
