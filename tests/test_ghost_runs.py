"""A run killed (kill -9) before its first checkpoint is found dead by the next process that trains its
config: marked KILLED with the reason and replaced visibly, never left RUNNING."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.test_cli import run_cli

pytestmark = pytest.mark.slow  # starts a training process and kills it

REPO = Path(__file__).resolve().parents[1]
SETS = ["sampler.p=4", "sampler.k=4", "train.epochs=1", "train.max_steps_per_epoch=6"]


def _args(uri, tmp_path, overrides):
    sets = [a for o in overrides for a in ("--set", o)]
    return ["run", "-m", "late_fusion", "-d", "synthetic", "--seeds", "0", *sets, "--tracking-uri", uri,
            "--results-dir", str(tmp_path), "--device", "cpu", "-q"]  # fmt: skip


def _runs(uri):
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("reidbench")
    return [] if experiment is None else client.search_runs([experiment.experiment_id])


def test_a_run_killed_before_its_first_checkpoint_is_marked_and_replaced(tmp_path, monkeypatch, capsys):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    proc = subprocess.Popen(
        [sys.executable, "cli.py", *_args(uri, tmp_path, SETS)],
        cwd=REPO,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 300
        while not any(r.data.tags.get("run_kind") == "run" for r in _runs(uri)):
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline
            time.sleep(0.2)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
        proc.stderr.close()
    assert not list((tmp_path / "checkpoints").rglob("state.pt"))  # died before its first checkpoint
    (ghost,) = _runs(uri)
    assert ghost.info.status == "RUNNING"

    code, out = run_cli(monkeypatch, capsys, *_args(uri, tmp_path, SETS))  # the same run again
    assert code == 0, out
    runs = {r.info.run_id: r for r in _runs(uri)}
    dead = runs[ghost.info.run_id]
    (new,) = [r for r in runs.values() if r.info.run_id != ghost.info.run_id]
    assert dead.info.status == "KILLED" and dead.data.tags["replaced_by"] == new.info.run_id
    assert "stopped without finishing" in dead.data.tags["error"]
    assert new.info.status == "FINISHED" and new.data.tags["replaces"] == ghost.info.run_id
