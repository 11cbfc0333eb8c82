"""Slurm through submitit (its local executor runs the same code path): preemption requeues the job, which
resumes from its checkpoint and ends with the metrics of an uninterrupted run."""

import signal
import threading
import time
from pathlib import Path

import psutil
import pytest
import torch
from mlflow.tracking import MlflowClient

from reidbench import tracking
from reidbench.context import RunContext
from reidbench.runner import run_one
from reidbench.spec import make_spec
from reidbench.sweeps.executors import Job, Slurm

pytestmark = pytest.mark.slow  # trains models or starts processes: `make test-fast` skips it

OVERRIDES = ["sampler.p=4", "sampler.k=4", "train.epochs=3", "train.max_steps_per_epoch=2"]
METRICS = ("mAP", "rank1", "rank5", "rank10", "mINP", "num_valid_queries")


def wait_for(condition, what, timeout_s=600.0):
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_preempted_slurm_job_is_requeued_and_resumes_to_identical_metrics(tmp_path, mlflow_uri):
    spec = make_spec("late_fusion", "synthetic", 0, OVERRIDES)
    baseline = run_one(spec, RunContext(Path("unused")), torch.device("cpu"))

    tracking.prepare(mlflow_uri, "reidbench")
    ctx = RunContext(Path("unused"), mlflow_uri, checkpoint_dir=tmp_path / "checkpoints", device="cpu")
    job = Job(spec, ctx)
    slurm = Slurm(tmp_path / "slurm", timeout_min=30, cluster="local", use_gpus=False, poll_s=0.2)
    outcomes = []
    runner = threading.Thread(target=lambda: outcomes.extend(slurm.run([job])))
    runner.start()
    state_file = tmp_path / "checkpoints" / spec.config_hash / "state.pt"
    wait_for(lambda: state_file.exists() or not runner.is_alive(), "the first checkpoint")
    assert runner.is_alive(), f"the job ended before its first checkpoint: {outcomes}"
    # preempt: Slurm sends SIGUSR2 to the task (submitit's local controller is the job folder's name)
    (controller,) = [int(p.name) for p in (tmp_path / "slurm").iterdir() if p.name.isdigit()]
    (task,) = psutil.Process(controller).children()
    task.send_signal(signal.SIGUSR2)
    runner.join(timeout=900)
    assert not runner.is_alive()

    (outcome,) = outcomes
    assert outcome.ok, outcome.error
    client = MlflowClient(mlflow_uri)
    (run,) = client.search_runs([client.get_experiment_by_name("reidbench").experiment_id])
    assert run.info.status == "FINISHED" and run.data.tags["resumed_at_epoch"] in (
        "1",
        "2",
    )  # requeued, resumed
    assert len(client.get_metric_history(run.info.run_id, "train_loss")) == 3
    assert {k: outcome.metrics[k] for k in METRICS} == {k: baseline.metrics[k] for k in METRICS}
    assert not state_file.exists()
