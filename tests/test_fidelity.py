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


def test_every_method_with_an_official_recipe_has_complete_rows():
    with_official = sorted(e.name for e in METHODS if e.meta.get("official") is not None)
    assert set(OFFICIAL) <= set(with_official)
    for method in with_official:
        rows = fidelity.rows(method)
        assert rows, f"{method} has an official recipe but no fidelity rows"
        assert [p for r in rows for p in r.problems()] == []


@pytest.mark.parametrize("method", sorted(OFFICIAL))
def test_nothing_differs_without_a_row(method):
    assert fidelity.uncovered(method, OFFICIAL[method]) == []


def test_a_key_without_a_row_is_found():
    rows = METHODS.get("graft").meta["fidelity"]
    kept = [r for r in rows if "optim.no_decay" not in r.keys]
    METHODS.get("graft").meta["fidelity"] = kept
    try:
        assert fidelity.uncovered("graft", "rgbnt100") == ["optim.no_decay"]
    finally:
        METHODS.get("graft").meta["fidelity"] = rows


def test_the_table_the_cli_and_the_docstring_read_the_same_rows(monkeypatch, capsys):
    import methods.graft
    from tests.test_cli import run_cli

    code, out = run_cli(monkeypatch, capsys, "list", "methods", "--verbose")
    assert code == 0 and "graft: fidelity to the official code" in out
    table = {
        setting: (official, ours, status)
        for setting, official, ours, status in fidelity.table("graft", "official")
    }
    assert table["weight decay on biases and norms"][2] == "same"
    assert table["reported model"][2].startswith("differs: ")
    assert "reported model: official the best epoch on the test split" in methods.graft.__doc__
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
