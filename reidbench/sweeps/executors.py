"""Where sweep points run: in this process, in a local pool of GPU subprocesses, or on Slurm (submitit).

Every executor takes a list of :class:`Job` and returns one :class:`RunResult` per job (a failed point is a
result with an error, never an exception), calling ``on_done`` as each one ends. ``shows_run_progress``
says whether the runs' own progress bars reach the user (only for runs in this process); otherwise the
sweep shows one bar over its points.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import submitit
from submitit.core.utils import UncompletedJobError

from reidbench.config import parse_override
from reidbench.context import RunResult
from reidbench.errors import UserError
from reidbench.parallel import distributed, launch
from reidbench.sweeps import jobs as jobs_io
from reidbench.sweeps import slurm_end
from reidbench.sweeps.jobs import Job

__all__ = ["Executor", "InProcess", "Job", "LocalPool", "Slurm", "build", "run_job"]


OnDone = Callable[[RunResult], None]


class Executor(Protocol):
    """Runs jobs somewhere; says how many processes each run gets and whether its progress bars show."""

    nprocs: int  # processes (ranks) per run
    shows_run_progress: bool  # the runs' own progress bars reach the user (runs in this process)

    def run(self, jobs: list[Job], on_done: OnDone | None = None) -> list[RunResult]: ...


def run_job(job: Job) -> RunResult:
    """Run ``job`` in this process; joins the process group first when a torchrun-style environment
    says so."""
    from reidbench.runner import pick_device, run_one

    env = distributed.env_from_os()
    device = distributed.device_for(env, pick_device(job.context.device))
    if env is not None:
        distributed.init(env, device)
    try:
        return run_one(job.spec, job.context, device)
    finally:
        if env is not None:
            distributed.shutdown()


@dataclass
class InProcess:
    """Runs the jobs one after the other in this process (the default on CPU)."""

    nprocs: int = 1
    shows_run_progress: bool = True

    def run(self, jobs: list[Job], on_done: OnDone | None = None) -> list[RunResult]:
        results = []
        for job in jobs:
            try:
                result = run_job(job)
            except Exception as exc:  # the run is marked FAILED in MLflow; the sweep goes on
                result = RunResult(job.spec, error=jobs_io.describe(exc))
            results.append(result)
            if on_done:
                on_done(result)
        return results


def worker_command(job_dir: Path) -> list[str]:
    """The subprocess that runs the job stored in ``job_dir`` (see reidbench.sweeps.worker)."""
    return [sys.executable, "-m", "reidbench.sweeps.worker", str(job_dir)]


@dataclass
class LocalPool:
    """Runs each job in a subprocess that sees only its slot's devices; the next starts when one ends.

    ``slots``: one entry per concurrent run, the device ids it gets as CUDA_VISIBLE_DEVICES (None: leave the
    environment as is, e.g. for CPU runs). ``threads``: when set, each worker's OMP_NUM_THREADS (CPU workers
    sharing the cores). ``command(job_dir)`` is the worker command line.
    """

    slots: list[list[str] | None]
    work_dir: Path
    nprocs: int = 1
    threads: int | None = None
    command: Callable[[Path], list[str]] = worker_command
    poll_s: float = 0.2
    shows_run_progress: bool = False

    def run(self, jobs: list[Job], on_done: OnDone | None = None) -> list[RunResult]:
        queue = deque(enumerate(jobs))
        free = list(range(len(self.slots)))
        running: dict[int, tuple[subprocess.Popen, Job, Path, Any, int]] = {}
        results: dict[int, RunResult] = {}
        try:
            while queue or running:
                while queue and free:
                    index, job = queue.popleft()
                    slot = free.pop(0)
                    job_dir = self.work_dir / f"{index:04d}-{_safe(job.spec.name)}"
                    jobs_io.write_job(job, job_dir)
                    env = dict(os.environ)
                    if self.slots[slot] is not None:
                        env["CUDA_VISIBLE_DEVICES"] = ",".join(self.slots[slot])
                    if self.threads is not None:
                        env["OMP_NUM_THREADS"] = str(self.threads)
                    log = (job_dir / "log.txt").open("ab")
                    proc = subprocess.Popen(
                        self.command(job_dir), env=env, stdout=log, stderr=subprocess.STDOUT
                    )
                    running[slot] = (proc, job, job_dir, log, index)
                for slot, (proc, job, job_dir, log, index) in list(running.items()):
                    if proc.poll() is None:
                        continue
                    log.close()
                    results[index] = jobs_io.read_result(job, job_dir, proc.returncode)
                    del running[slot]
                    free.append(slot)
                    if on_done:
                        on_done(results[index])
                if running:
                    time.sleep(self.poll_s)
        except BaseException:
            launch.terminate([proc for proc, *_ in running.values()])
            raise
        return [results[i] for i in range(len(jobs))]


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.@-]+", "_", name)


class SlurmTask(submitit.helpers.Checkpointable):
    """One job as a submitit task; requeued on preemption or timeout, it resumes from its checkpoint."""

    def __init__(self, job: Job) -> None:
        self.job = job

    def __call__(self) -> dict[str, Any] | None:
        if self.job.nprocs > 1:  # submitit starts one task per rank but does not set the torch variables
            submitit.helpers.TorchDistributedEnvironment().export(
                set_cuda_visible_devices=False, overwrite=True
            )
        result = run_job(self.job)
        if int(os.environ.get("RANK", "0")) != 0:
            return None
        return {"metrics": result.metrics, "run_id": result.run_id}


@dataclass
class Slurm:
    """Submits the jobs as a Slurm array through submitit and waits for them.

    ``cluster``: None picks Slurm when ``srun`` exists (submitit's AutoExecutor); ``"local"`` runs the same
    code path in local subprocesses (tests). ``params``: extra submitit parameters (slurm_account,
    mem_gb, ...).
    """

    folder: Path
    partition: str | None = None
    timeout_min: int = 24 * 60
    gpus_per_run: int = 1  # tasks (ranks) per run, one GPU each
    cpus_per_task: int = 8
    params: dict[str, Any] = field(default_factory=dict)
    cluster: str | None = None
    use_gpus: bool = True  # False for CPU-only runs (--device cpu)
    poll_s: float = 5.0
    state_every_s: float = 15.0  # how often Slurm is asked for the states of the submitted jobs
    shows_run_progress: bool = False

    @property
    def nprocs(self) -> int:
        """Processes (ranks) per run."""
        return self.gpus_per_run

    def executor(self) -> submitit.AutoExecutor:
        executor = submitit.AutoExecutor(folder=self.folder / "%j", cluster=self.cluster)
        params: dict[str, Any] = {
            "timeout_min": self.timeout_min,
            "nodes": 1,
            "tasks_per_node": self.gpus_per_run,
            "gpus_per_node": self.gpus_per_run if self.use_gpus else 0,
            "cpus_per_task": self.cpus_per_task,
            "name": "reidbench",
        }
        if self.partition:
            params["slurm_partition"] = self.partition
        params.update(self.params)
        executor.update_parameters(**params)
        return executor

    def run(self, jobs: list[Job], on_done: OnDone | None = None) -> list[RunResult]:
        if not jobs:
            return []
        executor = self.executor()
        with executor.batch():
            submitted = [executor.submit(SlurmTask(job)) for job in jobs]
        pending = dict(enumerate(submitted))
        results: dict[int, RunResult] = {}
        asked = time.monotonic()
        try:
            while pending:
                if time.monotonic() - asked > self.state_every_s:  # one sacct call for all the jobs
                    _ask_slurm(next(iter(pending.values())))
                    asked = time.monotonic()
                for index, sjob in list(pending.items()):
                    if not sjob.done():
                        continue
                    results[index] = _outcome(jobs[index], sjob)
                    del pending[index]
                    if on_done:
                        on_done(results[index])
                if pending:
                    time.sleep(self.poll_s)
        except BaseException:  # interrupted (Ctrl-C, the queue's cancel): nothing is left running
            _cancel(jobs, pending)
            raise
        return [results[i] for i in range(len(jobs))]


def _ask_slurm(sjob: submitit.Job) -> None:
    """Refresh the states of every submitted Slurm job now (submitit alone asks less and less often, up
    to every 10 minutes, so a job that died without a result would go unnoticed for that long)."""
    if isinstance(sjob, submitit.SlurmJob):
        sjob.watcher.update()


def _cancel(jobs: list[Job], pending: dict[int, submitit.Job]) -> None:
    """Cancel the jobs still pending; their MLflow runs end KILLED."""
    for index, sjob in pending.items():
        sjob.cancel(check=False)
        if isinstance(sjob, submitit.SlurmJob):
            reason = f"Slurm job {sjob.job_id} cancelled: the command that submitted it was interrupted"
            slurm_end.close_run(jobs[index].context, sjob.job_id, "KILLED", reason)


def _outcome(job: Job, sjob: submitit.Job) -> RunResult:
    """The result of a finished submitit job; a job that ended without one (cancelled, killed) has its
    MLflow run closed here, since its task could not (see reidbench.sweeps.slurm_end)."""
    try:
        data = sjob.results()[0]
        return RunResult(job.spec, data["metrics"], data.get("run_id"), log=sjob.paths.stdout)
    except UncompletedJobError as exc:  # no result: Slurm ended the job (scancel, a signal, a time limit)
        error = _last_line(str(exc))
        if isinstance(sjob, submitit.SlurmJob):
            error = slurm_end.close_run(job.context, sjob.job_id)
        return RunResult(job.spec, error=error, log=sjob.paths.stderr)
    except Exception as exc:  # submitit's FailedJobError carries the remote traceback
        return RunResult(job.spec, error=_last_line(str(exc)), log=sjob.paths.stderr)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    errors = [line for line in lines if re.match(r"^[\w.]+(Error|Exception|Interrupt)\b", line)]
    return (errors or lines or ["unknown error"])[-1]


def parse_gpus(text: str) -> list[str]:
    """``0-3,6`` -> ["0", "1", "2", "3", "6"]."""
    ids: list[str] = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not match or (match[2] and int(match[2]) < int(match[1])):
            raise UserError(f"--gpus {text!r}: expected device ids and ranges like 0-7 or 0,1,4-5")
        ids += [str(i) for i in range(int(match[1]), int(match[2] or match[1]) + 1)]
    if len(set(ids)) != len(ids):
        raise UserError(f"--gpus {text!r} lists a device twice")
    return ids


def build(
    device: str,
    work_dir: Path,
    gpus: str | None = None,
    gpus_per_run: int = 1,
    launcher: str = "local",
    partition: str | None = None,
    timeout_min: int = 24 * 60,
    cpus_per_task: int = 8,
    slurm_set: list[str] = (),
    workers: int = 1,
) -> Executor:
    """The executor the command-line options ask for (``workers``: CPU runs at once, see cpu_pool)."""
    if gpus_per_run < 1:
        raise UserError(f"--gpus-per-run must be at least 1, got {gpus_per_run}")
    if workers < 1:
        raise UserError(f"--workers must be at least 1, got {workers}")
    if workers > 1 and (gpus or launcher == "slurm"):
        raise UserError("--workers runs points side by side on this machine's CPU; drop --gpus / --launcher")
    if launcher == "slurm":
        if gpus:
            raise UserError(
                "--gpus picks devices of this machine; on Slurm use --gpus-per-run (and --partition)"
            )
        params = dict(parse_override(s) for s in slurm_set)
        return Slurm(
            work_dir / "slurm",
            partition,
            timeout_min,
            gpus_per_run,
            cpus_per_task,
            params,
            use_gpus=device != "cpu",
        )
    if slurm_set or partition:
        raise UserError("--partition and --slurm-set only apply with --launcher slurm")
    if gpus:
        ids = parse_gpus(gpus)
        if len(ids) % gpus_per_run:
            raise UserError(
                f"--gpus {gpus} gives {len(ids)} devices, not a multiple of --gpus-per-run {gpus_per_run}"
            )
        slots = [ids[i : i + gpus_per_run] for i in range(0, len(ids), gpus_per_run)]
        return LocalPool(slots, _jobs_dir(work_dir), gpus_per_run)
    if workers > 1:
        return cpu_pool(workers, gpus_per_run, _jobs_dir(work_dir))
    if gpus_per_run > 1:
        return LocalPool([None], _jobs_dir(work_dir), gpus_per_run)
    return InProcess()


def cpu_pool(workers: int, nprocs: int, jobs_dir: Path) -> LocalPool:
    """``workers`` runs at once as worker processes, the CPU cores shared out between their processes
    (OMP_NUM_THREADS = cores // (workers x nprocs), at least 1, at most this process's OMP_NUM_THREADS when
    set). For the small models a CPU trains, a few one-thread processes beat one process on every core, and
    on a shared machine they do not stall in OpenMP barriers waiting for a descheduled thread."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    threads = max(1, cores // (workers * nprocs))
    limit = os.environ.get("OMP_NUM_THREADS", "")
    if limit.isdigit() and int(limit) > 0:
        threads = min(threads, int(limit))
    return LocalPool([None] * workers, jobs_dir, nprocs, threads=threads)


def _jobs_dir(work_dir: Path) -> Path:
    return work_dir / "jobs" / time.strftime(f"%Y%m%d-%H%M%S-{os.getpid()}")
