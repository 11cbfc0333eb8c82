"""What the commands share: the console, seed parsing, the execution options and what they build (the
RunContext, the executor), and running a sweep with its result table."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from reidbench.cli.types import COUNT, DEVICE, FILE, FOLDER, NAME, POSITIVE, SEED_MAX
from reidbench.errors import UserError

__all__ = [
    "EXECUTION_OPTIONS",
    "build_context",
    "build_executor",
    "console",
    "execution_options",
    "parse_seeds",
    "protocol_option",
    "recipe_option",
    "report_result",
    "sweep_and_report",
]

console = Console(width=None if sys.stdout.isatty() else 120)


def parse_seeds(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        seeds = [int(s) for s in text.split(",")]  # an empty item (0,,1) is a typo, not a separator
    except ValueError:
        raise UserError(f"--seeds {text!r}: expected comma-separated integers, e.g. 0,1,2") from None
    if not seeds or not all(0 <= s <= SEED_MAX for s in seeds):
        raise UserError(f"--seeds {text!r}: expected comma-separated integers from 0 to {SEED_MAX}")
    return seeds


# Options shared by the commands that train: data, MLflow, device and where / how runs execute.
EXECUTION_OPTIONS = [
    click.option(
        "--data-root",
        type=FOLDER,
        default=None,
        help="Folder holding the datasets (default: $REIDBENCH_DATA, else ./data).",
    ),
    click.option(
        "--tracking-uri",
        default=None,
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///results/mlflow.db).",
    ),
    click.option(
        "--experiment", type=NAME, default="reidbench", show_default=True, help="MLflow experiment name."
    ),
    click.option(
        "--device", type=DEVICE, default="auto", show_default=True, help="auto, cpu, cuda, cuda:1, ..."
    ),
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
        type=COUNT,
        default=1,
        show_default=True,
        help="Processes (GPUs) per run; more than 1 trains each run with DDP (gloo on CPU).",
    ),
    click.option(
        "--workers",
        type=COUNT,
        default=1,
        show_default=True,
        help="Train this many points at once as local worker processes sharing the CPU cores "
        "(OMP_NUM_THREADS = cores / N each); for GPUs use --gpus.",
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
        type=COUNT,
        default=24 * 60,
        show_default=True,
        help="Slurm time limit per run in minutes (a run that hits it is requeued and resumes).",
    ),
    click.option("--cpus-per-task", type=COUNT, default=8, show_default=True, help="Slurm CPUs per process."),
    click.option(
        "--slurm-set",
        multiple=True,
        metavar="KEY=VALUE",
        help="Extra submitit parameter, e.g. slurm_account=abc or mem_gb=64 (repeatable).",
    ),
    click.option(
        "--results-dir",
        type=FOLDER,
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
        type=POSITIVE,
        default=180,
        show_default=True,
        help="Minutes without a heartbeat after which a RUNNING run on another host counts as crashed.",
    ),
]


def execution_options(command: Callable) -> Callable:
    """Decorator: add :data:`EXECUTION_OPTIONS` to a command."""
    for option in reversed(EXECUTION_OPTIONS):
        command = option(command)
    return command


def protocol_option(command: Callable) -> Callable:
    """``--protocol PATH``: the command reads the protocol from PATH instead of the built-in one."""

    @functools.wraps(command)
    def wrapper(*args: Any, protocol: Path | None, **kwargs: Any) -> Any:
        from reidbench.protocol import protocol_file

        with protocol_file(protocol):
            return command(*args, **kwargs)

    return click.option(
        "--protocol",
        type=FILE,
        default=None,
        help="Protocol YAML file to use instead of benchmarks/protocols/DATASET.yaml (checked the same way; "
        "runs record its path, their config its content).",
    )(wrapper)


def recipe_option(command: Callable) -> Callable:
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


def build_executor(opts: dict[str, Any]) -> Any:
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
        workers=opts["workers"],
    )


def build_context(opts: dict[str, Any], save_weights: bool = True) -> Any:
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


def sweep_and_report(
    specs: list[Any], opts: dict[str, Any], kind: str, name: str, tags: dict[str, str]
) -> None:
    """Run the points of a grid or ablation with the execution options, then print the results."""
    from reidbench.sweeps.sweep import run_sweep

    ctx, executor = build_context(opts), build_executor(opts)
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
    report_result(result, ctx)


def report_result(result: Any, ctx: Any) -> None:
    """Result table, failures, and a non-zero exit when a point failed."""
    from reidbench.report.results import print_results
    from reidbench.sweeps.sweep import failure_lines

    if result.results:
        print_results(console, result.results)
    console.print(f"logged to {ctx.tracking_uri} (experiment {ctx.experiment!r})", markup=False)
    if result.failures:
        console.print(f"[bold red]{len(result.failures)} point(s) failed:[/]")
        for line in failure_lines(result):
            console.print(f"  {line}", highlight=False, markup=False)
        sys.exit(1)
