"""Ablations: declarative YAML files in benchmarks/ablations/<name>.yaml, validated and registered in
ABLATIONS.

A file names the method, the axis (a dotted protocol key), the values to sweep, the default value, the
datasets and optionally the seeds and base overrides::

    description: GraFT fusion-token count
    method: graft
    axis: method.fusion_tokens
    values: [1, 2, 4, 8, 16, 32]
    default: 1
    datasets: [rgbnt100, rgbn300]
    seeds: [0, 1, 2]            # optional: else the protocol's seeds
    set: {train.epochs: 60}     # optional: applied to every point
    test_on: [rgbn300]          # optional: also evaluate every point on these datasets (mAP@to_rgbn300)

A value is either a plain value of the axis or a point that sets several keys at once::

    values:
      - ce+triplet
      - {value: ce+aug_triplet+center (no LS),
         set: {loss.variant: ce+aug_triplet+center, loss.label_smoothing: 0}}
"""

from __future__ import annotations

import functools
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from reidbench.config import parse_override
from reidbench.errors import UserError
from reidbench.registry import ABLATIONS
from reidbench.spec import RunSpec
from reidbench.util.files import read_yaml
from reidbench.util.resources import shipped_dir

KEYS = {
    "description": "one line shown by `reidbench list ablations`",
    "method": "the method to ablate, e.g. graft",
    "axis": "the dotted protocol key that changes, e.g. method.fusion_tokens",
    "values": "the list of values (or {value: LABEL, set: {KEY: VALUE, ...}} points)",
    "default": "the method's default value of the axis",
    "datasets": "the list of datasets",
    "seeds": "optional list of seeds (default: the protocol's seeds)",
    "set": "optional mapping of dotted keys to values applied to every point",
    "test_on": "optional list of datasets every point is also evaluated on (cross-domain)",
    "name": "optional; must equal the file name",
}
REQUIRED = ("method", "axis", "values", "default", "datasets")
DOTTED = re.compile(r"^[A-Za-z_]\w*(\.\w+)*$")


@dataclass(frozen=True)
class Point:
    """One value of an ablation: its label (the MLflow ``value`` tag) and the keys it sets."""

    label: str
    overrides: dict[str, Any]


@dataclass(frozen=True)
class Ablation:
    name: str
    method: str
    axis: str
    points: tuple[Point, ...]
    default: str
    datasets: tuple[str, ...]
    seeds: tuple[int, ...] | None = None
    base: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    source: str = ""
    test_on: tuple[str, ...] = ()

    def select(self, values: list[str] | None) -> list[Point]:
        """The points named by ``values`` (labels, or new plain values of the axis); all when None."""
        if not values:
            return list(self.points)
        by_label = {p.label: p for p in self.points}
        plain = all(set(p.overrides) == {self.axis} for p in self.points)
        list_axis = plain and all(isinstance(p.overrides[self.axis], list) for p in self.points)
        out = []
        for text in values:
            if text in by_label:
                out.append(by_label[text])
            elif plain:
                value: Any = text.split("+") if list_axis else parse_override(f"v={text}")[1]
                out.append(Point(value_label(value), {self.axis: value}))
            else:
                raise UserError(
                    f"ablation {self.name!r}: --values {text!r} is not one of its points "
                    f"({', '.join(by_label)}) and its points set several keys, so it cannot be a new one"
                )
        return out

    def specs(
        self,
        datasets: list[str] | None = None,
        seeds: list[int] | None = None,
        overrides: list[str] = (),
        values: list[str] | None = None,
        method: str | None = None,
    ) -> list[RunSpec]:
        """The RunSpecs of every dataset x point x seed, tagged with ablation / axis / value /
        axis_default."""
        from reidbench.spec import make_spec

        points = self.select(values)
        user_keys = {parse_override(o)[0] for o in overrides}
        for point in points:
            clash = sorted(user_keys & set(point.overrides))
            if clash:
                raise UserError(
                    f"--set {clash[0]}=... conflicts with ablation {self.name!r}, whose points set "
                    f"{clash[0]}; drop it or pick values with --values"
                )
        method = method or self.method
        specs = []
        for dataset in datasets or self.datasets:
            for point in points:
                keys = [*_as_overrides(self.base), *overrides, *_as_overrides(point.overrides)]
                tags = {
                    "ablation": self.name,
                    "axis": self.axis,
                    "value": point.label,
                    "axis_default": self.default,
                }
                try:
                    point_seeds = seeds or self.seeds or make_spec(method, dataset, 0, keys).protocol.seeds
                    specs += [
                        make_spec(method, dataset, s, keys, tags, test_on=self.test_on) for s in point_seeds
                    ]
                except UserError as exc:
                    raise UserError(
                        f"ablation {self.name!r} ({self.source}), value {point.label!r} on {dataset!r}: {exc}"
                    ) from None
        return specs


def value_label(value: Any) -> str:
    """The ``value`` tag of a plain value: str(value), lists joined by '+' (rgb+nir)."""
    if isinstance(value, list | tuple):
        return "+".join(value_label(v) for v in value)
    return str(value)


def _as_overrides(keys: dict[str, Any]) -> list[str]:
    return [f"{k}={json.dumps(v)}" for k, v in keys.items()]


def ablations_dir() -> Path:
    """Folder of the ablation YAML files (``REIDBENCH_ABLATIONS``; default: shipped with the package)."""
    env = os.environ.get("REIDBENCH_ABLATIONS")
    return Path(env) if env else shipped_dir("ablations")


def load_ablation(path: Path) -> Ablation:
    """Read and validate one ablation file; errors name the file, the key and what was expected."""
    path = Path(path)
    try:
        data = read_yaml(path)
    except OSError as exc:
        raise UserError(f"cannot read ablation file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise UserError(f"{path}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise UserError(
            f"{path}: expected a mapping with keys {', '.join(REQUIRED)}, got {type(data).__name__}"
        )
    unknown = sorted(set(data) - set(KEYS))
    if unknown:
        raise UserError(f"{path}: unknown key {unknown[0]!r}. Valid keys: {', '.join(KEYS)}.")
    for key in REQUIRED:
        if key not in data:
            raise UserError(f"{path}: missing key {key!r} ({KEYS[key]})")

    def fail(key: str, expected: str, got: Any) -> UserError:
        return UserError(f"{path}: key {key!r}: expected {expected}, got {got!r}")

    name = data.get("name", path.stem)
    if name != path.stem:
        raise fail("name", f"the file name {path.stem!r}", name)
    for key in ("method", "axis"):
        if not isinstance(data[key], str) or not data[key]:
            raise fail(key, "a non-empty string", data[key])
    if not DOTTED.match(data["axis"]):
        raise fail("axis", "a dotted protocol key such as method.fusion_tokens", data["axis"])
    description = data.get("description", "")
    if not isinstance(description, str):
        raise fail("description", "a string", description)
    points = _points(data["values"], data["axis"], fail)
    if not _is_plain(data["default"]):
        raise fail("default", "a value like those in 'values'", data["default"])
    datasets = data["datasets"]
    if not isinstance(datasets, list) or not datasets or not all(isinstance(d, str) for d in datasets):
        raise fail("datasets", "a non-empty list of dataset names", datasets)
    seeds = data.get("seeds")
    if seeds is not None and (
        not isinstance(seeds, list)
        or not seeds
        or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)
    ):
        raise fail("seeds", "a non-empty list of integers", seeds)
    base = _keys(data.get("set", {}), "set", fail)
    test_on = data.get("test_on", [])
    if not isinstance(test_on, list) or not all(isinstance(d, str) for d in test_on):
        raise fail("test_on", "a list of dataset names", test_on)
    return Ablation(
        name,
        data["method"],
        data["axis"],
        tuple(points),
        value_label(data["default"]),
        tuple(datasets),
        tuple(seeds) if seeds else None,
        base,
        description,
        str(path),
        tuple(test_on),
    )


def _is_plain(value: Any) -> bool:
    scalar = (str, int, float, bool, type(None))
    return isinstance(value, scalar) or (
        isinstance(value, list) and all(isinstance(v, scalar) for v in value)
    )


def _keys(value: Any, key: str, fail: Any) -> dict[str, Any]:
    if not isinstance(value, dict) or not all(isinstance(k, str) and DOTTED.match(k) for k in value):
        raise fail(key, "a mapping of dotted protocol keys to values (e.g. {loss.label_smoothing: 0})", value)
    return dict(value)


def _points(values: Any, axis: str, fail: Any) -> list[Point]:
    if not isinstance(values, list) or not values:
        raise fail("values", "a non-empty list", values)
    points = []
    for i, item in enumerate(values):
        key = f"values[{i}]"
        if isinstance(item, dict):
            extra = sorted(set(item) - {"value", "set"})
            if extra or "value" not in item:
                raise fail(key, "a plain value or a mapping {value: LABEL, set: {KEY: VALUE, ...}}", item)
            if not _is_plain(item["value"]):
                raise fail(f"{key}.value", "a label (string or number)", item["value"])
            points.append(Point(value_label(item["value"]), _keys(item.get("set", {}), f"{key}.set", fail)))
        elif _is_plain(item):
            points.append(Point(value_label(item), {axis: item}))
        else:
            raise fail(key, "a plain value or a mapping {value: LABEL, set: {...}}", item)
    labels = [p.label for p in points]
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise fail("values", "distinct values", duplicates[0])
    return points


def register_ablations(folder: Path | None = None) -> None:
    """Register every YAML file of ``folder`` (default: :func:`ablations_dir`) in ABLATIONS (idempotent).

    The builder loads (and validates) the file when called.
    """
    for path in sorted(Path(folder or ablations_dir()).glob("*.yaml")):
        if path.stem not in ABLATIONS:
            ABLATIONS.register(path.stem, _peek_description(path), path=path)(
                functools.partial(load_ablation, path)
            )


def _peek_description(path: Path) -> str:
    try:
        data = read_yaml(path)
    except (OSError, yaml.YAMLError):
        return ""
    return str(data.get("description", "")) if isinstance(data, dict) else ""


def find_ablation(name: str) -> Ablation:
    """The ablation called ``name`` (a file in :func:`ablations_dir` or a registered one) or at a YAML
    path."""
    if name.endswith((".yaml", ".yml")) or os.sep in name:
        return load_ablation(Path(name))
    path = ablations_dir() / f"{name}.yaml"
    if path.is_file():
        return load_ablation(path)
    register_ablations()
    return ABLATIONS.get(name).builder()
