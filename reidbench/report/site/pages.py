"""A page per (method, dataset, recipe): per variant, the numbers over seeds, each seed's run (id, config
hash, commit, values), cost, resolved config, missing-modality / cross-modal / cross-domain results and
the training curves.

Aggregates are the report's groups; per-seed values the tidy runs they were aggregated from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd
from markupsafe import Markup

from reidbench.generalisation import target_key
from reidbench.report.collect import Group
from reidbench.report.crossdomain import targets_of
from reidbench.report.formatting import ACCURACY_METRICS, dataset_name, fmt_number, setting_name
from reidbench.report.model import Report
from reidbench.report.plots import curve_frame
from reidbench.report.site import runs as R
from reidbench.report.site.boards import CellView, cell_view
from reidbench.report.site.svg import curves_svg
from reidbench.report.tables import COST_COLUMNS, Column, setting_names


@dataclass
class SeedRow:
    seed: int
    run_id: str
    run_url: str | None
    config_hash: str
    git_commit: str
    values: list[str]  # the run's own metric values, in % (as the tables show them)


@dataclass
class SettingTable:
    """Rows of evaluation settings (missing modality, cross-modal, target dataset) x metric columns."""

    title: str
    headers: list[str]
    rows: list[tuple[str, list[CellView]]]


@dataclass
class Section:
    """One group (variant) of the page."""

    label: str
    summary: list[tuple[str, CellView]]
    cost: list[tuple[str, CellView]]
    metric_headers: list[str]
    seeds: list[SeedRow]
    config: list[tuple[str, str]]
    convention: str
    settings: list[SettingTable] = field(default_factory=list)
    curves: Markup | None = None


@dataclass
class MethodPage:
    slug: str
    method: str
    dataset: str
    recipe: str
    sections: list[Section]
    curves_figure: str | None = None  # the dataset's curve figure, relative to the site root

    @property
    def title(self) -> str:
        recipe = f", recipe {self.recipe}" if self.recipe else ""
        return f"{self.method} on {dataset_name(self.dataset)}{recipe}"


def accuracy_columns(metrics: list[str], dataset: str, suffix: str = "") -> list[Column]:
    """A column per accuracy metric (in %), the key suffixed (``@no_tir``)."""
    return [Column(m + suffix, dataset, "", dataset, ACCURACY_METRICS[m], m) for m in metrics]


def method_pages(report: Report, mlflow_url: str | None = None) -> list[MethodPage]:
    """Every (method, dataset, recipe) of our leaderboard groups, one section per variant."""
    pages: dict[str, MethodPage] = {}
    curves = curve_frame(report.runset.runs, report.histories)
    for group in sorted((g for g in report.groups if not g.ablation), key=lambda g: (g.partial, g.label)):
        slug = R.page_slug(group.method, group.dataset, group.recipe)
        page = pages.setdefault(slug, MethodPage(slug, group.method, group.dataset, group.recipe, []))
        page.sections.append(section(report, group, curves, mlflow_url))
    return list(pages.values())


def section(report: Report, group: Group, curves: pd.DataFrame, mlflow_url: str | None) -> Section:
    """The view of one group: numbers, seeds, cost, config, settings and curves."""
    runs = R.group_runs(report.runset.runs, group)
    ids = [str(r) for r in runs["run_id"]]
    metrics = [m for m in ACCURACY_METRICS if m in group.cells]
    columns = accuracy_columns(metrics, group.dataset)
    hashes = R.tag_values(report.frame, ids, "config_hash")
    commits = R.tag_values(report.frame, ids, "git_commit")
    experiments = R.experiment_ids(report.frame, ids)
    seeds = [
        SeedRow(
            int(row.seed),
            run_id,
            R.run_url(mlflow_url, experiments[i], run_id),
            hashes[i],
            commits[i],
            [_percent(row.get(m)) for m in metrics],
        )
        for i, (run_id, (_, row)) in enumerate(zip(ids, runs.iterrows(), strict=True))
    ]
    mine = curves[curves["run_id"].isin(ids)]
    return Section(
        label=group.label,
        summary=[(c.label, cell_view(group.cells.get(c.key), c, None)) for c in columns],
        cost=[
            (c.label, cell_view(group.cells.get(c.key), c, None))
            for c in COST_COLUMNS
            if c.key in group.cells
        ],
        metric_headers=[c.label for c in columns],
        seeds=seeds,
        config=R.resolved_config(report.frame, ids),
        convention=group.missing_convention,
        settings=setting_tables(group),
        curves=Markup(curves_svg(mine)) if not mine.empty else None,
    )


def setting_tables(group: Group) -> list[SettingTable]:
    """Missing-modality, cross-modal and cross-domain results of ``group`` (those it has)."""
    out = []
    for cross, title in ((False, "Missing modalities at test time"), (True, "Cross-modal retrieval")):
        names = setting_names([group], cross)
        out.append(_setting_table(title, group, [(setting_name(s), f"@{s}") for s in names]))
    targets = [(dataset_name(t), target_key("", t)) for t in targets_of(group)]
    out.append(_setting_table("Other test sets (cross-domain)", group, targets))
    return [t for t in out if t is not None]


def _setting_table(title: str, group: Group, settings: list[tuple[str, str]]) -> SettingTable | None:
    """Rows ``(name, metric suffix)`` x the accuracy metrics any of them has; None when none has any."""
    metrics = [m for m in ACCURACY_METRICS if any(m + suffix in group.cells for _, suffix in settings)]
    if not metrics:
        return None
    rows = [
        (
            name,
            [
                cell_view(group.cells.get(m + suffix), Column(m + suffix, None, "", "", m, m), None)
                for m in metrics
            ],
        )
        for name, suffix in settings
        if any(m + suffix in group.cells for m in metrics)
    ]
    return SettingTable(title, [ACCURACY_METRICS[m] for m in metrics], rows)


def _percent(value: object) -> str:
    """A run's metric (a fraction) in % as the tables round it; ``–`` when missing."""
    number = float(value) if value is not None else math.nan
    return fmt_number(number * 100) if math.isfinite(number) else "–"
