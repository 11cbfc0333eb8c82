"""``reidbench report``: tables and figures from the finished MLflow runs."""

from __future__ import annotations

from pathlib import Path

import click

from reidbench.cli.common import console
from reidbench.cli.types import FILE, FOLDER
from reidbench.errors import UserError

__all__ = ["report"]


@click.command()
@click.option("--experiment", default="reidbench", show_default=True, help="MLflow experiment to report on.")
@click.option(
    "--tracking-uri",
    default=None,
    help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///results/mlflow.db).",
)
@click.option(
    "--format",
    "formats",
    multiple=True,
    default=("terminal",),
    show_default=True,
    type=click.Choice(["latex", "markdown", "csv", "terminal", "pdf", "html", "json", "all"]),
    help="Output format (repeatable); files go under --out. pdf: report.tex compiled with pdflatex; "
    "html: a static results site (index.html, + results.json); json: results.json.",
)
@click.option(
    "--out",
    type=FOLDER,
    default=Path("results/report"),
    show_default=True,
    help="Folder for the table files and figures/.",
)
@click.option(
    "--metric",
    "metrics",
    multiple=True,
    metavar="NAME",
    help="Metric columns: mAP, rank1, rank5, rank10, mINP (repeatable or comma-separated; "
    "default mAP,rank1).",
)
@click.option(
    "--published",
    type=FILE,
    default=None,
    help="CSV of numbers reported by papers (default: the repo's results/published.csv).",
)
@click.option(
    "--reported",
    type=click.Choice(["matching", "all", "none"]),
    default="matching",
    show_default=True,
    help="Which reported rows to show: datasets we have runs on, all, none.",
)
@click.option(
    "--plots/--no-plots",
    default=True,
    show_default=True,
    help="Write results and ablation plots and training curves (PNG + PDF) when writing files.",
)
@click.option(
    "--include-partial",
    is_flag=True,
    help="Also show runs on partial data (tag partial_data=true, from --allow-partial), marked ‡.",
)
@click.option("--mlflow-url", default=None, help="MLflow UI the html site links each run to (optional).")
def report(
    experiment: str,
    tracking_uri: str | None,
    formats: tuple[str, ...],
    out: Path,
    metrics: tuple[str, ...],
    published: Path | None,
    reported: str,
    plots: bool,
    include_partial: bool,
    mlflow_url: str | None,
) -> None:
    """Leaderboard, cost, missing-modality and ablation tables (+ figures) from the finished MLflow runs."""
    from reidbench import tracking
    from reidbench.report import load_report, parse_formats, parse_metrics, write_report
    from reidbench.report.pdf import NO_PDFLATEX, overfull_boxes, pdflatex_available
    from reidbench.report.terminal import print_tables

    metric_list = parse_metrics(metrics)
    format_list = parse_formats(formats)
    if "pdf" in format_list and not pdflatex_available():
        if "pdf" in formats:  # asked for by name: nothing to fall back on
            raise UserError(f"--format pdf: {NO_PDFLATEX}")
        console.print(f"note: {NO_PDFLATEX}. Wrote report.tex, not report.pdf", markup=False)
        format_list.remove("pdf")
    files = [f for f in format_list if f != "terminal"]
    uri = tracking_uri or tracking.default_uri()
    result = load_report(
        uri,
        experiment,
        metric_list,
        published,
        reported,
        with_histories=plots and bool(files),
        include_partial=include_partial,
    )
    if "terminal" in format_list:
        print_tables(console, result.tables)
    if result.runset.superseded:
        console.print(
            f"note: {result.runset.superseded} re-run(s) of a seed with an identical config were "
            "superseded by the latest run (not averaged in)"
        )
    if result.runset.partial_left_out:
        console.print(
            f"note: {result.runset.partial_left_out} run(s) on partial data (tag partial_data=true) "
            "left out; "
            "--include-partial shows them, marked ‡"
        )
    if files:
        written = write_report(result, out, files, metric_list, plots=plots, mlflow_url=mlflow_url)
        console.print(
            f"wrote {len(written)} files under {out}/ ({', '.join(files)}"
            f"{', figures/' if plots and any(p.parent.name == 'figures' for p in written) else ''})"
        )
        if "pdf" in files:
            overfull = overfull_boxes((out / "report.log").read_text(errors="replace"))
            console.print(
                f"compiled {out / 'report.pdf'}"
                + (f"; {len(overfull)} overfull line(s), see report.log" if overfull else "")
            )
