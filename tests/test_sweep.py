"""Sweeps from the command line: ablations end to end, skipping finished points, reuse, failures."""

import pytest
from mlflow.tracking import MlflowClient

from reidbench import runner
from tests.conftest import TINY
from tests.test_cli import run_cli

pytestmark = pytest.mark.slow  # trains models or starts processes: `make test-fast` skips it

SETS = [a for o in TINY for a in ("--set", o)]


def runs_by_kind(uri):
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("reidbench").experiment_id])
    out = {}
    for run in runs:
        out.setdefault(run.data.tags["run_kind"], []).append(run)
    return out


def test_ablate_end_to_end_then_rerun_trains_nothing(monkeypatch, capsys, mlflow_uri, tmp_path):
    args = [
        "ablate",
        "late_fusion_fusion",
        "--dataset",
        "synthetic",
        "--values",
        "concat,mean",
        *SETS,
        "--tracking-uri",
        mlflow_uri,
        "--results-dir",
        str(tmp_path),
        "--device",
        "cpu",
        "-q",
    ]
    code, out = run_cli(monkeypatch, capsys, *args)
    assert code == 0, out
    assert "2 point(s): 0 finished (skipped), 0 reused from other sweeps, 2 to train" in out
    assert "concat" in out and "mean" in out and "mAP" in out
    runs = runs_by_kind(mlflow_uri)
    (parent,) = runs["parent"]
    assert {k: parent.data.tags[k] for k in ("kind", "ablation", "axis", "axis_default")} == {
        "kind": "ablation",
        "ablation": "late_fusion_fusion",
        "axis": "method.fusion",
        "axis_default": "concat",
    }
    children = sorted(runs["run"], key=lambda r: r.data.tags["value"])
    assert [r.data.tags["value"] for r in children] == ["concat", "mean"]
    for run in children:
        tags, params = run.data.tags, run.data.params
        assert run.info.status == "FINISHED" and tags["mlflow.parentRunId"] == parent.info.run_id
        assert (tags["ablation"], tags["axis"], tags["axis_default"]) == (
            "late_fusion_fusion",
            "method.fusion",
            "concat",
        )
        assert params["protocol.method.fusion"] == tags["value"]
        assert (
            params["protocol.train.epochs"] == "1" and params["protocol.sampler.p"] == "4"
        )  # --set passed through
        assert 0 <= run.data.metrics["mAP"] <= 1
    assert list((tmp_path / "checkpoints").iterdir()) == []  # finished runs leave no training state

    def must_not_train(*args, **kwargs):
        raise AssertionError("a finished point was trained again")

    monkeypatch.setattr(runner, "_fit_and_evaluate", must_not_train)
    code, out = run_cli(monkeypatch, capsys, *args)
    assert code == 0, out
    assert "2 point(s): 2 finished (skipped), 0 reused from other sweeps, 0 to train" in out
    again = runs_by_kind(mlflow_uri)
    assert sorted(r.info.run_id for r in again["run"]) == sorted(r.info.run_id for r in children)
    assert [r.info.run_id for r in again["parent"]] == [
        parent.info.run_id
    ]  # the same sweep reuses its parent
    assert again["parent"][0].info.status == "FINISHED"

    # a plain run of the default point was trained by the ablation already: copied, not retrained
    code, out = run_cli(
        monkeypatch,
        capsys,
        "run",
        "-m",
        "late_fusion",
        "-d",
        "synthetic",
        "--seeds",
        "0",
        *SETS,
        "--tracking-uri",
        mlflow_uri,
        "--results-dir",
        str(tmp_path),
        "-q",
    )
    assert code == 0, out
    assert "1 point(s): 0 finished (skipped), 1 reused from other sweeps, 0 to train" in out
    copies = [r for r in runs_by_kind(mlflow_uri)["run"] if "reused_from" in r.data.tags]
    assert len(copies) == 1 and "ablation" not in copies[0].data.tags
    source = next(r for r in children if r.info.run_id == copies[0].data.tags["reused_from"])
    assert source.data.tags["value"] == "concat"
    assert copies[0].data.metrics["mAP"] == source.data.metrics["mAP"]
    assert copies[0].data.tags["config_hash"] == source.data.tags["config_hash"]


FRAGILE = """\
method: late_fusion
axis: loss.id_weight
values:
  - {value: nan, set: {loss.id_weight: .nan}}
  - {value: bad-freeze, set: {train.stages: [{name: s, freeze: [nonexistent]}]}}
  - 1.0
default: 1.0
datasets: [synthetic]
"""


def test_failed_points_are_marked_failed_and_the_sweep_goes_on(monkeypatch, capsys, mlflow_uri, tmp_path):
    path = tmp_path / "fragile.yaml"
    path.write_text(FRAGILE)
    code, out = run_cli(
        monkeypatch,
        capsys,
        "ablate",
        str(path),
        *SETS,
        "--tracking-uri",
        mlflow_uri,
        "--results-dir",
        str(tmp_path),
        "--device",
        "cpu",
        "-q",
    )
    assert code == 1, out
    assert "2 point(s) failed" in out and "Traceback" not in out
    assert "(loss.id_weight=nan): FloatingPointError: loss is nan at epoch 0, step 0" in out
    assert "(loss.id_weight=bad-freeze): UserError: stage freezes 'nonexistent'" in out
    runs = runs_by_kind(mlflow_uri)
    status = {r.data.tags["value"]: (r.info.status, r.data.tags.get("error", "")) for r in runs["run"]}
    assert status["nan"][0] == "FAILED" and status["nan"][1].startswith("FloatingPointError")
    assert status["bad-freeze"][0] == "FAILED" and "nonexistent" in status["bad-freeze"][1]
    assert status["1.0"] == ("FINISHED", "")  # the point after the failures still ran
    assert runs["parent"][0].info.status == "FAILED"
    assert runs["parent"][0].data.metrics["failed"] == 2
