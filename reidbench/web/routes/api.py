"""JSON for scripts: the jobs."""

from __future__ import annotations

from fastapi import APIRouter

from reidbench.web.state import State

__all__ = ["router"]

router = APIRouter()


@router.get("/api/jobs")
def api_jobs(state: State):
    return [
        {k: getattr(j, k) for k in ("id", "status", "summary", "devices", "map", "error", "run_ids")}
        for j in state.store.jobs()
    ]
