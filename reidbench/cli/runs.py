"""The commands that train: ``run``, ``ablate``, ``suite``, ``tune`` and ``prune``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from reidbench.cli.common import (
    build_context,
    build_executor,
    console,
    execution_options,
    parse_seeds,
    protocol_option,
    recipe_option,
    report_result,
    sweep_and_report,
)
from reidbench.cli.types import COUNT, FILE, FRACTION, NAME, SEED, STORAGE
from reidbench.errors import UserError

__all__ = ["ablate", "ablate_specs", "prune", "run", "run_specs", "suite", "tune"]


@click.command()
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
@execution_options
@protocol_option
@recipe_option
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
    sweep_and_report(specs, opts, "grid", f"{'+'.join(methods)}@{'+'.join(datasets)}", sweep_tags(specs))


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
    return grid(methods, datasets, parse_seeds(seeds), list(overrides), test_on)


@click.command()
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
@execution_options
@protocol_option
@recipe_option
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
    ablation, specs = ablate_specs(name, datasets, values, method, seeds, overrides)
    from reidbench.sweeps.sweep import sweep_tags  # after the checks: it imports torch

    tags = sweep_tags(specs, ablation=ablation.name, axis=ablation.axis, axis_default=ablation.default)
    sweep_and_report(specs, opts, "ablation", ablation.name, tags)


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
    specs = ablation.specs(list(datasets) or None, parse_seeds(seeds), list(overrides), value_list, method)
    return ablation, specs


@click.command()
@click.argument("name")
@click.option("--method", "-m", "methods", multiple=True, help="Run these methods instead of the suite's.")
@click.option(
    "--seeds", default=None, help="Comma-separated seeds (default: the suite's, else the protocol's)."
)
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override for every point.")
@click.option("--skip-missing", is_flag=True, help="Run only the entries whose datasets are all present.")
@execution_options
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

    found = find_suite(name)
    specs = found.specs(list(methods) or None, parse_seeds(seeds), list(overrides))
    from reidbench.sweeps.sweep import sweep_tags  # after the checks: it imports torch

    ctx = build_context(opts)
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
    sweep_and_report(specs, opts, "suite", found.name, sweep_tags(specs, suite=found.name))


@click.command()
@click.option("--method", "-m", required=True, help="Method name.")
@click.option(
    "--dataset", "-d", required=True, help="Dataset name (tuned on a validation split of its training ids)."
)
@click.option("--trials", type=COUNT, required=True, help="Number of trials this process runs.")
@click.option(
    "--space",
    type=FILE,
    default=None,
    help="Search space YAML (default: lr, weight decay, label smoothing, triplet margin).",
)
@click.option(
    "--storage",
    type=STORAGE,
    default=None,
    help="Optuna storage URL (default: sqlite:///results/optuna.db; "
    "use postgresql://... to share a study between machines).",
)
@click.option(
    "--study",
    "study_name",
    type=NAME,
    default=None,
    help="Study name (default: METHOD@DATASET); workers with the same name and storage share it.",
)
@click.option("--seed", type=SEED, default=0, show_default=True, help="Training seed of every trial.")
@click.option(
    "--val-fraction",
    type=FRACTION,
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
@execution_options
@protocol_option
@recipe_option
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
    from reidbench.spec import make_spec
    from reidbench.sweeps.tune import TrialsFailed, load_space
    from reidbench.sweeps.tune import tune as run_study

    make_spec(method, dataset, seed, list(overrides))  # a bad --set ends here, before torch loads

    if opts["gpus"] or opts["gpus_per_run"] != 1 or opts["launcher"] != "local" or opts["workers"] != 1:
        raise UserError(
            "tune runs its trials in this process: start one `reidbench tune` per GPU "
            "(CUDA_VISIBLE_DEVICES=i) or machine with the same --storage and --study instead of "
            "--gpus / --gpus-per-run / --launcher / --workers"
        )
    try:
        study = run_study(
            method,
            dataset,
            trials,
            build_context(opts, save_weights=False),
            load_space(space),
            storage=storage,
            study_name=study_name,
            seed=seed,
            overrides=list(overrides),
            fraction=val_fraction,
            console=console,
        )
    except TrialsFailed as exc:  # the study so far, then the failures (exit status 1)
        _best_so_far(exc.study, method, dataset)
        raise
    _best_so_far(study, method, dataset)


def _best_so_far(study: Any, method: str, dataset: str) -> None:
    """The study's best finished trial and the `reidbench run` line that tests it."""
    from reidbench.sweeps.tune import best_command

    finished = [t for t in study.trials if t.value is not None]
    if not finished:
        console.print("no trial of the study finished yet")
        return
    best = study.best_trial
    console.print(
        f"best of {len(finished)} finished trial(s): #{best.number}, validation mAP {100 * best.value:.1f}",
        highlight=False,
    )
    console.print(f"test it: {best_command(study, method, dataset)}", highlight=False, markup=False)


@click.command()
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
@click.option("--rounds", type=COUNT, default=4, show_default=True, help="Prune + fine-tune rounds.")
@click.option(
    "--fraction",
    type=FRACTION,
    default=0.2,
    show_default=True,
    help="Share of what remains pruned per round.",
)
@click.option(
    "--finetune-epochs", type=COUNT, default=2, show_default=True, help="Fine-tuning epochs per round."
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
@execution_options
@protocol_option
@recipe_option
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
    bases = grid(methods, datasets, parse_seeds(seeds), list(overrides))
    from reidbench.prune.study import run_study

    ctx = build_context(opts)
    result = run_study(
        bases,
        schedule,
        fraction,
        rounds,
        finetune_epochs,
        finetune_lr,
        ctx,
        build_executor(opts),
        console=console,
        retry_running=opts["retry_running"],
        stale_after_s=opts["stale_after_min"] * 60,
    )
    report_result(result, ctx)
