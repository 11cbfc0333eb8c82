"""The Slurm side of a queued job under ``serve --launcher slurm``: its Slurm jobs' ids and states.

The scheduler names every Slurm job of queue job N ``reidbench-qN`` (submitit's ``name`` parameter, passed
as ``--slurm-set name=reidbench-qN``), so ``squeue`` / ``sacct`` find them by name without reading
submitit's folders.
"""

from __future__ import annotations

import shutil
import subprocess

__all__ = ["job_name", "slurm_state"]


def job_name(job_id: int) -> str:
    """The Slurm job name of queue job ``job_id``."""
    return f"reidbench-q{int(job_id)}"


def _lines(argv: list[str]) -> list[str]:
    if shutil.which(argv[0]) is None:
        return []
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in done.stdout.splitlines() if line.strip()] if done.returncode == 0 else []


def slurm_state(job_id: int) -> str | None:
    """``"ID STATE, ..."`` of the queue job's Slurm jobs: live ones from squeue, ended ones from sacct;
    None when Slurm knows none (or its commands are missing)."""
    name = job_name(job_id)
    states: dict[str, str] = {}
    for line in _lines(["sacct", "--name", name, "--noheader", "--allocations", "--parsable2",
                        "--format", "JobID,State"]):  # fmt: skip
        slurm_id, _, state = line.partition("|")
        states[slurm_id] = state.split()[0] if state else "?"
    for line in _lines(["squeue", "--name", name, "--noheader", "--format", "%i|%T"]):
        slurm_id, _, state = line.partition("|")
        states[slurm_id] = state or "?"
    return ", ".join(f"{k} {v}" for k, v in sorted(states.items())) or None
