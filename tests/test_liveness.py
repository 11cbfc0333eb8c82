"""A sweep started again leaves points alone while another sweep is still training them."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest
from mlflow.tracking import MlflowClient

from reidbench import runner, tracking
from reidbench.spec import make_spec
from reidbench.util import liveness
from tests.conftest import TINY
from tests.test_cli import run_cli

HOST = socket.gethostname()


@pytest.fixture
def live_pid():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc.pid
    proc.kill()
    proc.wait()


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_is_alive_by_process_here_and_by_heartbeat_elsewhere(live_pid):
    now = time.time()
    assert liveness.is_alive({"host": HOST, "pid": str(live_pid)}, 60)
    assert not liveness.is_alive({"host": HOST, "pid": str(dead_pid())}, 60)
    assert not liveness.is_alive({"host": HOST, "pid": "not-a-pid"}, 60)
    assert not liveness.is_alive(liveness.owner_tags(), 60)  # this process is not training it
    other = {"host": "node-17", "pid": "1"}
    assert liveness.is_alive({**other, "heartbeat": f"{now - 30:.0f}"}, 60, now=now)
    assert not liveness.is_alive({**other, "heartbeat": f"{now - 90:.0f}"}, 60, now=now)
    assert not liveness.is_alive(other, 60, now=now)  # never beat


def running_run(uri: str, tags: dict[str, str]) -> str:
    """A RUNNING run of the late_fusion point trained below, as another sweep would leave it."""
    digest = make_spec("late_fusion", "synthetic", 0, TINY).config_hash
    run = tracking.Run(
        uri,
        tracking.prepare(uri, "reidbench"),
        "late_fusion@synthetic#s0",
        {"run_kind": "run", "config_hash": digest, **tags},
    )
    return run.run_id


@pytest.mark.slow
def test_sweep_leaves_a_live_run_alone_unless_told(monkeypatch, capsys, mlflow_uri, tmp_path, live_pid):
    args = [
        "run",
        "-m",
        "late_fusion",
        "-d",
        "synthetic",
        "--seeds",
        "0",
        *[a for o in TINY for a in ("--set", o)],
        "--tracking-uri",
        mlflow_uri,
        "--results-dir",
        str(tmp_path),
        "--device",
        "cpu",
        "-q",
    ]
    other = running_run(mlflow_uri, {"host": HOST, "pid": str(live_pid)})

    def must_not_train(*args, **kwargs):
        raise AssertionError("a point another sweep is training was trained again")

    with monkeypatch.context() as m:
        m.setattr(runner, "_fit_and_evaluate", must_not_train)
        code, out = run_cli(monkeypatch, capsys, *args)
    assert code == 0, out
    said = " ".join(out.split())  # the console wraps long lines
    assert (
        "0 to train, 1 being trained by another sweep (left alone; --retry-running trains them here)" in said
    )

    code, out = run_cli(monkeypatch, capsys, *args, "--retry-running")
    assert code == 0, out
    assert "1 to train" in out
    client = MlflowClient(mlflow_uri)
    runs = client.search_runs([client.get_experiment_by_name("reidbench").experiment_id])
    (mine,) = [r for r in runs if r.info.run_id != other]
    assert mine.info.status == "FINISHED"
    assert (mine.data.tags["host"], mine.data.tags["pid"]) == (HOST, str(os.getpid()))
    assert float(mine.data.tags["heartbeat"]) >= float(mine.info.start_time) / 1000 - 1
