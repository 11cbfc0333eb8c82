"""Is a RUNNING run still being trained somewhere? The tags a run keeps while it trains, and the test.

A run records the host and process that train it and refreshes a heartbeat (Unix time) after every
epoch. A sweep started again leaves a point alone while a RUNNING run of it is alive: its process still
exists when it is on this host, or, on another host, its heartbeat is younger than ``stale_after_s``.
Otherwise the run is taken as crashed and the point is trained again (resuming from its checkpoint).
"""

from __future__ import annotations

import os
import socket
import time

__all__ = ["heartbeat_tags", "is_alive", "owner_tags", "retire_dead_runs"]

STALE_AFTER_S = 3 * 3600.0  # a RUNNING run on another host without a heartbeat for this long: crashed


def heartbeat_tags() -> dict[str, str]:
    """The heartbeat tag, set to now."""
    return {"heartbeat": f"{time.time():.0f}"}


def owner_tags() -> dict[str, str]:
    """Host and process id of this process, and a fresh heartbeat; under Slurm also the job
    (``slurm_job``: ``ARRAYID_TASK`` or ``JOBID``, as submitit and sacct name it)."""
    tags = {"host": socket.gethostname(), "pid": str(os.getpid()), **heartbeat_tags()}
    env = os.environ
    if env.get("SLURM_ARRAY_JOB_ID") and env.get("SLURM_ARRAY_TASK_ID"):
        tags["slurm_job"] = f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    elif env.get("SLURM_JOB_ID"):
        tags["slurm_job"] = env["SLURM_JOB_ID"]
    return tags


def is_alive(
    tags: dict[str, str], stale_after_s: float, now: float | None = None, host: str | None = None
) -> bool:
    """Whether the RUNNING run with these tags is still being trained (see the module docstring)."""
    if tags.get("host") == (host or socket.gethostname()):
        try:
            return _process_exists(int(tags.get("pid", "")))
        except ValueError:
            return False
    try:
        beat = float(tags.get("heartbeat", ""))
    except ValueError:
        return False
    return (time.time() if now is None else now) - beat < stale_after_s


def _process_exists(pid: int) -> bool:
    """Whether another process with this id exists on this host."""
    if pid <= 0 or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def retire_dead_runs(
    uri: str, experiment: str, config_hash: str, replaced_by: str, stale_after_s: float = STALE_AFTER_S
) -> list[str]:
    """Mark every RUNNING training run of ``config_hash`` whose process is gone (see :func:`is_alive`)
    KILLED, with the reason and the run that replaces it (``replaced_by``) as tags; their ids.

    A run killed before its first checkpoint cannot be resumed (nothing of it was saved): the next process
    that trains its config replaces it visibly instead of leaving it RUNNING for ever."""
    from reidbench import tracking

    query = f"tags.config_hash = '{config_hash}' and tags.run_kind = 'run' and attributes.status = 'RUNNING'"
    retired = []
    for record in tracking.find_runs(uri, experiment, query):
        if record.run_id == replaced_by or is_alive(record.tags, stale_after_s):
            continue
        where = f"process {record.tags.get('pid', '?')} on {record.tags.get('host', '?')}"
        run = tracking.Run.attach(uri, record.run_id)
        run.set_tags(
            {
                "error": f"{where} stopped without finishing (killed before its first checkpoint, or "
                f"crashed); found dead and replaced by run {replaced_by}",
                "replaced_by": replaced_by,
            }
        )
        run.finish("KILLED")
        retired.append(record.run_id)
    return retired
