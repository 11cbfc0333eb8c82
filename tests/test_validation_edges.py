"""Validation never touches test: a validation split is a strict subset of the training identities or the
command refuses; tune checks its data, fraction and storage before the first trial, exits non-zero when
trials fail, samples its own parameters per process, and its hint reproduces the study's settings."""

from __future__ import annotations

import shlex
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient

from reidbench.context import RunResult
from reidbench.data.validation import check_fraction, validation_split
from reidbench.errors import UserError
from reidbench.spec import make_spec
from reidbench.sweeps.storage import open_study
from tests.test_cli import run_cli


@pytest.mark.parametrize("fraction", [0.2, 0.5, 0.9])
def test_a_validation_split_is_a_strict_subset_of_the_training_ids(synthetic_dataset, fraction):
    split = validation_split(synthetic_dataset, fraction)
    train_ids = {s.pid for s in synthetic_dataset.splits.train}
    val_ids = {s.pid for s in [*split.splits.query, *split.splits.gallery]}
    kept = {s.pid for s in split.splits.train}
    assert len(val_ids) >= 2 and kept and val_ids < train_ids and not val_ids & kept
    test_files = {s.name for s in [*synthetic_dataset.splits.query, *synthetic_dataset.splits.gallery]}
    assert not test_files & {s.name for s in [*split.splits.query, *split.splits.gallery]}


@pytest.mark.parametrize("fraction", [0, 0.0, 1, 1.0, -0.2, 1.5, float("nan"), True, "0.2"])
def test_fractions_outside_the_open_interval_are_refused_everywhere(synthetic_dataset, fraction):
    with pytest.raises(UserError, match="strictly between 0 and 1"):
        check_fraction(fraction)
    with pytest.raises(UserError):
        make_spec("late_fusion", "synthetic", 0, validation=fraction)  # run, tune, queue: all build specs
    with pytest.raises(UserError):
        validation_split(synthetic_dataset, fraction)


@pytest.mark.parametrize(("fraction", "why"), [(0.99, "none left to train on"), (0.02, "at least 2 needed")])
def test_fractions_the_dataset_cannot_take_are_refused(synthetic_dataset, fraction, why):
    with pytest.raises(UserError, match=why):
        validation_split(synthetic_dataset, fraction)


def _tune(tmp_path, mlflow_uri, *extra):
    storage = f"sqlite:///{tmp_path / 'o.db'}"
    return ["tune", "-m", "late_fusion", "-d", "synthetic", "--storage", storage, "--tracking-uri",
            mlflow_uri, "--results-dir", str(tmp_path), "--device", "cpu", "-q", *extra]  # fmt: skip


def _runs(uri):
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("reidbench")
    return [] if experiment is None else client.search_runs([experiment.experiment_id])


@pytest.mark.parametrize(("fraction", "why"), [("0.99", "none left to train on"), ("0.02", "at least 2")])
def test_tune_refuses_a_fraction_before_the_first_trial(
    monkeypatch, capsys, tmp_path, mlflow_uri, fraction, why
):
    code, out = run_cli(
        monkeypatch, capsys, *_tune(tmp_path, mlflow_uri, "--trials", "2", "--val-fraction", fraction)
    )
    assert code == 2 and why in " ".join(out.split()) and "Traceback" not in out
    assert not _runs(mlflow_uri)  # no trial, no parent run stored


def test_tune_without_the_data_exits_non_zero_before_any_trial(monkeypatch, capsys, tmp_path, mlflow_uri):
    args = _tune(tmp_path, mlflow_uri, "--trials", "2", "--data-root", str(tmp_path / "empty"))
    args[args.index("synthetic")] = "rgbnt100"
    code, out = run_cli(monkeypatch, capsys, *args)
    assert code == 2 and "rgbnt100" in out and "Traceback" not in out
    assert not _runs(mlflow_uri)


def _fake_run_one(calls):
    def run_one(spec, ctx, device=None):
        calls.append(spec)
        if spec.protocol.optim.lr > 0.5:
            raise RuntimeError("diverged [loss=nan]")
        return RunResult(spec, {"mAP": 0.5 + spec.protocol.optim.lr}, None)

    return run_one


def test_failing_trials_make_tune_exit_1_with_the_reason(monkeypatch, capsys, tmp_path, mlflow_uri):
    space = tmp_path / "space.yaml"
    space.write_text("optim.lr: {type: uniform, low: 0.6, high: 0.9}\n")  # every trial fails
    calls = []
    monkeypatch.setattr("reidbench.runner.run_one", _fake_run_one(calls))
    code, out = run_cli(
        monkeypatch, capsys, *_tune(tmp_path, mlflow_uri, "--trials", "2", "--space", str(space))
    )
    assert code == 1 and "2 of 2 trial(s) failed" in out and "diverged [loss=nan]" in out, out
    assert len(calls) == 2 and all(s.validation == 0.2 for s in calls)  # scored on the validation split


def test_the_hint_reproduces_the_studys_settings(monkeypatch, capsys, tmp_path, mlflow_uri):
    protocol = tmp_path / "my protocol.yaml"
    protocol.write_text(Path("benchmarks/protocols/synthetic.yaml").read_text())
    space = tmp_path / "space.yaml"
    space.write_text("optim.lr: {type: uniform, low: 0.001, high: 0.01}\n")
    monkeypatch.setattr("reidbench.runner.run_one", _fake_run_one([]))
    args = _tune(tmp_path, mlflow_uri, "--trials", "1", "--space", str(space), "--set", "train.epochs=1",
                 "--recipe", "official", "--protocol", str(protocol),
                 "--set", "train.allow_random_frozen=true")  # fmt: skip
    args[args.index("late_fusion")] = "graft"
    code, out = run_cli(monkeypatch, capsys, *args)
    assert code == 0, out
    hint = shlex.split(out.split("test it: ", 1)[1].replace("\n", " "))
    assert hint[:6] == ["reidbench", "run", "--method", "graft", "--dataset", "synthetic"]
    pairs = list(zip(hint, hint[1:], strict=False))
    assert ("--recipe", "official") in pairs and ("--protocol", str(protocol.resolve())) in pairs
    assert ("--set", "train.epochs=1") in pairs and ("--set", "train.allow_random_frozen=true") in pairs
    assert any(a == "--set" and b.startswith("optim.lr=") for a, b in pairs)


def test_each_process_samples_its_own_parameters(tmp_path):
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    first = [open_study(storage, "shared").ask().suggest_float("x", 0, 1) for _ in range(2)]
    assert first[0] != first[1]  # two workers (or a rerun) do not repeat the same first trial
    assert len(optuna.load_study(study_name="shared", storage=storage).trials) == 2
