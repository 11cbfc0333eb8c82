"""A job's runs in MLflow: epochs done, final mAP, the recorded error, and ending them KILLED.

Progress is read from the runs the job trains rather than from a file the job writes: the runner already
logs every epoch's curves to MLflow, so nothing new has to be written by (or trusted from) the job, and
the figures are the ones the report will use. A job's runs are the MLflow runs with one of its points'
config hashes that started after the job did (a point the store already held is reported from that run).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from reidbench.queue.store import JobRow

__all__ = ["JobRuns", "end_running", "job_runs", "oom_error"]

OOM_TYPES = ("OutOfMemoryError",)  # torch.OutOfMemoryError (torch.cuda.OutOfMemoryError is the same class)


@dataclass
class JobRuns:
    """What MLflow knows about a job's runs."""

    epochs_done: int = 0
    epochs_total: int = 0
    map: float | None = None  # mean final mAP of its finished runs, in [0, 1]
    run_ids: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # the ``error`` tags of its failed runs
    running: list[str] = field(default_factory=list)  # ids of its runs still RUNNING
    experiment_id: str | None = None


def oom_error(error: str | None) -> bool:
    """Whether a recorded ``TypeName: message`` error is a CUDA out-of-memory error (by type, not text)."""
    if not error:
        return False
    name = error.split(":", 1)[0].strip().rsplit(".", 1)[-1]
    return name in OOM_TYPES


def _client(uri: str) -> Any:
    from reidbench import tracking

    return tracking._client(uri)  # creates / migrates a SQLite store only under its creation lock


def job_runs(job: JobRow, with_progress: bool = True) -> JobRuns:
    """The job's runs (see the module docstring); empty when it has no points or no store yet."""
    out = JobRuns(epochs_total=sum(int(p.get("epochs", 0)) for p in job.points))
    if not job.points or not job.tracking_uri or job.started is None:
        return out
    from reidbench.util.embedded import sqlite_path

    path = sqlite_path(job.tracking_uri)
    if path is not None and not path.is_file():
        return out  # nothing logged yet; never create the store from here
    try:
        client = _client(job.tracking_uri)
        exp = client.get_experiment_by_name(job.experiment or "reidbench")
    except Exception:  # store not created yet
        return out
    if exp is None:
        return out
    out.experiment_id = exp.experiment_id
    wanted = {p["config_hash"]: p for p in job.points if re.fullmatch(r"[0-9A-Za-z_-]+", p["config_hash"])}
    latest: dict[str, Any] = {}
    for h in wanted:  # one small query per point: correct however many runs the experiment holds
        runs = client.search_runs(
            [exp.experiment_id],
            f"tags.run_kind = 'run' and tags.config_hash = '{h}'",
            order_by=["attributes.start_time DESC"],
            max_results=20,
        )
        for run in runs:
            if run.info.status == "FINISHED" or run.info.start_time / 1000 >= job.started - 5:  # clock slack
                latest[h] = run
                break
    maps = []
    for h, run in latest.items():
        out.run_ids.append(run.info.run_id)
        status = run.info.status
        if status == "FINISHED":
            out.epochs_done += int(wanted[h].get("epochs", 0))
            value = run.data.metrics.get("mAP")
            if value is not None and not math.isnan(value):
                maps.append(value)
        elif status == "FAILED":
            out.errors.append(run.data.tags.get("error", "FAILED"))
        elif status == "RUNNING":
            out.running.append(run.info.run_id)
            if with_progress and run.data.metrics:
                key = sorted(run.data.metrics)[0]
                out.epochs_done += len(client.get_metric_history(run.info.run_id, key))
    if maps:
        out.map = sum(maps) / len(maps)
    return out


def end_running(job: JobRow, status: str = "KILLED") -> int:
    """End the job's runs still RUNNING as ``status`` (after its process is gone); how many."""
    runs = job_runs(job, with_progress=False)
    if not runs.running:
        return 0
    client = _client(job.tracking_uri)
    for run_id in runs.running:
        client.set_terminated(run_id, status=status)
    return len(runs.running)
