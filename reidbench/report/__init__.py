"""``reidbench report``: finished MLflow runs -> leaderboard / cost / missing-modality / ablation tables
(LaTeX, Markdown, CSV, terminal) and ablation plots + training curves.

    collect.py    MLflow frame -> tidy runs -> groups (mean, sample std, n over seeds)
    published.py  results/published.csv -> reported groups
    tables.py     groups -> format-free Table models with best / second marks
    latex.py, text.py, terminal.py   renderers;   reidbench/plots.py   figures
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from reidbench.errors import UserError
from reidbench.report.collect import Group, RunSet, aggregate, tidy_runs
from reidbench.report.formatting import ACCURACY_METRICS
from reidbench.report.published import default_path, load_published
from reidbench.report.tables import Table, build_tables

FORMATS = ("latex", "markdown", "csv", "terminal")
DEFAULT_METRICS = ["mAP", "rank1"]
REPORTED_MODES = ("matching", "all", "none")
CURVE_KEYS = ["train_loss", "mAP"]


@dataclass
class Report:
    """Everything one report shows: the tidy runs, their groups, the tables, and per-epoch histories."""

    runset: RunSet
    groups: list[Group]
    tables: list[Table]
    histories: pd.DataFrame = field(default_factory=pd.DataFrame)


def parse_metrics(values: tuple[str, ...] | list[str]) -> list[str]:
    """``--metric`` values (repeatable, comma-separated) checked against the known metrics."""
    names = [v.strip() for text in values for v in text.split(",") if v.strip()] or list(DEFAULT_METRICS)
    lookup = {m.lower(): m for m in ACCURACY_METRICS} | {"r1": "rank1", "r5": "rank5", "r10": "rank10"}
    bad = [n for n in names if n.lower() not in lookup]
    if bad:
        raise UserError(
            f"--metric {', '.join(bad)}: unknown metric. Choose from {', '.join(ACCURACY_METRICS)}"
        )
    return list(dict.fromkeys(lookup[n.lower()] for n in names))


def parse_formats(values: tuple[str, ...] | list[str]) -> list[str]:
    """``--format`` values; ``all`` means every format."""
    return list(FORMATS) if "all" in values else list(dict.fromkeys(values))


def select_reported(reported: list[Group], ours: list[Group], mode: str) -> list[Group]:
    """``matching``: reported rows of datasets we have runs on; ``all``; ``none``."""
    if mode == "none":
        return []
    if mode == "all":
        return reported
    datasets = {g.dataset for g in ours if not g.ablation}
    return [g for g in reported if g.dataset in datasets]


def make_report(
    frame: pd.DataFrame,
    metrics: list[str],
    reported: list[Group],
    reported_mode: str = "matching",
    histories: pd.DataFrame | None = None,
) -> Report:
    """Tables (and curve data) from a ``search_runs``-style frame of finished training runs."""
    runset = tidy_runs(frame)
    groups = aggregate(runset)
    tables = build_tables(groups, select_reported(reported, groups, reported_mode), metrics)
    return Report(runset, groups, tables, histories if histories is not None else pd.DataFrame())


def load_report(
    uri: str,
    experiment: str,
    metrics: list[str],
    published: Path | None = None,
    reported_mode: str = "matching",
    with_histories: bool = True,
) -> Report:
    """Read the finished training runs of ``experiment`` from MLflow and build the report."""
    from reidbench import tracking

    frame = tracking.finished_runs(uri, experiment)
    if frame.empty:
        counts = tracking.run_status_counts(uri, experiment)
        other = ", ".join(f"{n} {s}" for s, n in counts.items()) or "no runs at all"
        raise UserError(
            f"experiment {experiment!r} in {uri} has no FINISHED training runs (tag run_kind=run); "
            f"found {other}. Train with `reidbench run ...` first"
        )
    reported = [] if reported_mode == "none" else load_published(published or default_path())
    histories = (
        tracking.metric_histories(uri, frame["run_id"].tolist(), CURVE_KEYS) if with_histories else None
    )
    return make_report(frame, metrics, reported, reported_mode, histories)


def write_report(
    report: Report, out: Path, formats: list[str], metrics: list[str], plots: bool = True
) -> list[Path]:
    """Write tables in ``formats`` (one file per table and format, plus report.tex / report.md that
    gather them), ``runs.csv`` and, when ``plots``, figures/*.png|pdf under ``out``. The written paths."""
    from reidbench.report.latex import latex_document, latex_table
    from reidbench.report.text import csv_records, markdown_table

    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    figures: list[Path] = []
    if plots:
        from reidbench.report import plots as plotting

        runs = report.runset.runs
        for stem, fig in [
            *plotting.ablation_figures(runs, metrics),
            *plotting.curve_figures(runs, report.histories),
        ]:
            figures += plotting.save(fig, out / "figures", stem)
    written += figures

    def put(name: str, text: str) -> None:
        (out / name).write_text(text, encoding="utf-8")
        written.append(out / name)

    for table in report.tables:
        if "latex" in formats:
            put(f"{table.name}.tex", latex_table(table))
        if "markdown" in formats:
            put(f"{table.name}.md", markdown_table(table))
        if "csv" in formats:
            pd.DataFrame(csv_records(table)).to_csv(out / f"{table.name}.csv", index=False)
            written.append(out / f"{table.name}.csv")
    pngs = [p.relative_to(out) for p in figures if p.suffix == ".png"]
    pdfs = [p.relative_to(out) for p in figures if p.suffix == ".pdf"]
    if "latex" in formats:
        put("report.tex", latex_document([Path(t.name) for t in report.tables], pdfs, "reidbench report"))
    if "markdown" in formats:
        images = [f"![{p.stem}]({p.as_posix()})" for p in pngs]
        put(
            "report.md",
            "\n".join(["# reidbench report", "", *(markdown_table(t) for t in report.tables), *images, ""]),
        )
    if "csv" in formats:
        report.runset.runs.to_csv(out / "runs.csv", index=False)
        written.append(out / "runs.csv")
    return written
