"""Embedded SQLite stores (the MLflow store, the Optuna storage): up-front path checks, and the file lock
that makes their creation (tables, migrations, first rows) happen exactly once when several processes
open a fresh store at the same time.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from reidbench.errors import UserError

SQLITE_MAGIC = b"SQLite format 3\x00"


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///PATH`` URI (relative or absolute), None for other URIs."""
    if not uri.startswith("sqlite:"):
        return None
    path = uri.removeprefix("sqlite:///").split("?", 1)[0]
    return Path(path) if uri.startswith("sqlite:///") and path else None


def check_sqlite(uri: str, option: str) -> Path:
    """The database file of SQLite ``uri``, checked: an existing SQLite file or one that can be created.

    ``option`` names where the URI came from (``--tracking-uri``) in the error messages.
    """
    path = sqlite_path(uri)
    if path is None:
        raise UserError(
            f"{option} {uri!r}: expected sqlite:///PATH with a file path (an in-memory store loses "
            f"every run), e.g. sqlite:///results/mlflow.db"
        )
    for parent in reversed(path.parents):
        if parent.exists() and not parent.is_dir():
            raise UserError(f"{option} {uri!r}: {parent} is a file, not a folder; put the store in a folder")
    if path.exists():
        _check_database_file(path, uri, option)
    return path


def _check_database_file(path: Path, uri: str, option: str) -> None:
    if not path.is_file():
        raise UserError(f"{option} {uri!r}: {path} is not a regular file; point it at a database file")
    try:
        with path.open("rb") as fh:
            head = fh.read(len(SQLITE_MAGIC))
    except OSError as exc:
        raise UserError(f"{option} {uri!r}: cannot read {path}: {exc.strerror}") from None
    if head and head != SQLITE_MAGIC:
        raise UserError(
            f"{option} {uri!r}: {path} is not an SQLite database; point it at an existing store or at a "
            f"new file name"
        )


@contextmanager
def creation_lock(path: Path, option: str = "store") -> Iterator[None]:
    """Exclusive lock on ``<path>.lock`` (its folder created): one process at a time creates the store.

    An existing store in a folder that cannot be written (a read-only share) is opened without the lock.
    """
    lock = path.with_name(path.name + ".lock")
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        fh = lock.open("a")
    except OSError as exc:
        if path.is_file():
            yield
            return
        raise UserError(
            f"{option}: cannot create files in {lock.parent} ({exc.strerror}); choose a writable folder"
        ) from None
    with fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
