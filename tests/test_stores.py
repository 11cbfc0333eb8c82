"""Embedded stores: concurrent first starts of a fresh SQLite MLflow store / Optuna storage, and tracking
URIs that cannot work refused up front with one clear line."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from reidbench import tracking
from reidbench.errors import UserError
from tests.store_workers import fake_metrics, logged, run_workers

WORKERS = [f"w{i}" for i in range(4)]


def test_four_processes_on_fresh_stores_all_finish(tmp_path):
    """Two rounds of four workers starting together on a fresh MLflow store, then on a fresh Optuna
    storage."""
    import optuna

    uris = [f"sqlite:///{tmp_path / f'round{r}' / 'mlflow.db'}" for r in range(2)]
    storages = [f"sqlite:///{tmp_path / f'optuna{r}' / 'optuna.db'}" for r in range(2)]
    tasks = [*uris, *(f"optuna+{s}" for s in storages)]
    assert run_workers(tasks, "conc", WORKERS) == [0] * len(WORKERS)
    for uri in uris:
        runs = logged(uri, "conc")
        assert sorted(runs) == WORKERS
        for name, (status, metrics, curves) in runs.items():
            assert status == "FINISHED"
            assert {k: metrics[k] for k in fake_metrics(name)} == pytest.approx(fake_metrics(name))
            assert len(curves["loss"]) == 3
        assert tracking.experiment_names(uri) == ["Default", "conc"]
    for storage in storages:
        summaries = optuna.get_all_study_summaries(storage)
        assert [(s.study_name, s.n_trials) for s in summaries] == [("shared", len(WORKERS))]


@pytest.mark.parametrize(
    ("make_uri", "message"),
    [
        (lambda d: "foo://bar", "unknown scheme 'foo'"),
        (lambda d: f"sqlite:///{d / 'notes.txt'}", "notes.txt is not an SQLite database"),
        (lambda d: f"sqlite:///{d / 'notes.txt' / 'mlflow.db'}", "notes.txt is a file, not a folder"),
        (lambda d: f"sqlite:///{d}", "is not a regular file"),
        (lambda d: "sqlite://", "an in-memory store loses every run"),
        (lambda d: str(d / "store"), None),  # a plain path: MLflow's file store, a folder
        (lambda d: str(d / "notes.txt"), "notes.txt is a file, not a folder"),
        (lambda d: f"file://{d / 'notes.txt' / 'x'}", "notes.txt is a file, not a folder"),
        (lambda d: "sqlite:////proc/reidbench/mlflow.db", "cannot create files in /proc/reidbench"),
        (lambda d: "sqlite:////proc/mlflow.db", "cannot create files in /proc"),
        (lambda d: "http://127.0.0.1:9", "nothing answers at 127.0.0.1:9"),
        (lambda d: "postgresql+psycopg2://u@127.0.0.1:9/db", "nothing answers at 127.0.0.1:9"),
        (
            lambda d: "mysql://u@127.0.0.1:9/db",
            "needs the Python package 'MySQLdb'",
        ),  # mysqlclient: not locked
    ],
)
def test_unusable_tracking_uris_fail_fast_with_one_line(tmp_path, make_uri, message):
    (tmp_path / "notes.txt").write_text("not a database\n")
    uri = make_uri(tmp_path)
    if message is None:
        tracking.check_uri(uri)
        return
    start = time.perf_counter()
    with pytest.raises(UserError, match="--tracking-uri") as err:
        tracking.prepare(uri, "x")
    assert time.perf_counter() - start < 10
    assert message in str(err.value) and "\n" not in str(err.value)


def test_an_empty_file_and_an_existing_store_are_accepted(tmp_path):
    empty = tmp_path / "empty.db"
    empty.touch()
    tracking.check_uri(f"sqlite:///{empty}")
    uri = f"sqlite:///{tmp_path / 'sub' / 'mlflow.db'}"
    exp_id = tracking.prepare(uri, "x")
    assert tracking.prepare(uri, "x") == exp_id  # idempotent
    assert Path(tmp_path / "sub" / "mlflow.db.lock").is_file()


def test_reading_a_missing_store_creates_nothing(tmp_path):
    with pytest.raises(UserError, match="no MLflow store"):
        tracking.experiment_names(f"sqlite:///{tmp_path / 'none.db'}")
    assert not (tmp_path / "none.db").exists()


def test_an_existing_store_in_a_read_only_folder_can_be_read(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'ro' / 'mlflow.db'}"
    tracking.prepare(uri, "x")
    real_open = Path.open

    def read_only(self, mode="r", *args, **kwargs):
        if self.name.endswith(".lock"):
            raise PermissionError(13, "Permission denied")
        return real_open(self, mode, *args, **kwargs)

    monkeypatch.setattr(Path, "open", read_only)
    assert tracking.experiment_names(uri) == ["Default", "x"]
    with pytest.raises(UserError, match="cannot create files in"):
        tracking.prepare(f"sqlite:///{tmp_path / 'ro' / 'new.db'}", "x")


def test_an_optuna_storage_that_is_not_a_database_is_refused(tmp_path):
    from reidbench.sweeps.storage import open_study

    (tmp_path / "notes.txt").write_text("not a database\n")
    with pytest.raises(UserError, match="--storage .*notes.txt is not an SQLite database"):
        open_study(f"sqlite:///{tmp_path / 'notes.txt'}", "s")
