"""The report's figures written to a folder: results, ablations, Pareto fronts, curves, the cross-domain
heatmap (each as PNG and PDF)."""

from __future__ import annotations

from pathlib import Path

from reidbench.report import plots as plotting
from reidbench.report.crossdomain import heatmap
from reidbench.report.model import Report
from reidbench.report.pareto import pareto_figures


def write_figures(report: Report, directory: Path, metrics: list[str]) -> list[tuple]:
    """Results, ablation and curve figures saved under ``directory``: ``(Plot, [png, pdf])`` pairs."""
    runs = report.runset.runs
    made = [
        *plotting.results_figures(runs, metrics),
        *plotting.ablation_figures(runs, metrics),
        *pareto_figures(runs, report.pruning_points),
        *plotting.curve_figures(runs, report.histories),
    ]
    cross = heatmap(report.groups, metrics[0])
    if cross is not None:
        made.append(plotting.Plot(f"crossdomain_{metrics[0]}", *cross))
    return [(plot, plotting.save_plot(plot, directory)) for plot in made]
