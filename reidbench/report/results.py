"""Terminal result tables for the runs just finished (``reidbench run``), built like ``reidbench
report``'s."""

from __future__ import annotations

import pandas as pd
from rich.console import Console

from reidbench.report.assemble import build_tables
from reidbench.report.collect import aggregate, tidy_runs
from reidbench.report.formatting import ACCURACY_METRICS
from reidbench.report.terminal import print_tables


def results_frame(results: list) -> pd.DataFrame:
    """RunResults as a ``search_runs``-style frame (tags, flattened config params, metrics)."""
    from reidbench.config import to_dict
    from reidbench.tracking import flatten

    rows = []
    for i, r in enumerate(results):
        spec = r.spec
        row = {
            "run_id": r.run_id or f"local-{i}",
            "start_time": pd.Timestamp(i, unit="s"),
            "tags.method": spec.method,
            "tags.dataset": spec.dataset,
            "tags.seed": str(spec.seed),
            **{f"tags.{k}": v for k, v in spec.tags.items()},
            **{f"params.{k}": v for k, v in flatten(to_dict(spec.config())).items()},
            **{f"metrics.{k}": v for k, v in r.metrics.items()},
        }
        rows.append(row)
    return pd.DataFrame(rows)


def print_results(console: Console, results: list) -> None:
    """Leaderboard (every accuracy metric as mean ± sample std over seeds), cost, and any missing-modality,
    cross-modal or ablation tables of ``results`` (runs on partial data included, marked: they were just
    asked for)."""
    groups = aggregate(tidy_runs(results_frame(results), include_partial=True))
    print_tables(console, build_tables(groups, [], list(ACCURACY_METRICS)), caption=False)
