"""``reidbench report``: finished MLflow runs -> leaderboard / cost / missing-modality / ablation tables
(LaTeX, Markdown, CSV, terminal, a compiled PDF) and figures (results, ablations, training curves).

    collect.py    MLflow frame -> tidy runs -> groups (mean, sample std, n over seeds)
    published.py  results/published.csv -> reported groups (and the pruning studies' points)
    tables.py     groups -> format-free Table models with best / second marks
    latex.py, text.py, terminal.py   renderers;   plots.py   figures;   pareto.py   pruning figures
    pdf.py        pdflatex
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from reidbench.errors import UserError
from reidbench.report.collect import Group, aggregate, tidy_runs
from reidbench.report.formatting import ACCURACY_METRICS
from reidbench.report.model import Report
from reidbench.report.published import default_path, load_pruning_points, load_published

FORMATS = ("latex", "markdown", "csv", "terminal", "pdf", "html", "json")
DEFAULT_METRICS = ["mAP", "rank1"]
REPORTED_MODES = ("matching", "all", "none")
TITLE = "reidbench report"


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
    include_partial: bool = False,
    experiment: str = "",
) -> Report:
    """Tables (and curve data) from a ``search_runs``-style frame of finished training runs; runs on
    partial data only with ``include_partial``."""
    runset = tidy_runs(frame, include_partial)
    groups = aggregate(runset)
    from reidbench.report.assemble import build_tables  # matplotlib (the cross-domain table's module)

    tables = build_tables(groups, select_reported(reported, groups, reported_mode), metrics)
    history = histories if histories is not None else pd.DataFrame()
    return Report(runset, groups, tables, history, experiment, frame=frame)


def load_report(
    uri: str,
    experiment: str,
    metrics: list[str],
    published: Path | None = None,
    reported_mode: str = "matching",
    with_histories: bool = True,
    include_partial: bool = False,
) -> Report:
    """Read the finished training runs of ``experiment`` from MLflow and build the report."""
    from reidbench import tracking
    from reidbench.report.plots import curve_keys

    frame = tracking.finished_runs(uri, experiment)
    if frame.empty:
        counts = tracking.run_status_counts(uri, experiment)
        other = ", ".join(f"{n} {s}" for s, n in counts.items()) or "no runs at all"
        raise UserError(
            f"experiment {experiment!r} in {uri} has no FINISHED training runs (tag run_kind=run); "
            f"found {other}. Train with `reidbench run ...` first"
        )
    reported = [] if reported_mode == "none" else load_published(published or default_path())
    keys = curve_keys(c.removeprefix("metrics.") for c in frame.columns if c.startswith("metrics."))
    histories = tracking.metric_histories(uri, frame["run_id"].tolist(), keys) if with_histories else None
    report = make_report(frame, metrics, reported, reported_mode, histories, include_partial, experiment)
    if reported_mode != "none":
        report.pruning_points = load_pruning_points(published or default_path())
    if report.runset.runs.empty:
        raise UserError(
            f"experiment {experiment!r}: all {report.runset.partial_left_out} finished run(s) are on partial "
            "data (tag partial_data=true); --include-partial shows them, marked"
        )
    return report


def write_report(
    report: Report,
    out: Path,
    formats: list[str],
    metrics: list[str],
    plots: bool = True,
    mlflow_url: str | None = None,
) -> list[Path]:
    """Write tables in ``formats`` (one file per table and format, plus report.tex / report.md that
    gather them; ``pdf``: report.tex compiled to report.pdf; ``html``: the static site, run pages linked
    to the MLflow UI at ``mlflow_url``; ``json``: results.json), ``runs.csv`` and, when ``plots``,
    figures/*.png|pdf under ``out``. The written paths."""
    from reidbench.report.figures import write_figures
    from reidbench.report.latex import FigureEntry, latex_document, latex_table
    from reidbench.report.site import SiteLinks, write_json, write_site
    from reidbench.report.text import csv_records, markdown_table

    links = SiteLinks(mlflow_url)  # a bad --mlflow-url stops here, before anything is written
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    figures = write_figures(report, out / "figures", metrics) if plots and set(formats) - {"json"} else []
    written += [p for _, paths in figures for p in paths]

    def put(name: str, text: str) -> None:
        (out / name).write_text(text, encoding="utf-8")
        written.append(out / name)

    latex = "latex" in formats or "pdf" in formats
    for table in report.tables:
        if latex:
            put(f"{table.name}.tex", latex_table(table))
        if "markdown" in formats:
            put(f"{table.name}.md", markdown_table(table))
        if "csv" in formats:
            pd.DataFrame(csv_records(table)).to_csv(out / f"{table.name}.csv", index=False)
            written.append(out / f"{table.name}.csv")
    if latex:
        entries = [FigureEntry(paths[1].relative_to(out), plot.caption, plot.wide) for plot, paths in figures]
        put("report.tex", latex_document([Path(t.name) for t in report.tables], entries, TITLE, report.intro))
    if "pdf" in formats:
        from reidbench.report.pdf import compile_latex

        written.append(compile_latex(out / "report.tex"))
    if "markdown" in formats:
        images = [
            f"![{plot.stem}]({paths[0].relative_to(out).as_posix()})\n\n*{plot.caption}*\n"
            for plot, paths in figures
        ]
        tables = [markdown_table(t) for t in report.tables]
        put("report.md", "\n".join([f"# {TITLE}", "", report.intro, "", *tables, *images]))
    if "csv" in formats:
        report.runset.runs.to_csv(out / "runs.csv", index=False)
        written.append(out / "runs.csv")
    if "html" in formats:  # the site writes results.json too
        written += write_site(report, out, metrics, figures, links)
    elif "json" in formats:
        written.append(write_json(report, out))
    return written
