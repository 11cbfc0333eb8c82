"""What every route of the page shares (:class:`WebState`, reached with the ``State`` dependency) and the
views of jobs and devices the templates render."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi.templating import Jinja2Templates

from reidbench.errors import UserError
from reidbench.queue import progress
from reidbench.queue.placement import DeviceStat
from reidbench.queue.store import JobRow, Store

__all__ = ["State", "WebState", "find_job", "web_state"]


def _fmt_duration(s: float | None) -> str:
    if s is None:
        return ""
    s = int(s)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class _ProgressCache:
    """Each running job's MLflow progress, read at most every ``ttl_s`` (the page polls)."""

    def __init__(self, ttl_s: float = 2.0) -> None:
        self.ttl_s = ttl_s
        self.items: dict[tuple[int, float | None], tuple[float, progress.JobRuns]] = {}

    def get(self, job: JobRow) -> progress.JobRuns:
        key = (job.id, job.started)
        hit = self.items.get(key)
        if hit is not None and time.time() - hit[0] < self.ttl_s:
            return hit[1]
        try:
            runs = progress.job_runs(job)
        except Exception:  # the store may be busy or not created yet
            runs = progress.JobRuns(epochs_total=sum(int(p.get("epochs", 0)) for p in job.points))
        self.items[key] = (time.time(), runs)
        return runs


@dataclass
class WebState:
    """The queue, its scheduler (optional: woken on submit, describes the devices) and the page's settings."""

    store: Store
    scheduler: Any
    token: str | None
    csrf: str
    mlflow_url: str
    templates: Jinja2Templates
    check: Callable[[str, list[str]], Any] | None = None  # the submit-time check (from the command line)
    cache: _ProgressCache = field(default_factory=_ProgressCache)

    def job_view(self, job: JobRow) -> dict[str, Any]:
        """What the templates show of one job: progress, mAP, MLflow links."""
        runs = self.cache.get(job) if job.status == "running" else None
        done, total = (runs.epochs_done, runs.epochs_total) if runs else (0, 0)
        if job.status == "finished":
            total = sum(int(p.get("epochs", 0)) for p in job.points)
            done = total
        value = job.map if job.map is not None else (runs.map if runs else None)
        run_ids = job.run_ids or (runs.run_ids if runs else [])
        exp = job.experiment_id or (runs.experiment_id if runs else None)
        return {
            "job": job,
            "start": time.strftime("%m-%d %H:%M:%S", time.localtime(job.started)) if job.started else "",
            "duration": _fmt_duration(job.duration),
            "done": done,
            "total": total,
            "percent": int(100 * done / total) if total else 0,
            "map": "" if value is None else f"{100 * value:.1f}",
            "links": [(r[:8], f"{self.mlflow_url}/#/experiments/{exp}/runs/{r}") for r in run_ids if exp],
        }

    def devices(self) -> list[dict[str, Any]]:
        """Each device of the scheduler with its memory use and the job holding it."""
        scheduler = self.scheduler
        if scheduler is None:
            return []
        held = scheduler.held()
        stats = scheduler.read_stats(scheduler.units) if scheduler.gpus else None
        out = []
        for unit in scheduler.units:
            stat = (stats or {}).get(unit) or DeviceStat(
                unit, "GPU " + unit if scheduler.gpus else "CPU slot"
            )
            out.append(
                {
                    "stat": stat,
                    "job": held.get(unit),
                    "mem_percent": round(100 * stat.used_mb / stat.total_mb) if stat.total_mb else 0,
                }
            )
        return out

    @property
    def gpus(self) -> bool:
        return bool(self.scheduler and self.scheduler.gpus)

    def wake(self) -> None:
        """Tell the scheduler the queue changed."""
        if self.scheduler is not None:
            self.scheduler.wake.set()


def web_state(request: Request) -> WebState:
    """The app's :class:`WebState` (a FastAPI dependency)."""
    return request.app.state.web


State = Annotated[WebState, Depends(web_state)]


def find_job(store: Store, job_id: int) -> JobRow:
    """Job ``job_id``; a 404 when there is none."""
    try:
        return store.get(job_id)
    except UserError:
        raise HTTPException(404, f"no job {job_id}") from None
