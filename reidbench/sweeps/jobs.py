"""What the sweep hands to an executor (:class:`Job`) and gets back (a :class:`RunResult`), and how a
worker process reads and writes them. Imports nothing heavy: a launcher process unpickles a job quickly.
"""

from __future__ import annotations

import json
import pickle
import traceback
from dataclasses import dataclass
from pathlib import Path

from reidbench.context import RunContext, RunResult
from reidbench.spec import RunSpec


@dataclass(frozen=True)
class Job:
    """One point to run: its spec, the context it runs in, and how many processes (ranks) it gets."""

    spec: RunSpec
    context: RunContext
    nprocs: int = 1


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def write_job(job: Job, job_dir: Path) -> None:
    job_dir.mkdir(parents=True, exist_ok=True)
    with (job_dir / "job.pkl").open("wb") as fh:
        pickle.dump(job, fh)


def read_job(job_dir: Path) -> Job:
    with (job_dir / "job.pkl").open("rb") as fh:
        return pickle.load(fh)


def write_result(job_dir: Path, metrics: dict[str, float], run_id: str | None) -> None:
    (job_dir / "result.json").write_text(json.dumps({"metrics": metrics, "run_id": run_id}))


def write_error(job_dir: Path, rank: int, exc: BaseException) -> None:
    """What a failed worker leaves for the pool: the error line and the traceback."""
    (job_dir / f"error-{rank}.json").write_text(
        json.dumps({"error": describe(exc), "traceback": traceback.format_exc()})
    )


def read_result(job: Job, job_dir: Path, returncode: int) -> RunResult:
    """The result a worker left in ``job_dir`` (result.json, or error-<rank>.json, or the log's tail)."""
    log = job_dir / "log.txt"
    result = job_dir / "result.json"
    if returncode == 0 and result.is_file():
        data = json.loads(result.read_text())
        return RunResult(job.spec, data["metrics"], data.get("run_id"), log=log)
    # the rank that failed first, not the ranks the launcher stopped afterwards (SystemExit)
    errors = [json.loads(p.read_text())["error"] for p in sorted(job_dir.glob("error-*.json"))]
    errors.sort(key=lambda e: e.startswith(("SystemExit", "KeyboardInterrupt")))
    if errors:
        message = errors[0]
    else:
        tail = log.read_text(errors="replace").strip().splitlines()[-5:] if log.is_file() else []
        message = f"worker exited with code {returncode}" + (": " + " | ".join(tail) if tail else "")
    return RunResult(job.spec, error=message, log=log)
