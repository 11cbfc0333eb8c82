"""``reidbench eval`` and ``reidbench zoo export|list|get``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from reidbench.cli.common import console
from reidbench.cli.types import DEVICE, FILE, FOLDER, FRACTION
from reidbench.errors import UserError

_zoo_file = click.option(
    "--zoo-file",
    type=click.Path(path_type=Path),
    default=None,
    help="Zoo catalogue (default: $REIDBENCH_ZOO, else the repository's results/zoo.yaml).",
)
_uri = click.option(
    "--tracking-uri",
    default=None,
    help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///results/mlflow.db).",
)


@click.command("eval")
@click.option("--run", "run_id", default=None, help="A finished training run's id (its saved weights).")
@click.option("--weights", type=FILE, default=None, help="A model.safetensors file.")
@click.option("--zoo", "zoo", default=None, metavar="NAME", help="A zoo model (method@dataset[.tag]).")
@click.option(
    "--config",
    "config_path",
    type=FILE,
    default=None,
    help="With --weights: a config.yaml the weights must match (default: config.yaml beside them, if any).",
)
@click.option("--dataset", "-d", default=None, help="Dataset to evaluate on (default: the training dataset).")
@click.option(
    "--validation",
    type=FRACTION,
    default=None,
    metavar="FRACTION",
    help="Evaluate on the validation split of this fraction of the dataset's training identities (as "
    "`reidbench tune` carves it) instead of the test split (default: the split the model was scored on).",
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="eval.KEY=VALUE",
    help="Evaluation setting, e.g. eval.rerank=true, eval.missing_modality=true, eval.cross_modal=[all].",
)
@click.option(
    "--data-root",
    type=FOLDER,
    default=None,
    help="Folder holding the datasets (default: $REIDBENCH_DATA, else ./data).",
)
@_uri
@click.option(
    "--experiment",
    default=None,
    help="MLflow experiment of the evaluation run (default: the source run's, else reidbench).",
)
@click.option("--no-log", is_flag=True, help="Print the metrics without logging an evaluation run.")
@click.option("--device", type=DEVICE, default="auto", show_default=True, help="auto, cpu, cuda, cuda:1, ...")
@click.option(
    "--allow-partial", is_flag=True, help="Use a dataset whose layout check found problems (warns)."
)
@click.option("--quiet/--progress", "-q", default=not sys.stderr.isatty(), help="Hide / show progress bars.")
@_zoo_file
def eval_(
    run_id: str | None,
    weights: Path | None,
    zoo: str | None,
    config_path: Path | None,
    dataset: str | None,
    validation: float | None,
    overrides: tuple[str, ...],
    data_root: Path | None,
    tracking_uri: str | None,
    experiment: str | None,
    no_log: bool,
    device: str,
    allow_partial: bool,
    quiet: bool,
    zoo_file: Path | None,
) -> None:
    """Evaluate a trained model (--run ID | --weights PATH | --zoo NAME) on a dataset in every evaluation
    setting asked for, without training; logged as an evaluation run (run_kind=eval) linked to its source."""
    from reidbench.protocol import EvalCfg
    from reidbench.zoo.evaluate import apply_eval_overrides

    apply_eval_overrides(EvalCfg(), overrides)  # a bad --set ends here, before anything heavy loads
    from reidbench import tracking
    from reidbench.zoo import evaluate as ev

    chosen = [name for name, value in (("--run", run_id), ("--weights", weights), ("--zoo", zoo)) if value]
    if len(chosen) != 1:
        raise UserError("pass exactly one of --run RUN_ID, --weights PATH, --zoo NAME")
    if config_path is not None and weights is None:
        raise UserError("--config goes with --weights (a run and a zoo model carry their own config)")
    uri = tracking_uri or tracking.default_uri()
    with ev.download_dir() as tmp:
        if run_id:
            source = ev.from_run(uri, run_id, Path(tmp))
            experiment = experiment or tracking.run_experiment(uri, run_id)
        elif weights is not None:
            source = ev.from_weights(weights, config_path)
        else:
            source = zoo_source(zoo, zoo_file)
        result = run_evaluation(
            source,
            dataset,
            validation,
            list(overrides),
            data_root,
            device,
            allow_partial,
            quiet,
            None if no_log else uri,
            experiment or tracking.DEFAULT_EXPERIMENT,
        )
    print_metrics(result.metrics, f"{source.weights.method} on {result.protocol.dataset} ({source.label})")
    if result.run_id:
        console.print(f"logged evaluation run {result.run_id} to {uri}", highlight=False, markup=False)


def zoo_source(name: str, zoo_file: Path | None) -> Any:
    """The evaluation source of zoo model ``name``, fetched and verified."""
    from reidbench.train.weights import WEIGHTS_FILE
    from reidbench.zoo.catalog import default_zoo_file, find_entry, read_zoo
    from reidbench.zoo.evaluate import from_weights
    from reidbench.zoo.fetch import fetch

    path = zoo_file or default_zoo_file()
    entry = find_entry(read_zoo(path), name, path)
    folder = fetch(entry, path.parent)
    return from_weights(folder / WEIGHTS_FILE, label=f"zoo {name}")


def run_evaluation(
    source: Any,
    dataset: str | None,
    validation: float | None,
    overrides: list[str],
    data_root: Path | None,
    device: str,
    allow_partial: bool,
    quiet: bool,
    uri: str | None,
    experiment: str,
) -> Any:
    from reidbench.data.loading import load_dataset
    from reidbench.data.validation import validation_split
    from reidbench.runner import pick_device
    from reidbench.spec import default_data_root
    from reidbench.zoo.evaluate import evaluate_source

    name = dataset or str(source.weights.config["dataset"])
    data = load_dataset(name, data_root or default_data_root(), allow_partial)
    if validation is None and name == source.weights.config["dataset"]:
        validation = source.weights.config.get("validation")  # where a tuning trial was scored
    if validation is not None:  # never the test split under a validation name
        data = validation_split(data, validation, option="--validation")
    say = lambda text: console.print(f"note: {text}", highlight=False, markup=False)  # noqa: E731
    return evaluate_source(
        source, data, pick_device(device), overrides, uri, experiment, not quiet, say, validation
    )


def print_metrics(metrics: dict[str, float], title: str) -> None:
    """One row per evaluation setting: R1, R5, R10, mAP, mINP in %."""
    table = Table(title=title)
    columns = ["rank1", "rank5", "rank10", "mAP", "mINP"]
    table.add_column("setting", style="bold")
    for column in columns:
        table.add_column(column, justify="right")
    settings = ["all", *sorted({k.split("@", 1)[1] for k in metrics if "@" in k})]
    for setting in settings:
        suffix = "" if setting == "all" else f"@{setting}"
        cells = [metrics.get(c + suffix) for c in columns]
        table.add_row(setting, *("–" if v is None else f"{100 * v:.1f}" for v in cells))
    console.print(table)


@click.group("zoo")
def zoo_group() -> None:
    """Export trained models into a model zoo, list it, fetch a model."""


@zoo_group.command("export")
@click.option("--experiment", default="reidbench", show_default=True, help="MLflow experiment to export.")
@_uri
@click.option("--out", type=FOLDER, required=True, help="Folder for the model folders.")
@click.option(
    "--zoo-file",
    type=click.Path(path_type=Path),
    default=None,
    help="Also write the zoo catalogue here (sources relative to its folder); merged with its entries.",
)
def zoo_export(experiment: str, tracking_uri: str | None, out: Path, zoo_file: Path | None) -> None:
    """One folder per (method, dataset, recipe): weights, config, model card, SHA256SUMS."""
    from reidbench import tracking
    from reidbench.zoo.catalog import read_zoo, write_zoo
    from reidbench.zoo.export import export_zoo

    result = export_zoo(
        tracking_uri or tracking.default_uri(), experiment, out, zoo_file.parent if zoo_file else None
    )
    for entry in result.entries:
        console.print(f"{entry.name:32s} {out / entry.name}", highlight=False, markup=False)
    for line in result.skipped:
        console.print(f"skipped {line}", highlight=False, markup=False)
    if zoo_file is not None:
        names = {e.name for e in result.entries}
        kept = [e for e in read_zoo(zoo_file) if e.name not in names] if zoo_file.is_file() else []
        write_zoo(zoo_file, kept + result.entries)
        console.print(
            f"wrote {zoo_file} ({len(kept) + len(result.entries)} models)", highlight=False, markup=False
        )
    console.print(
        "upload a folder with huggingface_hub.upload_folder(repo_id=..., folder_path=...), then set its "
        "entry's source to hf-hub:OWNER/REPO",
        highlight=False,
    )


@zoo_group.command("list")
@_zoo_file
@click.option("--markdown", is_flag=True, help="Print the table as Markdown (the README's zoo table).")
def zoo_list(zoo_file: Path | None, markdown: bool) -> None:
    """The zoo table: method, dataset, recipe, R1, mAP, mINP (mean ± std over seeds), params, GFLOPs,
    source."""
    from reidbench.zoo.catalog import COLUMNS, default_zoo_file, markdown_table, read_zoo, table_rows

    path = zoo_file or default_zoo_file()
    entries = read_zoo(path)
    if markdown:
        click.echo(markdown_table(entries), nl=False)
        return
    table = Table(title=f"model zoo ({len(entries)}): {path}")
    for column in COLUMNS:
        table.add_column(column, style="bold" if column == "name" else None)
    for row in table_rows(entries):
        table.add_row(*row)
    console.print(table)


@zoo_group.command("get")
@click.argument("name")
@_zoo_file
def zoo_get(name: str, zoo_file: Path | None) -> None:
    """Fetch zoo model NAME (Hugging Face Hub, URL or local folder), verify its sha256, cache it."""
    from reidbench.zoo.catalog import default_zoo_file, find_entry, read_zoo
    from reidbench.zoo.fetch import fetch

    path = zoo_file or default_zoo_file()
    entry = find_entry(read_zoo(path), name, path)
    folder = fetch(entry, path.parent)
    console.print(
        f"{name}: verified sha256 {entry.sha256[:16]}…, cached at {folder}", highlight=False, markup=False
    )
