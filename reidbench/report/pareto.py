"""Pruning studies as Pareto figures: mAP against model size, compute and latency.

Each pruning round is a run tagged ``ablation = prune_<schedule>``, ``axis = prune.round``, ``value =
<round>`` (round 0: the unpruned model). Per method x schedule x round the figure shows the mean mAP with ±
sample-std error bars over seeds against one cost (non-zero parameters, GFLOPs per sample, latency per
sample), a marker per schedule, and the Pareto front of our points (lower cost, higher mAP) as a dashed
step line. Reported points (results/published.csv, setting ``pruned``) are drawn hollow and marked † in the
legend; they are on their paper's dataset and backbone, not comparable in absolute terms to ours.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from reidbench.report.formatting import dataset_name
from reidbench.report.plots import STYLE, Plot, _grid, matplotlib, runs_sentence
from reidbench.report.prune_series import PRUNE_PREFIX
from reidbench.report.published import ReportedPoint

REPORTED_MARK = "†"
# cost axis -> (column, label, scale to the shown unit)
COSTS = {
    "params": ("nonzero_params", "non-zero parameters (M)", 1e-6),
    "gflops": ("gflops", "GFLOPs per sample", 1.0),
    "latency": ("latency_ms", "latency (ms per sample)", 1.0),
}


def pareto_front(cost: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Indices of the non-dominated points (no other point has cost <= and score >=, one strictly),
    ordered by cost."""
    order = np.lexsort((-score, cost))
    front, best = [], -np.inf
    for i in order:
        if score[i] > best:
            front.append(i)
            best = score[i]
    return np.asarray(front, dtype=int)


def prune_rounds(runs: pd.DataFrame) -> pd.DataFrame:
    """The pruning rounds among tidy runs, with ``schedule``, ``round`` and ``latency_ms`` columns."""
    rounds = runs[runs["ablation"].str.startswith(PRUNE_PREFIX)].copy()
    rounds["schedule"] = rounds["ablation"].str.removeprefix(PRUNE_PREFIX)
    rounds["round"] = pd.to_numeric(rounds["value"], errors="coerce").astype("Int64")
    if "label" not in rounds:  # the series label of tidy runs (recipe, variant such as the fraction)
        rounds["label"] = rounds["method"]
    if "throughput" in rounds:
        rounds["latency_ms"] = 1000.0 / rounds["throughput"]
    return rounds


def summarise(rounds: pd.DataFrame, column: str, metric: str = "mAP") -> pd.DataFrame:
    """Per series (method, recipe, variant: the report's group key) x dataset x schedule x round: mean and
    sample std of ``column`` and ``metric``, seeds."""
    grouped = rounds.groupby(["label", "dataset", "schedule", "round"], sort=True)
    out = grouped.agg(
        x=(column, "mean"),
        x_std=(column, "std"),
        y=(metric, "mean"),
        y_std=(metric, "std"),
        n=("seed", "nunique"),
    )
    return out.reset_index()


def pareto_figures(runs: pd.DataFrame, reported: list[ReportedPoint], metric: str = "mAP") -> list[Plot]:
    """Per dataset: one figure, a panel per cost axis the runs measured (params, GFLOPs, latency)."""
    rounds = prune_rounds(runs)
    out = []
    for dataset, frame in rounds.groupby("dataset", sort=True):
        costs = [c for c, (col, _, _) in COSTS.items() if col in frame and frame[col].notna().any()]
        if not costs or frame[metric].isna().all():
            continue
        points = [p for p in reported if p.dataset == dataset]
        with matplotlib.rc_context(STYLE):
            fig, axes = _grid(len(costs), max_cols=3)
            for ax, cost in zip(axes, costs, strict=True):
                _panel(ax, frame, cost, metric, points if cost == "params" else [])
            handles, labels = axes[0].get_legend_handles_labels()
            for ax in axes:
                if ax.get_legend() is not None:
                    ax.get_legend().remove()
            fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 4), frameon=False)
        caption = _caption(dataset, frame, costs, metric, points)
        out.append(Plot(f"pareto_{dataset}", fig, caption, _numbers(frame, costs, metric)))
    return out


def _numbers(frame: pd.DataFrame, costs: list[str], metric: str) -> pd.DataFrame:
    """The points of every panel as plotted: cost axis and value (its unit), ``metric`` in %, n."""
    parts = []
    for cost in costs:
        column, label, scale = COSTS[cost]
        part = summarise(frame, column, metric).rename(columns={"label": "series"})
        parts.append(
            part.assign(
                cost=label,
                x=part["x"] * scale,
                x_std=part["x_std"] * scale,
                y=part["y"] * 100,
                y_std=part["y_std"] * 100,
                metric=metric,
            )
        )
    return pd.concat(parts, ignore_index=True)


def _panel(ax, frame: pd.DataFrame, cost: str, metric: str, points: list[ReportedPoint]) -> None:
    column, label, scale = COSTS[cost]
    summary = summarise(frame, column, metric)
    markers = dict(zip(sorted(summary["schedule"].unique()), "os^Dv", strict=False))
    for (series, schedule), part in summary.groupby(["label", "schedule"], sort=True):
        ax.errorbar(
            part["x"] * scale,
            part["y"] * 100,
            xerr=part["x_std"].fillna(0) * scale,
            yerr=part["y_std"].fillna(0) * 100,
            marker=markers[schedule],
            linestyle=":",
            capsize=2,
            label=f"{series} ({schedule})",
        )
    front = pareto_front(summary["x"].to_numpy(), summary["y"].to_numpy())
    ax.step(
        summary["x"].to_numpy()[front] * scale,
        summary["y"].to_numpy()[front] * 100,
        where="post",
        color="0.4",
        linestyle="--",
        linewidth=0.8,
        label="Pareto front (ours)",
    )
    for method in sorted({p.method for p in points}):
        mine = sorted((p for p in points if p.method == method), key=lambda p: p.params_m)
        ax.plot(
            [p.params_m for p in mine],
            [p.mAP for p in mine],
            marker="o",
            markerfacecolor="none",
            linestyle="-",
            linewidth=0.6,
            color="0.55",
            label=f"{method}, paper{REPORTED_MARK}",
        )
    ax.set_xlabel(label)
    ax.set_ylabel(f"{metric} (%)")


def _caption(dataset: str, frame: pd.DataFrame, costs: list[str], metric: str, points: list) -> str:
    schedules = ", ".join(sorted(frame["schedule"].unique()))
    rounds = int(frame["round"].max())
    axes = ", ".join(COSTS[c][1] for c in costs)
    text = (
        f"Pruning on {dataset_name(dataset)}: {metric} against {axes}; schedules {schedules}, rounds 0 "
        f"(unpruned) to {rounds}; points: {runs_sentence(frame, ['label', 'schedule', 'round'])} Dashed: "
        "the Pareto front of our points."
    )
    if points:
        text += (
            f" {REPORTED_MARK} Reported by the paper (read off its figure; parameters there are non-zero "
            "weights), on its own data and backbone."
        )
    return text
