"""The only module that talks to MLflow.

Default store: ``sqlite:///<cwd>/results/mlflow.db`` (``MLFLOW_TRACKING_URI`` or ``--tracking-uri``
override it). The launcher calls :func:`prepare` once, before any worker starts: concurrent first
starts of a fresh SQLite store corrupt it.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reidbench.errors import UserError

DEFAULT_EXPERIMENT = "reidbench"
MAX_PARAM_LEN = 6000


def default_uri() -> str:
    """``MLFLOW_TRACKING_URI`` or the embedded SQLite store under ./results."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'results' / 'mlflow.db'}"


def _client(uri: str) -> Any:
    import logging

    from mlflow.tracking import MlflowClient

    logging.getLogger("mlflow").setLevel(logging.WARNING)  # no alembic chatter on first start

    return MlflowClient(tracking_uri=uri)


def prepare(uri: str, experiment: str = DEFAULT_EXPERIMENT) -> str:
    """Create the store and the experiment if needed (call once, in the parent); the experiment id."""
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    client = _client(uri)
    found = client.get_experiment_by_name(experiment)
    if found is not None:
        return found.experiment_id
    location = None
    if uri.startswith("sqlite:///"):
        location = (
            (Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts" / experiment).resolve().as_uri()
        )
    return client.create_experiment(experiment, artifact_location=location)


def mlflow_key(name: str) -> str:
    """Contract metric name -> a key MLflow accepts (no ``@``, ``>`` or ``+`` allowed there).

    ``mAP@no_tir`` -> ``mAP/no_tir``; ``mAP@rgb->nir+tir`` -> ``mAP/rgb_to_nir.tir``; others unchanged.
    """
    if "@" not in name:
        return name
    metric, setting = name.split("@", 1)
    return f"{metric}/{setting.replace('->', '_to_').replace('+', '.')}"


def metric_name(key: str) -> str:
    """Inverse of :func:`mlflow_key`."""
    if "/" not in key:
        return key
    metric, setting = key.split("/", 1)
    return f"{metric}@{setting.replace('_to_', '->').replace('.', '+')}"


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
    """The current git commit of the working directory, or ``unknown``."""
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
    run = Run(uri, experiment_id, name, {**tags, "reused_from": source.run_id}, parent_run_id)
    run.log_params(source.params)
    run.log_metrics(source.metrics)
    run.finish()
    return run.run_id


def search_runs(uri: str, experiment: str = DEFAULT_EXPERIMENT, filter_string: str = "") -> Any:
    """Runs of ``experiment`` as a pandas DataFrame (``metrics.*``, ``params.*``, ``tags.*`` columns).

    Metric columns carry the contract names (``metrics.mAP@no_tir``), decoded from MLflow's keys.
    """
    import mlflow

    mlflow.set_tracking_uri(uri)
    frame = mlflow.search_runs(experiment_names=[experiment], filter_string=filter_string)
    return frame.rename(columns=lambda c: "metrics." + metric_name(c[8:]) if c.startswith("metrics.") else c)


def _check_store(uri: str) -> None:
    """A UserError when a SQLite store does not exist (reading must not create an empty one)."""
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
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
