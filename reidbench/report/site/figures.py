"""The report's figures on the site: each PNG (and PDF) with its caption and the CSV of the numbers it
plots. A CSV the report wrote next to the figure is used as is; otherwise the numbers come from the table
the figure draws (results, ablation, pruning, cross-domain: ``csv_records`` of that table) or, for the
training curves, the per-epoch values of the runs (``plots.curve_frame``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from reidbench.report import Report
from reidbench.report.plots import Plot, curve_frame
from reidbench.report.text import csv_records

# (stem prefix, section title) in the order the figures page shows them
SECTIONS = [
    ("results_", "Results per dataset"),
    ("ablation_prune_", "Pruning"),
    ("pareto_", "Pruning"),
    ("ablation_", "Ablations"),
    ("crossdomain_", "Cross-domain"),
    ("curves_", "Training curves"),
]


@dataclass
class FigureEntry:
    stem: str
    section: str
    caption: str
    png: str  # relative to the site root
    pdf: str | None
    csv: str | None


def figure_entries(report: Report, figures: list[tuple[Plot, list[Path]]], out: Path) -> list[FigureEntry]:
    """One entry per written figure, its CSV written beside it when the report did not write one."""
    entries = []
    for plot, paths in figures:
        png = next(p for p in paths if p.suffix == ".png")
        pdf = next((p for p in paths if p.suffix == ".pdf"), None)
        csv = png.with_suffix(".csv")
        if not csv.is_file():
            data = figure_data(report, plot.stem)
            if data is not None:
                data.to_csv(csv, index=False)
        section = next((title for prefix, title in SECTIONS if plot.stem.startswith(prefix)), "Other")
        entries.append(
            FigureEntry(
                plot.stem,
                section,
                plot.caption,
                png.relative_to(out).as_posix(),
                pdf.relative_to(out).as_posix() if pdf else None,
                csv.relative_to(out).as_posix() if csv.is_file() else None,
            )
        )
    order = [title for _, title in SECTIONS]
    return sorted(entries, key=lambda e: order.index(e.section) if e.section in order else len(order))


def figure_data(report: Report, stem: str) -> pd.DataFrame | None:
    """The numbers figure ``stem`` plots, as a tidy frame; None when no table or curve matches it."""
    tables = {t.name: t for t in report.tables}
    if stem.startswith("curves_"):
        return _curve_data(report, stem)
    if stem.startswith("results_") and "leaderboard" in tables:
        records = pd.DataFrame(csv_records(tables["leaderboard"]))
        dataset = stem.removeprefix("results_")
        return records[(records["dataset"] == dataset) & (records["block"] == "ours")]
    if stem.startswith("pareto_"):
        dataset = stem.removeprefix("pareto_")
        parts = [pd.DataFrame(csv_records(t)) for n, t in tables.items() if n.startswith("ablation_prune_")]
        frame = pd.concat(parts) if parts else pd.DataFrame(columns=["dataset"])
        return frame[frame["dataset"] == dataset]
    if stem.startswith("crossdomain_") and "crossdomain" in tables:
        return pd.DataFrame(csv_records(tables["crossdomain"]))
    matches = [n for n in tables if n.startswith("ablation_") and stem.startswith(n + "_")]
    if matches:
        return pd.DataFrame(csv_records(tables[max(matches, key=len)]))
    return None


def _curve_data(report: Report, stem: str) -> pd.DataFrame | None:
    """Per run and epoch, the loss terms and lr of the runs curve figure ``stem`` draws."""
    curves = curve_frame(report.runset.runs, report.histories)
    for (ablation, dataset), frame in curves.groupby(["ablation", "dataset"], sort=True):
        if stem == (f"curves_{ablation}_{dataset}" if ablation else f"curves_{dataset}"):
            columns = ["run_id", "label", "seed", "knob", "key", "epoch", "value"]
            return frame[[c for c in columns if c in frame]].sort_values(["label", "seed", "key", "epoch"])
    return None
