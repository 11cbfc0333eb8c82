"""The ``reidbench`` command line: parses, then calls into the reidbench package."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


# Options shared by the commands that train: data, MLflow, device and where / how runs execute.
EXECUTION_OPTIONS = [
    click.option(
        "--data-root",
        type=click.Path(path_type=Path),
        default=None,
        help="Folder holding the datasets (default: $REIDBENCH_DATA, else ./data).",
    ),
    click.option(
        "--tracking-uri",
        default=None,
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///results/mlflow.db).",
    ),
    click.option("--experiment", default="reidbench", show_default=True, help="MLflow experiment name."),
    click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1, ..."),
    click.option(
        "--quiet/--progress",
        "-q",
        default=not sys.stderr.isatty(),
        help="Hide / show progress bars (default: shown on a terminal).",
    ),
    click.option(
        "--gpus",
        default=None,
        metavar="IDS",
        help="Run points in parallel on these GPUs (e.g. 0-7 or 0,1,4-5): each run gets "
        "--gpus-per-run of them (CUDA_VISIBLE_DEVICES); the next starts when one ends.",
    ),
    click.option(
        "--gpus-per-run",
        type=int,
        default=1,
        show_default=True,
        help="Processes (GPUs) per run; more than 1 trains each run with DDP (gloo on CPU).",
    ),
    click.option(
        "--launcher",
        type=click.Choice(["local", "slurm"]),
        default="local",
        show_default=True,
        help="slurm: submit every point as a Slurm job (submitit), requeued on preemption.",
    ),
    click.option("--partition", default=None, help="Slurm partition."),
    click.option(
        "--timeout",
        "timeout_min",
        type=int,
        default=24 * 60,
        show_default=True,
        help="Slurm time limit per run in minutes (a run that hits it is requeued and resumes).",
    ),
    click.option("--cpus-per-task", type=int, default=8, show_default=True, help="Slurm CPUs per process."),
    click.option(
        "--slurm-set",
        multiple=True,
        metavar="KEY=VALUE",
        help="Extra submitit parameter, e.g. slurm_account=abc or mem_gb=64 (repeatable).",
    ),
    click.option(
        "--results-dir",
        type=click.Path(path_type=Path),
        default=Path("results"),
        show_default=True,
        help="Where checkpoints/, jobs/ (worker logs) and slurm/ go; on Slurm a shared filesystem.",
    ),
    click.option("--keep-checkpoints", is_flag=True, help="Keep the training state of finished runs."),
    click.option(
        "--save-weights/--no-save-weights",
        default=None,
        help="Save each finished run's final weights (safetensors + sha256) and config as MLflow artifacts "
        "(default: on; off for tuning trials).",
    ),
    click.option(
        "--allow-partial", is_flag=True, help="Use a dataset whose layout check found problems (warns)."
    ),
    click.option(
        "--retry-running",
        is_flag=True,
        help="Also train points whose RUNNING run looks alive (by default they are left to the "
        "sweep training them: same host and process alive, or a recent heartbeat).",
    ),
    click.option(
        "--stale-after",
        "stale_after_min",
        type=float,
        default=180,
        show_default=True,
        help="Minutes without a heartbeat after which a RUNNING run on another host counts as crashed.",
    ),
]


def _execution_options(command: Callable) -> Callable:
    """Decorator: add :data:`EXECUTION_OPTIONS` to a command."""
    for option in reversed(EXECUTION_OPTIONS):
        command = option(command)
    return command


def _protocol_option(command: Callable) -> Callable:
    """``--protocol PATH``: the command reads the protocol from PATH instead of the built-in one."""

    @functools.wraps(command)
    def wrapper(*args: Any, protocol: Path | None, **kwargs: Any) -> Any:
        from reidbench.protocol import protocol_file

        with protocol_file(protocol):
            return command(*args, **kwargs)

    return click.option(
        "--protocol",
        type=click.Path(path_type=Path),
        default=None,
        help="Protocol YAML file to use instead of benchmarks/protocols/DATASET.yaml (checked the same way; "
        "runs record its path, their config its content).",
    )(wrapper)


def _recipe_option(command: Callable) -> Callable:
    """``--recipe shared|official``: the training recipe of every run the command makes."""

    @functools.wraps(command)
    def wrapper(*args: Any, recipe: str, **kwargs: Any) -> Any:
        from reidbench.recipes import recipe_choice

        with recipe_choice(recipe):
            return command(*args, **kwargs)

    return click.option(
        "--recipe",
        type=click.Choice(["shared", "official"]),
        default="shared",
        show_default=True,
        help="shared: the dataset protocol's recipe for every method (the leaderboard's main track); "
        "official: the method's published recipe (`reidbench list methods --verbose` lists what differs).",
    )(wrapper)


def _executor(opts: dict[str, Any]) -> Any:
    """Where the runs execute, from the execution options (in process, a local GPU pool, Slurm)."""
    from reidbench.sweeps import executors

    return executors.build(
        device=opts["device"],
        work_dir=opts["results_dir"],
        gpus=opts["gpus"],
        gpus_per_run=opts["gpus_per_run"],
        launcher=opts["launcher"],
        partition=opts["partition"],
        timeout_min=opts["timeout_min"],
        cpus_per_task=opts["cpus_per_task"],
        slurm_set=list(opts["slurm_set"]),
    )


def _context(opts: dict[str, Any], save_weights: bool = True) -> Any:
    """The RunContext every run of the command gets, from the execution options (``save_weights``: the
    default when neither --save-weights nor --no-save-weights is given)."""
    from reidbench import tracking
    from reidbench.context import RunContext
    from reidbench.spec import default_data_root
    from reidbench.train.checkpoint import checkpoint_root

    device = opts["device"]
    if device == "auto" and (opts["gpus"] or opts["launcher"] == "slurm"):
        device = "cuda"  # runs placed on GPUs
    return RunContext(
        data_root=opts["data_root"] or default_data_root(),
        tracking_uri=opts["tracking_uri"] or tracking.default_uri(),
        experiment=opts["experiment"],
        device=device,
        checkpoint_dir=checkpoint_root(opts["results_dir"]),
        keep_checkpoints=opts["keep_checkpoints"],
        save_weights=save_weights if opts["save_weights"] is None else opts["save_weights"],
        show_progress=not opts["quiet"],
        allow_partial=opts["allow_partial"],
    )


def _sweep(specs: list[Any], opts: dict[str, Any], kind: str, name: str, tags: dict[str, str]) -> None:
    """Run the points of a grid or ablation with the execution options, then print the results."""
    from reidbench.sweeps.sweep import run_sweep

    ctx, executor = _context(opts), _executor(opts)
    result = run_sweep(
        specs,
        ctx,
        executor,
        kind=kind,
        name=name,
        parent_tags=tags,
        console=console,
        retry_running=opts["retry_running"],
        stale_after_s=opts["stale_after_min"] * 60,
    )
    _report(result, ctx)


def _report(result: Any, ctx: Any) -> None:
    """Result table, failures, and a non-zero exit when a point failed."""
    from reidbench.report.results import print_results
    from reidbench.sweeps.sweep import failure_lines

    if result.results:
        print_results(console, result.results)
    console.print(f"logged to {ctx.tracking_uri} (experiment {ctx.experiment!r})")
    if result.failures:
        console.print(f"[bold red]{len(result.failures)} point(s) failed:[/]")
        for line in failure_lines(result):
            console.print(f"  {line}", highlight=False, markup=False)
        sys.exit(1)


@cli.command()
@click.option("--method", "-m", "methods", multiple=True, required=True, help="Method name (repeatable).")
@click.option("--dataset", "-d", "datasets", multiple=True, required=True, help="Dataset name (repeatable).")
@click.option("--seeds", default=None, help="Comma-separated seeds (default: the protocol's seeds).")
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a protocol value, e.g. --set optim.lr=3e-4 (repeatable).",
)
@click.option(
    "--test-on",
    "test_on",
    multiple=True,
    metavar="DATASET",
    help="Also evaluate the final model on this dataset's query/gallery (repeatable): mAP@to_DATASET, ...",
)
@click.option("--merge-sources", is_flag=True, help="Train one model on the union of the --dataset sets.")
@_execution_options
@_protocol_option
@_recipe_option
def run(
    methods: tuple[str, ...],
    datasets: tuple[str, ...],
    seeds: str | None,
    overrides: tuple[str, ...],
    test_on: tuple[str, ...],
    merge_sources: bool,
    **opts: Any,
) -> None:
    """Train and evaluate every METHOD x DATASET x SEED and print the result table.

    Points that already have a FINISHED run with the same config are skipped; interrupted ones resume.
    """
    specs = run_specs(methods, datasets, seeds, overrides, test_on, merge_sources)  # checked before torch
    from reidbench.generalisation import merged_name
    from reidbench.sweeps.sweep import sweep_tags

    datasets = (merged_name(datasets),) if merge_sources else datasets
    _sweep(specs, opts, "grid", f"{'+'.join(methods)}@{'+'.join(datasets)}", sweep_tags(specs))


def run_specs(
    methods: tuple[str, ...],
    datasets: tuple[str, ...],
    seeds: str | None,
    overrides: tuple[str, ...],
    test_on: tuple[str, ...] = (),
    merge_sources: bool = False,
    **_: Any,
) -> list[Any]:
    """The RunSpecs of ``reidbench run`` from its parsed options (also used by ``queue add run``)."""
    from reidbench.generalisation import merged_name
    from reidbench.spec import grid

    datasets = (merged_name(datasets),) if merge_sources else datasets
    return grid(methods, datasets, _seeds(seeds), list(overrides), test_on)


@cli.command()
@click.argument("name")
@click.option(
    "--dataset", "-d", "datasets", multiple=True, help="Dataset (repeatable; default: the ablation's)."
)
@click.option(
    "--values",
    default=None,
    help="Comma-separated values of the axis, e.g. 1,2,4 or rgb,rgb+nir (default: the ablation's).",
)
@click.option("--method", "-m", default=None, help="Ablate this method instead of the ablation's.")
@click.option(
    "--seeds", default=None, help="Comma-separated seeds (default: the ablation's, else the protocol's)."
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a protocol value for every point (repeatable).",
)
@_execution_options
@_protocol_option
@_recipe_option
def ablate(
    name: str,
    datasets: tuple[str, ...],
    values: str | None,
    method: str | None,
    seeds: str | None,
    overrides: tuple[str, ...],
    **opts: Any,
) -> None:
    """Run ablation NAME (benchmarks/ablations/NAME.yaml, or a path to a YAML file)."""
    from reidbench.sweeps.sweep import sweep_tags

    ablation, specs = ablate_specs(name, datasets, values, method, seeds, overrides)
    tags = sweep_tags(specs, ablation=ablation.name, axis=ablation.axis, axis_default=ablation.default)
    _sweep(specs, opts, "ablation", ablation.name, tags)


def ablate_specs(
    name: str,
    datasets: tuple[str, ...],
    values: str | None,
    method: str | None,
    seeds: str | None,
    overrides: tuple[str, ...],
    **_: Any,
) -> tuple[Any, list[Any]]:
    """The ablation and its RunSpecs from ``reidbench ablate``'s parsed options (also ``queue add``)."""
    from reidbench.sweeps.ablation import find_ablation

    ablation = find_ablation(name)
    value_list = [v.strip() for v in values.split(",") if v.strip()] if values else None
    specs = ablation.specs(list(datasets) or None, _seeds(seeds), list(overrides), value_list, method)
    return ablation, specs


@cli.command()
@click.argument("name")
@click.option("--method", "-m", "methods", multiple=True, help="Run these methods instead of the suite's.")
@click.option(
    "--seeds", default=None, help="Comma-separated seeds (default: the suite's, else the protocol's)."
)
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override for every point.")
@click.option("--skip-missing", is_flag=True, help="Run only the entries whose datasets are all present.")
@_execution_options
def suite(
    name: str,
    methods: tuple[str, ...],
    seeds: str | None,
    overrides: tuple[str, ...],
    skip_missing: bool,
    **opts: Any,
) -> None:
    """Run suite NAME (benchmarks/suites/NAME.yaml, or a path): grids with their --test-on targets."""
    from reidbench.sweeps.suite import find_suite, present
    from reidbench.sweeps.sweep import sweep_tags

    found = find_suite(name)
    specs = found.specs(list(methods) or None, _seeds(seeds), list(overrides))
    ctx = _context(opts)
    kept, missing = present(specs, ctx.data_root, ctx.allow_partial)
    if missing and not skip_missing:
        raise UserError(
            f"suite {found.name!r}: {len(missing)} dataset(s) cannot be read:\n  "
            + "\n  ".join(missing)
            + f"\n--skip-missing runs the {len(kept)} of {len(specs)} point(s) whose datasets are present"
        )
    for line in missing:
        console.print(f"skipped (data missing) {line}", highlight=False, markup=False)
    if not kept:
        raise UserError(f"suite {found.name!r}: no entry has all its datasets under {ctx.data_root}")
    specs = kept
    _sweep(specs, opts, "suite", found.name, sweep_tags(specs, suite=found.name))


@cli.command()
@click.option("--method", "-m", required=True, help="Method name.")
@click.option(
    "--dataset", "-d", required=True, help="Dataset name (tuned on a validation split of its training ids)."
)
@click.option("--trials", type=int, required=True, help="Number of trials this process runs.")
@click.option(
    "--space",
    type=click.Path(path_type=Path),
    default=None,
    help="Search space YAML (default: lr, weight decay, label smoothing, triplet margin).",
)
@click.option(
    "--storage",
    default=None,
    help="Optuna storage URL (default: sqlite:///results/optuna.db; "
    "use postgresql://... to share a study between machines).",
)
@click.option(
    "--study",
    "study_name",
    default=None,
    help="Study name (default: METHOD@DATASET); workers with the same name and storage share it.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Training seed of every trial.")
@click.option(
    "--val-fraction",
    type=float,
    default=0.2,
    show_default=True,
    help="Fraction of training identities carved into the validation query / gallery.",
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a protocol value for every trial (repeatable).",
)
@_execution_options
@_protocol_option
@_recipe_option
def tune(
    method: str,
    dataset: str,
    trials: int,
    space: Path | None,
    storage: str | None,
    study_name: str | None,
    seed: int,
    val_fraction: float,
    overrides: tuple[str, ...],
    **opts: Any,
) -> None:
    """Optuna search maximising validation mAP (never the test set); trials are MLflow child runs."""
    from reidbench.sweeps.tune import best_command, load_space
    from reidbench.sweeps.tune import tune as run_study

    if opts["gpus"] or opts["gpus_per_run"] != 1 or opts["launcher"] != "local":
        raise UserError(
            "tune runs its trials in this process: start one `reidbench tune` per GPU "
            "(CUDA_VISIBLE_DEVICES=i) or machine with the same --storage and --study instead of "
            "--gpus / --gpus-per-run / --launcher"
        )
    study = run_study(
        method,
        dataset,
        trials,
        _context(opts, save_weights=False),
        load_space(space),
        storage=storage,
        study_name=study_name,
        seed=seed,
        overrides=list(overrides),
        fraction=val_fraction,
        console=console,
    )
    finished = [t for t in study.trials if t.value is not None]
    if not finished:
        console.print("no trial finished yet")
        return
    best = study.best_trial
    console.print(
        f"best of {len(finished)} finished trial(s): #{best.number}, validation mAP {100 * best.value:.1f}",
        highlight=False,
    )
    console.print(f"test it: {best_command(study, method, dataset)}", highlight=False, markup=False)


@cli.command()
@click.option("--method", "-m", "methods", multiple=True, required=True, help="Method name (repeatable).")
@click.option("--dataset", "-d", "datasets", multiple=True, required=True, help="Dataset name (repeatable).")
@click.option("--seeds", default=None, help="Comma-separated seeds (default: the protocol's seeds).")
@click.option(
    "--schedule",
    type=click.Choice(["unstructured-l1", "structured"]),
    default="unstructured-l1",
    show_default=True,
    help="unstructured-l1: GraFT's global L1 masks (non-zero weights fall, shapes stay); structured: "
    "heads and MLP channels removed (params, FLOPs and latency fall).",
)
@click.option("--rounds", type=int, default=4, show_default=True, help="Prune + fine-tune rounds.")
@click.option(
    "--fraction", type=float, default=0.2, show_default=True, help="Share of what remains pruned per round."
)
@click.option(
    "--finetune-epochs", type=int, default=2, show_default=True, help="Fine-tuning epochs per round."
)
@click.option(
    "--finetune-lr",
    type=float,
    default=None,
    help="Constant fine-tuning learning rate (default: 0.1 x the protocol's optim.lr).",
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a protocol value of the base runs (repeatable).",
)
@_execution_options
@_protocol_option
@_recipe_option
def prune(
    methods: tuple[str, ...],
    datasets: tuple[str, ...],
    seeds: str | None,
    schedule: str,
    rounds: int,
    fraction: float,
    finetune_epochs: int,
    finetune_lr: float | None,
    overrides: tuple[str, ...],
    **opts: Any,
) -> None:
    """Prune the backbones of trained METHOD x DATASET x SEED models round by round (each round: prune,
    fine-tune, evaluate; a child run with params, non-zero params, GFLOPs and measured throughput).

    The base runs are trained first unless finished ones exist; finished rounds are skipped, so a stopped
    study resumes at its next round. `reidbench report` draws the Pareto figures.
    """
    from reidbench.prune.schedule import check_schedule
    from reidbench.spec import grid

    check_schedule(schedule, fraction, rounds, finetune_epochs, finetune_lr)
    bases = grid(methods, datasets, _seeds(seeds), list(overrides))
    from reidbench.prune.study import run_study

    ctx = _context(opts)
    result = run_study(
        bases,
        schedule,
        fraction,
        rounds,
        finetune_epochs,
        finetune_lr,
        ctx,
        _executor(opts),
        console=console,
        retry_running=opts["retry_running"],
        stale_after_s=opts["stale_after_min"] * 60,
    )
    _report(result, ctx)


@cli.command("list")
@click.argument("what", type=click.Choice(["methods", "datasets", "ablations"]))
@click.option(
    "--verbose",
    "-v",
    is_flag=True,
    help="methods: also each official recipe and what it still does differently.",
)
def list_(what: str, verbose: bool) -> None:
    """List the registered methods, datasets or ablations."""
    from rich.table import Table

    from reidbench.registry import DATASETS, METHODS, load_plugins

    load_plugins()
    if what == "ablations":
        _list_ablations()
        return
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
    if what == "methods" and verbose:
        _list_recipes()


@cli.command()
@click.argument("method")
@click.option("--dataset", required=True, help="Dataset whose protocol (image size, modalities) is used.")
@click.option("--set", "overrides", multiple=True, help="Protocol override KEY=VALUE (repeatable).")
@click.option("--classes", type=click.IntRange(min=1), help="Training identities (default: published).")
@click.option("--cameras", type=click.IntRange(min=0), help="Cameras (default: the file-name rule's).")
def info(
    method: str, dataset: str, overrides: tuple[str, ...], classes: int | None, cameras: int | None
) -> None:
    """Parameters (total, trainable, used at test), descriptor width and GFLOPs of METHOD at DATASET's input
    size, built with random weights (no training, no data, no download)."""
    from rich.table import Table

    from reidbench.evaluation.model_info import model_info

    found = model_info(method, dataset, list(overrides), classes, cameras)
    table = Table(title=f"{method} on {dataset} (random weights)", show_header=False)
    for label, value in found.rows():
        table.add_row(label, value)
    console.print(table)


def _list_recipes() -> None:
    """Per method: its official recipe (dotted settings) and what still differs from the official code."""
    from reidbench.recipes import deviations
    from reidbench.registry import METHODS

    console.print(
        "\n[bold]Recipes[/]: --recipe shared (default) trains every method with the dataset protocol's "
        "recipe; --recipe official adds:"
    )
    for entry in METHODS:
        official = entry.meta.get("official")
        if official is None:
            console.print(f"  {entry.name}: no official recipe (a baseline: shared only)", highlight=False)
            continue
        settings = ", ".join(f"{k}={v}" for k, v in official.items() if k != "train.stages")
        stages = official.get("train.stages")
        if stages:
            settings += f", train.stages=[{', '.join(s['name'] for s in stages)}]"
        console.print(f"  [bold]{entry.name}[/]: {settings}", highlight=False, markup=True)
        for line in deviations(entry.name):
            console.print(f"    differs from the official code: {line}", highlight=False, markup=False)


@cli.group("datasets")
def datasets_group() -> None:
    """Check an official dataset download, or decode it into the cache ahead of training."""


_data_root = click.option(
    "--data-root",
    type=click.Path(path_type=Path),
    default=None,
    help="Folder holding the datasets (default: $REIDBENCH_DATA, else ./data).",
)


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
    from reidbench.spec import default_data_root

    load_plugins()
    dataset = DATASETS.get(name).builder(data_root or default_data_root(), validate=False)
    print_layout_report(console, dataset)
    if dataset.problems:
        sys.exit(1)


@datasets_group.command("prepare")
@click.argument("name")
@_data_root
@click.option(
    "--image-size", default=None, metavar="HxW", help="Decode at this size (default: the protocol's)."
)
@click.option("--allow-partial", is_flag=True, help="Go on despite layout problems (warns).")
@click.option("--quiet/--progress", "-q", default=not sys.stderr.isatty(), help="Hide / show progress bars.")
def datasets_prepare(
    name: str, data_root: Path | None, image_size: str | None, allow_partial: bool, quiet: bool
) -> None:
    """Decode dataset NAME once into the cache ($REIDBENCH_CACHE) at the protocol's image size."""
    import time

    from reidbench.data.cache import prepare
    from reidbench.protocol import build_protocol
    from reidbench.registry import DATASETS, load_plugins
    from reidbench.spec import default_data_root

    load_plugins()
    dataset = DATASETS.get(name).builder(data_root or default_data_root(), allow_partial=allow_partial)
    size = _size(image_size) if image_size else tuple(build_protocol(name).data.image_size)
    start = time.perf_counter()
    for split, folder, samples, nbytes in prepare(dataset, size, show_progress=not quiet):
        console.print(
            f"{split:8s} {samples:6d} samples  {nbytes / 2**20:9.1f} MiB  {folder}", highlight=False
        )
    console.print(f"cache ready at {size[0]}x{size[1]} in {time.perf_counter() - start:.1f} s")


def _size(text: str) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UserError(f"--image-size {text!r}: expected HEIGHTxWIDTH, e.g. 256x128") from None
    return height, width


def _list_ablations() -> None:
    from rich.table import Table

    from reidbench.registry import ABLATIONS
    from reidbench.sweeps.ablation import register_ablations

    register_ablations()
    table = Table(title=f"ablations ({len(ABLATIONS)}): reidbench ablate NAME [--dataset D] [--values a,b]")
    for column in ("name", "method", "axis", "values (default *)", "datasets", "description"):
        table.add_column(column, style="bold" if column == "name" else None)
    for entry in ABLATIONS:
        ab = entry.builder()
        values = ", ".join(p.label + ("*" if p.label == ab.default else "") for p in ab.points)
        table.add_row(ab.name, ab.method, ab.axis, values, ", ".join(ab.datasets), ab.description)
    console.print(table)


def _knobs(cls: type | None) -> list[str]:
    import dataclasses

    if cls is None:
        return []
    return [
        f"{f.name}={f.default!r}" if f.default is not dataclasses.MISSING else f.name
        for f in dataclasses.fields(cls)
    ]


# --- report ------------------------------------------------------------------------------------------------
@cli.command()
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
    type=click.Choice(["latex", "markdown", "csv", "terminal", "pdf", "all"]),
    help="Output format (repeatable); files go under --out. pdf: report.tex compiled with pdflatex.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
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
    type=click.Path(path_type=Path),
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
        console.print(f"note: {NO_PDFLATEX}. Wrote report.tex, not report.pdf")
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
        written = write_report(result, out, files, metric_list, plots=plots)
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


from reidbench.zoo.cli import eval_, zoo_group  # noqa: E402 (the commands of reidbench/zoo)

cli.add_command(eval_)
cli.add_command(zoo_group)

from reidbench.queue.cli import queue, serve  # noqa: E402

cli.add_command(queue)
cli.add_command(serve)


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
