"""Pruning studies end to end on tiny runs: each round a run that starts from the previous round's saved
weights; exact non-zero counts; a study stopped after round 2 resumes at round 3 with the same metrics;
a structured round shrinks the model, lowers the counted FLOPs, and its saved weights load back for eval."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

import cli
from reidbench import tracking
from reidbench.context import RunContext
from reidbench.prune.study import run_study
from reidbench.spec import make_spec
from reidbench.zoo import evaluate
from tests.conftest import TINY

pytestmark = pytest.mark.slow  # trains about a dozen tiny runs (about 1 min on 2 CPU cores)

PRUNABLE = 2 * (4 * 64 * 64 + 2 * 64 * 256)  # the synthetic protocol's ViT: 2 blocks, width 64, MLP 256


def _ctx(root: Path) -> RunContext:
    return RunContext(
        Path("unused"), tracking_uri=f"sqlite:///{root / 'mlflow.db'}", experiment="prune", device="cpu"
    )


def _study(root: Path, schedule: str, rounds: int):
    base = make_spec("late_fusion", "synthetic", 0, TINY)
    return run_study([base], schedule, 0.3, rounds, 1, 1e-4, _ctx(root))


def _rounds(root: Path) -> dict[int, tracking.RunRecord]:
    found = tracking.find_runs(f"sqlite:///{root / 'mlflow.db'}", "prune", "tags.run_kind = 'run'")
    return {int(r.tags["value"]): r for r in found}


def test_unstructured_rounds_zero_the_stated_fraction_and_a_stopped_study_resumes(tmp_path):
    straight = _study(tmp_path / "a", "unstructured-l1", 3)
    assert not straight.failures and straight.trained == 4
    runs = _rounds(tmp_path / "a")
    zeros_before = runs[0].metrics["params"] - runs[0].metrics["nonzero_params"]  # zero-initialised biases
    remaining = PRUNABLE
    for r in (1, 2, 3):
        remaining -= round(0.3 * remaining)
        assert runs[r].metrics["nonzero_params"] == runs[0].metrics["params"] - zeros_before - (
            PRUNABLE - remaining
        )
        assert runs[r].metrics["params"] == runs[0].metrics["params"]  # masks remove no parameter
        assert runs[r].tags["config_hash"] != runs[r - 1].tags["config_hash"]

    first = _study(tmp_path / "b", "unstructured-l1", 2)  # stopped after round 2 ...
    assert first.trained == 3
    resumed = _study(tmp_path / "b", "unstructured-l1", 3)  # ... resumes at round 3
    assert (resumed.skipped, resumed.trained) == (3, 1)
    again = _rounds(tmp_path / "b")
    keys = ("mAP", "rank1", "mINP", "nonzero_params")
    assert {k: again[3].metrics[k] for k in keys} == {k: runs[3].metrics[k] for k in keys}


def test_structured_round_shrinks_the_model_and_its_weights_load_back_for_eval(tmp_path, synthetic_dataset):
    result = _study(tmp_path, "structured", 1)
    assert not result.failures
    runs = _rounds(tmp_path)
    base, pruned = runs[0].metrics, runs[1].metrics
    assert pruned["params"] < base["params"] and pruned["gflops"] < base["gflops"]
    source = evaluate.from_run(f"sqlite:///{tmp_path / 'mlflow.db'}", runs[1].run_id, tmp_path / "dl")
    shapes = source.weights.shapes  # 2 blocks x 2 heads, 2 x 256 channels before; 30 % of each removed
    assert sum(shapes["heads"]) == 4 - round(0.3 * 4) and sum(shapes["hidden"]) == 512 - round(0.3 * 512)
    again = evaluate.evaluate_source(source, synthetic_dataset, torch.device("cpu"))
    assert again.metrics["mAP"] == pruned["mAP"] and again.metrics["rank1"] == pruned["rank1"]


def test_a_round_without_its_previous_round_is_a_clear_error(tmp_path):
    from reidbench.errors import UserError
    from reidbench.prune.schedule import round_specs
    from reidbench.runner import run_one

    base = make_spec("late_fusion", "synthetic", 0, TINY)
    second = round_specs(base, "unstructured-l1", 0.3, 2, 1, 1e-4)[2]
    with pytest.raises(UserError, match="run the study from round 0"):
        run_one(second, _ctx(tmp_path))


@pytest.mark.parametrize(
    "args, message",
    [
        (["--fraction", "1.5"], "Invalid value for '--fraction': 1.5 is not in the range 0<x<1"),
        (["--rounds", "0"], "Invalid value for '--rounds': 0 is not in the range 1<=x"),
        (["--finetune-lr", "-1"], "lr > 0"),
    ],
)
def test_impossible_schedules_are_refused_before_anything_is_stored(
    tmp_path, monkeypatch, capsys, args, message
):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setattr(
        sys,
        "argv",
        ["reidbench", "prune", "-m", "late_fusion", "-d", "synthetic", "--tracking-uri", uri, *args],
    )
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    captured = capsys.readouterr()
    out = " ".join((captured.out + captured.err).split())
    assert exit_.value.code != 0 and message in out and "Traceback" not in out
    assert not (tmp_path / "mlflow.db").exists()
