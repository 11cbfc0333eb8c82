"""Ablation plots and training curves (seaborn), sized for a paper column (3.5 in per panel), PNG + PDF.

Every function takes the tidy per-run frame of :mod:`reidbench.report.collect` (one row per run, metrics as
fractions) and returns ``(stem, Figure)`` pairs; :func:`save` writes them.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import FuncFormatter, MaxNLocator, NullLocator  # noqa: E402

from reidbench.report.formatting import ACCURACY_METRICS, axis_label, dataset_name, modality_list  # noqa: E402

PANEL_W, PANEL_H = 3.5, 2.4  # inches: one panel fits a paper column
STYLE = {
    **sns.axes_style("whitegrid"),
    **sns.plotting_context("paper"),
    "font.size": 8,
    "axes.labelsize": 8,
    "axes.titlesize": 8,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "legend.fontsize": 7,
    "legend.title_fontsize": 7,
    "lines.linewidth": 1.2,
    "lines.markersize": 4,
}
DEFAULT_GID = "default"  # gid of the marker line for the knob's default (tests count lines without it)


def metric_label(metric: str) -> str:
    """``rank1`` -> ``Rank-1 (%)``, ``mAP`` -> ``mAP (%)``."""
    name = f"Rank-{metric[4:]}" if metric.startswith("rank") else ACCURACY_METRICS.get(metric, metric)
    return f"{name} (%)"


def value_label(value: str) -> str:
    """Knob value for a tick label: list reprs of modalities become ``RGB+NIR``."""
    text = value.strip()
    if text.startswith("[") and text.endswith("]"):
        parts = [p.strip(" '\"") for p in text[1:-1].split(",") if p.strip(" '\"")]
        return modality_list("+".join(parts))
    return text


def numeric_values(values: pd.Series) -> pd.Series | None:
    """The values as floats when every one parses as a number (and none is a bool), else None."""
    if values.isin(["True", "False"]).any():
        return None
    parsed = pd.to_numeric(values, errors="coerce")
    return None if parsed.isna().any() else parsed.astype(float)


def log_base(values: np.ndarray) -> int | None:
    """2 for powers of two spanning >= 8x, 10 for positive values spanning >= 100x, else None (linear)."""
    values = np.unique(values)
    if len(values) < 3 or values.min() <= 0:
        return None
    ratio = values.max() / values.min()
    if ratio >= 8 and np.allclose(np.log2(values), np.round(np.log2(values))):
        return 2
    return 10 if ratio >= 100 else None


def _grid(n: int) -> tuple[Figure, list]:
    cols = min(n, 2)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(PANEL_W * cols, PANEL_H * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel().tolist()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def _one_legend(axes: list, title: str | None) -> None:
    """Keep the legend of the first panel only (when there is more than one entry)."""
    for i, ax in enumerate(axes):
        legend = ax.get_legend()
        if legend is None:
            continue
        handles, labels = ax.get_legend_handles_labels()
        legend.remove()
        if i == 0 and len(labels) > 1:
            ax.legend(handles, labels, title=title, frameon=False)


def ablation_figures(runs: pd.DataFrame, metrics: list[str]) -> list[tuple[str, Figure]]:
    """Per ablation and metric: metric vs knob, one panel per dataset, one line (or bar colour) per method.

    Numeric knobs: mean line with a ± sample-std band over seeds, log2 / log10 x axis when the values
    call for it, the default as a dotted vertical line. Categorical knobs: grouped bars with ± std error
    bars, the default's tick marked "(default)".
    """
    out = []
    for name, frame in runs[runs["ablation"] != ""].groupby("ablation", sort=True):
        numeric = numeric_values(frame["value"])
        for metric in metrics:
            if metric not in frame or frame[metric].isna().all():
                continue
            data = frame.assign(y=frame[metric] * 100)
            with matplotlib.rc_context(STYLE):
                fig = _numeric_ablation(data, numeric) if numeric is not None else _categorical_ablation(data)
                for ax in fig.axes:
                    ax.set_ylabel(metric_label(metric))
            out.append((f"ablation_{name}_{metric}", fig))
    return out


def _numeric_ablation(data: pd.DataFrame, numeric: pd.Series) -> Figure:
    data = data.assign(x=numeric)
    datasets = list(dict.fromkeys(data["dataset"]))
    fig, axes = _grid(len(datasets))
    base = log_base(data["x"].to_numpy())
    for ax, dataset in zip(axes, datasets, strict=True):
        part = data[data["dataset"] == dataset]
        sns.lineplot(
            part, x="x", y="y", hue="label", errorbar="sd", marker="o", ax=ax, err_kws={"alpha": 0.2}
        )
        if base:
            ax.set_xscale("log", base=base)
        ticks = np.unique(part["x"])
        ax.set_xticks(ticks)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_locator(NullLocator())
        default = numeric_values(part["axis_default"].iloc[:1])
        if default is not None:
            ax.axvline(float(default.iloc[0]), ls=":", color="0.35", lw=1, gid=DEFAULT_GID, label="default")
        ax.set_title(dataset_name(dataset))
        ax.set_xlabel(axis_label(part["axis"].iloc[0]))
    _one_legend(axes, None)
    return fig


def _categorical_ablation(data: pd.DataFrame) -> Figure:
    datasets = list(dict.fromkeys(data["dataset"]))
    fig, axes = _grid(len(datasets))
    default = data["axis_default"].iloc[0]
    order = list(dict.fromkeys(sorted(data["value"], key=lambda v: (v != default, v))))
    for ax, dataset in zip(axes, datasets, strict=True):
        part = data[data["dataset"] == dataset]
        sns.barplot(
            part,
            x="value",
            y="y",
            hue="label",
            order=order,
            errorbar="sd",
            capsize=0.15,
            err_kws={"linewidth": 0.8},
            ax=ax,
        )
        ax.set_xticks(range(len(order)))
        ax.set_xticklabels([value_label(v) + ("\n(default)" if v == default else "") for v in order])
        ax.set_title(dataset_name(dataset))
        ax.set_xlabel(axis_label(part["axis"].iloc[0]))
    _one_legend(axes, None)
    return fig


def curve_frame(runs: pd.DataFrame, histories: pd.DataFrame) -> pd.DataFrame:
    """Per-epoch values joined to the runs: ``epoch`` (1-based), ``key``, ``value``, and the run's
    ``dataset``, ``ablation``, ``knob`` (ablation value) and ``label``.

    ``mAP`` is kept only for runs evaluated at two or more epochs (the final value alone is no curve);
    where a step was logged twice the first value counts.
    """
    if histories.empty:
        return pd.DataFrame(columns=["run_id", "key", "epoch", "value"])
    hist = histories.sort_values("timestamp", kind="stable").drop_duplicates(["run_id", "key", "step"])
    steps = hist.groupby(["run_id", "key"])["step"].transform("nunique")
    hist = hist[(hist["key"] == "train_loss") | (steps >= 2)]
    hist = hist.assign(epoch=hist["step"] + 1)
    labels = runs[["run_id", "dataset", "ablation", "value", "label"]].rename(columns={"value": "knob"})
    return hist.merge(labels, on="run_id")


def curve_figures(runs: pd.DataFrame, histories: pd.DataFrame) -> list[tuple[str, Figure]]:
    """Training curves per dataset (one line per method, mean ± std over seeds): train loss, and mAP (%)
    where runs were evaluated during training. Ablations get their own figures, one line per knob value."""
    curves = curve_frame(runs, histories)
    out = []
    for (ablation, dataset), frame in curves.groupby(["ablation", "dataset"], sort=True):
        hue = "knob" if ablation else "label"
        keys = [k for k in ("train_loss", "mAP") if (frame["key"] == k).any()]
        with matplotlib.rc_context(STYLE):
            fig, axes = _grid(len(keys))
            for ax, key in zip(axes, keys, strict=True):
                part = frame[frame["key"] == key]
                part = part.assign(y=part["value"] * (100 if key == "mAP" else 1))
                sns.lineplot(
                    part,
                    x="epoch",
                    y="y",
                    hue=hue,
                    errorbar="sd",
                    ax=ax,
                    err_kws={"alpha": 0.2},
                    marker="o" if part["epoch"].nunique() < 15 else None,
                )
                ax.set_xlabel("epoch")
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
                ax.set_ylabel("training loss" if key == "train_loss" else "mAP (%)")
                ax.set_title(dataset_name(dataset) + (f" — {ablation}" if ablation else ""))
            _one_legend(axes, None)
        stem = f"curves_{ablation}_{dataset}" if ablation else f"curves_{dataset}"
        out.append((stem, fig))
    return out


def save(fig: Figure, out_dir: Path, stem: str) -> list[Path]:
    """Write ``stem``.png (300 dpi) and ``stem``.pdf under ``out_dir`` (layout is constrained: no tight bbox)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{stem}.png", out_dir / f"{stem}.pdf"]
    for path in paths:
        fig.savefig(path, dpi=300)
    return paths
