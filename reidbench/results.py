"""Terminal result tables for finished runs."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from rich.console import Console
from rich.table import Table

COLUMNS = [("mAP", "mAP"), ("rank1", "R1"), ("rank5", "R5"), ("rank10", "R10"), ("mINP", "mINP")]


def mean_std(values: list[float]) -> str:
    """``m`` or ``m ± s`` in percent (sample std over seeds)."""
    arr = 100 * np.asarray(values, dtype=float)
    if len(arr) == 1:
        return f"{arr[0]:.1f}"
    return f"{arr.mean():.1f} ± {arr.std(ddof=1):.1f}"


def print_results(console: Console, results: list) -> None:
    """One row per method x dataset: metrics as mean ± std over seeds, n, parameters and speed."""
    groups: dict[tuple[str, str], list] = defaultdict(list)
    for r in results:
        groups[(r.spec.method, r.spec.dataset)].append(r.metrics)
    table = Table(title="results (last epoch; % ; mean ± std over seeds)")
    for name in ["method", "dataset", *[c[1] for c in COLUMNS], "n", "params (M)", "train img/s"]:
        table.add_column(name, justify="left" if name in ("method", "dataset") else "right")
    for (method, dataset), ms in groups.items():
        table.add_row(method, dataset, *[mean_std([m[k] for m in ms]) for k, _ in COLUMNS], str(len(ms)),
                      f"{ms[0]['params'] / 1e6:.2f}", f"{np.mean([m['train_images_per_s'] for m in ms]):.0f}")
    console.print(table)
