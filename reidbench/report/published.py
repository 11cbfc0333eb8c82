"""results/published.csv: numbers the papers report, as Groups beside ours.

One line per method x dataset x evaluation setting; metrics in percent as printed in the paper
(``<metric>_std`` where the paper gives a std), ``params_m`` in millions. ``setting`` is empty for the
full-modality protocol, else a missing-modality (``no_rgb``) or cross-modal (``rgb->nir``) setting; its
metrics become ``mAP@<setting>`` etc. like ours. Rows with setting ``pruned`` are points of a pruning study
(``params_m`` counts non-zero weights): they are not leaderboard rows but the reported points of the Pareto
figure (:func:`load_pruning_points`).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

from reidbench.errors import UserError
from reidbench.report.collect import Group
from reidbench.report.formatting import ACCURACY_METRICS, Cell

REQUIRED = ["method", "dataset", "setting", "backbone", "source", "selection", "seeds", "note"]
PERCENT = list(ACCURACY_METRICS)
PRUNED = "pruned"  # setting of a pruning study's points


@dataclass(frozen=True)
class ReportedPoint:
    """One reported (model size, accuracy) point: a pruned model, or the unpruned one it started from."""

    method: str
    dataset: str
    params_m: float
    mAP: float  # percent
    pruned: bool
    source: str


def load_pruning_points(path: Path) -> list[ReportedPoint]:
    """The pruning studies' points (setting ``pruned``) plus each studied method's unpruned row."""
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(line for line in fh if not line.startswith("#")))
    studied = {(r["method"], r["dataset"]) for r in rows if r["setting"].strip() == PRUNED}
    points = []
    for n, row in enumerate(rows, start=2):
        setting = row["setting"].strip()
        if (row["method"], row["dataset"]) not in studied or setting not in ("", PRUNED):
            continue
        params, mAP = _number(row["params_m"], path, n, "params_m"), _number(row["mAP"], path, n, "mAP")
        if math.isfinite(params) and math.isfinite(mAP):
            points.append(
                ReportedPoint(row["method"], row["dataset"], params, mAP, setting == PRUNED, row["source"])
            )
    return points


def default_path() -> Path:
    """The repository's results/published.csv."""
    return Path(__file__).resolve().parents[2] / "results" / "published.csv"


def load_published(path: Path) -> list[Group]:
    """Groups (``reported=True``) keyed by method x backbone x dataset; metrics as fractions like ours."""
    if not path.is_file():
        raise UserError(f"published results file {path} not found: pass --published PATH, or --reported none")
    with path.open(newline="", encoding="utf-8") as fh:
        numbered = [(n, line) for n, line in enumerate(fh, start=1) if not line.startswith("#")]
        reader = csv.DictReader(line for _, line in numbered)
        missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
        if missing:
            raise UserError(
                f"{path}: missing column(s) {', '.join(missing)}; expected at least "
                f"{', '.join(REQUIRED)} plus metric columns ({', '.join(PERCENT)}, params_m)"
            )
        groups: dict[tuple[str, str, str], Group] = {}
        for row in reader:
            line_no = numbered[reader.line_num - 1][0]
            if row["setting"].strip() == PRUNED:
                continue
            key = (row["method"].strip(), row["backbone"].strip(), row["dataset"].strip())
            if not all(key[::2]):
                raise UserError(f"{path}:{line_no}: method and dataset must not be empty")
            group = groups.setdefault(
                key,
                Group(
                    method=key[0],
                    backbone=key[1],
                    dataset=key[2],
                    cells={},
                    reported=True,
                    seeds_text=row["seeds"].strip(),
                ),
            )
            for attr in ("source", "selection", "note"):
                _add_text(group, attr, row[attr].strip())
            suffix = f"@{row['setting'].strip()}" if row["setting"].strip() else ""
            for metric in PERCENT:
                mean = _number(row.get(metric), path, line_no, metric)
                if math.isfinite(mean):
                    std = _number(row.get(f"{metric}_std"), path, line_no, f"{metric}_std")
                    group.cells[metric + suffix] = Cell(mean / 100, std / 100, _seeds(group.seeds_text))
            params = _number(row.get("params_m"), path, line_no, "params_m")
            if math.isfinite(params) and not suffix:
                group.cells["params"] = Cell(params * 1e6, math.nan, _seeds(group.seeds_text))
    return list(groups.values())


def _number(text: str | None, path: Path, line_no: int, column: str) -> float:
    text = (text or "").strip()
    if not text:
        return math.nan
    try:
        return float(text)
    except ValueError:
        raise UserError(
            f"{path}:{line_no}: column {column} is {text!r}; expected a number "
            "(percent for metrics, millions for params_m) or an empty cell"
        ) from None


def _seeds(text: str) -> int:
    return int(text) if text.isdigit() else 0


def _add_text(group: Group, attr: str, text: str) -> None:
    """Append ``text`` to a group's ``attr`` unless already there (``; ``-separated)."""
    current = getattr(group, attr)
    if text and text not in current:
        setattr(group, attr, f"{current}; {text}" if current else text)
