"""``reidbench list`` and ``reidbench datasets check|prepare``."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from reidbench.cli.common import console
from reidbench.errors import UserError

__all__ = ["datasets_group", "list_"]


@click.command("list")
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


def _list_recipes() -> None:
    """Per method: its official recipe (dotted settings) and its fidelity table (reidbench.fidelity)."""
    from rich.markup import escape
    from rich.table import Table

    from reidbench import fidelity
    from reidbench.registry import METHODS

    console.print(
        "\n[bold]Recipes[/]: --recipe shared (default) trains every method with the dataset protocol's "
        "recipe; --recipe official adds:"
    )
    for entry in METHODS:
        official = entry.meta.get("official")
        if official is None:
            console.print(
                f"  {entry.name}: no official recipe (a baseline: shared only)", highlight=False, markup=False
            )
            continue
        settings = ", ".join(f"{k}={v}" for k, v in official.items() if k != "train.stages")
        stages = official.get("train.stages")
        if stages:
            settings += f", train.stages=[{', '.join(s['name'] for s in stages)}]"
        console.print(f"  [bold]{entry.name}[/]: {escape(settings)}", highlight=False, markup=True)
        table = Table(title=f"{entry.name}: fidelity to the official code", show_lines=True)
        for column in ("setting", "official code", "--recipe official", "--recipe shared"):
            table.add_column(column)
        for row in fidelity.rows(entry.name):
            table.add_row(row.setting, row.official, *(fidelity.cell(row, r) for r in fidelity.TRACKS))
        if table.row_count:
            console.print(table)
        for line in entry.meta.get("deviations") or []:
            console.print(f"    differs from the official code: {line}", highlight=False, markup=False)


@click.group("datasets")
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
    console.print(f"cache ready at {size[0]}x{size[1]} in {time.perf_counter() - start:.1f} s", markup=False)


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
