"""MLflow runs -> one tidy row per run -> groups aggregated over seeds.

A *family* is method x dataset x ablation point. Runs of a family whose resolved configs differ in more
than the seed are kept apart as *variants* (labelled by the keys that differ), never averaged together.
A seed run twice with the same config counts once: the latest run wins.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field

import pandas as pd

from reidbench.config import from_dict
from reidbench.errors import UserError
from reidbench.protocol import Protocol, TrainCfg
from reidbench.report.formatting import MODALITY_NAMES, PARTIAL_MARK, Cell, dataset_name
from reidbench.report.grouping import FAMILY, GROUP_KEY, LINEAGE_PARAMS, series_label, variant_text
from reidbench.report.prune_series import shared_base_variants, variant_families

GROUP = GROUP_KEY
TAGS = [
    *["method", "dataset", "seed", "ablation", "axis", "value", "axis_default", "device"],
    "missing_convention",  # the missing-modality convention of the plain @no_* metrics
]
# Backbone params that resize a named architecture, with how the report names them.
BACKBONE_SIZES = {"patch_size": "patch", "embed_dim": "width", "depth": "depth", "num_heads": "heads"}
# Params that may differ between the seeds of one group.
SEED_PARAMS = {"params.seed", "params.protocol.seeds"}
MAX_VARIANT_KEYS = 3
TEST_ON_PARAM = "params.test_on."  # params.test_on.<target>: the modalities the target is scored on


@dataclass
class Group:
    """One table row's worth of numbers for one dataset: ours (aggregated over seeds) or reported."""

    method: str
    dataset: str
    cells: dict[str, Cell]
    reported: bool = False
    variant: str = ""
    partial: bool = False  # trained / evaluated on a dataset whose layout check failed (--allow-partial)
    ablation: str = ""
    axis: str = ""
    value: str = ""
    axis_default: str = ""
    backbone: str = ""
    backbone_setup: str = ""  # how our runs changed the named backbone ("patch 8, from scratch")
    recipe: str = ""
    test_on: str = ""  # targets scored on fewer modalities than trained on: "rgbn300: RGB+NIR"
    device: str = ""
    missing_convention: str = ""  # what the plain @no_* metrics mean (tag of the runs; "" before it existed)
    epochs: list[int] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    seeds_text: str = ""  # reported rows: the number of seeds the paper states ("" = not stated)
    source: str = ""
    selection: str = ""
    note: str = ""

    @property
    def label(self) -> str:
        """Method name, with the variant in brackets when there is one, marked when on partial data."""
        return run_label(self.method, self.variant, self.partial)

    @property
    def series(self) -> str:
        """The label naming everything that sets this group's series apart, recipe included (tables without a
        recipe column, figures): :func:`reidbench.report.grouping.series_label`."""
        return series_label(self.method, self.recipe, self.variant, self.partial)

    @property
    def n(self) -> int:
        return len(self.seeds)


@dataclass
class RunSet:
    """Tidy runs (one row per kept run) plus what was set aside while tidying."""

    runs: pd.DataFrame
    metrics: list[str]
    superseded: int = 0  # re-runs of a seed with the same config, replaced by a later run
    partial_left_out: int = 0  # runs on partial data, not shown (``include_partial=False``)


def run_label(method: str, variant: str = "", partial: bool = False) -> str:
    """``method [variant]``, with the partial-data mark when the run saw partial data."""
    label = f"{method} [{variant}]" if variant else method
    return label + PARTIAL_MARK if partial else label


def tidy_runs(frame: pd.DataFrame, include_partial: bool = False) -> RunSet:
    """Normalise a ``search_runs`` frame: tag and metric columns by plain name, variants, duplicates out.

    Runs tagged ``partial_data=true`` are left out unless ``include_partial`` (then kept as their own
    groups, labelled with the partial-data mark). Columns of the result: ``run_id, start_time, method,
    dataset, seed, ablation, axis, value, axis_default, device, partial, recipe, variant, label, backbone,
    backbone_setup, epochs`` and one column per metric.
    """
    frame = frame.reset_index(drop=True)
    partial = _text(frame, "tags.partial_data").str.lower() == "true"
    left_out = 0 if include_partial else int(partial.sum())
    if left_out:
        frame, partial = frame[~partial].reset_index(drop=True), partial[~partial].reset_index(drop=True)
    out = pd.DataFrame({"run_id": frame.get("run_id", pd.Series(range(len(frame)))).astype(str)})
    out["start_time"] = pd.to_datetime(frame["start_time"]) if "start_time" in frame else pd.NaT
    for tag in TAGS:
        column = frame.get(f"tags.{tag}")
        out[tag] = column.fillna("").astype(str) if column is not None else ""
    out["seed"] = pd.to_numeric(out["seed"], errors="coerce").fillna(-1).astype(int)
    out["partial"] = partial.to_numpy()
    out["recipe"] = _recipe(frame)
    out["test_on"] = [_reduced_targets(row) for _, row in frame.iterrows()]
    out["backbone"] = _text(frame, "params.protocol.backbone.name")
    out["backbone_setup"] = [_backbone_setup(row) for _, row in frame.iterrows()]
    out["epochs"] = [_epochs(row) for _, row in frame.iterrows()]
    out["variant"] = _variants(frame, out)
    out["variant"] = shared_base_variants(out)
    out["label"] = [
        series_label(*key)
        for key in zip(out["method"], out["recipe"], out["variant"], out["partial"], strict=True)
    ]
    metrics = sorted(c.removeprefix("metrics.") for c in frame.columns if c.startswith("metrics."))
    for name in metrics:
        out[name] = pd.to_numeric(frame[f"metrics.{name}"], errors="coerce")
    before = len(out)
    out = _latest_per_seed(out)
    return RunSet(out, metrics, before - len(out), left_out)


def _latest_per_seed(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per group and seed: the latest run's values, a metric it did not measure (a target of an
    earlier ``--test-on`` run of the same config) taken from the latest run that did."""
    key = [*GROUP, "seed"]
    ordered = runs.sort_values("start_time", kind="stable")
    if not ordered.duplicated(key).any():
        return runs.reset_index(drop=True)
    ordered = ordered.assign(test_on=ordered["test_on"].replace("", None), _order=ordered.index)
    merged = ordered.groupby(key, sort=False, dropna=False).last().reset_index()
    merged["test_on"] = merged["test_on"].fillna("")
    return merged.sort_values("_order").drop(columns="_order")[list(runs.columns)].reset_index(drop=True)


def _text(frame: pd.DataFrame, column: str) -> pd.Series:
    """A column as stripped strings, ``""`` where missing (or the whole column when absent)."""
    values = frame.get(column, pd.Series([""] * len(frame), index=frame.index, dtype=object))
    return values.fillna("").astype(str).str.strip()


def _recipe(frame: pd.DataFrame) -> pd.Series:
    """The training recipe a run records: tag ``recipe``, else param ``recipe`` / ``protocol.recipe``."""
    recipe = _text(frame, "tags.recipe")
    for column in ("params.recipe", "params.protocol.recipe"):
        recipe = recipe.where(recipe != "", _text(frame, column))
    return recipe


def _reduced_targets(row: pd.Series) -> str:
    """The run's ``--test-on`` targets scored on fewer modalities than it trained on (param
    ``test_on.<target>``): ``rgbn300: RGB+NIR``; "" when none."""
    trained = _as_list(row.get("params.protocol.data.modalities"))
    out = []
    for column in row.index:
        if column.startswith(TEST_ON_PARAM) and str(row[column]) not in ("", "nan", "None"):
            scored = _as_list(row[column])
            if trained and scored != trained:
                target = dataset_name(column.removeprefix(TEST_ON_PARAM))
                out.append(f"{target}: {'+'.join(MODALITY_NAMES.get(m, m) for m in scored)}")
    return ", ".join(out)


def _as_list(value: object) -> list[str]:
    """A list param as MLflow stores it (``"['rgb', 'nir']"``) back as a list; [] when unreadable."""
    try:
        parsed = ast.literal_eval(str(value))
    except (ValueError, SyntaxError):
        return []
    return [str(v) for v in parsed] if isinstance(parsed, list | tuple) else []


def _backbone_setup(row: pd.Series) -> str:
    """How a run changed its named backbone: resized dimensions and ``from scratch``."""
    parts = [
        f"{label} {row.get(f'params.protocol.backbone.{key}')}"
        for key, label in BACKBONE_SIZES.items()
        if str(row.get(f"params.protocol.backbone.{key}", "None")) not in ("None", "nan", "")
    ]
    if str(row.get("params.protocol.backbone.pretrained", "")) == "False":
        parts.append("from scratch")
    return ", ".join(parts)


def _epochs(row: pd.Series) -> int:
    """Total epochs of a run, resolved from its own params as the engine resolves them (a stage's
    ``epochs``, else its ``epoch_share`` of ``train.epochs``, else ``train.epochs``); 0 if unknown."""
    try:
        stages = ast.literal_eval(str(row.get("params.protocol.train.stages", "[]")))
        train = from_dict(
            TrainCfg, {"epochs": int(row.get("params.protocol.train.epochs")), "stages": stages}
        )
    except (TypeError, ValueError, SyntaxError, UserError):
        return 0
    return sum(stage.epochs for stage in Protocol(dataset="", train=train).resolved_stages())


def _variants(frame: pd.DataFrame, tidy: pd.DataFrame) -> list[str]:
    """Per run: ``""`` when its family has one config, else the differing keys with this run's values."""
    # --test-on targets are no variant: they change what is measured after training, not the training
    params = [
        c
        for c in frame.columns
        if c.startswith("params.")
        and c not in SEED_PARAMS
        and c not in LINEAGE_PARAMS
        and not c.startswith(TEST_ON_PARAM)
    ]
    labels = [""] * len(frame)
    if not params:
        return labels
    values = frame[params].fillna("(unset)").astype(str)
    for _, index in variant_families(tidy, FAMILY).groupby(FAMILY, sort=False).groups.items():
        family = values.loc[index]
        differing = [c for c in params if family[c].nunique() > 1]
        if not differing:
            continue
        shown = differing[:MAX_VARIANT_KEYS]
        more = ", …" if len(differing) > MAX_VARIANT_KEYS else ""
        for i in index:
            labels[i] = ", ".join(variant_text(c, family.at[i, c]) for c in shown) + more
    return labels


def aggregate(runset: RunSet) -> list[Group]:
    """One Group per method x dataset x ablation point x variant: every metric as mean, sample std, n."""
    groups = []
    for key, rows in runset.runs.groupby(GROUP, sort=True):
        fields = dict(zip(GROUP, key, strict=True)) | {"partial": bool(key[GROUP.index("partial")])}
        cells = {m: Cell.of(rows[m].to_numpy()) for m in runset.metrics if rows[m].notna().any()}
        groups.append(
            Group(
                cells=cells,
                axis_default=str(rows["axis_default"].iloc[0]),
                backbone=" / ".join(sorted(set(rows["backbone"]) - {""})),
                backbone_setup=" / ".join(sorted(set(rows["backbone_setup"]) - {""})),
                test_on=" / ".join(sorted(set(rows["test_on"]) - {""})),
                device=" / ".join(sorted(set(rows["device"]) - {""})),
                missing_convention=" / ".join(sorted(set(rows["missing_convention"]) - {""})),
                epochs=sorted(set(int(e) for e in rows["epochs"]) - {0}),
                seeds=sorted(int(s) for s in rows["seed"]),
                selection="last-epoch",
                **fields,
            )
        )
    return groups
