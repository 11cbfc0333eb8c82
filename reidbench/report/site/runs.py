"""The runs behind a report group, as the site shows them: their raw MLflow records, links, config.

Every helper reads the :class:`~reidbench.report.Report` as built by ``load_report``: the tidy runs
(``report.runset.runs``) for what a group averaged, the raw frame (``report.frame``) for params and tags.
"""

from __future__ import annotations

import re

import pandas as pd

from reidbench.report.collect import Group
from reidbench.report.grouping import group_key

SAFE = re.compile(r"[^A-Za-z0-9_.@+-]")


def group_runs(runs: pd.DataFrame, group: Group) -> pd.DataFrame:
    """The tidy runs ``group`` aggregates (the report's :func:`~reidbench.report.grouping.group_key`), by
    seed."""
    key = group_key(group)
    mask = [group_key(row) == key for _, row in runs.iterrows()]
    return runs[mask].sort_values("seed", kind="stable")


def raw_rows(frame: pd.DataFrame, run_ids: list[str]) -> pd.DataFrame:
    """The raw MLflow rows of ``run_ids`` (in that order); empty when the frame lacks them."""
    if frame.empty or "run_id" not in frame:
        return pd.DataFrame()
    indexed = frame.assign(run_id=frame["run_id"].astype(str)).drop_duplicates("run_id").set_index("run_id")
    return indexed.loc[[r for r in run_ids if r in indexed.index]]


def tag_values(frame: pd.DataFrame, run_ids: list[str], tag: str) -> list[str]:
    """Tag ``tag`` of each run in ``run_ids`` ("" where a run lacks it)."""
    rows = raw_rows(frame, run_ids)
    column = f"tags.{tag}"
    found = rows[column].fillna("").astype(str) if column in rows else pd.Series(dtype=str)
    return [str(found.get(r, "")) for r in run_ids]


def experiment_ids(frame: pd.DataFrame, run_ids: list[str]) -> list[str]:
    """The MLflow experiment id of each run ("" where unknown)."""
    rows = raw_rows(frame, run_ids)
    ids = rows["experiment_id"].astype(str) if "experiment_id" in rows else pd.Series(dtype=str)
    return [str(ids.get(r, "")) for r in run_ids]


def run_url(mlflow_url: str | None, experiment_id: str, run_id: str) -> str | None:
    """The run's page in the MLflow UI at ``mlflow_url`` (None without a URL or an experiment id)."""
    if not mlflow_url or not experiment_id:
        return None
    return f"{mlflow_url.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


def resolved_config(frame: pd.DataFrame, run_ids: list[str]) -> list[tuple[str, str]]:
    """The runs' resolved config (their flattened params), key by key; a key whose value differs between
    the runs (the seed) shows every run's value, ``a / b / c`` in ``run_ids`` order."""
    rows = raw_rows(frame, run_ids)
    params = sorted(c for c in rows.columns if c.startswith("params."))
    out = []
    for column in params:
        values = [str(v) for v in rows[column].fillna("")]
        if not any(values):
            continue
        shown = values[0] if len(set(values)) == 1 else " / ".join(values)
        out.append((column.removeprefix("params."), shown))
    return out


def page_slug(method: str, dataset: str, recipe: str) -> str:
    """File stem of the (method, dataset, recipe) page: ``late_fusion@synthetic.shared``."""
    return SAFE.sub("-", f"{method}@{dataset}" + (f".{recipe}" if recipe else ""))
