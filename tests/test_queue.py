"""The job queue: concurrent adds, submit-time checks, the scheduler (failures, OOM, cancel, restart)."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reidbench.errors import UserError
from reidbench.queue import progress
from reidbench.queue.placement import DeviceStat, choose
from reidbench.queue.scheduler import Scheduler
from reidbench.queue.store import Store

HERE = Path(__file__).parent
FAKE = [sys.executable, str(HERE / "queue_fake_child.py")]


def _add_many(path: str, worker: int, n: int) -> None:
    store = Store(Path(path))
    for i in range(n):
        store.add("run", ["run", f"w{worker}", f"i{i}"], f"w{worker}-{i}", cwd="/")


def test_eight_processes_adding_at_once_lose_no_job(tmp_path):
    path = str(tmp_path / "queue.db")
    Store(Path(path))
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_add_many, args=(path, w, 25)) for w in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0] * 8
    jobs = Store(Path(path)).jobs()
    assert len(jobs) == 200
    assert len({j.id for j in jobs}) == 200
    assert sorted(j.summary for j in jobs) == sorted(f"w{w}-{i}" for w in range(8) for i in range(25))
    assert all(j.args == ["run", j.summary.split("-")[0], "i" + j.summary.split("-")[1]] for j in jobs)


def _queue_cli(path: Path, *args: str) -> None:
    import cli

    cli.cli.main(["queue", "--queue", str(path), *args], prog_name="reidbench", standalone_mode=False)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["run", "-m", "nope", "-d", "synthetic"], "unknown method 'nope'"),
        (["run", "-m", "late_fusion", "-d", "synthetic", "--set", "optim.lrr=1"], "Valid keys under optim"),
        (["run", "-m", "late_fusion", "-d", "synthetic", "--seeds", "a,b"], "comma-separated integers"),
        (["run", "-m", "late_fusion", "-d", "synthetic", "--gpus", "0"], "places jobs on GPUs itself"),
        (["run", "-m", "late_fusion", "-d", "synthetic", "--gpus-per-run", "0"], "at least 1"),
        (["run", "-m", "late_fusion", "-d", "synthetic", "--test-on", "nope"], "unknown dataset 'nope'"),
        (["run", "-m", "late_fusion", "-d", "synthetic", "--no-such-option"], "No such option"),
        (["run", "-m", "graft", "-d", "synthetic", "--recipe", "official"], "randomly initialised"),
        (["run", "-m", "late_fusion", "-d", "synthetic", "--recipe", "official"], "no published recipe"),
        (["ablate", "no_such_ablation"], "no_such_ablation"),
        (["tune", "-m", "late_fusion", "-d", "synthetic", "--trials", "0"], "--trials must be at least 1"),
    ],
)
def test_add_fails_like_the_command_and_stores_nothing(tmp_path, args, expected):
    path = tmp_path / "queue.db"
    import click

    with pytest.raises((UserError, click.UsageError), match=expected.replace("(", r"\(")):
        _queue_cli(path, "add", *args)
    assert Store(path).jobs() == []


def test_add_stores_the_checked_command_with_its_points(tmp_path, mlflow_uri):
    path = tmp_path / "queue.db"
    _queue_cli(path, "add", "--priority", "3", "run", "-m", "late_fusion", "-d", "synthetic", "--seeds",
               "0,1", "--set", "train.epochs=2", "--tracking-uri", mlflow_uri)  # fmt: skip
    (job,) = Store(path).jobs()
    assert job.status == "queued" and job.priority == 3 and job.units == 1
    assert job.args[:3] == ["run", "-m", "late_fusion"] and job.tracking_uri == mlflow_uri
    assert [p["name"] for p in job.points] == ["late_fusion@synthetic#s0", "late_fusion@synthetic#s1"]
    assert [p["epochs"] for p in job.points] == [2, 2]
    from reidbench.spec import make_spec

    assert (
        job.points[0]["config_hash"]
        == make_spec("late_fusion", "synthetic", 0, ["train.epochs=2"]).config_hash
    )


def test_priorities_then_age_decide_the_order(tmp_path):
    store = Store(tmp_path / "q.db")
    ids = [store.add("run", ["run"], f"j{i}", priority=p, cwd="/") for i, p in enumerate([0, 5, 0, 5])]
    assert [j.id for j in store.next_queued()] == [ids[1], ids[3], ids[0], ids[2]]


def test_placement_takes_free_devices_with_most_memory():
    stats = {
        "0": DeviceStat("0", "a", 80_000, 70_000, 10),  # 10 GB free
        "1": DeviceStat("1", "a", 80_000, 1_000, 5),  # 79 GB free
        "2": DeviceStat("2", "a", 80_000, 2_000, 99),  # busy
        "3": DeviceStat("3", "a", 80_000, 500, 0),
    }
    units = ["0", "1", "2", "3"]
    assert choose(units, set(), 2, stats, max_util=90) == ["1", "3"]
    assert choose(units, {"3"}, 2, stats, max_util=90) == ["0", "1"]
    assert choose(units, {"3"}, 2, stats, min_free_mb=20_000, max_util=90) is None
    assert choose(units, set(), 4) == units  # no NVML: by count


def test_oom_is_recognised_by_the_exception_type():
    assert progress.oom_error("OutOfMemoryError: CUDA out of memory. Tried to allocate 2 GiB")
    assert progress.oom_error("torch.OutOfMemoryError: CUDA out of memory")
    assert not progress.oom_error("RuntimeError: CUDA error: out of memory while CUDA ...")
    assert not progress.oom_error(None)


def _settle(scheduler: Scheduler, store: Store, timeout: float = 60) -> None:
    end = time.time() + timeout
    while time.time() < end:
        scheduler.step()
        if not store.jobs(("queued", "running")):
            return
        time.sleep(0.05)
    raise AssertionError(f"jobs did not settle: {[(j.id, j.status) for j in store.jobs()]}")


def _fake(store: Store, *args: str, **kw) -> int:
    return store.add("run", list(args), " ".join(args), cwd=str(HERE), **kw)


def test_a_failing_job_does_not_stop_the_queue_and_oom_is_retried_a_bounded_number(tmp_path):
    store = Store(tmp_path / "q.db")
    failing = _fake(store, "fail")
    oom = _fake(store, "oom")
    ok = _fake(store, "ok", "0.2")
    scheduler = Scheduler(store, ["cpu0"], child=FAKE, max_oom_retries=2)
    _settle(scheduler, store)
    fail_job, oom_job, ok_job = store.get(failing), store.get(oom), store.get(ok)
    # the error comes from the recorded exception; text mentioning CUDA is not an OOM, so no retry
    assert fail_job.status == "failed" and fail_job.attempts == 1
    assert fail_job.error == "RuntimeError: CUDA error: device-side assert triggered"
    assert oom_job.status == "failed" and oom_job.attempts == 3 and oom_job.oom_retries == 2
    assert oom_job.error.startswith("OutOfMemoryError: CUDA out of memory")
    assert ok_job.status == "finished" and ok_job.error is None
    assert "tick 0" in store.log_path(ok).read_text()  # logs are kept, also for a job that finished


def test_jobs_get_their_own_slots_and_the_next_starts_when_one_ends(tmp_path):
    store = Store(tmp_path / "q.db")
    ids = [_fake(store, "ok", "0.5") for _ in range(3)] + [_fake(store, "ok", "0.1", units=2)]
    scheduler = Scheduler(store, ["cpu0", "cpu1"], child=FAKE)
    scheduler.step()
    running = store.jobs(("running",))
    assert sorted(j.devices for j in running) == ["cpu0", "cpu1"]
    _settle(scheduler, store)
    jobs = [store.get(i) for i in ids]
    assert all(j.status == "finished" for j in jobs)
    assert jobs[3].devices == "cpu0,cpu1"
    assert jobs[2].started >= min(jobs[0].ended, jobs[1].ended)  # waited for a free slot
    too_big = _fake(store, "ok", "0", units=3)
    scheduler.step()
    assert store.get(too_big).status == "failed" and "needs 3 CPU slots" in store.get(too_big).error


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _wait(predicate, timeout: float = 30) -> None:
    end = time.time() + timeout
    while not predicate():
        if time.time() > end:
            raise AssertionError("timed out")
        time.sleep(0.05)


def test_cancel_stops_the_whole_process_group(tmp_path):
    store = Store(tmp_path / "q.db")
    job_id = _fake(store, "spawn")
    queued = _fake(store, "ok", "0")
    scheduler = Scheduler(store, ["cpu0"], child=FAKE, grace_s=5)
    scheduler.step()
    grandchild_file = Path(f"{store.result_path(job_id)}.grandchild")
    _wait(grandchild_file.is_file)
    grandchild, child = int(grandchild_file.read_text()), store.get(job_id).pid
    assert store.cancel(queued) == "cancelled"  # a queued job is cancelled at once, no KeyError
    assert store.cancel(job_id) == "stopping"
    _settle(scheduler, store)
    assert store.get(job_id).status == "cancelled" and store.get(queued).status == "cancelled"
    assert not _alive(child) and not _alive(grandchild)
    with pytest.raises(UserError, match="already ended"):
        store.cancel(job_id)
    store.retry(job_id)
    assert store.get(job_id).status == "queued"
    with pytest.raises(UserError, match="only failed or cancelled"):
        store.retry(job_id)


@pytest.mark.slow
def test_server_kill_9_and_restart_keeps_every_job_exactly_once(tmp_path):
    path = tmp_path / "q.db"
    store = Store(path)
    victim_id = _fake(store, "once")  # its process is killed while no server runs
    ids = [victim_id] + [_fake(store, "ok", "4") for _ in range(3)]
    server = [sys.executable, str(HERE / "queue_server.py"), str(path), "2"]
    env = {**os.environ, "PYTHONPATH": str(HERE.parent)}
    first = subprocess.Popen(server, env=env)
    _wait(lambda: len([j for j in store.jobs(("running",)) if j.pid]) == 2)
    running = {j.id: j.pid for j in store.jobs(("running",))}
    # both have started (written their start), so the victim's kill ends a first attempt for sure
    _wait(lambda: all(Path(f"{store.result_path(i)}.starts").exists() for i in running))
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert all(_alive(pid) for pid in running.values())  # the jobs outlive the server
    assert victim_id in running
    victim_pid = running[victim_id]
    os.killpg(victim_pid, signal.SIGKILL)  # it dies while no server runs: no result file
    _wait(lambda: not _alive(victim_pid))
    second = subprocess.Popen(server, env=env)
    try:
        _wait(lambda: all(store.get(i).status == "finished" for i in ids), timeout=60)
    finally:
        second.send_signal(signal.SIGKILL)
        second.wait()
    jobs = {i: store.get(i) for i in ids}
    assert len(store.jobs()) == 4
    for i, job in jobs.items():
        starts = Path(f"{store.result_path(i)}.starts").read_text().split()
        if i == victim_id:  # requeued once, trained again
            assert len(starts) == 2 and job.attempts == 2
        else:  # adopted or started once: never twice
            assert len(starts) == 1 and job.attempts == 1


def test_slurm_launcher_names_the_jobs_and_shows_their_slurm_state(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # stand-ins for Slurm's commands: they know queue job 1's Slurm job by its name
    for name, line in (("squeue", "4242|RUNNING"), ("sacct", "4242|COMPLETED")):
        script = bin_dir / name
        script.write_text(f'#!/bin/sh\ncase "$*" in *"--name reidbench-q1 "*) echo "{line}";; esac\n')
        script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    store = Store(tmp_path / "q.db")
    job_id = _fake(store, "ok", "1")
    scheduler = Scheduler(store, [], launcher="slurm", child=FAKE, slurm_every_s=0)
    argv, env = scheduler.command(store.get(job_id), [])
    assert argv[-4:] == ["--launcher", "slurm", "--slurm-set", "name=reidbench-q1"]
    assert "CUDA_VISIBLE_DEVICES" not in env or env["CUDA_VISIBLE_DEVICES"] == os.environ.get(
        "CUDA_VISIBLE_DEVICES"
    )
    scheduler.step()
    scheduler.step()
    assert store.get(job_id).status == "running"
    assert store.get(job_id).slurm == "4242 RUNNING"  # squeue's live state wins over sacct's
    _settle(scheduler, store)
    assert store.get(job_id).status == "finished" and store.get(job_id).slurm == "4242 RUNNING"
    (bin_dir / "squeue").write_text("#!/bin/sh\n")  # gone from the queue: sacct's final state
    from reidbench.queue.slurm_state import slurm_state

    assert slurm_state(job_id) == "4242 COMPLETED"
    scheduler.refresh_slurm()  # an ended job whose Slurm job had not ended is asked again
    assert store.get(job_id).slurm == "4242 COMPLETED"


def test_add_for_a_slurm_server_accepts_slurm_options(tmp_path, mlflow_uri):
    path = tmp_path / "queue.db"
    args = ["-m", "late_fusion", "-d", "synthetic", "--seeds", "0", "--partition", "gpu", "--slurm-set"]
    _queue_cli(path, "add", "run", *args, "mem_gb=64", "--tracking-uri", mlflow_uri)
    (job,) = Store(path).jobs()
    assert "--partition" in job.args
    with pytest.raises(UserError, match="not of the form key=value"):
        _queue_cli(path, "add", "run", "-m", "late_fusion", "-d", "synthetic", "--slurm-set", "novalue")


def test_nvml_figures_are_read_per_device(monkeypatch):
    import types

    from reidbench.queue.placement import read_gpus

    class Mem:
        total, used = 80 * 2**30, 20 * 2**30

    fake = types.SimpleNamespace(
        nvmlInit=lambda: None,
        nvmlShutdown=lambda: None,
        nvmlDeviceGetHandleByIndex=lambda i: i,
        nvmlDeviceGetMemoryInfo=lambda h: Mem(),
        nvmlDeviceGetUtilizationRates=lambda h: types.SimpleNamespace(gpu=10 * h),
        nvmlDeviceGetName=lambda h: b"NVIDIA H200",
    )
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    stats = read_gpus(["0", "3"])
    assert stats["3"] == DeviceStat("3", "NVIDIA H200", 80 * 1024, 20 * 1024, 30.0)
    assert stats["0"].free_mb == 60 * 1024


def test_progress_and_kill_read_and_end_the_jobs_mlflow_runs(tmp_path, mlflow_uri):
    from mlflow.tracking import MlflowClient

    from reidbench import tracking

    exp = tracking.prepare(mlflow_uri, "reidbench")
    client = MlflowClient(mlflow_uri)
    store = Store(tmp_path / "q.db")
    points = [
        {"name": "a", "config_hash": "h1", "epochs": 5},
        {"name": "b", "config_hash": "h2", "epochs": 5},
    ]
    job_id = store.add(
        "run", ["run"], "x", cwd="/", points=points, tracking_uri=mlflow_uri, experiment="reidbench"
    )
    store.update(job_id, status="running", started=time.time())
    done = client.create_run(exp, tags={"run_kind": "run", "config_hash": "h1"})
    client.log_metric(done.info.run_id, "mAP", 0.25)
    client.set_terminated(done.info.run_id, "FINISHED")
    live = client.create_run(exp, tags={"run_kind": "run", "config_hash": "h2"})
    for step in range(3):  # three epochs done
        client.log_metric(live.info.run_id, "loss", 1.0 / (step + 1), step=step)
    other = client.create_run(exp, tags={"run_kind": "run", "config_hash": "not-this-job"})
    runs = progress.job_runs(store.get(job_id))
    assert (runs.epochs_done, runs.epochs_total) == (5 + 3, 10)
    assert runs.map == 0.25 and runs.running == [live.info.run_id]
    assert progress.end_running(store.get(job_id)) == 1
    assert client.get_run(live.info.run_id).info.status == "KILLED"
    assert client.get_run(other.info.run_id).info.status == "RUNNING"


def test_queue_logs_prints_and_follows_until_the_job_ends(tmp_path, capsys):
    store = Store(tmp_path / "q.db")
    job_id = store.add("run", ["run"], "x", cwd="/")
    store.update(job_id, status="running")
    log = store.log_path(job_id)
    log.parent.mkdir(parents=True)
    log.write_text("first\n")

    def later():
        time.sleep(0.8)
        with log.open("a") as f:
            f.write("second\n")
        store.update(job_id, status="finished")

    import threading

    writer = threading.Thread(target=later)
    writer.start()
    _queue_cli(tmp_path / "q.db", "logs", str(job_id), "--follow")
    writer.join()
    assert capsys.readouterr().out == "first\nsecond\n"


@pytest.mark.slow
def test_a_real_job_that_fails_is_marked_with_the_error_its_run_recorded(
    tmp_path, mlflow_uri, synthetic_dataset
):
    from mlflow.tracking import MlflowClient

    from tests.conftest import TINY

    path = tmp_path / "q.db"
    overrides = [a for o in [*TINY, "optim.lr=1e30"] for a in ("--set", o)]  # the loss goes NaN
    _queue_cli(path, "add", "run", "-m", "late_fusion", "-d", "synthetic", "--seeds", "0", *overrides,
               "--tracking-uri", mlflow_uri, "-q")  # fmt: skip
    store = Store(path)
    (job,) = store.jobs()
    scheduler = Scheduler(store, ["cpu0"])  # the real child: python -m reidbench.cli.child
    _settle(scheduler, store, timeout=300)
    job = store.get(job.id)
    assert job.status == "failed", store.log_path(job.id).read_text()
    client = MlflowClient(mlflow_uri)
    (run,) = client.search_runs(
        [client.get_experiment_by_name("reidbench").experiment_id], "tags.run_kind = 'run'"
    )
    assert run.info.status == "FAILED"
    assert job.error == run.data.tags["error"]  # the recorded exception, not a line of the log
    assert job.run_ids == [run.info.run_id] and job.attempts == 1  # not an OOM: no retry


def test_secrets_in_the_environment_are_not_written_to_the_queue(monkeypatch):
    from reidbench.cli.submit import submitter_env

    monkeypatch.setenv("REIDBENCH_SERVE_TOKEN", "s3cret")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "pw")
    monkeypatch.setenv("REIDBENCH_DATA", "/data")
    env = submitter_env()
    assert env["REIDBENCH_DATA"] == "/data"
    assert "REIDBENCH_SERVE_TOKEN" not in env and "MLFLOW_TRACKING_PASSWORD" not in env
