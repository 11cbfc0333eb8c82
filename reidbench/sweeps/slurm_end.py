"""A Slurm job that ended without a result: how it ended (``sacct``), and closing its MLflow run.

A task that Slurm cancels (``scancel``) or that dies from a signal (SIGKILL, the OOM killer) cannot close
its own MLflow run: submitit ignores SIGTERM (Slurm sends it before a preemption or a requeue too, where
the run must stay open to resume) and SIGKILL cannot be caught. The process that submitted the job closes
the run instead, found by the ``slurm_job`` tag of every run trained under Slurm
(:func:`reidbench.util.liveness.owner_tags`): KILLED when the job was cancelled or preempted, FAILED
with the reason otherwise.
"""

from __future__ import annotations

import pwd
import re
import shutil
import signal
import subprocess
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from reidbench.context import RunContext

__all__ = ["close_run", "command_lines", "job_end"]

KILLED_STATES = ("CANCELLED", "PREEMPTED")


def command_lines(argv: list[str], timeout_s: float = 20.0) -> list[str]:
    """The non-empty output lines of a Slurm command; [] when it is missing, fails or hangs."""
    if shutil.which(argv[0]) is None:
        return []
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in done.stdout.splitlines() if line.strip()] if done.returncode == 0 else []


def _exit_reason(exit_code: str, derived: str) -> str:
    """``ExitCode`` / ``DerivedExitCode`` (``code:signal``; derived: the worst step) in words."""
    codes = []
    for text in (derived, exit_code):  # a step's signal says more than the batch script's exit code
        match = re.fullmatch(r"(\d+):(\d+)", text.strip())
        if match:
            codes.append((int(match[1]), int(match[2])))
    for _, sig in codes:
        if sig:
            try:
                name = f" ({signal.Signals(sig).name})"
            except ValueError:
                name = ""
            return f"a task was killed by signal {sig}{name}"
    for code, _ in codes:
        if code:
            return f"exit code {code}"
    return ""


def _state_words(state: str) -> str:
    """``CANCELLED by 0`` -> ``CANCELLED by root``."""
    match = re.fullmatch(r"(\S+) by (\d+)", state)
    if not match:
        return state
    try:
        return f"{match[1]} by {pwd.getpwuid(int(match[2])).pw_name}"
    except KeyError:
        return f"{match[1]} by uid {match[2]}"


def job_end(job_id: str) -> tuple[str, str]:
    """``(STATE, description)`` of an ended Slurm job, e.g. ``("FAILED", "Slurm job 3_1 FAILED: a task was
    killed by signal 9 (SIGKILL)")``; STATE is ``UNKNOWN`` when sacct cannot tell."""
    rows = command_lines(["sacct", "-X", "-n", "-P", "-j", job_id, "-o", "State,ExitCode,DerivedExitCode"])
    if not rows:
        return "UNKNOWN", f"Slurm job {job_id} ended without a result (sacct does not know it)"
    state, exit_code, derived = (rows[-1].split("|") + ["", ""])[:3]
    reason = _exit_reason(exit_code, derived)
    text = f"Slurm job {job_id} {_state_words(state)}" + (f": {reason}" if reason else "")
    return (state.split() or ["UNKNOWN"])[0], text


def close_run(ctx: RunContext, job_id: str, status: str | None = None, reason: str | None = None) -> str:
    """End the RUNNING MLflow run that Slurm job ``job_id`` trained, with the reason as its ``error`` tag;
    the reason. Without ``status`` / ``reason`` they come from sacct (KILLED for a cancelled or preempted
    job, FAILED otherwise)."""
    if status is None or reason is None:
        state, reason = job_end(job_id)
        status = "KILLED" if state in KILLED_STATES else "FAILED"
    if not ctx.tracking_uri:
        return reason
    from reidbench import tracking

    query = f"tags.slurm_job = '{job_id}' and attributes.status = 'RUNNING'"
    for record in tracking.find_runs(ctx.tracking_uri, ctx.experiment, query):
        run = tracking.Run.reopen(ctx.tracking_uri, record.run_id)
        if run is not None:
            run.set_tags({"error": reason})
            run.finish(status)
    return reason
