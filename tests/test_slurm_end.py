"""How a Slurm job that left no result ended (from sacct) and the closing of its MLflow run, with a
stand-in ``sacct`` (the real one: tests/test_slurm_cluster.py)."""

import os
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from reidbench import tracking
from reidbench.context import RunContext
from reidbench.sweeps import slurm_end
from reidbench.util import liveness


@pytest.fixture
def sacct(tmp_path, monkeypatch):
    """Put a stand-in ``sacct`` on PATH that prints ``line`` for ``-j JOB``; returns a setter."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")

    def set_line(job: str, line: str) -> None:
        script = bin_dir / "sacct"
        script.write_text(f'#!/bin/sh\ncase "$*" in *"-j {job} "*) echo "{line}";; esac\n')
        script.chmod(0o755)

    return set_line


@pytest.mark.parametrize(
    ("line", "state", "text"),
    [
        ("FAILED|9:0|0:9", "FAILED", "Slurm job 7_1 FAILED: a task was killed by signal 9 (SIGKILL)"),
        ("CANCELLED by 0|0:0|0:0", "CANCELLED", "Slurm job 7_1 CANCELLED by root"),
        ("FAILED|3:0|0:0", "FAILED", "Slurm job 7_1 FAILED: exit code 3"),
        ("TIMEOUT|0:0|0:0", "TIMEOUT", "Slurm job 7_1 TIMEOUT"),
    ],
)
def test_job_end_names_the_state_and_the_reason(sacct, line, state, text):
    sacct("7_1", line)
    assert slurm_end.job_end("7_1") == (state, text)


def test_job_end_without_an_answer_from_sacct(sacct):
    sacct("other", "COMPLETED|0:0|0:0")
    assert slurm_end.job_end("7_1")[0] == "UNKNOWN"


def test_runs_under_slurm_are_tagged_with_their_job(monkeypatch):
    for name in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID"):
        monkeypatch.delenv(name, raising=False)
    assert "slurm_job" not in liveness.owner_tags()
    monkeypatch.setenv("SLURM_JOB_ID", "12")
    assert liveness.owner_tags()["slurm_job"] == "12"
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "11")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "1")
    assert liveness.owner_tags()["slurm_job"] == "11_1"


def test_close_run_ends_only_the_running_run_of_that_job(sacct, mlflow_uri):
    exp = tracking.prepare(mlflow_uri, "reidbench")
    ids = {}
    for job in ("7_0", "7_1"):
        ids[job] = tracking.Run(mlflow_uri, exp, f"r{job}", {"run_kind": "run", "slurm_job": job}).run_id
    sacct("7_1", "FAILED|9:0|0:9")
    ctx = RunContext(Path("unused"), mlflow_uri)
    reason = slurm_end.close_run(ctx, "7_1")
    assert reason == "Slurm job 7_1 FAILED: a task was killed by signal 9 (SIGKILL)"
    client = MlflowClient(mlflow_uri)
    killed, other = client.get_run(ids["7_1"]), client.get_run(ids["7_0"])
    assert killed.info.status == "FAILED" and killed.data.tags["error"] == reason
    assert other.info.status == "RUNNING" and "error" not in other.data.tags
    sacct("7_0", "CANCELLED by 0|0:0|0:0")
    slurm_end.close_run(ctx, "7_0")
    assert client.get_run(ids["7_0"]).info.status == "KILLED"
    slurm_end.close_run(ctx, "7_1", "KILLED", "again")  # an ended run is left as it is
    assert client.get_run(ids["7_1"]).info.status == "FAILED"
