"""The one grouping key of the report: which runs form one row of a table, one bar / line / panel of a
figure (and one entry of the HTML site). Torch- and plotting-free.

A *group* is method x dataset x recipe x ablation point x variant x partial-data flag; its runs differ only
in the seed and are averaged. A *series* is the same without the dataset and the ablation point: one row of
a table spanning datasets, one colour of a figure. Labels name everything that tells two series apart
(recipe, variant, partial data) in words a reader understands.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reidbench.report.formatting import PARTIAL_MARK

FAMILY = ["method", "dataset", "recipe", "ablation", "axis", "value"]  # what a run *is*, before its config
GROUP_KEY = [*FAMILY, "variant", "partial"]  # runs of one group are seeds of one config
SERIES_KEY = ["method", "recipe", "variant", "partial"]  # one table row / figure series across datasets
DEFAULT_RECIPE = "shared"

# Params that identify a run's lineage, not its setting: they differ between the seeds of one group by
# construction (a pruning round names the config hash of the seed's previous round) and never make a variant.
LINEAGE_PARAMS = {"params.prune.source", "params.prune.round"}
# Params whose name says little on its own -> how a label names them.
VARIANT_NAMES = {
    "prune.fraction": "pruned per round",
    "prune.schedule": "schedule",
    "validation": "validation fraction",
}


def group_key(record: Mapping[str, Any]) -> tuple:
    """The key of the group a run (a tidy-runs row or a :class:`~reidbench.report.collect.Group`) is in."""
    return tuple(_field(record, k) for k in GROUP_KEY)


def series_key(record: Mapping[str, Any]) -> tuple:
    """The key of the series (table row across datasets, figure colour) a run or group belongs to."""
    return tuple(_field(record, k) for k in SERIES_KEY)


def series_label(method: str, recipe: str = "", variant: str = "", partial: bool = False) -> str:
    """``method``, the variant in brackets, the recipe when it is not the shared one, the partial mark:
    ``graft [pruned per round 0.3] (official recipe)‡``."""
    label = f"{method} [{variant}]" if variant else method
    if recipe and recipe != DEFAULT_RECIPE:
        label += f" ({recipe} recipe)"
    return label + PARTIAL_MARK if partial else label


def variant_text(param: str, value: str) -> str:
    """One differing param of a variant as a reader sees it: ``optim.lr=0.001``, ``pruned per round 0.3``."""
    key = param.removeprefix("params.").removeprefix("protocol.")
    name = VARIANT_NAMES.get(key)
    return f"{name} {value}" if name else f"{key}={value}"


def _field(record: Mapping[str, Any] | Any, key: str) -> Any:
    """``record[key]`` of a mapping or a pandas row, else the attribute (a Group)."""
    try:
        value = record[key]
    except (TypeError, KeyError):
        value = getattr(record, key, "")
    return bool(value) if key == "partial" else ("" if value is None else str(value))
