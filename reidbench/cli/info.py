"""``reidbench info METHOD --dataset DATASET``: a method's size (reidbench.evaluation.model_info)."""

from __future__ import annotations

import click

from reidbench.cli.common import console

__all__ = ["info"]


@click.command()
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
