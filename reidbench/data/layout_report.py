"""The terminal layout report of ``reidbench datasets check``: what was read, and what is wrong."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from reidbench.data.checks import summarise
from reidbench.data.types import Dataset

MAX_LISTED = 200


def print_layout_report(console: Console, dataset: Dataset) -> None:
    """Splits, identities, cameras, samples, modalities and captions per split, then every problem."""
    info = dataset.info
    table = Table(title=f"{info.name} under {info.root}")
    for column in ("split", "folder", "samples", "ids", "cameras", "scenes", "modalities", "captions"):
        table.add_column(
            column, justify="right" if column in ("samples", "ids", "scenes", "captions") else "left"
        )
    for row in summarise(dataset):
        table.add_row(
            row.split,
            row.folder,
            str(row.samples),
            str(row.ids),
            _ranges(row.cameras),
            str(row.scenes) if row.scenes else "-",
            "+".join(row.modalities),
            str(row.captions),
        )
    console.print(table)
    console.print(
        f"evaluation: junk rule {info.junk!r}, query {'=' if info.same_set else '!='} gallery; "
        f"text {'attached' if info.has_text else 'absent'}"
    )
    if not dataset.problems:
        console.print("[green]no problems: the layout and counts match the official download[/]")
        return
    console.print(f"[bold red]{len(dataset.problems)} problem(s):[/]")
    for line in dataset.problems[:MAX_LISTED]:
        console.print(f"  {line}", highlight=False, soft_wrap=True, markup=False)
    if len(dataset.problems) > MAX_LISTED:
        console.print(f"  ... and {len(dataset.problems) - MAX_LISTED} more")


def _ranges(values: list[int]) -> str:
    """``[1, 2, 3, 5]`` -> ``1-3,5``."""
    parts, start = [], None
    for i, v in enumerate(values):
        if start is None:
            start = v
        if i + 1 == len(values) or values[i + 1] != v + 1:
            parts.append(str(start) if start == v else f"{start}-{v}")
            start = None
    return ",".join(parts) or "-"
