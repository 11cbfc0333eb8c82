"""Optuna search on a validation split of the training identities; trials are MLflow child runs."""

import optuna
import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import TINY
from tests.test_cli import run_cli

pytestmark = pytest.mark.slow  # trains models or starts processes: `make test-fast` skips it

SETS = [a for o in TINY for a in ("--set", o)]


def test_tune_maximises_validation_map_with_trials_as_child_runs(monkeypatch, capsys, tmp_path, mlflow_uri):
    space = tmp_path / "space.yaml"
    space.write_text(
        "optim.lr: {type: loguniform, low: 1.0e-4, high: 1.0e-2}\n"
        "loss.variant: {type: categorical, choices: [ce+triplet, ce]}\n"
    )
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    args = [
        "tune",
        "-m",
        "late_fusion",
        "-d",
        "synthetic",
        "--space",
        str(space),
        "--storage",
        storage,
        *SETS,
        "--tracking-uri",
        mlflow_uri,
        "--results-dir",
        str(tmp_path),
        "--device",
        "cpu",
        "-q",
    ]
    code, out = run_cli(monkeypatch, capsys, *args, "--trials", "2")
    assert code == 0, out
    assert "best of 2 finished trial(s)" in out and "test it: reidbench run --method late_fusion" in out
    code, out = run_cli(monkeypatch, capsys, *args, "--trials", "1")  # a second worker joins the same study
    assert code == 0, out
    assert "best of 3 finished trial(s)" in out

    study = optuna.load_study(study_name="late_fusion@synthetic", storage=storage)
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 3
    client = MlflowClient(mlflow_uri)
    runs = client.search_runs([client.get_experiment_by_name("reidbench").experiment_id])
    (parent,) = [r for r in runs if r.data.tags["run_kind"] == "parent"]
    trials = sorted(
        (r for r in runs if r.data.tags["run_kind"] == "trial"), key=lambda r: int(r.data.tags["trial"])
    )
    assert len(trials) == 3 and parent.data.tags["study"] == "late_fusion@synthetic"
    assert parent.info.run_id == study.user_attrs["mlflow_parent_run_id"]
    for trial, run in zip(study.trials, trials, strict=True):
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.info.run_id == trial.user_attrs["mlflow_run_id"]
        assert run.data.metrics["mAP"] == trial.value
        assert float(run.data.params["protocol.optim.lr"]) == trial.params["optim.lr"]
        assert run.data.params["validation"] == "0.2" and run.info.run_name == "late_fusion@synthetic:val#s0"
        # 10 of the 48 training identities x 4 cameras: validation queries, not the 96 test queries
        assert run.data.metrics["num_valid_queries"] == 40
    assert parent.data.metrics["best_val_mAP"] == study.best_value


def test_tune_rejects_unknown_keys_before_training(monkeypatch, capsys, tmp_path, mlflow_uri):
    space = tmp_path / "space.yaml"
    space.write_text("optim.lrr: {type: loguniform, low: 1.0e-4, high: 1.0e-2}\n")
    code, out = run_cli(
        monkeypatch,
        capsys,
        "tune",
        "-m",
        "late_fusion",
        "-d",
        "synthetic",
        "--trials",
        "1",
        "--space",
        str(space),
        "--storage",
        f"sqlite:///{tmp_path / 'o.db'}",
        "--tracking-uri",
        mlflow_uri,
        "-q",
    )
    assert code == 2 and "unknown key 'optim.lrr'" in out and "Traceback" not in out
