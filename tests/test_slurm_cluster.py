"""reidbench on a real one-node Slurm cluster (tests/slurm_cluster.py): runs through sbatch, a requeue
mid-run, scancel and a SIGKILLed task, and the queue's Slurm launcher. Tiny synthetic runs on CPU."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from reidbench.context import RunContext
from reidbench.queue.store import Store
from reidbench.runner import run_one
from reidbench.spec import make_spec

pytestmark = [pytest.mark.slow, pytest.mark.slurm_cluster]

REIDBENCH = str(Path(sys.executable).with_name("reidbench"))
TINY = ["sampler.p=4", "sampler.k=4", "train.max_steps_per_epoch=2"]
METRICS = ("mAP", "rank1", "rank5", "rank10", "mINP", "num_valid_queries")


def overrides(epochs: int) -> list[str]:
    return [*TINY, f"train.epochs={epochs}"]


def execution(tmp_path: Path, uri: str) -> list[str]:
    """Options every run here gets: CPU, one CPU per task (the node has as many as this machine)."""
    return ["--device", "cpu", "--cpus-per-task", "1", "--timeout", "30", "--quiet",
            "--results-dir", str(tmp_path / "results"), "--tracking-uri", uri]  # fmt: skip


def start_run(tmp_path: Path, uri: str, seeds: str, epochs: int) -> subprocess.Popen:
    """``reidbench run --launcher slurm`` of late_fusion on synthetic, in the background (log: driver.log)."""
    sets = [arg for o in overrides(epochs) for arg in ("--set", o)]
    argv = [REIDBENCH, "run", "-m", "late_fusion", "-d", "synthetic", "--seeds", seeds, *sets]
    argv += ["--launcher", "slurm", *execution(tmp_path, uri)]
    with (tmp_path / "driver.log").open("w") as log:
        return subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "COLUMNS": "200"}
        )


def wait_for(
    condition, what: str, timeout_s: float, proc: subprocess.Popen | None = None, log: Path | None = None
):
    """Poll ``condition`` until it is truthy; fails (with the log) on timeout or when ``proc`` ended first."""
    deadline = time.monotonic() + timeout_s
    while not (value := condition()):
        tail = log.read_text()[-3000:] if log is not None and log.exists() else ""
        assert proc is None or proc.poll() is None, f"exited ({proc.returncode}) before {what}:\n{tail}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}:\n{tail}"
        time.sleep(0.5)
    return value


def runs_by_seed(uri: str) -> dict[int, object]:
    """The runs (not the sweep's parent) in the experiment, by seed."""
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("reidbench")
    if exp is None:
        return {}
    runs = client.search_runs([exp.experiment_id], "tags.run_kind = 'run'")
    return {int(run.data.tags["seed"]): run for run in runs}


def checkpointed(tmp_path: Path, seed: int, epochs: int) -> bool:
    spec = make_spec("late_fusion", "synthetic", seed, overrides(epochs))
    return (tmp_path / "results" / "checkpoints" / spec.config_hash / "state.pt").exists()


def in_process(seed: int, epochs: int) -> dict[str, float]:
    spec = make_spec("late_fusion", "synthetic", seed, overrides(epochs))
    return run_one(spec, RunContext(Path("unused")), torch.device("cpu")).metrics


def test_run_through_sbatch_one_seed_requeued_mid_run_matches_in_process(slurm_cluster, tmp_path):
    """Two seeds through real sbatch (one array); seed 1 is requeued (`scontrol requeue`) after its first
    epoch, resumes from its checkpoint, and both end with the metrics of the same runs in this process."""
    epochs, uri, log = 8, f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "driver.log"
    driver = start_run(tmp_path, uri, "0,1", epochs)
    wait_for(lambda: checkpointed(tmp_path, 1, epochs), "seed 1's first checkpoint", 600, driver, log)
    # array task i trains point i (seeds 0, 1); asked at once, so that the run is still training
    (job,) = [j for j in slurm_cluster.cmd("squeue", "-h", "-o", "%i").split() if j.endswith("_1")]
    slurm_cluster.cmd("scontrol", "requeue", job)
    wait_for(lambda: slurm_cluster.state(job) == "PENDING", f"job {job} back in the queue", 60)
    slurm_cluster.cmd(
        "scontrol", "update", f"JobId={job}", "StartTime=now"
    )  # Slurm holds requeued jobs ~2 min
    expected = {seed: in_process(seed, epochs) for seed in (0, 1)}  # while the cluster trains
    assert driver.wait(timeout=600) == 0, log.read_text()[-3000:]

    runs = runs_by_seed(uri)
    for seed in (0, 1):
        assert runs[seed].info.status == "FINISHED"
        assert {k: runs[seed].data.metrics[k] for k in METRICS} == {k: expected[seed][k] for k in METRICS}
    assert runs[1].data.tags["slurm_job"] == job  # the run says which Slurm job trained it
    # resumed from a checkpoint (on a loaded machine the requeue may land after the last epoch's checkpoint,
    # while the run evaluates: it then resumes at the end and evaluates again)
    assert 1 <= int(runs[1].data.tags["resumed_at_epoch"]) <= epochs
    assert "resumed_at_epoch" not in runs[0].data.tags
    history = MlflowClient(uri).get_metric_history(runs[1].info.run_id, "train_loss")
    assert sorted({m.step for m in history}) == list(range(epochs))
    states = slurm_cluster.cmd("sacct", "-D", "-X", "-n", "-P", "-j", job, "-o", "State").split()
    assert states == ["REQUEUED", "COMPLETED"]  # Slurm ran it twice


def test_scancel_ends_the_run_killed_and_a_sigkilled_task_ends_it_failed(slurm_cluster, tmp_path):
    """Seed 0's job is cancelled, seed 1's task is killed with SIGKILL: the command returns (non-zero),
    the runs end KILLED and FAILED with Slurm's reason, and nothing is left RUNNING."""
    epochs, uri, log = 100, f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "driver.log"
    driver = start_run(tmp_path, uri, "0,1", epochs)
    for seed in (0, 1):
        wait_for(lambda s=seed: checkpointed(tmp_path, s, epochs), f"seed {seed} training", 600, driver, log)
    runs = runs_by_seed(uri)
    cancelled, killed = (runs[seed].data.tags["slurm_job"] for seed in (0, 1))
    slurm_cluster.cmd("scancel", cancelled)
    os.kill(int(runs[1].data.tags["pid"]), signal.SIGKILL)  # the task process (same host)
    assert driver.wait(timeout=300) == 1, log.read_text()[-3000:]

    output = log.read_text()
    runs = runs_by_seed(uri)
    assert runs[0].info.status == "KILLED"
    assert runs[0].data.tags["error"] == f"Slurm job {cancelled} CANCELLED by root"
    assert runs[1].info.status == "FAILED"
    # sacct words the ending by the step's signal, or by srun's exit code when the step record is not in yet
    reasons = [
        f"Slurm job {killed} FAILED: {why}"
        for why in ("a task was killed by signal 9 (SIGKILL)", "exit code 9")
    ]
    assert runs[1].data.tags["error"] in reasons
    assert runs[1].data.tags["error"] in " ".join(
        output.split()
    )  # the command's failure lines (rich may wrap)
    assert slurm_cluster.state(cancelled) == "CANCELLED" and slurm_cluster.state(killed) == "FAILED"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _slurm_running(store: Store) -> str | None:
    """Queue job 1's Slurm column once it says RUNNING (``ID RUNNING``)."""
    slurm = store.get(1).slurm or ""
    return slurm if slurm.endswith("RUNNING") else None


def test_serve_with_slurm_shows_the_slurm_job_and_its_state(slurm_cluster, tmp_path):
    """`serve --launcher slurm`: the page and `queue ls` show the job's Slurm id and state while it runs;
    `queue cancel` cancels the Slurm job too (CANCELLED), and its run ends KILLED."""
    uri, queue, port = f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "queue.db", _free_port()
    env = {**os.environ, "COLUMNS": "250"}
    sets = [arg for o in overrides(100) for arg in ("--set", o)]
    add = [REIDBENCH, "queue", "--queue", str(queue), "add", "run", "-m", "late_fusion", "-d", "synthetic"]
    subprocess.run([*add, "--seeds", "0", *sets, *execution(tmp_path, uri)], env=env, check=True)
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        argv = [REIDBENCH, "serve", "--launcher", "slurm", "--queue", str(queue), "--port", str(port)]
        server = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        store = Store(queue)
        running = wait_for(lambda: _slurm_running(store), "the Slurm job RUNNING", 600, server, log)
        slurm_id = running.split()[0]
        assert slurm_cluster.state(slurm_id) == "RUNNING"
        page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=300).read().decode()
        assert f"slurm {slurm_id} RUNNING" in page
        ls = [REIDBENCH, "queue", "--queue", str(queue), "ls"]
        assert f"{slurm_id} RUNNING" in subprocess.run(ls, env=env, capture_output=True, text=True).stdout

        wait_for(lambda: runs_by_seed(uri), "the job's MLflow run", 600, server, log)  # its task is training
        subprocess.run([REIDBENCH, "queue", "--queue", str(queue), "cancel", "1"], env=env, check=True)
        wait_for(lambda: store.get(1).status == "cancelled", "the job cancelled", 120, server, log)
        wait_for(lambda: slurm_cluster.state(slurm_id) == "CANCELLED", "Slurm cancelling the job", 60)
        # the scheduler asks again until the Slurm job has ended (it may be COMPLETING when the job ends)
        wait_for(lambda: store.get(1).slurm == f"{slurm_id} CANCELLED", "CANCELLED in the queue", 60)
        assert f"{slurm_id} CANCELLED" in subprocess.run(ls, env=env, capture_output=True, text=True).stdout
        (run,) = runs_by_seed(uri).values()
        assert run.info.status == "KILLED"
    finally:
        server.terminate()
        server.wait(timeout=30)
        pid = Store(queue).get(1).pid
        if Store(queue).get(1).status == "running" and pid:  # jobs outlive `serve`: stop the driver too
            os.killpg(pid, signal.SIGKILL)
