"""The command line end to end, in process: user mistakes exit 2 with a message, never a traceback."""

import sys

import pytest

import cli
from reidbench.cli.common import build_context
from tests.conftest import TINY


def run_cli(monkeypatch, capsys, *args):
    monkeypatch.setattr(sys, "argv", ["reidbench", *args])
    code = 0
    try:
        cli.main()
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out + out.err


def test_list_methods_and_datasets(monkeypatch, capsys):
    code, out = run_cli(monkeypatch, capsys, "list", "methods")
    assert code == 0 and "late_fusion" in out and "fusion=" in out
    code, out = run_cli(monkeypatch, capsys, "list", "datasets")
    assert code == 0 and "synthetic" in out and "rgbnt100" in out


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["run", "-m", "nope", "-d", "synthetic"], "unknown method 'nope'"),
        (["run", "-m", "late_fusion", "-d", "nope"], "Valid datasets: "),
        (["run", "-m", "late_fusion", "-d", "synthetic", "--set", "optim.lrr=1"], "Valid keys under optim"),
        (
            ["run", "-m", "late_fusion", "-d", "synthetic", "--set", "method.fuse=max"],
            "Valid keys under method: fusion, shared_backbone",
        ),
        (["run", "-m", "late_fusion", "-d", "synthetic", "--seeds", "a,b"], "comma-separated integers"),
    ],
)
def test_user_mistakes_exit_2_with_a_message(monkeypatch, capsys, args, expected):
    code, out = run_cli(monkeypatch, capsys, *args)
    assert code == 2
    assert expected in out
    assert "Traceback" not in out


@pytest.mark.slow
def test_missing_data_root_says_what_was_expected(monkeypatch, capsys, tmp_path, mlflow_uri):
    code, out = run_cli(
        monkeypatch,
        capsys,
        "run",
        "-m",
        "late_fusion",
        "-d",
        "rgbnt100",
        "--seeds",
        "0",
        "--data-root",
        str(tmp_path),
        "--tracking-uri",
        mlflow_uri,
        "-q",
    )
    assert code == 2 and "RGBNT100" in out and "rgbir" in out and "Traceback" not in out


@pytest.mark.slow
def test_run_trains_evaluates_and_logs_to_mlflow(monkeypatch, capsys, mlflow_uri):
    overrides = [a for o in TINY for a in ("--set", o)]
    code, out = run_cli(
        monkeypatch,
        capsys,
        "run",
        "-m",
        "late_fusion",
        "-d",
        "synthetic",
        "--seeds",
        "0,1",
        *overrides,
        "--tracking-uri",
        mlflow_uri,
        "-q",
    )
    assert code == 0, out
    assert "late_fusion" in out and "mAP" in out and "± " in out

    from mlflow.tracking import MlflowClient

    client = MlflowClient(mlflow_uri)
    exp = client.get_experiment_by_name("reidbench")
    everything = client.search_runs([exp.experiment_id])
    runs = [r for r in everything if r.data.tags["run_kind"] == "run"]
    assert sorted(r.info.run_name for r in runs) == ["late_fusion@synthetic#s0", "late_fusion@synthetic#s1"]
    (parent,) = [r for r in everything if r.data.tags["run_kind"] == "parent"]  # a grid of two points
    assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in runs)
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert {"method", "dataset", "seed", "config_hash", "git_commit"} <= set(run.data.tags)
    assert run.data.params["protocol.optim.lr"] == "0.001"
    assert {
        "mAP",
        "rank1",
        "rank5",
        "rank10",
        "mINP",
        "params",
        "train_time_s",
        "train_images_per_s",
        "train_loss",
    } <= set(run.data.metrics)
    assert 0 <= run.data.metrics["mAP"] <= 1
    assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["config.yaml", "model"]
    model = [a.path for a in client.list_artifacts(run.info.run_id, "model")]
    assert model == ["model/config.yaml", "model/model.safetensors"]
    assert len(run.data.tags["weights_sha256"]) == 64 and int(run.data.tags["weights_bytes"]) > 0
    history = client.get_metric_history(run.info.run_id, "train_loss")
    assert [m.step for m in history] == [0]
    assert runs[0].data.tags["config_hash"] != runs[1].data.tags["config_hash"]


def test_weights_are_saved_by_default_except_for_tuning_trials_unless_asked():
    def context(command: str, *args: str, save_weights: bool = True):
        params = (
            cli.cli.commands[command]
            .make_context(command, ["-m", "late_fusion", "-d", "synthetic", *args])
            .params
        )
        return build_context(params, save_weights=save_weights)

    assert context("run").save_weights is True
    assert context("run", "--no-save-weights").save_weights is False
    assert context("tune", "--trials", "1", save_weights=False).save_weights is False  # as tune builds it
    assert context("tune", "--trials", "1", "--save-weights", save_weights=False).save_weights is True
