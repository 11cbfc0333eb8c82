"""Starts queued jobs on free devices, watches them end, stops cancelled ones, adopts them after a restart.

Each job runs as an argv list (never a shell): ``python -m reidbench.cli.child RESULT reidbench-args``,
in its own process group and session (so a killed server leaves it running and a cancel reaches all its
workers), with stdout and stderr in its log file under the queue's log dir. The store is the only state:
a job is moved ``queued -> running`` by a compare-and-set before its process starts, so a restarted
server never starts it twice; :meth:`Scheduler.recover` adopts a running job whose process is alive (same
host, same pid, its command line names the job's result file) and requeues one whose process is gone
without a result (the run resumes from its checkpoint).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from reidbench.queue import progress
from reidbench.queue.placement import DeviceStat, choose, read_gpus
from reidbench.queue.slurm_state import job_name, settling, slurm_state
from reidbench.queue.store import TERMINAL, JobRow, Store
from reidbench.util.liveness import _process_exists

__all__ = ["CHILD", "Scheduler"]

CHILD = [sys.executable, "-m", "reidbench.cli.child"]


def _zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


@dataclass
class _Proc:
    """A job's process: started here (``popen``) or adopted after a restart (pid only)."""

    pid: int
    popen: subprocess.Popen | None = None
    term_sent: float | None = None

    def poll(self) -> bool:
        """Whether it ended."""
        if self.popen is not None:
            return self.popen.poll() is not None
        return not _process_exists(self.pid) or _zombie(self.pid)

    def signal(self, sig: int) -> None:
        try:
            os.killpg(self.pid, sig)  # its own process group: the pid is the group id
        except ProcessLookupError:
            pass


@dataclass
class Scheduler:
    """Runs the jobs of ``store`` on ``units`` (GPU ids, or CPU slot names when ``gpus`` is False).

    ``launcher="slurm"``: every job is handed to Slurm (``--launcher slurm``, submitit) and at most
    ``max_running`` driver processes run here. ``max_oom_retries``: how often a job whose run failed with
    a CUDA out-of-memory error is queued again. ``read_stats``: NVML reader (tests pass their own).
    """

    store: Store
    units: list[str]
    gpus: bool = False
    launcher: str = "local"
    max_running: int = 64
    max_oom_retries: int = 2
    min_free_mb: float = 0.0
    max_util: float = 100.0
    grace_s: float = 10.0
    poll_s: float = 0.5
    child: list[str] = field(default_factory=lambda: list(CHILD))
    read_stats: Callable[[list[str]], dict[str, DeviceStat] | None] = read_gpus
    host: str = field(default_factory=socket.gethostname)
    slurm_every_s: float = 10.0
    procs: dict[int, _Proc] = field(default_factory=dict)
    wake: threading.Event = field(default_factory=threading.Event)
    _slurm_checked: float = 0.0

    # -- the loop -------------------------------------------------------------------------------------
    def run_forever(self, stop: threading.Event) -> None:
        """Recover, then step every ``poll_s`` (sooner when ``wake`` is set) until ``stop`` is set."""
        self.recover()
        while not stop.is_set():
            try:
                self.step()
            except Exception:  # a busy store or an unreadable MLflow must not stop the queue
                traceback.print_exc()
                time.sleep(self.poll_s)
            self.wake.wait(self.poll_s)
            self.wake.clear()

    def step(self) -> None:
        """Reap ended jobs, stop cancelled ones, start what fits."""
        running = {j.id: j for j in self.store.jobs(("running",))}
        for job_id, proc in list(self.procs.items()):
            job = running.get(job_id)
            if job is None:  # changed behind our back (should not happen); forget the process
                del self.procs[job_id]
                continue
            if proc.poll():
                del self.procs[job_id]
                self._finish(job, self._returncode(job, proc))
            elif job.cancel_requested:
                self._stop(proc)
        if self.launcher == "slurm" and time.time() - self._slurm_checked > self.slurm_every_s:
            self._slurm_checked = time.time()
            self.refresh_slurm()
        self._place()

    def refresh_slurm(self) -> None:
        """Store the Slurm ids and states of the running jobs (shown by ``queue ls`` and the page), and of
        the jobs that ended while their Slurm jobs had not yet (see slurm_state.settling)."""
        now = time.time()
        for job in self.store.jobs(("running", *TERMINAL)):
            if job.status != "running" and not settling(job.slurm, job.ended, now):
                continue
            state = slurm_state(job.id)
            if state and state != job.slurm:
                self.store.update(job.id, (job.status,), slurm=state)

    def recover(self) -> None:
        """After a (re)start: adopt the running jobs whose process lives, settle the others."""
        for job in self.store.jobs(("running",)):
            if job.id in self.procs:
                continue
            if job.host == self.host and job.pid and self._is_job_process(job):
                self.procs[job.id] = _Proc(job.pid)
                continue
            if job.host not in (None, self.host):
                continue  # another machine's job: its server settles it
            result = self._result(job)
            if result is not None:
                self._finish(job, int(result.get("exit", 1)))
            elif job.cancel_requested:
                self._close(job, "cancelled", "cancelled (its process ended while no server ran)")
            else:  # died with no word (kill -9, reboot): train it again, it resumes from its checkpoint
                progress_runs = _safe_end(job, "FAILED")
                self.store.update(
                    job.id,
                    ("running",),
                    status="queued",
                    pid=None,
                    devices=None,
                    error=f"requeued: its process {job.pid} ended without a result" + progress_runs,
                )

    # -- starting -------------------------------------------------------------------------------------
    def held(self) -> dict[str, int]:
        """Unit -> id of the job holding it."""
        out = {}
        for job in self.store.jobs(("running",)):
            for unit in (job.devices or "").split(","):
                if unit:
                    out[unit] = job.id
        return out

    def _place(self) -> None:
        queued = self.store.next_queued()
        if not queued:
            return
        held = set(self.held())
        stats = self.read_stats(self.units) if self.gpus else None
        for job in queued:
            if self.launcher == "slurm":
                if len(self.procs) >= self.max_running:
                    return
                self._start(job, [])
                continue
            if job.units > len(self.units):
                what = "GPUs" if self.gpus else "CPU slots"
                self._close(
                    job,
                    "failed",
                    f"needs {job.units} {what} (--gpus-per-run) but this server has {len(self.units)}",
                    expect=("queued",),
                )
                continue
            devices = choose(self.units, held, job.units, stats, self.min_free_mb, self.max_util)
            if devices is None:
                return  # strict order: a big job at the head is not starved by small ones behind it
            if self._start(job, devices):
                held |= set(devices)

    def _start(self, job: JobRow, devices: list[str]) -> bool:
        claimed = self.store.update(
            job.id,
            ("queued",),
            status="running",
            started=time.time(),
            ended=None,
            devices=",".join(devices),
            host=self.host,
            pid=None,
            attempts=job.attempts + 1,
        )
        if not claimed:  # cancelled meanwhile
            return False
        result = self.store.result_path(job.id)
        result.parent.mkdir(parents=True, exist_ok=True)
        result.unlink(missing_ok=True)
        argv, env = self.command(job, devices)
        with self.store.log_path(job.id).open("ab") as log:
            log.write(f"== attempt {job.attempts + 1}: {' '.join(argv)}\n".encode())
            log.flush()
            try:
                popen = subprocess.Popen(
                    argv,
                    cwd=job.cwd if Path(job.cwd).is_dir() else None,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            except OSError as exc:
                self._close(job, "failed", f"{type(exc).__name__}: {exc}")
                return False
        self.store.update(job.id, ("running",), pid=popen.pid)
        self.procs[job.id] = _Proc(popen.pid, popen)
        return True

    def command(self, job: JobRow, devices: list[str]) -> tuple[list[str], dict[str, str]]:
        """The job's argv and environment on ``devices``."""
        env = {**os.environ, **job.env}
        extra: list[str] = []
        if self.launcher == "slurm":  # submitit submits the runs; their Slurm name finds them again
            extra = ["--launcher", "slurm", "--slurm-set", f"name={job_name(job.id)}"]
        elif self.gpus:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(devices)
            if job.units > 1:  # the run's own pool starts one DDP process per device
                extra = ["--gpus", ",".join(devices)]
        else:
            env.setdefault("CUDA_VISIBLE_DEVICES", "")
        return [*self.child, str(self.store.result_path(job.id)), *job.args, *extra], env

    # -- ending ---------------------------------------------------------------------------------------
    def _stop(self, proc: _Proc) -> None:
        if proc.term_sent is None:
            proc.signal(signal.SIGTERM)
            proc.term_sent = time.time()
        elif time.time() - proc.term_sent > self.grace_s:
            proc.signal(signal.SIGKILL)

    def _returncode(self, job: JobRow, proc: _Proc) -> int:
        result = self._result(job)
        if result is not None:
            return int(result.get("exit", 1))
        if proc.popen is not None:
            return int(proc.popen.returncode)
        return -9

    def _result(self, job: JobRow) -> dict | None:
        try:
            return json.loads(self.store.result_path(job.id).read_text())
        except (OSError, ValueError):
            return None

    def _finish(self, job: JobRow, code: int) -> None:
        """Settle a job whose process ended with ``code``."""
        runs = _safe_runs(job)
        if job.cancel_requested:
            _safe_end(job, "KILLED")
            self._close(job, "cancelled", "cancelled", runs)
            return
        if code == 0:
            self._close(job, "finished", None, runs)
            return
        result = self._result(job) or {}
        error = (runs.errors[0] if runs and runs.errors else None) or result.get("error")
        error = error or (f"killed by signal {-code}" if code < 0 else f"exit code {code}")
        _safe_end(job, "FAILED")
        if progress.oom_error(error) and job.oom_retries < self.max_oom_retries:
            self.store.update(
                job.id,
                ("running",),
                status="queued",
                pid=None,
                devices=None,
                oom_retries=job.oom_retries + 1,
                error=f"requeued ({job.oom_retries + 1}/{self.max_oom_retries}) after {error}",
            )
            return
        self._close(job, "failed", error, runs)

    def _close(
        self,
        job: JobRow,
        status: str,
        error: str | None,
        runs: progress.JobRuns | None = None,
        expect: tuple[str, ...] = ("running",),
    ) -> None:
        values = {"status": status, "ended": time.time(), "error": error}
        if runs is not None:
            values.update(map=runs.map, run_ids=runs.run_ids, experiment_id=runs.experiment_id)
        if self.launcher == "slurm":
            values["slurm"] = slurm_state(job.id) or job.slurm
        self.store.update(job.id, expect, **values)

    def stop_all(self) -> None:
        """Leave the jobs running (they are adopted on the next start); only forget them here."""
        self.procs.clear()

    def _is_job_process(self, job: JobRow) -> bool:
        return (
            _process_exists(job.pid)
            and not _zombie(job.pid)
            and str(self.store.result_path(job.id)) in _cmdline(job.pid)
        )


def _safe_runs(job: JobRow) -> progress.JobRuns | None:
    try:
        return progress.job_runs(job, with_progress=False)
    except Exception:  # an unreadable store must not stop the queue
        return None


def _safe_end(job: JobRow, status: str) -> str:
    try:
        n = progress.end_running(job, status)
    except Exception:
        return ""
    return f"; {n} MLflow run(s) ended {status}" if n else ""
