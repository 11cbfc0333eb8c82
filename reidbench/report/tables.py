"""Groups -> Table models (leaderboard, cost, missing-modality, cross-modal, ablations) with best / second
marks.
A :class:`Table` is format-free: rows (ours first, then the reported block), columns grouped under headers,
cells as :class:`Cell`. Renderers in latex.py, text.py and terminal.py only lay it out.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

from reidbench.generalisation import is_target_metric
from reidbench.protocol import MISSING_CONVENTIONS
from reidbench.report.collect import Group
from reidbench.report.formatting import (
    ACCURACY_METRICS,
    NOTED,
    PARTIAL_MARK,
    PARTIAL_NOTE,
    Cell,
    CellStyle,
    axis_label,
    backbone_name,
    dataset_name,
    format_cell,
    setting_name,
    setting_order,
)
from reidbench.report.grouping import series_key
from reidbench.report.stats import testable, tied_with_best

REPORTED_NOTE = (
    "† Reported in the papers (results/published.csv): single runs whose epoch was mostly chosen "
    "on the test set (best-epoch-on-test), copied as printed, not reproduced here."
)


@dataclass(frozen=True)
class Column:
    """One numeric column: metric ``key`` of the row's group for ``dataset``, shown under ``header``."""

    key: str
    dataset: str | None  # None: the row's only group (tables with one row per method x dataset)
    header: str  # column-group header (dataset or setting); "" for none
    group_key: str  # machine name of the header (dataset / setting), for CSV
    label: str  # sub-header, e.g. "mAP"
    csv: str  # CSV base name, e.g. "mAP", "params_m"
    scale: float = 100.0
    decimals: int | None = 1
    ranked: bool = True  # higher is better: bold best, underline second
    show_std: bool = True  # False for quantities that do not vary over seeds (parameters, FLOPs)


@dataclass
class Row:
    label: str
    reported: bool
    groups: dict[str, Group]  # dataset -> group
    text: dict[str, str] = field(default_factory=dict)
    noted: frozenset[str] = frozenset()  # group keys of the columns whose cell is marked apart (in italics)

    @property
    def partial(self) -> bool:
        """Any of the row's groups ran on partial data (not ranked, marked in the label)."""
        return any(g.partial for g in self.groups.values())

    def group(self, column: Column) -> Group | None:
        if column.dataset is None:
            return next(iter(self.groups.values()), None)
        return self.groups.get(column.dataset)

    def cell(self, column: Column) -> Cell | None:
        group = self.group(column)
        cell = group.cells.get(column.key) if group else None
        return cell if cell is not None and math.isfinite(cell.mean) else None


@dataclass
class Table:
    """A format-free table: caption, text columns, grouped numeric columns, rows, and rank marks."""

    name: str
    title: str
    caption: str
    row_header: str
    text_columns: list[str]
    columns: list[Column]
    rows: list[Row]
    group_kind: str = "dataset"  # what the column headers are, for CSV ("dataset" / "setting" / "")
    # Text columns the caption already states (seeds and our backbone, from the runs) when constant.
    stated: tuple[str, ...] = ("Seeds", "Backbone", "Recipe")

    def __post_init__(self) -> None:
        """Drop reported rows and columns without any value (e.g. GFLOPs when no run measured them), and
        text columns that read the same in every row: their one value goes into the caption instead."""
        self.rows = [r for r in self.rows if not r.reported or any(r.cell(c) for c in self.columns)]
        self.columns = [c for c in self.columns if any(r.cell(c) for r in self.rows)]
        kept, notes = [], []
        for name in self.text_columns:
            values = {r.text.get(name, "") for r in self.rows}
            if name == "Recipe":  # the reported rows have none: only ours decide whether it varies
                values = {r.text.get(name, "") for r in self.rows if not r.reported}
            if len(values) > 1:
                kept.append(name)
            elif values - {""} and name not in self.stated:
                notes.append(f"{name}: {values.pop()}.")
        self.text_columns = kept
        self.caption = _clean(" ".join([self.caption, *notes]))

    def header_groups(self) -> list[tuple[str, int]]:
        """Consecutive columns under one header: ``[(header, count), ...]``."""
        spans: list[tuple[str, int]] = []
        for column in self.columns:
            if spans and spans[-1][0] == column.header:
                spans[-1] = (column.header, spans[-1][1] + 1)
            else:
                spans.append((column.header, 1))
        return spans

    def marks(self) -> dict[tuple[int, int], int]:
        """``(row, column) -> 1`` (best) or ``2`` (second best) per ranked column, over all rows.

        The best is the highest mean as shown (rounded to the column's precision). Where the best row and
        another row both have n >= 2 seeds, the other shares the bold unless Welch's t-test puts it below
        the best (p < 0.05); rows that cannot be tested (n < 2) share it only by an equal shown mean. The
        underline goes to the highest of the rows left. A column needs two distinct values for any mark.
        """
        out: dict[tuple[int, int], int] = {}
        for j, column in enumerate(self.columns):
            if not column.ranked:
                continue
            cells = {
                i: cell
                for i, row in enumerate(self.rows)
                if not row.partial and (cell := row.cell(column)) is not None
            }
            shown = {i: _shown(cell.mean, column) for i, cell in cells.items()}
            if len(set(shown.values())) < 2:
                continue
            top = max(shown.values())
            best = [i for i, v in shown.items() if v == top]
            lead = cells[best[0]]
            tied = [i for i in shown if i not in best and tied_with_best(lead, cells[i])]
            for i in best + tied:
                out[(i, j)] = 1
            rest = {i: v for i, v in shown.items() if (i, j) not in out}
            if rest:
                second = max(rest.values())
                out |= {(i, j): 2 for i, v in rest.items() if v == second}
        return out

    def tested(self) -> bool:
        """Whether any ranked column's best row was tested against another (both with n >= 2)."""
        return any(
            sum(testable(row.cell(c)) for row in self.rows if not row.partial) >= 2
            for c in self.columns
            if c.ranked
        )

    def formatted(self, style: CellStyle) -> list[list[str]]:
        """Per row, the numeric cells as text in ``style``, best / second marked."""
        marks = self.marks()
        return [
            [
                format_cell(row.cell(c), c.scale, c.decimals, c.show_std, self._mark(marks, i, j), style)
                for j, c in enumerate(self.columns)
            ]
            for i, row in enumerate(self.rows)
        ]

    def _mark(self, marks: dict[tuple[int, int], int], i: int, j: int) -> int | None:
        """Best / second mark of cell (i, j), else NOTED when its row notes the column."""
        if (i, j) in marks:
            return marks[(i, j)]
        return NOTED if self.columns[j].group_key in self.rows[i].noted else None


def _shown(mean: float, column: Column) -> float:
    value = mean * column.scale
    return round(value, column.decimals) if column.decimals is not None else float(f"{value:.3g}")


def metric_columns(datasets: list[str], metrics: list[str], suffix: str = "") -> list[Column]:
    """``metrics`` (+ ``suffix``, e.g. ``@no_rgb``) for each dataset, grouped under the dataset's name."""
    return [
        Column(m + suffix, d, dataset_name(d), d, ACCURACY_METRICS.get(m, m), m)
        for d in datasets
        for m in metrics
    ]


# What a pruning round costs, next to its metrics: (key, label, CSV name, scale, decimals).
PRUNING_COSTS = [
    ("params", "Params", "params_m", 1e-6, 3),
    ("nonzero_params", "Non-zero", "nonzero_params_m", 1e-6, 3),
    ("gflops", "GFLOPs", "gflops", 1.0, 3),
    ("throughput", "Samples/s", "throughput", 1.0, 0),
]


def pruning_columns(datasets: list[str], metrics: list[str]) -> list[Column]:
    """Per dataset: ``metrics``, then parameters, non-zero parameters (millions), GFLOPs per sample and
    measured inference samples/s (not ranked: the trade-off is the point)."""
    return [
        column
        for d in datasets
        for column in [
            *metric_columns([d], metrics),
            *(
                Column(k, d, dataset_name(d), d, label, csv, s, dec, False, False)
                for k, label, csv, s, dec in PRUNING_COSTS
            ),
        ]
    ]


def _rows(groups: list[Group], key, label, text) -> list[Row]:
    """Rows of groups sharing ``key(group)``; each row maps dataset -> group."""
    by_key: dict[tuple, dict[str, Group]] = defaultdict(dict)
    for g in groups:
        by_key[key(g)][g.dataset] = g
    return [
        Row(
            label(next(iter(gs.values()))),
            next(iter(gs.values())).reported,
            dict(gs),
            text(list(gs.values())),
        )
        for gs in by_key.values()
    ]


def _row_key(g: Group) -> tuple:
    return (g.reported, *series_key(g), g.backbone if g.reported else "")


def _text(groups: list[Group]) -> dict[str, str]:
    names = {g.backbone if g.reported else backbone_name(g.backbone) for g in groups}
    recipe = "" if groups[0].reported else " / ".join(sorted({g.recipe for g in groups} - {""}))
    return {"Recipe": recipe, "Backbone": " / ".join(sorted(names - {""})), "Seeds": seeds_text(groups)}


def seeds_text(groups: list[Group]) -> str:
    """Seeds behind a row: ``3``, ``2–3`` when datasets differ; reported rows: as stated, ``?`` if not."""
    if groups[0].reported:
        return groups[0].seeds_text or "?"
    counts = sorted({g.n for g in groups})
    return str(counts[0]) if len(counts) == 1 else f"{counts[0]}–{counts[-1]}"


def _sorted(rows: list[Row], columns: list[Column]) -> list[Row]:
    """Ours first, then reported; within a block by the first ranked column the row has a value in,
    ascending (weakest first, as papers list them)."""
    ranked = [c for c in columns if c.ranked]

    def key(row: Row) -> tuple:
        first = next(
            ((j, cell.mean) for j, c in enumerate(ranked) if (cell := row.cell(c)) is not None),
            (-1, -math.inf),
        )
        return (row.reported, *first, row.label)

    return sorted(rows, key=key)


def leaderboard(ours: list[Group], reported: list[Group], metrics: list[str]) -> Table:
    """Method rows x dataset column groups of ``metrics`` (fractions, shown in %)."""
    reported = [g for g in reported if any(m in g.cells for m in metrics)]
    groups = [*ours, *reported]
    datasets = _datasets(groups)
    columns = metric_columns(datasets, metrics)
    rows = _sorted(_rows(groups, _row_key, _label, _text), columns)
    caption = (
        f"Leaderboard ({', '.join(map(dataset_name, datasets))}), metrics in %. "
        f"{run_settings_sentence(ours)} {notes(ours, bool(reported))}"
    )
    return Table(
        "leaderboard",
        "Leaderboard",
        _clean(caption),
        "Method",
        ["Recipe", "Backbone", "Seeds"],
        columns,
        rows,
    )


def notes(ours: list[Group], reported: bool) -> str:
    """The caption's closing notes: reported rows, partial-data rows, and the best / second marks."""
    partial = any(g.partial for g in ours)
    return " ".join(
        [REPORTED_NOTE if reported else "", PARTIAL_NOTE if partial else "", marks_note(reported, partial)]
    )


def marks_note(reported: bool, partial: bool = False) -> str:
    """Which rows the bold / underline marks were chosen among, and how ties are decided."""
    among = "our rows and the reported rows together" if reported else "our rows"
    unless = " except partial-data rows" if partial else ""
    return (
        f"Bold: best per column among {among}{unless}, shared by every row within noise of it (Welch's "
        "t-test over seeds, p >= 0.05, where both rows have n >= 2 seeds; an equal mean otherwise); "
        "underlined: the best of the other rows."
    )


def _label(g: Group) -> str:
    return f"{g.label}†" if g.reported else g.label


def _datasets(groups: list[Group]) -> list[str]:
    """Datasets in order of first appearance among ours, then reported ones."""
    return list(dict.fromkeys(g.dataset for g in sorted(groups, key=lambda g: g.reported)))


def span(values: list[int]) -> str:
    """``3``, or ``2–3`` for a range of counts."""
    values = sorted(set(values))
    return str(values[0]) if len(values) == 1 else f"{values[0]}–{values[-1]}"


def epochs_text(groups: list[Group]) -> str:
    """The epoch budgets the runs record, per dataset: ``Synthetic 6; RGBNT100 50–60``; "" if unknown."""
    budgets = []
    for dataset in dict.fromkeys(g.dataset for g in groups):
        epochs = [e for g in groups if g.dataset == dataset for e in g.epochs]
        if epochs:
            budgets.append(f"{dataset_name(dataset)} {span(epochs)}")
    return "; ".join(budgets)


def backbone_text(groups: list[Group]) -> str:
    """Our backbones as the runs record them: ``ViT-Ti/16 = vit_tiny_patch16_224 (patch 8, from scratch)``."""
    found = dict.fromkeys((g.backbone, g.backbone_setup) for g in groups if g.backbone)
    described = []
    for name, setup in found:
        short = backbone_name(name)
        text = name if short == name else f"{short} = {name}"
        described.append(f"{text} ({setup})" if setup else text)
    return "; ".join(described)


def run_settings_sentence(ours: list[Group]) -> str:
    """How our numbers were made, read from the runs' own params and tags: seeds, epoch budget (last-epoch
    reporting), recipe and backbone."""
    if not ours:
        return ""
    budget = epochs_text(ours)
    recipes = sorted({g.recipe for g in ours} - {""})
    backbones = backbone_text(ours)
    return " ".join(
        [
            f"Ours: mean ± sample std over n = {span([g.n for g in ours])} seeds (no std when n = 1; "
            "[low, high] where shown: the 95 % t interval of the mean, cut at 0 and 100); the "
            f"model after the last epoch of a fixed budget{f' ({budget} epochs)' if budget else ''} is "
            "evaluated once: no checkpoint is selected on the test set.",
            f"Recipe: {', '.join(recipes)}." if recipes else "",
            f"Backbone: {backbones}." if backbones else "",
        ]
    )


def _clean(text: str) -> str:
    return " ".join(text.split())


COST_COLUMNS = [  # short headers: the caption gives the units
    Column("params", None, "", "", "Params", "params_m", 1e-6, None, False, False),
    Column("gflops", None, "", "", "GFLOPs", "gflops", 1.0, None, False, False),
    Column("train_images_per_s", None, "", "", "img/s", "train_images_per_s", 1.0, 0, False, False),
    Column("train_time_s", None, "", "", "Time", "train_time_min", 1 / 60, None, False, False),
]


def cost_table(ours: list[Group], reported: list[Group]) -> Table:
    """One row per method x dataset: parameters, GFLOPs per sample, training images/s, training time."""
    groups = [*ours, *[g for g in reported if "params" in g.cells]]
    rows = [
        Row(
            _label(g),
            g.reported,
            {g.dataset: g},
            {
                "Dataset": dataset_name(g.dataset),
                "Recipe": "" if g.reported else g.recipe,
                "Device": g.device,
                "Seeds": seeds_text([g]),
            },
        )
        for g in groups
    ]
    rows.sort(key=lambda r: (r.reported, r.text["Dataset"], r.label, r.text["Recipe"]))
    caption = (
        "Cost per method, recipe and dataset (ours: mean over seeds). Params: trainable and frozen "
        "parameters "
        "(millions); GFLOPs: forward pass per sample; img/s: training throughput in images per second, a "
        "sample with M modalities counting M images; Time: wall time of the whole training (minutes)."
        + (" † Parameters as reported in the papers." if len(groups) > len(ours) else "")
        + (f" {PARTIAL_NOTE}" if any(g.partial for g in ours) else "")
    )
    return Table(
        "cost",
        "Cost",
        caption,
        "Method",
        ["Dataset", "Recipe", "Device", "Seeds"],
        list(COST_COLUMNS),
        rows,
        "",
        (),
    )


def setting_names(groups: list[Group], cross: bool) -> list[str]:
    """Names of the evaluation settings (``no_rgb`` / ``rgb->nir``) in the groups' metric names, in display
    order: missing-modality ones, or cross-modal ones when ``cross``."""
    found = {k.split("@", 1)[1] for g in groups for k in g.cells if "@" in k and not is_target_metric(k)}
    return sorted((s for s in found if ("->" in s) == cross), key=setting_order)


def settings_table(
    dataset: str, ours: list[Group], reported: list[Group], metrics: list[str], cross: bool
) -> Table | None:
    """Missing-modality (``cross=False``) or cross-modal table of ``dataset``; None without such metrics.

    One column per setting, of the first of ``metrics`` only (every setting x metric would not fit a page).
    """
    ours = [g for g in ours if g.dataset == dataset and setting_names([g], cross)]
    settings = setting_names(ours, cross)
    if not settings:
        return None
    reported = [g for g in reported if g.dataset == dataset and setting_names([g], cross)]
    metric = metrics[0]
    columns = [Column(metric, dataset, "", "all", "All", metric)] + [
        Column(f"{metric}@{s}", dataset, *_setting_header(s), metric) for s in settings
    ]
    text = _text if cross else _convention_text
    rows = _sorted(_rows([*ours, *reported], _row_key, _label, text), columns)
    kind = "cross" if cross else "missing"
    what = (
        "Cross-modal retrieval: query modalities → gallery modalities"
        if cross
        else "Missing modalities at test time: w/o X = modality X removed from query and gallery "
        "(models trained with all modalities); Convention = what the model is given instead ("
        + conventions_sentence(settings)
        + ")"
    )
    caption = (
        f"{what}, {dataset_name(dataset)}: {ACCURACY_METRICS.get(metric, metric)} in % per test-time "
        f"setting; All = every modality. {run_settings_sentence(ours)} {notes(ours, bool(reported))}"
    )
    return Table(
        f"{kind}_{dataset}",
        f"{'Cross-modal' if cross else 'Missing modality'} ({dataset_name(dataset)})",
        _clean(caption),
        "Method",
        ["Recipe", "Backbone", "Seeds"] if cross else ["Convention", "Recipe", "Backbone", "Seeds"],
        columns,
        rows,
        "setting",
    )


def conventions_sentence(settings: list[str]) -> str:
    """Defines every missing-modality convention; a column ``w/o X (c)`` is under convention ``c``, the
    others under the row's own (its Convention column)."""
    named = "; ".join(f"{name}: {what}" for name, what in MISSING_CONVENTIONS.items())
    extra = any(":" in s for s in settings)
    return named + ("; w/o X (c) = under convention c instead of the row's own" if extra else "")


def _convention_text(groups: list[Group]) -> dict[str, str]:
    """The text columns of a missing-modality row: its own convention, backbone, seeds."""
    conventions = {g.missing_convention for g in groups if not g.reported} - {""}
    own = " / ".join(sorted(conventions)) or ("as published" if groups[0].reported else "?")
    return {"Convention": own, **_text(groups)}


def _setting_header(setting: str) -> tuple[str, str, str]:
    """(column-group header, group key, sub-header) of a setting's column: missing-modality settings
    share one ``w/o`` header over the removed modalities, so the columns stay narrow."""
    name = setting_name(setting)
    if name.startswith("w/o "):
        return "w/o", setting, name.removeprefix("w/o ")
    return "", setting, name


def ablation_table(name: str, groups: list[Group], metrics: list[str]) -> Table:
    """Rows = method x knob value (default marked), dataset column groups of ``metrics``."""
    groups = [g for g in groups if g.ablation == name]
    axis = groups[0].axis
    datasets = _datasets(groups)
    pruning = name.startswith("prune_")
    columns = pruning_columns(datasets, metrics) if pruning else metric_columns(datasets, metrics)

    def label(g: Group) -> str:
        text = f"{g.value} (default)" if g.value == g.axis_default else g.value
        return text + PARTIAL_MARK if g.partial else text

    rows = _rows(
        groups,
        lambda g: (*series_key(g), g.value),
        label,
        lambda gs: {"Method": gs[0].series, "Seeds": seeds_text(gs)},
    )
    rows.sort(key=lambda r: _ablation_order(r, pruning))
    caption = (
        f"Ablation {name}: {axis} varied, everything else as the runs record it. Metrics in %. "
        f"{run_settings_sentence(groups)} {notes(groups, False)}"
    )
    if pruning:
        caption = (
            f"Pruning, schedule {name.removeprefix('prune_')}: round 0 is the trained model, each later "
            "round prunes the previous one and fine-tunes it. Metrics in %; Params and Non-zero in "
            "millions (masks keep parameters, only non-zero ones fall); GFLOPs per sample, counted on the "
            "pruned model; "
            f"Samples/s: measured inference throughput on the run's device. {run_settings_sentence(groups)} "
            f"{notes(groups, False)}"
        )
    return Table(
        f"ablation_{name}",
        f"Ablation: {name} ({axis})",
        _clean(caption),
        axis_label(axis),
        ["Method", "Seeds"],
        columns,
        rows,
    )


def _ablation_order(row: Row, pruning: bool) -> tuple:
    """Rows by series then knob value; in a pruning table each method's round 0 first (a base that studies
    differing per round share)."""
    group = next(iter(row.groups.values()))
    order = (row.text["Method"], value_key(group.value))
    return (group.method, group.value != group.axis_default, *order) if pruning else order


def value_key(value: str) -> tuple:
    """Sort knob values numerically when they are numbers, else as text."""
    try:
        return (0, float(value), "")
    except ValueError:
        return (1, 0.0, value)
