"""The only module that talks to MLflow.

Default store: ``sqlite:///<cwd>/results/mlflow.db`` (``MLFLOW_TRACKING_URI`` or ``--tracking-uri``
override it). :func:`check_uri` refuses a URI that cannot work before anything is set up. A SQLite store
is created and migrated under a file lock next to it (:mod:`reidbench.util.embedded`), so any number of
processes may open a fresh store at once; :func:`prepare` creates the experiment the same way.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reidbench.errors import UserError
from reidbench.util.embedded import check_sqlite, creation_lock, sqlite_path

DEFAULT_EXPERIMENT = "reidbench"
MAX_PARAM_LEN = 6000
OPTION = "--tracking-uri"
SCHEMES = ("sqlite", "postgresql", "mysql", "mssql", "http", "https", "file", "databricks")
DEFAULT_PORTS = {"http": 80, "https": 443, "postgresql": 5432, "mysql": 3306, "mssql": 1433}
DRIVERS = {"psycopg2": "psycopg2", "psycopg": "psycopg", "pymysql": "pymysql", "mysqldb": "MySQLdb"}
PROBE_TIMEOUT_S = 3.0


def default_uri() -> str:
    """``MLFLOW_TRACKING_URI`` or the embedded SQLite store under ./results."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'results' / 'mlflow.db'}"


def check_uri(uri: str) -> None:
    """A UserError, quickly, when ``uri`` cannot be an MLflow store: unknown scheme, a SQLite path that is
    not a database or lies under a file, a missing database driver, a server that does not answer."""
    from urllib.parse import urlsplit

    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    base = scheme.split("+", 1)[0]
    if scheme in ("", "file"):  # MLflow's file store: a folder
        _check_file_store(uri, Path(parts.path))
        return
    if base not in SCHEMES:
        raise UserError(
            f"{OPTION} {uri!r}: unknown scheme {parts.scheme!r}; expected sqlite:///PATH, "
            f"postgresql://USER@HOST/DB, mysql://..., or http(s)://HOST:PORT of an MLflow server"
        )
    if base == "sqlite":
        check_sqlite(uri, OPTION)
        return
    if base in ("postgresql", "mysql", "mssql"):
        _check_driver(uri, scheme)
    if parts.hostname and base in DEFAULT_PORTS:
        _probe(uri, parts.hostname, parts.port or DEFAULT_PORTS[base])


def _check_file_store(uri: str, path: Path) -> None:
    """A UserError when the folder of a file store is a file or lies under one."""
    for folder in (path, *path.parents):
        if folder.exists() and not folder.is_dir():
            raise UserError(
                f"{OPTION} {uri!r}: {folder} is a file, not a folder (a plain path is MLflow's file store); "
                f"for a SQLite store write sqlite:///{path}"
            )


def _check_driver(uri: str, scheme: str) -> None:
    """A UserError when the database driver SQLAlchemy would import for ``uri`` is not installed."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        driver = make_url(uri).get_dialect().driver
    except (ArgumentError, NoSuchModuleError, ValueError) as exc:
        raise UserError(f"{OPTION} {uri!r}: not a database URL SQLAlchemy knows ({exc})") from None
    module = DRIVERS.get(driver)
    if module and importlib.util.find_spec(module) is None:
        raise UserError(
            f"{OPTION} {uri!r}: {scheme} needs the Python package {module!r} (driver {driver}), which is not "
            f"installed; install it, name an installed driver (postgresql+psycopg2://...) or log through "
            f"an MLflow server (http://...)"
        )


def _probe(uri: str, host: str, port: int) -> None:
    """A UserError when nothing accepts a TCP connection at ``host:port`` within a few seconds."""
    try:
        socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S).close()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise UserError(
            f"{OPTION} {uri!r}: nothing answers at {host}:{port} ({reason}); start the server or fix the URI"
        ) from None


@contextmanager
def _store_lock(uri: str) -> Iterator[None]:
    """The creation lock of a SQLite store (nothing for other stores)."""
    path = sqlite_path(uri)
    with creation_lock(path, OPTION) if path is not None else nullcontext():
        yield


def _client(uri: str) -> Any:
    """An MlflowClient; the first one in a process creates / migrates a SQLite store, under its lock."""
    import logging

    from mlflow.tracking import MlflowClient

    logging.getLogger("mlflow").setLevel(logging.WARNING)  # no alembic chatter on first start
    with _store_lock(uri):
        return MlflowClient(tracking_uri=uri)


def prepare(uri: str, experiment: str = DEFAULT_EXPERIMENT) -> str:
    """Check ``uri``, create the store and the experiment if needed; the experiment id.

    Safe to call from many processes at once: on SQLite the experiment is created under the store's
    lock, elsewhere a concurrent creation is detected and the existing experiment returned.
    """
    check_uri(uri)  # before importing MLflow: a URI that cannot work fails at once
    from mlflow.exceptions import MlflowException

    client = _client(uri)
    path = sqlite_path(uri)
    location = (path.parent / "mlartifacts" / experiment).resolve().as_uri() if path is not None else None
    with _store_lock(uri):
        found = client.get_experiment_by_name(experiment)
        if found is not None:
            return found.experiment_id
        try:
            return client.create_experiment(experiment, artifact_location=location)
        except MlflowException:
            found = client.get_experiment_by_name(experiment)  # another worker created it meanwhile
            if found is None:
                raise
            return found.experiment_id


def mlflow_key(name: str) -> str:
    """Contract metric name -> a key MLflow accepts (no ``@``, ``>`` or ``+`` allowed there).

    ``mAP@no_tir`` -> ``mAP/no_tir``; ``mAP@rgb->nir+tir`` -> ``mAP/rgb_to_nir.tir``; a second ``@`` (a
    setting on a cross-domain target, ``mAP@no_tir@to_rgbn300``) -> ``/``; others unchanged.
    """
    if "@" not in name:
        return name
    metric, setting = name.split("@", 1)
    return f"{metric}/{setting.replace('->', '_to_').replace('+', '.').replace('@', '/')}"


def metric_name(key: str) -> str:
    """Inverse of :func:`mlflow_key`."""
    if "/" not in key:
        return key
    metric, setting = key.split("/", 1)
    return f"{metric}@{setting.replace('_to_', '->').replace('.', '+').replace('/', '@')}"


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested config -> ``{"optim.lr": "0.0003", ...}`` (MLflow params are strings)."""
    out: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, name + "."))
        else:
            out[name] = str(value)[:MAX_PARAM_LEN]
    return out


def git_commit() -> str:
    """The git commit of the reidbench checkout, or ``unknown`` (an installed wheel: no checkout)."""
    if not (Path(__file__).resolve().parents[1] / ".git").exists():
        return "unknown"
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).resolve().parents[1],
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


class Run:
    """One MLflow run, logged in batches through the client API."""

    def __init__(
        self, uri: str, experiment_id: str, name: str, tags: dict[str, str], parent_run_id: str | None = None
    ) -> None:
        self.client = _client(uri)
        all_tags = {**tags, "mlflow.runName": name}
        if parent_run_id:
            all_tags["mlflow.parentRunId"] = parent_run_id
        self.run_id: str = self.client.create_run(experiment_id, run_name=name, tags=all_tags).info.run_id

    @classmethod
    def attach(cls, uri: str, run_id: str) -> Run:
        """An existing run as it is (its status unchanged), to tag or close it."""
        run = cls.__new__(cls)
        run.client, run.run_id = _client(uri), run_id
        return run

    @classmethod
    def reopen(cls, uri: str, run_id: str) -> Run | None:
        """An existing run, set back to RUNNING (to continue an interrupted run); None if it is gone."""
        from mlflow.exceptions import MlflowException

        client = _client(uri)
        try:
            client.update_run(run_id, status="RUNNING")
        except MlflowException:
            return None
        run = cls.__new__(cls)
        run.client, run.run_id = client, run_id
        return run

    def log_params(self, params: dict[str, str]) -> None:
        """Log string params in batches of 100 (MLflow's limit)."""
        from mlflow.entities import Param

        items = [Param(k, v) for k, v in params.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[i : i + 100])

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        """Log numeric metrics in one batch."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(mlflow_key(k), float(v), now, step or 0) for k, v in metrics.items()]
        for i in range(0, len(items), 1000):
            self.client.log_batch(self.run_id, metrics=items[i : i + 1000])

    def log_text(self, text: str, artifact_file: str) -> None:
        self.client.log_text(self.run_id, text, artifact_file)

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        """Copy the file ``path`` into the run's artifacts (under the folder ``artifact_path``)."""
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    def set_tags(self, tags: dict[str, str]) -> None:
        for k, v in tags.items():
            self.client.set_tag(self.run_id, k, v)

    def finish(self, status: str = "FINISHED") -> None:
        """Close the run as FINISHED, FAILED or KILLED."""
        self.client.set_terminated(self.run_id, status=status)


@dataclass
class RunRecord:
    """What the sweep needs of a logged run."""

    run_id: str
    name: str
    status: str
    tags: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)  # contract names (mAP@no_tir)
    params: dict[str, str] = field(default_factory=dict)


def find_runs(uri: str, experiment: str, filter_string: str) -> list[RunRecord]:
    """Every run of ``experiment`` matching ``filter_string`` (all result pages), newest first."""
    client = _client(uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    out, token = [], None
    while True:
        page = client.search_runs(
            [exp.experiment_id],
            filter_string,
            max_results=1000,
            page_token=token,
            order_by=["attributes.start_time DESC"],
        )
        out += [
            RunRecord(
                r.info.run_id,
                r.info.run_name or "",
                r.info.status,
                dict(r.data.tags),
                {metric_name(k): v for k, v in r.data.metrics.items()},
                dict(r.data.params),
            )
            for r in page
        ]
        token = page.token
        if not token:
            return out


def copy_run(
    uri: str,
    experiment_id: str,
    source: RunRecord,
    name: str,
    tags: dict[str, str],
    parent_run_id: str | None = None,
) -> str:
    """A FINISHED run with ``source``'s params and final metrics under new ``tags``; its run id.

    Used when a sweep point was already trained under another sweep identity (same config hash).
    """
    origin = source.tags.get("reused_from") or source.run_id  # a copy of a copy points at the trained run
    run = Run(uri, experiment_id, name, {**tags, "reused_from": origin}, parent_run_id)
    run.log_params(source.params)
    run.log_metrics(source.metrics)
    run.finish()
    return run.run_id


def search_runs(uri: str, experiment: str = DEFAULT_EXPERIMENT, filter_string: str = "") -> Any:
    """Runs of ``experiment`` as a pandas DataFrame (``metrics.*``, ``params.*``, ``tags.*`` columns).

    Metric columns carry the contract names (``metrics.mAP@no_tir``), decoded from MLflow's keys.
    """
    import mlflow

    _client(uri)  # a fresh SQLite store is created under its lock, then cached by MLflow
    mlflow.set_tracking_uri(uri)
    frame = mlflow.search_runs(experiment_names=[experiment], filter_string=filter_string)
    return frame.rename(columns=lambda c: "metrics." + metric_name(c[8:]) if c.startswith("metrics.") else c)


def _check_store(uri: str) -> None:
    """A UserError when ``uri`` is unusable or a SQLite store does not exist (reading must not create one)."""
    check_uri(uri)
    path = sqlite_path(uri)
    if path is not None and not path.is_file():
        raise UserError(
            f"no MLflow store at {uri.removeprefix('sqlite:///')}: train something first "
            "(`reidbench run ...`) or point --tracking-uri / MLFLOW_TRACKING_URI at your store"
        )


def experiment_names(uri: str) -> list[str]:
    """Names of the experiments in the store at ``uri``, sorted."""
    _check_store(uri)
    return sorted(e.name for e in _client(uri).search_experiments())


def finished_runs(uri: str, experiment: str = DEFAULT_EXPERIMENT, run_kind: str = "run") -> Any:
    """FINISHED runs tagged ``run_kind`` of ``experiment`` as a DataFrame (see :func:`search_runs`).

    Raises a UserError naming the known experiments when ``experiment`` does not exist.
    """
    names = experiment_names(uri)
    if experiment not in names:
        raise UserError(
            f"no experiment {experiment!r} in {uri}. Experiments there: "
            f"{', '.join(names) or '(none)'}; pick one with --experiment"
        )
    return search_runs(uri, experiment, f"tags.run_kind = '{run_kind}' and attributes.status = 'FINISHED'")


def run_status_counts(
    uri: str, experiment: str = DEFAULT_EXPERIMENT, run_kind: str = "run"
) -> dict[str, int]:
    """How many runs tagged ``run_kind`` have each status (FINISHED, FAILED, RUNNING, KILLED)."""
    frame = search_runs(uri, experiment, f"tags.run_kind = '{run_kind}'")
    return {} if frame.empty else {str(k): int(v) for k, v in frame["status"].value_counts().items()}


def metric_histories(uri: str, run_ids: list[str], keys: list[str]) -> Any:
    """Per-step values of ``keys`` for ``run_ids``: DataFrame ``run_id, key, step, value, timestamp``."""
    import pandas as pd

    client = _client(uri)
    rows = [
        (run_id, key, m.step, m.value, m.timestamp)
        for run_id in run_ids
        for key in keys
        for m in client.get_metric_history(run_id, mlflow_key(key))
    ]
    return pd.DataFrame(rows, columns=["run_id", "key", "step", "value", "timestamp"])


MAX_REUSE_HOPS = 16


def origin_run(uri: str, run_id: str) -> RunRecord:
    """The run that trained what ``run_id`` holds: ``run_id`` itself, or (a copy made by a sweep reusing a
    finished point) the run its ``reused_from`` tag names, followed through copies of copies."""
    record = get_run(uri, run_id)
    for _ in range(MAX_REUSE_HOPS):
        source = record.tags.get("reused_from")
        if not source or source == record.run_id:
            return record
        record = get_run(uri, source)
    raise UserError(f"run {run_id}: its reused_from tags form a chain longer than {MAX_REUSE_HOPS} runs")


def get_run(uri: str, run_id: str) -> RunRecord:
    """The run ``run_id`` of the store at ``uri``; a UserError when the store has no such run."""
    from mlflow.exceptions import MlflowException

    _check_store(uri)
    try:
        r = _client(uri).get_run(run_id)
    except MlflowException:
        raise UserError(
            f"no run {run_id!r} in {uri}: copy the run id from the MLflow UI or `reidbench report`, "
            "and point --tracking-uri at the store that holds it"
        ) from None
    return RunRecord(
        r.info.run_id,
        r.info.run_name or "",
        r.info.status,
        dict(r.data.tags),
        {metric_name(k): v for k, v in r.data.metrics.items()},
        dict(r.data.params),
    )


def run_experiment(uri: str, run_id: str) -> str:
    """The name of the experiment that holds run ``run_id``."""
    client = _client(uri)
    return client.get_experiment(client.get_run(run_id).info.experiment_id).name


def download_artifact(uri: str, run_id: str, artifact_path: str, dst: Path) -> Path | None:
    """Artifact ``artifact_path`` of run ``run_id`` copied under ``dst``; None when the run has none."""
    from mlflow.exceptions import MlflowException

    dst.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one small file: no bar
    try:
        return Path(_client(uri).download_artifacts(run_id, artifact_path, str(dst)))
    except (MlflowException, OSError):
        return None
