"""The multi-machine store for real: a local PostgreSQL cluster behind ``mlflow server``, four worker
processes logging runs over HTTP at once; every run arrives, with the same values as on SQLite."""

from __future__ import annotations

import pytest

from reidbench import tracking
from tests.pg_server import cluster_user, mlflow_server, postgres, postgres_bin
from tests.store_workers import log_run, logged, run_workers

WORKERS = [f"machine{i}" for i in range(4)]


@pytest.fixture(scope="module")
def tracking_server(tmp_path_factory):
    bin_dir, user = postgres_bin(), cluster_user()
    if bin_dir is None:
        pytest.skip("PostgreSQL binaries (initdb, pg_ctl) not found; .ci/run installs Debian's postgresql")
    if user is None:
        pytest.skip("running as root and there is no 'postgres' user to run the PostgreSQL cluster as")
    artifacts = tmp_path_factory.mktemp("server") / "artifacts"
    with postgres(bin_dir, user) as backend, mlflow_server(backend, artifacts) as uri:
        yield uri


@pytest.mark.timeout(240)
def test_four_workers_log_over_http_to_postgres_like_on_sqlite(tracking_server, tmp_path):
    sqlite = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracking.check_uri(tracking_server)  # the server answers
    assert run_workers([tracking_server], "multi", WORKERS) == [0] * len(WORKERS)
    for name in WORKERS:  # the same runs, one after the other, on the embedded store
        log_run(sqlite, "multi", name)
    remote, local = logged(tracking_server, "multi"), logged(sqlite, "multi")
    assert sorted(remote) == WORKERS
    assert all(status == "FINISHED" for status, _, _ in remote.values())
    assert remote == local  # same statuses, final metrics and per-epoch curves, value for value
    assert tracking.experiment_names(tracking_server) == ["Default", "multi"]
