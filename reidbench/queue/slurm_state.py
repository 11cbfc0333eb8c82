"""The Slurm side of a queued job under ``serve --launcher slurm``: its Slurm jobs' ids and states.

The scheduler names every Slurm job of queue job N ``reidbench-qN`` (submitit's ``name`` parameter, passed
as ``--slurm-set name=reidbench-qN``), so ``squeue`` / ``sacct`` find them by name without reading
submitit's folders.
"""

from __future__ import annotations

from reidbench.sweeps.slurm_end import command_lines as _lines

__all__ = ["job_name", "settling", "slurm_state"]

# Slurm states a job leaves by itself (squeue's names); a queue job may end while its Slurm jobs are in one
LIVE_STATES = ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED",
               "RESIZING", "SIGNALING", "STAGE_OUT", "SUSPENDED", "?")  # fmt: skip
SETTLE_S = 3600.0  # how long after its end a queue job's Slurm states are still refreshed


def job_name(job_id: int) -> str:
    """The Slurm job name of queue job ``job_id``."""
    return f"reidbench-q{int(job_id)}"


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


def settling(slurm: str | None, ended: float | None, now: float) -> bool:
    """Whether an ended queue job's Slurm column (``"ID STATE, ..."``) still shows a Slurm job that had not
    ended (e.g. ``COMPLETING`` right after a cancel), within ``SETTLE_S`` of its end: worth asking again."""
    if not slurm or ended is None or now - ended > SETTLE_S:
        return False
    return any(part.split()[-1] in LIVE_STATES for part in slurm.split(", ") if part.split())
