"""Cross-domain results: rows method @ source, columns test datasets, the in-domain cell marked; as a
Table (LaTeX / Markdown / CSV / terminal) and a heatmap.

A run trained on SOURCE with ``--test-on TARGET`` holds ``mAP`` (SOURCE's own test split) and
``mAP@to_TARGET``; the SOURCE column of its row shows the first, marked (italics; CSV ``in_domain``), each
TARGET column the second, as mean ± sample std over seeds like every other table.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from reidbench.generalisation import source_names, split_target, target_key
from reidbench.report.collect import Group
from reidbench.report.formatting import ACCURACY_METRICS, PARTIAL_NOTE, Cell, dataset_name, fmt_number
from reidbench.report.tables import Column, Row, Table, run_settings_sentence

NAME = "crossdomain"


def source_label(dataset: str) -> str:
    """Display name of a training set: ``RGBNT100``, merged sources ``RGBNT100+MSVR310``."""
    return "+".join(dataset_name(name) for name in source_names(dataset))


def targets_of(group: Group) -> list[str]:
    """The target datasets a group has metrics for, in first-seen order."""
    found = (split_target(key) for key in group.cells)
    return list(dict.fromkeys(hit[1] for hit in found if hit is not None))


def cross_groups(groups: list[Group]) -> list[Group]:
    """Our (not reported) groups measured on at least one target, by source then method."""
    kept = [g for g in groups if not g.reported and targets_of(g)]
    return sorted(kept, key=lambda g: (g.dataset, g.ablation, g.value, g.series))


def matrix_cell(group: Group, column: str, metric: str) -> Cell | None:
    """The cell of ``group``'s row in dataset column ``column``: in-domain ``metric`` on the group's own
    dataset, ``metric@to_<column>`` elsewhere."""
    key = metric if column == group.dataset else target_key(metric, column)
    return group.cells.get(key)


def row_label(group: Group) -> str:
    """``method @ Source`` (with the ablation value when the group is an ablation point)."""
    value = f" ({group.ablation}={group.value})" if group.ablation else ""
    return f"{group.series}{value} @ {source_label(group.dataset)}"


def columns_of(groups: list[Group]) -> list[str]:
    """The dataset columns: every source, then every target not already a source."""
    return list(dict.fromkeys([*(g.dataset for g in groups), *(t for g in groups for t in targets_of(g))]))


def crossdomain_table(groups: list[Group], metrics: list[str]) -> Table | None:
    """The cross-domain table of ``groups`` (None when no group was tested on another dataset)."""
    groups = cross_groups(groups)
    if not groups:
        return None
    datasets = columns_of(groups)
    columns = [
        Column(m, d, source_label(d), d, ACCURACY_METRICS.get(m, m), m, ranked=False)
        for d in datasets
        for m in metrics
    ]
    rows = []
    for g in groups:
        views = {}
        for d in datasets:
            cells = {m: c for m in metrics if (c := matrix_cell(g, d, m)) is not None}
            if cells:
                views[d] = replace(g, cells=cells)
        rows.append(Row(row_label(g), False, views, {"Seeds": str(g.n)}, frozenset({g.dataset})))
    subsets = sorted({g.test_on for g in groups} - {""})
    modalities = (
        f"Targets scored on the modalities they share with the training ones: {'; '.join(subsets)}."
        if subsets
        else ""
    )
    caption = (
        "Cross-domain evaluation: rows are method @ training set, columns the test sets (metrics in %). "
        "In italics: in-domain, the training set's own test split; every other cell is the same final "
        "model on that dataset's query / gallery under its own junk rule, images sized and normalised as "
        f"in the training protocol. {modalities} {run_settings_sentence(groups)}"
        f" {PARTIAL_NOTE if any(g.partial for g in groups) else ''}"
    )
    title, caption = "Cross-domain", " ".join(caption.split())
    return Table(NAME, title, caption, "Method @ training set", ["Seeds"], columns, rows, "target")


def heatmap(groups: list[Group], metric: str = "mAP") -> tuple[Figure, str, pd.DataFrame] | None:
    """Heatmap of ``metric`` (rows method @ source, columns test sets; in-domain cells outlined), its
    caption and the plotted numbers (row, test set, mean, std, n; in %); None when no group was tested on
    another dataset."""
    import matplotlib
    import seaborn as sns

    from reidbench.report.plots import PAGE_W, PANEL_W, STYLE

    groups = cross_groups(groups)
    if not groups:
        return None
    datasets = columns_of(groups)
    values = np.full((len(groups), len(datasets)), np.nan)
    text = np.full(values.shape, "", dtype=object)
    numbers = []
    for i, g in enumerate(groups):
        for j, d in enumerate(datasets):
            cell = matrix_cell(g, d, metric)
            if cell is not None and np.isfinite(cell.mean):
                values[i, j] = cell.mean * 100
                numbers.append(
                    {
                        "series": row_label(g),
                        "test_set": d,
                        "in_domain": d == g.dataset,
                        "metric": metric,
                        "mean": cell.mean * 100,
                        "std": cell.std * 100,
                        "n": cell.n,
                    }
                )
                std = f"\n±{fmt_number(cell.std * 100)}" if cell.has_std else ""
                text[i, j] = fmt_number(cell.mean * 100) + std
    with matplotlib.rc_context(STYLE):
        width = PANEL_W if len(datasets) <= 3 else PAGE_W
        fig = Figure(figsize=(width, 1.0 + 0.3 * len(groups)), layout="constrained")
        ax = fig.subplots()
        sns.heatmap(
            values,
            ax=ax,
            annot=text,
            fmt="",
            cmap="viridis",
            vmin=0,
            vmax=100,
            cbar_kws={"label": f"{ACCURACY_METRICS.get(metric, metric)} (%)"},
            annot_kws={"fontsize": 6},
            xticklabels=[source_label(d) for d in datasets],
            yticklabels=[row_label(g) for g in groups],
            mask=np.isnan(values),
        )
        for i, g in enumerate(groups):  # the in-domain cell of each row
            j = datasets.index(g.dataset)
            ax.add_patch(Rectangle((j, i), 1, 1, fill=False, edgecolor="black", linewidth=1.5))
        ax.set_xlabel("test set")
        ax.set_ylabel("")
        ax.tick_params(axis="x", labelrotation=20)
        ax.tick_params(axis="y", labelrotation=0)
    seeds = sorted({g.n for g in groups})
    caption = (
        f"Cross-domain {ACCURACY_METRICS.get(metric, metric)} (%): rows method @ training set, columns test "
        f"sets, the in-domain cell outlined; mean (± sample std) over {'–'.join(map(str, seeds))} seed(s)."
    )
    return fig, caption, pd.DataFrame(numbers)
