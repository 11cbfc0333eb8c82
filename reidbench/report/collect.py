"""MLflow runs -> one tidy row per run -> groups aggregated over seeds.

A *family* is method x dataset x ablation point. Runs of a family whose resolved configs differ in more
than the seed are kept apart as *variants* (labelled by the keys that differ), never averaged together.
A seed run twice with the same config counts once: the latest run wins.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field

import pandas as pd

from reidbench.report.formatting import Cell

FAMILY = ["method", "dataset", "ablation", "axis", "value"]
GROUP = [*FAMILY, "variant"]
TAGS = ["method", "dataset", "seed", "ablation", "axis", "value", "axis_default", "device"]
# Params that may differ between the seeds of one group.
SEED_PARAMS = {"params.seed", "params.protocol.seeds"}
MAX_VARIANT_KEYS = 3


@dataclass
class Group:
    """One table row's worth of numbers for one dataset: ours (aggregated over seeds) or reported."""

    method: str
    dataset: str
    cells: dict[str, Cell]
    reported: bool = False
    variant: str = ""
    ablation: str = ""
    axis: str = ""
    value: str = ""
    axis_default: str = ""
    backbone: str = ""
    device: str = ""
    epochs: list[int] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    seeds_text: str = ""  # reported rows: the number of seeds the paper states ("" = not stated)
    source: str = ""
    selection: str = ""
    note: str = ""

    @property
    def label(self) -> str:
        """Method name, with the variant in brackets when there is one."""
        return f"{self.method} [{self.variant}]" if self.variant else self.method

    @property
    def n(self) -> int:
        return len(self.seeds)


@dataclass
class RunSet:
    """Tidy runs (one row per kept run) plus what was set aside while tidying."""

    runs: pd.DataFrame
    metrics: list[str]
    superseded: int = 0  # re-runs of a seed with the same config, replaced by a later run


def tidy_runs(frame: pd.DataFrame) -> RunSet:
    """Normalise a ``search_runs`` frame: tag and metric columns by plain name, variants, duplicates out.

    Columns of the result: ``run_id, start_time, method, dataset, seed, ablation, axis, value,
    axis_default, device, variant, label, backbone, epochs`` and one column per metric.
    """
    frame = frame.reset_index(drop=True)
    out = pd.DataFrame({"run_id": frame.get("run_id", pd.Series(range(len(frame)))).astype(str)})
    out["start_time"] = pd.to_datetime(frame["start_time"]) if "start_time" in frame else pd.NaT
    for tag in TAGS:
        column = frame.get(f"tags.{tag}")
        out[tag] = column.fillna("").astype(str) if column is not None else ""
    out["seed"] = pd.to_numeric(out["seed"], errors="coerce").fillna(-1).astype(int)
    out["backbone"] = _backbone(frame)
    out["epochs"] = [_epochs(row) for _, row in frame.iterrows()]
    out["variant"] = _variants(frame, out)
    out["label"] = [f"{m} [{v}]" if v else m for m, v in zip(out["method"], out["variant"], strict=True)]
    metrics = sorted(c.removeprefix("metrics.") for c in frame.columns if c.startswith("metrics."))
    for name in metrics:
        out[name] = pd.to_numeric(frame[f"metrics.{name}"], errors="coerce")
    before = len(out)
    out = (
        out.sort_values("start_time", kind="stable")
        .drop_duplicates([*GROUP, "seed"], keep="last")
        .sort_index()
        .reset_index(drop=True)
    )
    return RunSet(out, metrics, before - len(out))


def _backbone(frame: pd.DataFrame) -> pd.Series:
    names = frame.get("params.protocol.backbone.name", pd.Series([""] * len(frame))).fillna("").astype(str)
    scratch = (
        frame.get("params.protocol.backbone.pretrained", pd.Series([""] * len(frame))).astype(str) == "False"
    )
    return pd.Series([f"{n} (scratch)" if s and n else n for n, s in zip(names, scratch, strict=True)])


def _epochs(row: pd.Series) -> int:
    """Total epochs of a run from its params (stages with their own ``epochs`` add up); 0 if unknown."""
    try:
        default = int(row.get("params.protocol.train.epochs"))
    except (TypeError, ValueError):
        return 0
    try:
        stages = ast.literal_eval(str(row.get("params.protocol.train.stages", "[]")))
    except (ValueError, SyntaxError):
        stages = []
    if not stages:
        return default
    return sum(default if s.get("epochs") is None else int(s["epochs"]) for s in stages)


def _variants(frame: pd.DataFrame, tidy: pd.DataFrame) -> list[str]:
    """Per run: ``""`` when its family has one config, else the differing keys with this run's values."""
    params = [c for c in frame.columns if c.startswith("params.") and c not in SEED_PARAMS]
    labels = [""] * len(frame)
    if not params:
        return labels
    values = frame[params].fillna("(unset)").astype(str)
    for _, index in tidy.groupby(FAMILY, sort=False).groups.items():
        family = values.loc[index]
        differing = [c for c in params if family[c].nunique() > 1]
        if not differing:
            continue
        shown = differing[:MAX_VARIANT_KEYS]
        more = ", …" if len(differing) > MAX_VARIANT_KEYS else ""
        for i in index:
            labels[i] = ", ".join(f"{_short(c)}={family.at[i, c]}" for c in shown) + more
    return labels


def _short(param: str) -> str:
    return param.removeprefix("params.").removeprefix("protocol.")


def aggregate(runset: RunSet) -> list[Group]:
    """One Group per method x dataset x ablation point x variant: every metric as mean, sample std, n."""
    groups = []
    for key, rows in runset.runs.groupby(GROUP, sort=True):
        fields = dict(zip(GROUP, key, strict=True))
        cells = {m: Cell.of(rows[m].to_numpy()) for m in runset.metrics if rows[m].notna().any()}
        groups.append(
            Group(
                cells=cells,
                axis_default=str(rows["axis_default"].iloc[0]),
                backbone=" / ".join(sorted(set(rows["backbone"]) - {""})),
                device=" / ".join(sorted(set(rows["device"]) - {""})),
                epochs=sorted(set(int(e) for e in rows["epochs"]) - {0}),
                seeds=sorted(int(s) for s in rows["seed"]),
                selection="last-epoch",
                **fields,
            )
        )
    return groups
