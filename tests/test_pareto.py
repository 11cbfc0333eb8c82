"""The Pareto front against a brute-force reference, and the pruning figure built from tidy round runs."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from reidbench.report.pareto import REPORTED_MARK, pareto_figures, pareto_front, prune_rounds, summarise
from reidbench.report.published import ReportedPoint, default_path, load_pruning_points, load_published


def brute_front(cost, score) -> set[int]:
    """Points no other point dominates (cost <= and score >= with one strict), written plainly."""
    keep = set()
    for i in range(len(cost)):
        dominated = any(
            cost[j] <= cost[i] and score[j] >= score[i] and (cost[j] < cost[i] or score[j] > score[i])
            for j in range(len(cost))
        )
        if not dominated:
            keep.add(i)
    return keep


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6)), min_size=1, max_size=12, unique=True))
def test_pareto_front_matches_the_brute_force_definition(points):
    cost, score = (np.array(v, dtype=float) for v in zip(*points, strict=True))
    front = pareto_front(cost, score)
    assert set(front.tolist()) == brute_front(cost, score)
    assert list(cost[front]) == sorted(cost[front])


def _rounds(dataset: str = "synthetic") -> pd.DataFrame:
    rows = []
    for schedule, keep in (("unstructured-l1", 0.8), ("structured", 0.7)):
        for seed in (0, 1):
            for r in range(4):
                rows.append(
                    {
                        "method": "graft",
                        "dataset": dataset,
                        "ablation": f"prune_{schedule}",
                        "axis": "prune.round",
                        "value": str(r),
                        "seed": seed,
                        "epochs": 2,
                        "recipe": "shared",
                        "mAP": 0.7 - 0.05 * r + 0.01 * seed,
                        "nonzero_params": 1e6 * keep**r,
                        "params": 1e6 * (1 if schedule != "structured" else keep**r),
                        "gflops": 0.5 * (1 if schedule != "structured" else keep**r),
                        "throughput": 100.0 / (1 if schedule != "structured" else keep**r),
                    }
                )
    rows.append({**rows[0], "ablation": "", "value": ""})  # an ordinary run: not a pruning round
    return pd.DataFrame(rows)


def test_rounds_are_summarised_over_seeds_per_schedule_and_round():
    rounds = prune_rounds(_rounds())
    assert len(rounds) == 16 and set(rounds["schedule"]) == {"unstructured-l1", "structured"}
    summary = summarise(rounds, "latency_ms")
    row = summary[(summary["schedule"] == "structured") & (summary["round"] == 2)].iloc[0]
    assert row["n"] == 2
    assert np.isclose(row["x"], 1000 / 100 * 0.7**2)
    assert np.isclose(row["y"], 0.605) and np.isclose(row["y_std"], np.std([0.6, 0.61], ddof=1))


def test_pareto_figure_has_a_panel_per_cost_and_marks_reported_points_on_their_dataset_only():
    reported = [ReportedPoint("graft", "rgbn300", 80.0, 75.1, True, "paper")]
    runs = pd.concat([_rounds("synthetic"), _rounds("rgbn300")], ignore_index=True)
    plots = {p.stem: p for p in pareto_figures(runs, reported)}
    assert set(plots) == {"pareto_synthetic", "pareto_rgbn300"}
    for stem, plot in plots.items():
        axes = [ax for ax in plot.figure.axes if ax.get_visible()]
        assert [ax.get_xlabel() for ax in axes] == [
            "non-zero parameters (M)",
            "GFLOPs per sample",
            "latency (ms per sample)",
        ]
        labels = [line.get_label() for line in axes[0].get_lines()]
        assert (f"graft, paper{REPORTED_MARK}" in labels) == (stem == "pareto_rgbn300")
        assert (REPORTED_MARK in plot.caption) == (stem == "pareto_rgbn300")
        assert "n = 2 seeds" in plot.caption


def test_repository_pruning_points_are_graft_on_rgbn300_and_stay_out_of_the_leaderboard():
    points = load_pruning_points(default_path())
    assert [(p.params_m, p.mAP) for p in points if p.pruned] == [
        (80.0, 75.1),
        (71.0, 74.5),
        (54.0, 72.5),
        (36.0, 65.9),
        (26.0, 57.2),
    ]
    assert [(p.params_m, p.mAP) for p in points if not p.pruned] == [(97.0, 75.1)]
    graft = [g for g in load_published(default_path()) if g.method == "graft" and g.dataset == "rgbn300"]
    assert len(graft) == 1 and graft[0].cells["mAP"].mean == 75.1 / 100
