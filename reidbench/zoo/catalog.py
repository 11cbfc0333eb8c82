"""The zoo's catalogue, ``results/zoo.yaml``: one entry per trained model, named ``method@dataset[.tag]``,
with its config hash, metrics (mean ± std over seeds), weights sha256 and source.

A source is ``hf-hub:OWNER/REPO[@REVISION]`` (a Hugging Face Hub model repo), an ``http(s)://`` URL of a
folder, or a local folder path (relative paths are relative to the folder holding zoo.yaml). Each source
folder holds ``model.safetensors`` and ``config.yaml`` as ``reidbench zoo export`` writes them.
"""

from __future__ import annotations

import difflib
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from reidbench.errors import UserError
from reidbench.report.formatting import Cell, fmt_number, format_cell
from reidbench.util.files import read_yaml

TABLE_METRICS = {"rank1": "R1", "mAP": "mAP", "mINP": "mINP"}
COLUMNS = ["name", "method", "dataset", "recipe", *TABLE_METRICS.values(), "params (M)", "GFLOPs", "source"]


@dataclass
class ZooEntry:
    """One model of the zoo. ``metrics``: name -> {mean, std, n} as fractions (std null when n < 2)."""

    name: str
    method: str
    dataset: str
    recipe: str
    config_hash: str
    sha256: str
    source: str
    metrics: dict[str, dict[str, float | None]] = field(default_factory=dict)
    params: float | None = None
    gflops: float | None = None
    seeds: list[int] = field(default_factory=list)
    run_id: str = ""  # the training run of the shipped weights

    def cell(self, metric: str) -> Cell:
        value = self.metrics.get(metric) or {}
        mean, std = value.get("mean"), value.get("std")
        return Cell(
            math.nan if mean is None else float(mean),
            math.nan if std is None else float(std),
            int(value.get("n") or 0),
        )


def zoo_name(method: str, dataset: str, tag: str = "") -> str:
    """``method@dataset`` or ``method@dataset.tag``."""
    return f"{method}@{dataset}{'.' + tag if tag else ''}"


def default_zoo_file() -> Path:
    """``REIDBENCH_ZOO`` or the repository's results/zoo.yaml."""
    env = os.environ.get("REIDBENCH_ZOO")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "results" / "zoo.yaml"


def read_zoo(path: Path) -> list[ZooEntry]:
    """The entries of a zoo file (UserError naming the file and entry when one is malformed)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(
            f"no zoo file {path}: `reidbench zoo export --experiment E --out DIR --zoo-file {path}` "
            "writes one"
        )
    try:
        data = read_yaml(path) or {}
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML ({exc})") from None
    models = data.get("models") if isinstance(data, dict) else None
    if not isinstance(models, list):
        raise UserError(f"{path}: expected a mapping with a `models:` list of entries")
    known = set(ZooEntry.__dataclass_fields__)
    required = ("name", "method", "dataset", "config_hash", "sha256", "source")
    entries = []
    for i, item in enumerate(models):
        if not isinstance(item, dict):
            raise UserError(f"{path}: models[{i}] is not a mapping")
        missing = [k for k in required if k not in item]
        unknown = sorted(set(item) - known)
        if missing or unknown:
            problems = [f"lacks {', '.join(missing)}"] if missing else []
            problems += [f"has unknown keys {', '.join(unknown)}"] if unknown else []
            raise UserError(f"{path}: entry {item.get('name', i)!r} {'; '.join(problems)}")
        entries.append(ZooEntry(**{"recipe": "shared", **item}))
    return entries


def write_zoo(path: Path, entries: list[ZooEntry]) -> None:
    """Write ``entries`` (sorted by name) to the zoo file ``path``."""
    header = (
        "# The reidbench model zoo: `reidbench zoo list`, `reidbench zoo get NAME`, "
        "`reidbench eval --zoo NAME --dataset D`.\n"
        "# Written by `reidbench zoo export`; relative sources are relative to this file's folder.\n"
    )
    models = [asdict(e) for e in sorted(entries, key=lambda e: e.name)]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(header + yaml.safe_dump({"models": models}, sort_keys=False))


def find_entry(entries: list[ZooEntry], name: str, where: Path) -> ZooEntry:
    """The entry called ``name``; a UserError with the closest names otherwise."""
    names = [e.name for e in entries]
    for entry in entries:
        if entry.name == name:
            return entry
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}?" if close else f"known: {', '.join(names) or '(none)'}"
    raise UserError(f"no model {name!r} in the zoo {where}; {hint} (`reidbench zoo list` shows them all)")


def table_rows(entries: list[ZooEntry]) -> list[list[str]]:
    """The zoo table: one row of :data:`COLUMNS` per entry (metrics in %, mean ± std over seeds)."""
    rows = []
    for e in sorted(entries, key=lambda e: e.name):
        metrics = [format_cell(e.cell(m)) for m in TABLE_METRICS]
        params = fmt_number(e.params / 1e6, 2) if e.params is not None else "–"
        gflops = fmt_number(e.gflops, None) if e.gflops is not None else "–"
        rows.append([e.name, e.method, e.dataset, e.recipe, *metrics, params, gflops, e.source])
    return rows


def markdown_table(entries: list[ZooEntry]) -> str:
    """The zoo table as Markdown (what the README shows)."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in table_rows(entries):
        lines.append("| " + " | ".join([f"`{row[0]}`", *row[1:-1], f"`{row[-1]}`"]) + " |")
    return "\n".join(lines) + "\n"


def plain(value: Any) -> Any:
    """NaN -> None, for YAML."""
    return None if isinstance(value, float) and not math.isfinite(value) else value
