"""The ``reidbench`` command line: parses, then calls into the reidbench package."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.console import Console

from reidbench.errors import UserError

console = Console(width=None if sys.stdout.isatty() else 120)


def _seeds(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise UserError(f"--seeds {text!r}: expected comma-separated integers, e.g. 0,1,2") from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """reidbench: train and evaluate multimodal ReID methods under one protocol, log to MLflow."""


@cli.command()
@click.option("--method", "-m", "methods", multiple=True, required=True, help="Method name (repeatable).")
@click.option("--dataset", "-d", "datasets", multiple=True, required=True, help="Dataset name (repeatable).")
@click.option("--seeds", default=None, help="Comma-separated seeds (default: the protocol's seeds).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a protocol value, e.g. --set optim.lr=3e-4 (repeatable).")
@click.option("--data-root", type=click.Path(path_type=Path), default=None,
              help="Folder holding the datasets (default: $REIDBENCH_DATA, else ./data).")
@click.option("--tracking-uri", default=None, help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, "
              "else sqlite:///results/mlflow.db).")
@click.option("--experiment", default="reidbench", show_default=True, help="MLflow experiment name.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1, ...")
@click.option("--quiet/--progress", "-q", default=not sys.stderr.isatty(),
              help="Hide / show progress bars (default: shown on a terminal).")
@click.option("--allow-partial", is_flag=True, help="Use a dataset whose layout check found problems (warns).")
def run(methods: tuple[str, ...], datasets: tuple[str, ...], seeds: str | None, overrides: tuple[str, ...],
        data_root: Path | None, tracking_uri: str | None, experiment: str, device: str, quiet: bool,
        allow_partial: bool) -> None:
    """Train and evaluate every METHOD x DATASET x SEED and print the result table."""
    from reidbench import tracking
    from reidbench.results import print_results
    from reidbench.runner import default_data_root, execute, make_spec, pick_device

    seed_list = _seeds(seeds)
    specs = [make_spec(m, d, s, list(overrides))
             for m in methods for d in datasets
             for s in (seed_list or make_spec(m, d, 0, list(overrides)).protocol.seeds)]
    uri = tracking_uri or tracking.default_uri()
    tracking.prepare(uri, experiment)
    root = data_root or default_data_root()
    results = []
    for spec in specs:
        console.print(f"[bold]{spec.name}[/]")
        results.append(execute(spec, root, uri, experiment, pick_device(device), show_progress=not quiet,
                               allow_partial=allow_partial))
    print_results(console, results)
    console.print(f"logged to {uri} (experiment {experiment!r})")


@cli.command("list")
@click.argument("what", type=click.Choice(["methods", "datasets"]))
def list_(what: str) -> None:
    """List the registered methods or datasets."""
    from rich.table import Table

    from reidbench.registry import DATASETS, METHODS, load_plugins

    load_plugins()
    registry = METHODS if what == "methods" else DATASETS
    table = Table(title=f"{what} ({len(registry)})")
    table.add_column("name", style="bold")
    table.add_column("description")
    if what == "methods":
        table.add_column("knobs (--set method.KEY=...)")
    for entry in registry:
        row = [entry.name, entry.description]
        if what == "methods":
            row.append(", ".join(_knobs(entry.meta.get("config"))))
        table.add_row(*row)
    console.print(table)


@cli.group("datasets")
def datasets_group() -> None:
    """Check an official dataset download, or decode it into the cache ahead of training."""


_data_root = click.option("--data-root", type=click.Path(path_type=Path), default=None,
                          help="Folder holding the datasets (default: $REIDBENCH_DATA, else ./data).")


@datasets_group.command("check")
@click.argument("name")
@_data_root
def datasets_check(name: str, data_root: Path | None) -> None:
    """Print the layout report of dataset NAME; exit 1 when it found problems.

    The check reads folders and file names; `datasets prepare` also decodes every image and names the
    unreadable ones.
    """
    from reidbench.data.layout_report import print_layout_report
    from reidbench.registry import DATASETS, load_plugins
    from reidbench.runner import default_data_root

    load_plugins()
    dataset = DATASETS.get(name).builder(data_root or default_data_root(), validate=False)
    print_layout_report(console, dataset)
    if dataset.problems:
        sys.exit(1)


@datasets_group.command("prepare")
@click.argument("name")
@_data_root
@click.option("--image-size", default=None, metavar="HxW", help="Decode at this size (default: the protocol's).")
@click.option("--allow-partial", is_flag=True, help="Go on despite layout problems (warns).")
@click.option("--quiet/--progress", "-q", default=not sys.stderr.isatty(), help="Hide / show progress bars.")
def datasets_prepare(name: str, data_root: Path | None, image_size: str | None, allow_partial: bool,
                     quiet: bool) -> None:
    """Decode dataset NAME once into the cache ($REIDBENCH_CACHE) at the protocol's image size."""
    import time

    from reidbench.data.cache import prepare
    from reidbench.protocol import build_protocol
    from reidbench.registry import DATASETS, load_plugins
    from reidbench.runner import default_data_root

    load_plugins()
    dataset = DATASETS.get(name).builder(data_root or default_data_root(), allow_partial=allow_partial)
    size = _size(image_size) if image_size else tuple(build_protocol(name).data.image_size)
    start = time.perf_counter()
    for split, folder, samples, nbytes in prepare(dataset, size, show_progress=not quiet):
        console.print(f"{split:8s} {samples:6d} samples  {nbytes / 2**20:9.1f} MiB  {folder}", highlight=False)
    console.print(f"cache ready at {size[0]}x{size[1]} in {time.perf_counter() - start:.1f} s")


def _size(text: str) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UserError(f"--image-size {text!r}: expected HEIGHTxWIDTH, e.g. 256x128") from None
    return height, width


def _knobs(cls: type | None) -> list[str]:
    import dataclasses

    if cls is None:
        return []
    return [f"{f.name}={f.default!r}" if f.default is not dataclasses.MISSING else f.name
            for f in dataclasses.fields(cls)]


# --- report ------------------------------------------------------------------------------------------------
@cli.command()
@click.option("--experiment", default="reidbench", show_default=True, help="MLflow experiment to report on.")
@click.option("--tracking-uri", default=None, help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, "
              "else sqlite:///results/mlflow.db).")
@click.option("--format", "formats", multiple=True, default=("terminal",), show_default=True,
              type=click.Choice(["latex", "markdown", "csv", "terminal", "all"]),
              help="Output format (repeatable); files go under --out.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("results/report"), show_default=True,
              help="Folder for the table files and figures/.")
@click.option("--metric", "metrics", multiple=True, metavar="NAME",
              help="Metric columns: mAP, rank1, rank5, rank10, mINP (repeatable or comma-separated; "
              "default mAP,rank1).")
@click.option("--published", type=click.Path(path_type=Path), default=None,
              help="CSV of numbers reported by papers (default: the repo's results/published.csv).")
@click.option("--reported", type=click.Choice(["matching", "all", "none"]), default="matching",
              show_default=True, help="Which reported rows to show: datasets we have runs on, all, none.")
@click.option("--plots/--no-plots", default=True, show_default=True,
              help="Write ablation plots and training curves (PNG + PDF) when writing files.")
def report(experiment: str, tracking_uri: str | None, formats: tuple[str, ...], out: Path,
           metrics: tuple[str, ...], published: Path | None, reported: str, plots: bool) -> None:
    """Leaderboard, cost, missing-modality and ablation tables (+ plots) from the finished MLflow runs."""
    from reidbench import tracking
    from reidbench.report import load_report, parse_formats, parse_metrics, write_report
    from reidbench.report.terminal import print_tables

    metric_list = parse_metrics(metrics)
    format_list = parse_formats(formats)
    files = [f for f in format_list if f != "terminal"]
    uri = tracking_uri or tracking.default_uri()
    result = load_report(uri, experiment, metric_list, published, reported, with_histories=plots and bool(files))
    if "terminal" in format_list:
        print_tables(console, result.tables)
    if result.runset.superseded:
        console.print(f"note: {result.runset.superseded} re-run(s) of a seed with an identical config were "
                      "superseded by the latest run (not averaged in)")
    if files:
        written = write_report(result, out, files, metric_list, plots=plots)
        console.print(f"wrote {len(written)} files under {out}/ ({', '.join(files)}"
                      f"{', figures/' if plots and any(p.parent.name == 'figures' for p in written) else ''})")


def main() -> None:
    """Console-script entry point: user mistakes end in a one-line message and exit code 2."""
    try:
        cli(standalone_mode=False)
    except UserError as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(2)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except (click.exceptions.Abort, KeyboardInterrupt):
        console.print("[yellow]aborted[/]")
        sys.exit(130)


if __name__ == "__main__":
    main()
