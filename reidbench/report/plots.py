"""Results, ablation plots and training curves (seaborn), sized for a paper column (3.5 in per panel),
PNG + PDF.

Every function takes the tidy per-run frame of :mod:`reidbench.report.collect` (one row per run, metrics as
fractions) and returns :class:`Plot` s (file stem, figure, caption); :func:`save` writes them. Captions say
what a figure shows, from the runs' own records: metric, dataset, seeds, epochs and recipe.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import FuncFormatter, MaxNLocator, NullLocator  # noqa: E402

from reidbench.report.formatting import (  # noqa: E402
    ACCURACY_METRICS,
    axis_label,
    dataset_name,
    modality_list,
)
from reidbench.report.tables import span, value_key  # noqa: E402
from reidbench.report.ticks import fit_x_labels  # noqa: E402

PANEL_W, PANEL_H = 3.5, 2.4  # inches: one panel fits a paper column
PAGE_W = 7.0  # inches: both columns
# Final (not per-epoch) metrics that share the ``train_`` prefix of the engine's per-term loss curves.
TRAIN_SUMMARIES = {"train_time_s", "train_samples_per_s", "train_images_per_s"}
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
LR_GID = "lr"  # gid of the learning-rate line on a curve panel's right axis


@dataclass
class Plot:
    """One figure: file stem, the matplotlib figure, its caption, and the numbers it plots (one row per
    point / bar / line vertex: the series, where it sits, mean, sample std, n), saved as ``stem``.csv."""

    stem: str
    figure: Figure
    caption: str
    data: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def wide(self) -> bool:
        """Wider than one paper column: set across both (``figure*``)."""
        return self.figure.get_figwidth() > PANEL_W + 0.01


def plotted(data: pd.DataFrame, by: list[str], y: str = "y") -> pd.DataFrame:
    """What a figure plots from ``data``: per ``by`` the mean, sample std (empty when n = 1) and n of ``y``
    (as the error bars / bands show them: seaborn's ``errorbar="sd"``)."""
    grouped = data.dropna(subset=[y]).groupby(by, sort=True)[y]
    out = grouped.agg(mean="mean", std="std", n="count").reset_index()
    return out


def metric_label(metric: str) -> str:
    """``rank1`` -> ``Rank-1 (%)``, ``mAP`` -> ``mAP (%)``."""
    name = f"Rank-{metric[4:]}" if metric.startswith("rank") else ACCURACY_METRICS.get(metric, metric)
    return f"{name} (%)"


def knob_tick_label(value: str) -> str:
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


def _grid(n: int, max_cols: int = 2) -> tuple[Figure, list]:
    """``n`` panels, up to ``max_cols`` a row, filling the page width (one column for a single panel)."""
    cols = min(n, max_cols)
    rows = math.ceil(n / cols)
    width = PANEL_W if cols == 1 else PAGE_W if max_cols > 2 else PANEL_W * cols
    height = PANEL_H if max_cols <= 2 else PANEL_H * 0.8
    fig = Figure(figsize=(width, height * rows), layout="constrained")
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


def runs_sentence(frame: pd.DataFrame, by: list[str]) -> str:
    """Seeds per point (``by`` the plotted keys), the epoch budget and recipe, as the runs record them."""
    seeds = span(list(frame.groupby(by)["seed"].nunique())) if len(frame) else "0"
    parts = [f"mean ± sample std over n = {seeds} seeds (none where n = 1)"]
    epochs = [e for e in frame.get("epochs", pd.Series(dtype=int)) if e]
    if epochs:
        parts.append(f"model after the last of {span([int(e) for e in epochs])} epochs")
    recipes = sorted(set(frame.get("recipe", pd.Series(dtype=str))) - {""})
    if recipes:
        parts.append(f"recipe {', '.join(recipes)}")
    return "; ".join(parts) + "."


def _datasets_text(frame: pd.DataFrame) -> str:
    return ", ".join(dataset_name(d) for d in dict.fromkeys(frame["dataset"]))


def results_figures(runs: pd.DataFrame, metrics: list[str]) -> list[Plot]:
    """Per dataset: ``metrics`` (%) per method as grouped bars, mean with ± sample-std error bars over seeds
    (the leaderboard as a figure; ablation runs are left out)."""
    main = runs[runs["ablation"] == ""]
    metrics = [m for m in metrics if m in main and main[m].notna().any()]
    out = []
    for dataset, frame in main.groupby("dataset", sort=False):
        data = frame.melt(id_vars=["label", "seed"], value_vars=metrics, var_name="metric", value_name="y")
        data = data.dropna(subset=["y"]).assign(y=lambda d: d["y"] * 100)
        data["metric"] = data["metric"].map(lambda m: metric_label(m).removesuffix(" (%)"))
        order = list(frame.groupby("label")[metrics[0]].mean().sort_values().index)
        with matplotlib.rc_context(STYLE):
            fig, [ax] = _grid(1)
            sns.barplot(
                data,
                x="label",
                y="y",
                hue="metric",
                order=order,
                errorbar="sd",
                capsize=0.15,
                err_kws={"linewidth": 0.8},
                ax=ax,
            )
            ax.set_xlabel("")
            ax.set_ylabel(f"{dataset_name(dataset)} (%)")
            handles, labels = ax.get_legend_handles_labels()
            ax.get_legend().remove()
            fig.legend(handles, labels, loc="outside upper center", ncols=len(metrics), frameon=False)
            fit_x_labels(fig, [ax])
        names = ", ".join(metric_label(m).removesuffix(" (%)") for m in metrics)
        caption = (
            f"Results on {dataset_name(dataset)}: {names} (%) per method, bars: "
            f"{runs_sentence(frame, ['label'])} Error bars: ± one sample std."
        )
        numbers = plotted(data.assign(dataset=dataset), ["dataset", "label", "metric"])
        out.append(Plot(f"results_{dataset}", fig, caption, numbers.rename(columns={"label": "series"})))
    return out


def ablation_figures(runs: pd.DataFrame, metrics: list[str]) -> list[Plot]:
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
            caption = _ablation_caption(name, metric, data, numeric)
            numbers = plotted(data.assign(metric=metric), ["dataset", "label", "axis", "value", "metric"])
            out.append(
                Plot(f"ablation_{name}_{metric}", fig, caption, numbers.rename(columns={"label": "series"}))
            )
    return out


def _ablation_caption(name: str, metric: str, data: pd.DataFrame, numeric: pd.Series | None) -> str:
    axis = axis_label(data["axis"].iloc[0])
    shape = "line: mean, band" if numeric is not None else "bars: mean, error bars"
    default = data["axis_default"].iloc[0]
    marked = "dotted line" if numeric is not None else "tick marked (default)"
    return (
        f"Ablation {name} on {_datasets_text(data)}: {metric_label(metric)} vs {axis}, "
        "one colour per method; "
        f"{shape}: ± one sample std; {runs_sentence(data, ['label', 'dataset', 'value'])}"
        + (f" The default ({default}): {marked}." if default else "")
    )


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
        ax.set_xticklabels([knob_tick_label(v) + ("\n(default)" if v == default else "") for v in order])
        ax.set_title(dataset_name(dataset))
        ax.set_xlabel(axis_label(part["axis"].iloc[0]))
    _one_legend(axes, None)
    fit_x_labels(fig, axes)
    return fig


def loss_terms(keys) -> list[str]:
    """The per-epoch training-loss keys among ``keys`` (``train_<term>``; the total ``train_loss`` last)."""
    terms = sorted(k for k in keys if k.startswith("train_") and k not in TRAIN_SUMMARIES)
    return sorted(terms, key=lambda k: k == "train_loss")


def curve_keys(metric_names) -> list[str]:
    """History keys to fetch for the curves: every loss term the runs logged, and the learning rate."""
    return [*loss_terms(metric_names), "lr"]


def curve_frame(runs: pd.DataFrame, histories: pd.DataFrame) -> pd.DataFrame:
    """Per-epoch loss terms and lr joined to the runs: ``epoch`` (1-based), ``key``, ``value``, and the
    run's ``dataset``, ``ablation``, ``knob`` (ablation value), ``label``, ``seed``, ``epochs``, ``recipe``.

    Where a step was logged twice the first value counts.
    """
    columns = ["run_id", "dataset", "ablation", "axis", "value", "label", "seed", "epochs", "recipe"]
    if histories.empty:
        return pd.DataFrame(columns=["key", "epoch", "step", "knob", *columns])
    hist = histories.sort_values("timestamp", kind="stable").drop_duplicates(["run_id", "key", "step"])
    hist = hist[hist["key"].isin(curve_keys(hist["key"].unique()))]
    hist = hist.assign(epoch=hist["step"] + 1)
    labels = runs[[c for c in columns if c in runs]].rename(columns={"value": "knob"})
    return hist.merge(labels, on="run_id")


def term_name(key: str) -> str:
    """``train_ce`` -> ``ce``, ``train_loss`` -> ``total``."""
    return "total" if key == "train_loss" else key.removeprefix("train_")


def curve_figures(runs: pd.DataFrame, histories: pd.DataFrame) -> list[Plot]:
    """Training curves per dataset as small multiples: one panel per method (ablations: per knob value),
    each loss term its own line (mean ± std over seeds; the total dashed black), the learning rate on the
    right axis. Each panel has its own loss scale: methods' losses are made of different terms."""
    curves = curve_frame(runs, histories)
    out = []
    for (ablation, dataset), frame in curves.groupby(["ablation", "dataset"], sort=True):
        terms = loss_terms(frame["key"].unique())
        if not terms:
            continue
        frame = frame.assign(panel=_panels(frame, bool(ablation)))
        firsts = frame.drop_duplicates("panel")
        keys = zip(firsts["label"], firsts["knob"].map(value_key), firsts["panel"], strict=True)
        panels = [panel for *_, panel in sorted(keys)]
        palette = dict(zip(map(term_name, terms), sns.color_palette("colorblind", len(terms)), strict=True))
        palette["total"] = (0.1, 0.1, 0.1)
        with matplotlib.rc_context(STYLE):
            fig, axes = _grid(len(panels), max_cols=3)
            for ax, panel in zip(axes, panels, strict=True):
                _curve_panel(ax, frame[frame["panel"] == panel], terms, palette)
                ax.set_title(panel)
            handles = [Line2D([], [], color=c, ls="--" if t == "total" else "-") for t, c in palette.items()]
            fig.legend(
                handles, list(palette), loc="outside lower center", ncols=min(len(palette), 6), frameon=False
            )
        stem = f"curves_{ablation}_{dataset}" if ablation else f"curves_{dataset}"
        numbers = plotted(
            frame.assign(term=frame["key"].map(term_name)), ["dataset", "panel", "term", "epoch"], "value"
        )
        out.append(Plot(stem, fig, _curve_caption(frame, ablation, dataset, terms), numbers))
    return out


def _panels(frame: pd.DataFrame, ablation: bool) -> list[str]:
    """Panel title per row: the method label, or for ablations the knob and its value (with the method
    when several methods were ablated)."""
    if not ablation:
        return list(frame["label"])
    several = frame["label"].nunique() > 1
    axis = axis_label(frame["axis"].iloc[0]).split(" (")[0]  # "fusion tokens (count)" -> "fusion tokens"
    titles = [f"{axis} {knob_tick_label(str(knob))}" for knob in frame["knob"]]
    return [f"{lab}: {t}" if several else t for lab, t in zip(frame["label"], titles, strict=True)]


def _curve_panel(ax, part: pd.DataFrame, terms: list[str], palette: dict) -> None:
    """One run label's curves: a line per loss term (± std band over seeds), lr dashed on a right axis."""
    losses = part[part["key"].isin(terms)].assign(term=lambda d: d["key"].map(term_name))
    sns.lineplot(
        losses,
        x="epoch",
        y="value",
        hue="term",
        style="term",
        dashes={t: (4, 2) if t == "total" else "" for t in losses["term"].unique()},
        palette=palette,
        errorbar="sd",
        err_kws={"alpha": 0.2},
        legend=False,
        ax=ax,
    )
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    lr = part[part["key"] == "lr"].groupby("epoch")["value"].mean()
    if len(lr):
        right = ax.twinx()
        right.plot(lr.index, lr.to_numpy(), color="0.55", lw=0.8, ls=":", gid=LR_GID)
        right.set_ylabel("lr", color="0.45")
        right.tick_params(axis="y", colors="0.45", labelsize=6)
        right.grid(False)
        right.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.1g}"))


def _curve_caption(frame: pd.DataFrame, ablation: str, dataset: str, terms: list[str]) -> str:
    per = f"knob value of ablation {ablation}" if ablation else "method"
    runs = frame.drop_duplicates("run_id")
    return (
        f"Training curves on {dataset_name(dataset)}, one panel per {per}: training loss per epoch, each "
        f"term its own line ({', '.join(map(term_name, terms))}; total: the weighted sum the model is "
        f"trained on, dashed), {runs_sentence(runs, ['panel'])} Dotted grey, right axis: learning rate. "
        "Each panel has its own loss scale: the methods' losses are made of different terms."
    )


def save(fig: Figure, out_dir: Path, stem: str, data: pd.DataFrame | None = None) -> list[Path]:
    """Write ``stem``.png (300 dpi) and ``stem``.pdf under ``out_dir`` (layout is constrained: no tight
    bbox), and ``stem``.csv with the plotted numbers when ``data`` is given (metrics in % as plotted)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{stem}.png", out_dir / f"{stem}.pdf"]
    for path in paths:
        fig.savefig(path, dpi=300)
    if data is not None:
        paths.append(out_dir / f"{stem}.csv")
        data.to_csv(paths[-1], index=False)
    return paths


def save_plot(plot: Plot, out_dir: Path) -> list[Path]:
    """:func:`save` of ``plot`` with its numbers: [png, pdf, csv]."""
    return save(plot.figure, out_dir, plot.stem, plot.data)
