"""The report's figures on the site: each PNG (and PDF) with its caption and the CSV of the numbers it
plots, as the report wrote them (:func:`reidbench.report.plots.save_plot`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from reidbench.report.plots import Plot

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


def figure_entries(figures: list[tuple[Plot, list[Path]]], out: Path) -> list[FigureEntry]:
    """One entry per written figure (paths under ``out``), in the figures page's order."""
    entries = []
    for plot, paths in figures:
        png = next(p for p in paths if p.suffix == ".png")
        pdf = next((p for p in paths if p.suffix == ".pdf"), None)
        csv = next((p for p in paths if p.suffix == ".csv"), None)
        section = next((title for prefix, title in SECTIONS if plot.stem.startswith(prefix)), "Other")
        entries.append(
            FigureEntry(
                plot.stem,
                section,
                plot.caption,
                png.relative_to(out).as_posix(),
                pdf.relative_to(out).as_posix() if pdf else None,
                csv.relative_to(out).as_posix() if csv else None,
            )
        )
    order = [title for _, title in SECTIONS]
    return sorted(entries, key=lambda e: order.index(e.section) if e.section in order else len(order))
