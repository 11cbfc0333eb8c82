"""The Optuna storage of ``reidbench tune``: checked up front, and a fresh SQLite storage created exactly
once when several workers start on it together. Imports nothing heavy."""

from __future__ import annotations

import logging
import os
import re
import time
from contextlib import nullcontext
from typing import Any

from reidbench.errors import UserError
from reidbench.util.embedded import check_sqlite, creation_lock

# SQLAlchemy database URLs Optuna's RDB storage takes: dialect[+driver]://...
_RDB_URL = re.compile(r"^(sqlite|postgresql|postgres|mysql|mariadb|oracle|mssql)(\+[A-Za-z0-9_]+)?://")


def check_storage(storage: str) -> str:
    """``storage`` when it is a database URL Optuna can open (checked without importing it), else a
    UserError saying what is expected."""
    if not storage or not _RDB_URL.match(storage):
        raise UserError(
            f"--storage {storage!r}: expected a database URL such as sqlite:///results/optuna.db or "
            f"postgresql://user:password@host/db (dialects: sqlite, postgresql, mysql, mariadb, oracle, "
            f"mssql)"
        )
    if storage.startswith("sqlite:") and check_sqlite(storage, "--storage").name == ":memory:":
        raise UserError(f"--storage {storage!r}: an in-memory study is lost at exit; name a database file")
    return storage


def process_seed(seed: int) -> int:
    """The sampler seed of this process: ``seed`` mixed with the process id and the clock, so workers (and
    reruns) on one shared study each propose their own parameters instead of repeating the same trials."""
    return (seed * 1_000_003 + os.getpid() * 7919 + time.monotonic_ns()) % 2**32


def open_study(storage: str, study_name: str, seed: int | None = None) -> Any:
    """Create or load ``study_name`` (maximised) in ``storage``; a SQLite storage is created under a file
    lock next to it, so workers started together on a fresh one all get the same study.

    ``seed``: the sampler's seed (None: :func:`process_seed` of 0, one of its own for every process)."""
    import optuna

    optuna.logging.set_verbosity(logging.WARNING)
    check_storage(storage)
    path = check_sqlite(storage, "--storage") if storage.startswith("sqlite:") else None
    sampler = optuna.samplers.TPESampler(seed=process_seed(0) if seed is None else seed)
    with creation_lock(path, "--storage") if path is not None else nullcontext():
        try:
            return optuna.create_study(
                study_name=study_name,
                storage=storage,
                direction="maximize",
                load_if_exists=True,
                sampler=sampler,
            )
        except (ImportError, ValueError, RuntimeError) as exc:  # missing driver, bad URL, wrong direction
            raise UserError(f"--storage {storage!r}: cannot open the study: {_first_line(exc)}") from None
        except Exception as exc:  # SQLAlchemy's errors (unreachable server, refused login, ...)
            if type(exc).__module__.startswith("sqlalchemy"):
                raise UserError(f"--storage {storage!r}: cannot open the study: {_first_line(exc)}") from None
            raise


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
