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
    [(stem, fig)] = plots.ablation_figures(numeric_ablation(), ["mAP"])
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
    [(_, fig)] = plots.ablation_figures(frame, ["mAP"])
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
    [(stem, fig)] = plots.ablation_figures(runs_frame(rows), ["mAP"])
    ax = fig.axes[0]
    bars = [p for p in ax.patches if isinstance(p, Rectangle) and p.get_height() > 0]
    assert len(bars) == 3 * 2  # 3 variants x 2 methods
    assert sorted(round(b.get_height(), 6) for b in bars) == pytest.approx(sorted([51, 61, 71] * 2))
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels == ["ce+triplet\n(default)", "ce", "ce+triplet+center"]
    assert ax.get_xlabel() == "loss terms"


def test_modality_subsets_and_scales():
    assert plots.value_label("['rgb', 'nir']") == "RGB+NIR"
    assert plots.numeric_values(pd.Series(["1", "2.5"])).tolist() == [1.0, 2.5]
    assert plots.numeric_values(pd.Series(["True", "False"])) is None
    assert plots.numeric_values(pd.Series(["ce", "1"])) is None
    assert plots.log_base(np.array([1, 2, 4, 8])) == 2
    assert plots.log_base(np.array([1e-4, 3e-4, 1e-3, 1e-2])) == 10
    assert plots.log_base(np.array([0.1, 0.2, 0.3])) is None


@pytest.mark.slow
def test_training_curves_mean_over_seeds_with_map_when_evaluated(tmp_path):
    runs = runs_frame([{"method": m, "dataset": "synthetic", "seed": s} for m in ("a", "b") for s in SEEDS])
    hist = []
    for run_id, method in zip(runs["run_id"], runs["method"], strict=True):
        for epoch in range(4):
            hist.append((run_id, "train_loss", epoch, 3.0 - epoch * (0.5 if method == "a" else 0.3), epoch))
            if method == "b":  # evaluated every epoch; the final value is logged again at step 0 later
                hist.append((run_id, "mAP", epoch, 0.1 * (epoch + 1), epoch))
        hist.append((run_id, "mAP", 0, 0.4, 99))
    histories = pd.DataFrame(hist, columns=["run_id", "key", "step", "value", "timestamp"])
    [(stem, fig)] = plots.curve_figures(runs, histories)
    assert stem == "curves_synthetic"
    loss_ax, map_ax = fig.axes
    assert len(data_lines(loss_ax)) == 2 and len(data_lines(map_ax)) == 1  # only b was evaluated per epoch
    assert list(data_lines(map_ax)[0].get_ydata()) == pytest.approx([10, 20, 30, 40])
    assert list(data_lines(loss_ax)[0].get_xdata()) == [1, 2, 3, 4]  # epochs are 1-based
    paths = plots.save(fig, tmp_path / "figs", stem)
    assert [p.name for p in paths] == ["curves_synthetic.png", "curves_synthetic.pdf"]
    assert all(p.stat().st_size > 5000 for p in paths)
