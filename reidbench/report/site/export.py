"""``results.json``: the report's numbers for other tools and leaderboard sites.

One entry per (task, dataset, metric, method) — and recipe, variant, evaluation setting or ablation point
where those tell entries apart — with the aggregate over seeds (mean, sample std, n, 95 % interval), each
seed's value, and the run ids and config hashes behind it. Values are in the runs' own units (accuracy as
a fraction, as MLflow holds it). Published rows carry their source instead of runs. The schema is in the
README (section "Results site and results.json").
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from reidbench.generalisation import split_target
from reidbench.report.collect import Group
from reidbench.report.formatting import ACCURACY_METRICS
from reidbench.report.model import Report
from reidbench.report.site import runs as R
from reidbench.report.site.boards import reported_groups
from reidbench.report.stats import FRACTION, ci95

SCHEMA = "reidbench-results"
VERSION = 1
UNITS = {
    **dict.fromkeys(ACCURACY_METRICS, "fraction"),
    "params": "parameters",
    "nonzero_params": "parameters",
    "gflops": "GFLOPs per sample",
    "train_images_per_s": "images/s",
    "train_samples_per_s": "samples/s",
    "train_time_s": "s",
    "throughput": "samples/s",
}


def task_of(key: str, group: Group) -> tuple[str, str, str, str]:
    """``(task, metric, setting, test_dataset)`` of metric ``key`` of ``group``: ``reid`` (every modality,
    the dataset's own test split), ``missing_modality`` / ``cross_modal`` (setting ``no_tir`` /
    ``rgb->nir``), ``cross_domain`` (test_dataset the target), another evaluation setting by its name
    (``rerank``), ``ablation`` / ``pruning`` for ablation points."""
    target = split_target(key)
    metric, test_dataset = (target[0], target[1]) if target else (key, group.dataset)
    metric, _, setting = metric.partition("@")
    if group.ablation:
        task = "pruning" if group.ablation.startswith("prune_") else "ablation"
    elif target:
        task = "cross_domain"
    elif "->" in setting:
        task = "cross_modal"
    elif setting.startswith("no_"):
        task = "missing_modality"
    else:
        task = setting or "reid"
    return task, metric, setting, test_dataset


def _number(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def group_entries(report: Report, group: Group) -> list[dict[str, Any]]:
    """The entries of one group: a metric each."""
    runs = R.group_runs(report.runset.runs, group) if not group.reported else None
    ids = [str(r) for r in runs["run_id"]] if runs is not None else []
    hashes = R.tag_values(report.frame, ids, "config_hash")
    out = []
    for key, cell in sorted(group.cells.items()):
        task, metric, setting, test_dataset = task_of(key, group)
        interval = ci95(cell, FRACTION if UNITS.get(metric) == "fraction" else None)
        entry: dict[str, Any] = {
            "task": task,
            "dataset": group.dataset,
            "test_dataset": test_dataset,
            "setting": setting,
            "metric": metric,
            "unit": UNITS.get(metric, ""),
            "method": group.method,
            "recipe": group.recipe,
            "variant": group.variant,
            "published": group.reported,
            "partial_data": group.partial,
            "mean": _number(cell.mean),
            "std": _number(cell.std),
            "n": cell.n,
            "ci95": [interval[0], interval[1]] if interval else None,
        }
        if group.ablation:
            entry["ablation"] = {
                "name": group.ablation,
                "axis": group.axis,
                "value": group.value,
                "default": group.axis_default,
            }
        if runs is not None:
            values = runs[key] if key in runs else None
            kept = [i for i, v in enumerate(values) if math.isfinite(v)] if values is not None else []
            entry |= {
                "seeds": [int(runs["seed"].iloc[i]) for i in kept],
                "values": [float(values.iloc[i]) for i in kept],
                "run_ids": [ids[i] for i in kept],
                "config_hashes": [hashes[i] for i in kept],
            }
        else:
            entry |= {
                "source": group.source,
                "selection": group.selection,
                "seeds_stated": group.seeds_text,
                "backbone": group.backbone,
                "note": group.note,
            }
        out.append(entry)
    return out


def results_json(report: Report) -> dict[str, Any]:
    """The whole export: schema name and version, where it came from, the entries."""
    groups = [*report.groups, *reported_groups(report)]
    return {
        "schema": SCHEMA,
        "version": VERSION,
        "generated": datetime.now(UTC).isoformat(timespec="seconds"),
        "experiment": report.experiment,
        "runs": len(report.runset.runs),
        "selection": "last-epoch: the model after the last epoch of a fixed budget, evaluated once",
        "entries": [e for g in groups for e in group_entries(report, g)],
    }
