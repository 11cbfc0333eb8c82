"""The queue's jobs in one SQLite file (WAL mode): safe for many writers at once, survives any crash.

Every change is one short ``BEGIN IMMEDIATE`` transaction, so processes adding jobs at once are serialised
by SQLite's write lock (``busy_timeout`` waits for it) and no job is lost or written twice. Status moves
``queued -> running -> finished | failed | cancelled``; a retry moves a failed or cancelled job back to
``queued`` under the same id.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reidbench.errors import UserError

__all__ = ["STATUSES", "JobRow", "Store", "default_queue_path"]

STATUSES = ("queued", "running", "finished", "failed", "cancelled")
TERMINAL = ("finished", "failed", "cancelled")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    args TEXT NOT NULL,
    summary TEXT NOT NULL,
    units INTEGER NOT NULL DEFAULT 1,
    priority INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL DEFAULT 'queued',
    cwd TEXT NOT NULL,
    env TEXT NOT NULL DEFAULT '{}',
    points TEXT NOT NULL DEFAULT '[]',
    tracking_uri TEXT,
    experiment TEXT,
    created REAL NOT NULL,
    started REAL,
    ended REAL,
    devices TEXT,
    pid INTEGER,
    host TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    oom_retries INTEGER NOT NULL DEFAULT 0,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    map REAL,
    run_ids TEXT NOT NULL DEFAULT '[]',
    experiment_id TEXT,
    slurm TEXT
);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs(status, priority, id);
"""


def default_queue_path(results_dir: Path = Path("results")) -> Path:
    """``$REIDBENCH_QUEUE``, else ``<results_dir>/queue.db``."""
    env = os.environ.get("REIDBENCH_QUEUE")
    return Path(env) if env else Path(results_dir) / "queue.db"


@dataclass
class JobRow:
    """One job as stored. ``args``: the reidbench command line (``run ...``); ``points``: one dict per run
    it trains (``config_hash``, ``name``, ``epochs``); ``units``: GPUs (or CPU slots) it needs."""

    id: int
    kind: str
    args: list[str]
    summary: str
    units: int
    priority: int
    status: str
    cwd: str
    env: dict[str, str]
    points: list[dict[str, Any]]
    tracking_uri: str | None
    experiment: str | None
    created: float
    started: float | None = None
    ended: float | None = None
    devices: str | None = None
    pid: int | None = None
    host: str | None = None
    attempts: int = 0
    oom_retries: int = 0
    cancel_requested: bool = False
    error: str | None = None
    map: float | None = None
    run_ids: list[str] = field(default_factory=list)
    experiment_id: str | None = None
    slurm: str | None = None

    @property
    def duration(self) -> float | None:
        """Seconds since the start (until the end when it ended)."""
        if self.started is None:
            return None
        return (self.ended or time.time()) - self.started


_JSON = {"args", "env", "points", "run_ids"}


def _row(r: sqlite3.Row) -> JobRow:
    data = {k: (json.loads(r[k]) if k in _JSON else r[k]) for k in r.keys()}
    data["cancel_requested"] = bool(data["cancel_requested"])
    return JobRow(**data)


class Store:
    """The jobs table of one queue file; opens a connection per call (safe across threads and forks)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=60)
        try:
            db.execute("PRAGMA busy_timeout=60000")
            db.execute("PRAGMA journal_mode=WAL")  # persistent: set once for the file
            db.executescript(_SCHEMA)
        finally:
            db.close()

    @property
    def log_dir(self) -> Path:
        """Where the jobs' log files go: ``<queue file stem>-logs/`` next to the queue file."""
        return self.path.parent / f"{self.path.stem}-logs"

    def log_path(self, job_id: int) -> Path:
        """The log file of job ``job_id``."""
        return self.log_dir / f"{int(job_id)}.log"

    def result_path(self, job_id: int) -> Path:
        """Where the job's process writes how it ended (see :mod:`reidbench.cli.child`)."""
        return self.log_dir / f"{int(job_id)}.result.json"

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        db.row_factory = sqlite3.Row
        try:
            db.execute("PRAGMA busy_timeout=60000")
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        finally:
            db.close()

    def add_checked(self, sub: Any, priority: int = 0) -> int:
        """Store a checked submission (the command line's ``Submission``: kind, args, summary, units, env,
        points, tracking_uri, experiment) as ``queued``; returns its id."""
        return self.add(
            sub.kind,
            sub.args,
            sub.summary,
            units=sub.units,
            priority=priority,
            env=sub.env,
            points=sub.points,
            tracking_uri=sub.tracking_uri,
            experiment=sub.experiment,
        )

    def add(
        self,
        kind: str,
        args: list[str],
        summary: str,
        *,
        units: int = 1,
        priority: int = 0,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        points: list[dict[str, Any]] = (),
        tracking_uri: str | None = None,
        experiment: str | None = None,
    ) -> int:
        """Store a checked job as ``queued``; returns its id."""
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO jobs (kind, args, summary, units, priority, cwd, env, points, tracking_uri,"
                " experiment, created) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (
                    kind,
                    json.dumps(list(args)),
                    summary,
                    int(units),
                    int(priority),
                    cwd or os.getcwd(),
                    json.dumps(env or {}),
                    json.dumps(list(points)),
                    tracking_uri,
                    experiment,
                    time.time(),
                ),
            )
            return int(cur.lastrowid)

    def get(self, job_id: int) -> JobRow:
        """The job ``job_id``, or a UserError naming the queue file."""
        with self._tx() as db:
            r = db.execute("SELECT * FROM jobs WHERE id = ?", (int(job_id),)).fetchone()
        if r is None:
            raise UserError(f"no job {job_id} in the queue {self.path} (see `reidbench queue ls`)")
        return _row(r)

    def jobs(self, statuses: tuple[str, ...] = (), limit: int | None = None) -> list[JobRow]:
        """Jobs (newest first), optionally only those with one of ``statuses``."""
        sql, params = "SELECT * FROM jobs", []
        if statuses:
            sql += f" WHERE status IN ({','.join('?' * len(statuses))})"
            params = list(statuses)
        sql += " ORDER BY id DESC"
        if limit:
            sql += f" LIMIT {int(limit)}"
        with self._tx() as db:
            return [_row(r) for r in db.execute(sql, params).fetchall()]

    def next_queued(self) -> list[JobRow]:
        """Queued jobs in the order they should start: highest priority first, then oldest."""
        with self._tx() as db:
            rows = db.execute("SELECT * FROM jobs WHERE status = 'queued' ORDER BY priority DESC, id ASC")
            return [_row(r) for r in rows.fetchall()]

    def update(self, job_id: int, expect: tuple[str, ...] = (), **values: Any) -> bool:
        """Set ``values`` on the job, only while its status is one of ``expect`` (any when empty); returns
        whether it changed (a compare-and-set, so two processes never both move a job)."""
        cols = ", ".join(f"{k} = ?" for k in values)
        params = [json.dumps(v) if k in _JSON else v for k, v in values.items()]
        sql = f"UPDATE jobs SET {cols} WHERE id = ?"
        params.append(int(job_id))
        if expect:
            sql += f" AND status IN ({','.join('?' * len(expect))})"
            params += list(expect)
        with self._tx() as db:
            return db.execute(sql, params).rowcount == 1

    def cancel(self, job_id: int) -> str:
        """Cancel a queued job at once; a running one is marked for the scheduler to stop. Returns what
        happened: ``cancelled``, ``stopping`` or a UserError when it already ended."""
        job = self.get(job_id)
        if self.update(job_id, ("queued",), status="cancelled", ended=time.time(), error="cancelled"):
            return "cancelled"
        if self.update(job_id, ("running",), cancel_requested=1):
            return "stopping"
        raise UserError(f"job {job_id} already ended ({job.status}); nothing to cancel")

    def retry(self, job_id: int) -> None:
        """Queue a failed or cancelled job again under the same id."""
        job = self.get(job_id)
        ok = self.update(
            job_id,
            ("failed", "cancelled"),
            status="queued",
            error=None,
            started=None,
            ended=None,
            devices=None,
            pid=None,
            cancel_requested=0,
            oom_retries=0,
            map=None,
            run_ids=[],
            slurm=None,
        )
        if not ok:
            raise UserError(f"job {job_id} is {job.status}: only failed or cancelled jobs can be retried")
