"""Official recipes against the official code: fidelity rows complete (nothing differs without a row), the
resolved optimiser groups and learning rates of each official recipe."""

from __future__ import annotations

import pytest

from reidbench import fidelity
from reidbench.registry import METHODS, load_plugins
from reidbench.spec import make_spec
from reidbench.train.optim import resolve_groups
from reidbench.train.schedule import resolve_schedule
from tests.test_optim_schedule import graft_warmup_sqrt

load_plugins()
OFFICIAL = {"graft": "rgbnt100", "mmet": "rgbnt201"}  # method -> a dataset its official recipe runs on
# Every method that registers fidelity rows (methods still listing plain ``deviations`` add rows as their
# official recipes move onto the recipe machinery).
WITH_ROWS = sorted(e.name for e in METHODS if e.meta.get("fidelity"))


def test_rows_are_complete_and_graft_mmet_have_them():
    assert set(OFFICIAL) <= set(WITH_ROWS)
    for method in WITH_ROWS:
        assert METHODS.get(method).meta.get("official") is not None, f"{method}: rows without a recipe"
        assert [p for r in fidelity.rows(method) for p in r.problems()] == []


@pytest.mark.parametrize("method", WITH_ROWS)
def test_nothing_differs_without_a_row(method):
    assert fidelity.uncovered(method, OFFICIAL.get(method, "rgbnt201")) == []


def test_a_key_without_a_row_is_found():
    rows = METHODS.get("graft").meta["fidelity"]
    kept = [r for r in rows if "optim.no_decay" not in r.keys]
    METHODS.get("graft").meta["fidelity"] = kept
    try:
        assert fidelity.uncovered("graft", "rgbnt100") == ["optim.no_decay"]
    finally:
        METHODS.get("graft").meta["fidelity"] = rows


def test_the_table_the_cli_and_the_docstring_read_the_same_rows(monkeypatch, capsys):
    import reidbench.methods.graft
    from tests.test_cli import run_cli

    code, out = run_cli(monkeypatch, capsys, "list", "methods", "--verbose")
    assert code == 0 and "graft: fidelity to the official code" in out
    table = {
        setting: (official, ours, status)
        for setting, official, ours, status in fidelity.table("graft", "official")
    }
    assert table["weight decay on biases and norms"][2] == "same"
    assert table["reported model"][2].startswith("differs: ")
    assert "reported model: official the best epoch on the test split" in reidbench.methods.graft.__doc__
    assert any("224x224" in line for line in fidelity.deviations("graft"))


def test_graft_official_optimiser_groups(synthetic_dataset):
    from reidbench.train.engine import set_frozen
    from tests.presets import build_model, make_datamodule

    spec = make_spec("graft", "synthetic", 0, ["train.allow_random_frozen=true"], recipe="official")
    model = build_model(spec, synthetic_dataset, make_datamodule(spec, synthetic_dataset))
    frozen, unfrozen = spec.protocol.resolved_stages()
    names = [n for n, _ in model.named_parameters()]
    outside = [n for n in names if not n.startswith("backbone.") and n != "head.bn.bias"]
    trainable = [n for n in names if n != "head.bn.bias"]
    set_frozen(model, frozen.freeze)
    groups = resolve_groups(model, spec.protocol.optim, frozen)
    # stage 1: one group, every trainable tensor (biases, norms, fusion token) decays at 0.05, lr 2.54e-5
    assert [(g.lr, g.weight_decay, len(g.params)) for g in groups] == [(2.54e-5, 0.05, len(outside))]
    set_frozen(model, unfrozen.freeze)
    groups = resolve_groups(model, spec.protocol.optim, unfrozen)
    assert [(g.lr, g.weight_decay, len(g.params)) for g in groups] == [
        (5.7433e-6, 1.303446e-3, len(trainable))
    ]
    assert any(n.endswith(".bias") for n in groups[0].names)


def test_graft_official_schedule_at_chosen_steps():
    spec = make_spec("graft", "rgbnt100", 0, recipe="official")
    frozen, unfrozen = spec.protocol.resolved_stages()
    assert (frozen.epochs, unfrozen.epochs) == (20, 30)  # 40% / 60% of the protocol's 50
    schedule = resolve_schedule(spec.protocol.schedule, frozen, steps_per_epoch=100)
    total = 2000
    for step in [0, 1, 250, 499, 500, 501, 1000, 1799, 1800, 1801, 1999]:
        want = graft_warmup_sqrt(step, 2.54e-5, 500, total)
        assert schedule.lr(step, 2.54e-5, frozen.lr) == pytest.approx(want, rel=1e-12, abs=1e-20)
    constant = resolve_schedule(spec.protocol.schedule, unfrozen, steps_per_epoch=100)
    assert {constant.lr(s, 5.7433e-6, unfrozen.lr) for s in (0, 1, 1500, 2999)} == {5.7433e-6}


@pytest.mark.parametrize(("recipe", "attends"), [("official", True), ("shared", False)])
def test_mmet_multimodal_output_and_caption_padding(recipe, attends, synthetic_dataset, tmp_path):
    """Official (FLAVA's forward): the multimodal encoder attends to the padding, so changing only the
    padding tokens changes the fused embedding; shared: padding is masked, the embedding stays."""
    import torch

    from tests.presets import build_model, make_datamodule, tiny_method, write_vocab

    spec = make_spec(
        "mmet", "synthetic", 0, tiny_method("mmet", write_vocab(tmp_path / "v.txt")), recipe=recipe
    )
    knobs = spec.protocol.method
    assert (knobs["mm_attend_padding"], knobs["mm_input"] == "pre_norm") == (attends, attends)
    assert knobs["text_encoder"] == ("flava" if attends else "bert")
    data = make_datamodule(spec, synthetic_dataset)
    torch.manual_seed(0)
    model = build_model(spec, synthetic_dataset, data).eval()
    assert model.stream_embedding is not None  # three image modalities: one embedding per stream
    batch = next(data.train_batches(0))
    extra = torch.zeros(len(batch["text_ids"]), 4, dtype=batch["text_ids"].dtype)
    mask = torch.cat([batch["text_mask"], extra.to(batch["text_mask"].dtype)], dim=1)
    outs = []
    for token in (0, 7):  # only the four appended padding positions differ
        ids = torch.cat([batch["text_ids"], extra + token], dim=1)
        with torch.no_grad():
            outs.append(model({**batch, "text_ids": ids, "text_mask": mask}).embedding)
    assert torch.equal(outs[0], outs[1]) != attends
    if not attends:
        assert torch.allclose(outs[0], outs[1], atol=1e-6)


def test_mmet_official_without_stream_embedding_for_one_image_modality(synthetic_dataset, tmp_path):
    from tests.presets import build_model, make_datamodule, tiny_method, write_vocab

    overrides = [*tiny_method("mmet", write_vocab(tmp_path / "v.txt")), "data.modalities=[rgb]"]
    for recipe, has in (("official", False), ("shared", True)):
        spec = make_spec("mmet", "synthetic", 0, overrides, recipe=recipe)
        model = build_model(spec, synthetic_dataset, make_datamodule(spec, synthetic_dataset))
        assert (model.stream_embedding is not None) == has


def test_mmet_official_optimiser_groups_and_schedule(synthetic_dataset, tmp_path):
    from tests.presets import build_model, make_datamodule, tiny_method, write_vocab
    from tests.test_optim_schedule import hf_cosine

    spec = make_spec(
        "mmet", "synthetic", 0, tiny_method("mmet", write_vocab(tmp_path / "v.txt")), recipe="official"
    )
    model = build_model(spec, synthetic_dataset, make_datamodule(spec, synthetic_dataset))
    stage = spec.protocol.resolved_stages()[0]
    groups = resolve_groups(model, spec.protocol.optim, stage)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    # every trainable tensor (biases, LayerNorms, BN weight; not the frozen BN bias) decays at 0.1, lr 1e-5
    assert [(g.lr, g.weight_decay, len(g.params)) for g in groups] == [(1e-5, 0.1, len(trainable))]
    assert sum(n.endswith("bias") for n in trainable) > 10
    shared = make_spec("mmet", "synthetic", 0, tiny_method("mmet", write_vocab(tmp_path / "v.txt")))
    shared_model = build_model(shared, synthetic_dataset, make_datamodule(shared, synthetic_dataset))
    exempt = [
        g for g in resolve_groups(shared_model, shared.protocol.optim, shared.protocol.resolved_stages()[0])
    ]
    assert sorted(g.weight_decay for g in exempt) == [0.0, 0.05]
    schedule = resolve_schedule(spec.protocol.schedule, stage, steps_per_epoch=300)
    assert schedule.total == 12 * 300
    for step in [0, 1, 1000, 1999, 2000, 2001, 2800, 3599]:
        assert schedule.lr(step, 1e-5, stage.lr) == pytest.approx(
            hf_cosine(step, 1e-5, 2000, 3600), abs=1e-20
        )


@pytest.mark.parametrize("source", ["timm", "hf"])
def test_backbone_tokens_before_the_final_norm(source):
    import torch

    from reidbench.nn.backbones import build_image_backbone
    from reidbench.protocol import BackboneCfg

    name = "vit_tiny_patch16_224" if source == "timm" else "facebook/deit-base-distilled-patch16-224"
    sizes = dict(patch_size=8, embed_dim=32, depth=1, num_heads=2, drop_path=0.0)
    backbone = build_image_backbone(
        BackboneCfg(name=name, source=source, pretrained=False, **sizes), (16, 16)
    )
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        pre, post = backbone.eval()(x, final_norm=False), backbone(x)
    assert not torch.allclose(pre, post, atol=1e-3)
    assert torch.allclose(backbone.final_norm(pre), post, atol=1e-5)


def test_flava_text_encoder_pre_ln_with_a_final_norm_and_from_a_directory(tmp_path):
    import torch

    from reidbench.errors import UserError
    from reidbench.nn.text import build_text_encoder

    sizes = dict(hidden=32, layers=1, heads=2)
    flava = build_text_encoder("x", 50, False, family="flava", **sizes).eval()
    config = flava.bert.config
    assert (config.hidden_dropout_prob, config.attention_probs_dropout_prob, config.layer_norm_eps) == (
        0,
        0,
        1e-12,
    )
    ids, mask = torch.randint(1, 50, (2, 6)), torch.tensor([[1] * 6, [1] * 4 + [0] * 2])
    with torch.no_grad():
        pre, post = flava(ids, mask, final_norm=False), flava(ids, mask)
    assert torch.allclose(flava.final_norm(pre), post, atol=1e-6) and not torch.allclose(pre, post, atol=1e-3)
    flava.bert.save_pretrained(tmp_path / "flava")
    loaded = build_text_encoder("x", 50, False, str(tmp_path / "flava"), family="flava").eval()
    with torch.no_grad():
        assert torch.allclose(loaded(ids, mask), post, atol=1e-6)
    bert = build_text_encoder("x", 50, False, family="bert", **sizes).eval()
    with torch.no_grad():  # BERT is post-LN without a final norm: the same tokens either way
        assert torch.equal(bert(ids, mask, final_norm=False), bert(ids, mask))
    with pytest.raises(UserError, match="method.text_encoder='t5'"):
        build_text_encoder("x", 50, False, family="t5")
