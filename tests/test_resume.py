"""Checkpoint + resume: an interrupted run ends with exactly the metrics of an uninterrupted one (on CPU)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from reidbench.context import RunContext
from reidbench.data.module import DataModule
from reidbench.runner import run_one
from reidbench.spec import make_spec
from reidbench.train.checkpoint import Checkpointer
from tests.test_cli import run_cli

pytestmark = pytest.mark.slow  # trains models or starts processes: `make test-fast` skips it

REPO = Path(__file__).resolve().parents[1]
OVERRIDES = ["sampler.p=4", "sampler.k=4", "train.epochs=3", "train.max_steps_per_epoch=2"]
METRICS = ("mAP", "rank1", "rank5", "rank10", "mINP", "num_valid_queries")
CPU = torch.device("cpu")


def spec():
    return make_spec("late_fusion", "synthetic", 0, OVERRIDES)


def client(uri):
    from mlflow.tracking import MlflowClient

    return MlflowClient(uri)


def losses(uri, run_id):
    return [(m.step, m.value) for m in client(uri).get_metric_history(run_id, "train_loss")]


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    """The uninterrupted run: metrics and per-epoch training loss."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('baseline') / 'mlflow.db'}"
    result = run_one(spec(), RunContext(Path("unused"), uri), CPU)
    return result.metrics, losses(uri, result.run_id)


def test_injected_crash_after_epoch_1_of_3_resumes_to_identical_metrics(
    baseline, tmp_path, monkeypatch, mlflow_uri
):
    ckpt_root = tmp_path / "checkpoints"
    save = Checkpointer.save

    def crash_after_first_epoch(self, state):
        save(self, state)
        if state.epoch == 1:
            raise RuntimeError("injected crash after epoch 1")

    monkeypatch.setattr(Checkpointer, "save", crash_after_first_epoch)
    ctx = RunContext(Path("unused"), mlflow_uri, checkpoint_dir=ckpt_root)
    with pytest.raises(RuntimeError, match="injected crash"):
        run_one(spec(), ctx, CPU)
    monkeypatch.undo()
    folder = ckpt_root / spec().config_hash
    state = Checkpointer(folder).load()
    assert (state.epoch, state.stage, state.step) == (1, 0, 2)
    failed = client(mlflow_uri).get_run(state.run_id)
    assert failed.info.status == "FAILED" and "injected crash" in failed.data.tags["error"]

    epochs = []
    batches = DataModule.train_batches

    def record(self, epoch):
        epochs.append(epoch)
        return batches(self, epoch)

    monkeypatch.setattr(DataModule, "train_batches", record)
    result = run_one(spec(), ctx, CPU)
    assert epochs == [1, 2]  # resumed, not retrained
    metrics, curve = baseline
    assert {k: result.metrics[k] for k in METRICS} == {k: metrics[k] for k in METRICS}
    run = client(mlflow_uri).get_run(result.run_id)
    assert result.run_id == state.run_id and run.info.status == "FINISHED"
    assert run.data.tags["resumed_at_epoch"] == "1"
    assert losses(mlflow_uri, result.run_id) == curve  # the same curve, each epoch logged once
    assert not folder.exists()  # the state of a finished run is deleted


def test_killed_process_resumes_to_identical_metrics(baseline, tmp_path, monkeypatch, capsys, mlflow_uri):
    args = [
        "run",
        "-m",
        "late_fusion",
        "-d",
        "synthetic",
        "--seeds",
        "0",
        *[a for o in OVERRIDES for a in ("--set", o)],
        "--tracking-uri",
        mlflow_uri,
        "--results-dir",
        str(tmp_path),
        "--device",
        "cpu",
        "-q",
    ]
    state_file = tmp_path / "checkpoints" / spec().config_hash / "state.pt"
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    proc = subprocess.Popen(
        [sys.executable, "cli.py", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        while not state_file.exists():
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    state = Checkpointer(state_file.parent).load()
    assert 1 <= state.epoch < 3
    assert client(mlflow_uri).get_run(state.run_id).info.status == "RUNNING"  # killed hard

    code, out = run_cli(monkeypatch, capsys, *args)
    assert code == 0, out
    assert "0 finished (skipped), 0 reused from other sweeps, 1 to train" in out
    runs = client(mlflow_uri).search_runs(
        [client(mlflow_uri).get_experiment_by_name("reidbench").experiment_id]
    )
    assert [r.info.run_id for r in runs] == [state.run_id]  # the killed run was continued
    assert runs[0].info.status == "FINISHED"
    metrics, curve = baseline
    assert {k: runs[0].data.metrics[k] for k in METRICS} == {k: float(metrics[k]) for k in METRICS}
    assert losses(mlflow_uri, state.run_id) == curve
