"""Log tails: a job's log by id, and the files of the queue's own log dir (404 for anything outside)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import PlainTextResponse, Response

from reidbench.web.edge import JobId, Offset
from reidbench.web.state import State, find_job

__all__ = ["router"]

router = APIRouter()


@router.get("/jobs/{job_id}/log")
def job_log(job_id: JobId, state: State, offset: Offset = 0):
    job = find_job(state.store, job_id)
    return _tail(state.store.log_path(job.id), offset, job.status)


@router.get("/logs/{name:path}")
def log_file(name: str, state: State, offset: Offset = 0):
    if not name.isprintable():  # NUL and other control characters name no log file
        raise HTTPException(404, "no such log")
    base = state.store.log_dir.resolve()
    path = (base / name).resolve()
    if path.parent != base or path.suffix != ".log" or not path.is_file():
        raise HTTPException(404, "no such log")
    return _tail(path, offset, "")


def _tail(path: Path, offset: int, status: str, limit: int = 1 << 20) -> Response:
    """The bytes of ``path`` from ``offset`` (at most ``limit``), with the new offset in a header."""
    data = b""
    if path.is_file():
        with path.open("rb") as f:
            f.seek(max(0, offset))
            data = f.read(limit)
    headers = {"X-Log-Offset": str(max(0, offset) + len(data)), "X-Job-Status": status}
    return PlainTextResponse(data.decode(errors="replace"), headers=headers)
