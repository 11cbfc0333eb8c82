"""Ablation plots and training curves: panels, lines, bars, axis scales, default marks, files written."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PolyCollection
from matplotlib.patches import Rectangle

from reidbench.report import plots

SEEDS = (0, 1, 2)


def runs_frame(rows: list[dict]) -> pd.DataFrame:
    """A tidy runs frame like reidbench.report.collect.tidy_runs returns."""
    base = {"ablation": "", "axis": "", "value": "", "axis_default": "", "variant": "", "seed": 0}
    frame = pd.DataFrame([{**base, **r} for r in rows])
    frame["label"] = frame["method"]
    frame["run_id"] = [f"r{i}" for i in range(len(frame))]
    return frame


def numeric_ablation() -> pd.DataFrame:
    rows = [
        {
            "method": m,
            "dataset": d,
            "seed": s,
            "ablation": "fusion_tokens",
            "axis": "method.fusion_tokens",
            "value": str(t),
            "axis_default": "4",
            "mAP": 0.4 + 0.01 * t + 0.01 * s + (0.05 if m == "b" else 0),
        }
        for d in ("synthetic", "rgbnt100", "rgbn300")
        for m in ("a", "b")
        for t in (1, 2, 4, 8, 16, 32)
        for s in SEEDS
    ]
    return runs_frame(rows)


def data_lines(ax) -> list:
    """Lines carrying data: not the default marker, not legend handles."""
    return [
        line for line in ax.get_lines() if line.get_gid() != plots.DEFAULT_GID and len(line.get_xdata()) > 1
    ]


def test_numeric_ablation_one_panel_per_dataset_mean_line_and_std_band_per_method():
    [plot] = plots.ablation_figures(numeric_ablation(), ["mAP"])
    stem, fig = plot.stem, plot.figure
    assert stem == "ablation_fusion_tokens_mAP"
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) == 3  # one panel per dataset (2 x 2 grid, the fourth hidden)
    assert [ax.get_title() for ax in axes] == ["Synthetic", "RGBNT100", "RGBN300"]
    for ax in axes:
        lines = data_lines(ax)
        assert len(lines) == 2  # methods a and b
        assert sum(isinstance(c, PolyCollection) for c in ax.collections) == 2  # ± std bands
        np.testing.assert_allclose(sorted(lines[0].get_xdata()), [1, 2, 4, 8, 16, 32])
        expected_a = [100 * (0.4 + 0.01 * t + 0.01) for t in (1, 2, 4, 8, 16, 32)]  # mean over seeds 0, 1, 2
        assert sorted(lines[0].get_ydata()) == pytest.approx(expected_a) or sorted(
            lines[1].get_ydata()
        ) == pytest.approx(expected_a)
        assert ax.get_xscale() == "log"  # powers of two spanning 32x: log2 axis
        default = [line for line in ax.get_lines() if line.get_gid() == plots.DEFAULT_GID]
        assert len(default) == 1 and default[0].get_xdata()[0] == 4
        assert ax.get_ylabel() == "mAP (%)" and ax.get_xlabel() == "fusion tokens (count)"
    assert fig.get_figwidth() == pytest.approx(2 * plots.PANEL_W)


def test_std_band_is_the_sample_std_over_seeds():
    frame = numeric_ablation()
    frame = frame[(frame["dataset"] == "synthetic") & (frame["method"] == "a")]
    fig = plots.ablation_figures(frame, ["mAP"])[0].figure
    band = next(c for c in fig.axes[0].collections if isinstance(c, PolyCollection))
    ys = band.get_paths()[0].vertices[:, 1]
    values = 100 * (0.4 + 0.01 * 1 + 0.01 * np.array(SEEDS))
    spread = np.std(values, ddof=1)
    assert ys.max() - ys.min() >= 2 * spread - 1e-6  # band covers mean ± sample std at x=1
    assert np.isclose(ys, values.mean() - spread).any() and np.isclose(ys, values.mean() + spread).any()


def test_categorical_ablation_is_grouped_bars_with_default_marked():
    rows = [
        {
            "method": m,
            "dataset": "synthetic",
            "seed": s,
            "ablation": "loss",
            "axis": "loss.variant",
            "value": v,
            "axis_default": "ce+triplet",
            "mAP": 0.5 + 0.1 * v.count("+") + 0.01 * s,
        }
        for m in ("a", "b")
        for v in ("ce", "ce+triplet", "ce+triplet+center")
        for s in SEEDS
    ]
    [plot] = plots.ablation_figures(runs_frame(rows), ["mAP"])
    fig = plot.figure
    ax = fig.axes[0]
    bars = [p for p in ax.patches if isinstance(p, Rectangle) and p.get_height() > 0]
    assert len(bars) == 3 * 2  # 3 variants x 2 methods
    assert sorted(round(b.get_height(), 6) for b in bars) == pytest.approx(sorted([51, 61, 71] * 2))
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels == ["ce+triplet\n(default)", "ce", "ce+triplet+center"]
    assert ax.get_xlabel() == "loss terms"


def test_modality_subsets_and_scales():
    assert plots.knob_tick_label("['rgb', 'nir']") == "RGB+NIR"
    assert plots.numeric_values(pd.Series(["1", "2.5"])).tolist() == [1.0, 2.5]
    assert plots.numeric_values(pd.Series(["True", "False"])) is None
    assert plots.numeric_values(pd.Series(["ce", "1"])) is None
    assert plots.log_base(np.array([1, 2, 4, 8])) == 2
    assert plots.log_base(np.array([1e-4, 3e-4, 1e-3, 1e-2])) == 10
    assert plots.log_base(np.array([0.1, 0.2, 0.3])) is None


def test_numeric_ablation_caption_names_metric_datasets_seeds_and_default():
    [plot] = plots.ablation_figures(numeric_ablation().assign(epochs=6, recipe="tiny"), ["mAP"])
    for needle in ("mAP (%)", "Synthetic, RGBNT100, RGBN300", "n = 3 seeds", "6 epochs", "recipe tiny"):
        assert needle in plot.caption, needle
    assert "The default (4): dotted line" in plot.caption and plot.wide


def test_results_figure_bars_per_method_and_metric_with_std_error_bars():
    rows = [
        {"method": m, "dataset": "synthetic", "seed": s, "mAP": 0.5 + 0.1 * i + 0.01 * s, "rank1": 0.6}
        for i, m in enumerate(("a", "b"))
        for s in SEEDS
    ]
    [plot] = plots.results_figures(runs_frame(rows), ["mAP", "rank1"])
    assert plot.stem == "results_synthetic" and not plot.wide  # one panel: one paper column
    ax = plot.figure.axes[0]
    bars = sorted(round(p.get_height(), 6) for p in ax.patches if isinstance(p, Rectangle) and p.get_height())
    assert bars == pytest.approx([51, 60, 60, 61])  # mean over seeds: a, b x mAP, R1
    spreads = sorted(np.nanmax(line.get_ydata()) - np.nanmin(line.get_ydata()) for line in ax.get_lines())
    assert spreads == pytest.approx([0, 0, 2, 2])  # ± sample std (1 %) of mAP; R1 does not vary
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b"]
    for needle in ("Results on Synthetic", "mAP, Rank-1 (%)", "n = 3 seeds", "sample std"):
        assert needle in plot.caption, needle


def curve_histories(runs: pd.DataFrame) -> pd.DataFrame:
    """Per-epoch loss terms (a: ce + triplet, b: ce + center), their total, lr; one duplicate step."""
    hist = []
    for run_id, method in zip(runs["run_id"], runs["method"], strict=True):
        other = "train_triplet" if method == "a" else "train_center"
        for epoch in range(4):
            ce, extra = 3.0 - 0.5 * epoch, 1.0 - 0.1 * epoch
            for key, value in (("train_ce", ce), (other, extra), ("train_loss", ce + extra), ("lr", 1e-3)):
                hist.append((run_id, key, epoch, value, epoch))
        hist.append((run_id, "train_ce", 0, 99.0, 99))  # logged again later: the first value counts
        hist.append((run_id, "train_time_s", 0, 60.0, 99))  # a final metric, not a curve
    return pd.DataFrame(hist, columns=["run_id", "key", "step", "value", "timestamp"])


def test_training_curves_are_small_multiples_per_method_with_a_line_per_loss_term(tmp_path):
    runs = runs_frame([{"method": m, "dataset": "synthetic", "seed": s} for m in ("a", "b") for s in SEEDS])
    [plot] = plots.curve_figures(runs, curve_histories(runs))
    assert plot.stem == "curves_synthetic"
    panels = [ax for ax in plot.figure.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["a", "b"]  # one panel per method
    for ax in panels:
        lines = data_lines(ax)
        assert len(lines) == 3  # ce, the method's own term, total
        ce = next(line for line in lines if line.get_ydata()[0] == pytest.approx(3.0))
        assert list(ce.get_xdata()) == [1, 2, 3, 4]  # epochs are 1-based; the duplicate step is dropped
    lr = [line for ax in plot.figure.axes for line in ax.get_lines() if line.get_gid() == plots.LR_GID]
    assert len(lr) == 2
    legend = [t.get_text() for t in plot.figure.legends[0].get_texts()]
    assert legend == ["ce", "center", "triplet", "total"]
    for needle in ("Training curves on Synthetic", "one panel per method", "n = 3 seeds", "learning rate"):
        assert needle in plot.caption, needle
    paths = plots.save(plot.figure, tmp_path / "figs", plot.stem)
    assert [p.name for p in paths] == ["curves_synthetic.png", "curves_synthetic.pdf"]
    assert all(p.stat().st_size > 5000 for p in paths)
