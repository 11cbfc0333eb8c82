"""Suites: named sets of runs in benchmarks/suites/<name>.yaml, run with ``reidbench suite NAME``.

A suite lists entries, each a grid of methods x training set x seeds with optional ``--test-on``
targets and protocol overrides::

    description: cross-domain generalisation
    methods: [late_fusion, graft, mmet]     # default methods of every entry
    seeds: [0, 1, 2]                        # optional: else each protocol's seeds
    entries:
      - {datasets: [rgbnt100], test_on: [msvr310]}
      - {datasets: [rgbnt100, msvr310], merge: true, test_on: [rgbn300]}   # one model on the union
      - {datasets: [rgbnt100], test_on: [rgbn300], set: {data.modalities: [rgb, nir]}}
      - {methods: [mmet], datasets: [synthetic], test_on: [market1501_mm]}
      - {methods: [graft], datasets: [synthetic], recipe: official}     # the official recipe track

Every entry becomes RunSpecs tagged ``suite=<name>`` (a plain tag: the same point run by a plain
``reidbench run`` is the same finished run).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from reidbench.errors import UserError
from reidbench.generalisation import merged_name
from reidbench.recipes import RECIPES
from reidbench.spec import RunSpec, make_spec
from reidbench.util.files import read_yaml
from reidbench.util.resources import shipped_dir

KEYS = {"description", "methods", "seeds", "entries", "name"}
ENTRY_KEYS = {"methods", "datasets", "merge", "test_on", "set", "seeds", "recipe"}


@dataclass(frozen=True)
class Entry:
    """One grid of a suite: methods x training set(s) x seeds, tested on ``test_on``."""

    methods: tuple[str, ...]
    datasets: tuple[str, ...]
    merge: bool = False
    test_on: tuple[str, ...] = ()
    overrides: dict[str, Any] = field(default_factory=dict)
    seeds: tuple[int, ...] | None = None
    recipe: str | None = None

    @property
    def training_sets(self) -> list[str]:
        """The dataset names runs train on: each dataset, or their union when ``merge``."""
        return [merged_name(self.datasets)] if self.merge else list(self.datasets)


@dataclass(frozen=True)
class Suite:
    name: str
    entries: tuple[Entry, ...]
    description: str = ""
    source: str = ""

    def specs(
        self, methods: list[str] | None = None, seeds: list[int] | None = None, overrides: list[str] = ()
    ) -> list[RunSpec]:
        """The RunSpecs of every entry (``methods`` / ``seeds`` replace the suite's when given)."""
        specs = []
        for i, entry in enumerate(self.entries):
            keys = [*(f"{k}={json.dumps(v)}" for k, v in entry.overrides.items()), *overrides]
            for method in methods or entry.methods:
                for dataset in entry.training_sets:
                    try:
                        point_seeds = (
                            seeds
                            or entry.seeds
                            or make_spec(method, dataset, 0, keys, recipe=entry.recipe).protocol.seeds
                        )
                        specs += [
                            make_spec(
                                method,
                                dataset,
                                s,
                                keys,
                                {"suite": self.name},
                                test_on=entry.test_on,
                                recipe=entry.recipe,
                            )
                            for s in point_seeds
                        ]
                    except UserError as exc:
                        raise UserError(
                            f"suite {self.name!r} ({self.source}), entry {i + 1}: {exc}"
                        ) from None
        return specs


def suites_dir() -> Path:
    """Folder of the suite YAML files (``REIDBENCH_SUITES``; default: shipped with the package)."""
    env = os.environ.get("REIDBENCH_SUITES")
    return Path(env) if env else shipped_dir("suites")


def find_suite(name: str) -> Suite:
    """The suite called ``name`` (benchmarks/suites/<name>.yaml) or at a YAML path."""
    if name.endswith((".yaml", ".yml")) or os.sep in name:
        return load_suite(Path(name))
    path = suites_dir() / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in suites_dir().glob("*.yaml"))
        raise UserError(f"no suite {name!r} ({path} does not exist). Suites: {', '.join(known) or 'none'}")
    return load_suite(path)


def load_suite(path: Path) -> Suite:
    """Read and validate a suite file; errors name the file, the entry and what was expected."""
    try:
        data = read_yaml(Path(path))
    except OSError as exc:
        raise UserError(f"cannot read suite file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML: {exc}") from None

    def fail(where: str, expected: str, got: Any) -> UserError:
        return UserError(f"{path}: {where}: expected {expected}, got {got!r}")

    if not isinstance(data, dict) or "entries" not in data:
        raise fail("top level", "a mapping with an 'entries' list", data)
    unknown = sorted(set(data) - KEYS)
    if unknown:
        raise UserError(f"{path}: unknown key {unknown[0]!r}. Valid keys: {', '.join(sorted(KEYS))}.")
    default_methods = _names(data.get("methods", []), "methods", fail, allow_empty=True)
    default_seeds = _seeds(data.get("seeds"), "seeds", fail)
    if not isinstance(data["entries"], list) or not data["entries"]:
        raise fail(
            "entries", "a non-empty list of {datasets: [...], test_on: [...]} mappings", data["entries"]
        )
    entries = []
    for i, item in enumerate(data["entries"]):
        where = f"entries[{i}]"
        if not isinstance(item, dict):
            raise fail(where, "a mapping {datasets: [...], test_on: [...]}", item)
        extra = sorted(set(item) - ENTRY_KEYS)
        if extra:
            raise UserError(
                f"{path}: {where}: unknown key {extra[0]!r}. Valid keys: {', '.join(sorted(ENTRY_KEYS))}."
            )
        methods = _names(item.get("methods", default_methods), f"{where}.methods", fail)
        overrides = item.get("set", {})
        if not isinstance(overrides, dict):
            raise fail(f"{where}.set", "a mapping of dotted protocol keys to values", overrides)
        merge = item.get("merge", False)
        if not isinstance(merge, bool):
            raise fail(f"{where}.merge", "true or false", merge)
        recipe = item.get("recipe")
        if recipe is not None and recipe not in RECIPES:
            raise fail(f"{where}.recipe", " or ".join(RECIPES), recipe)
        entries.append(
            Entry(
                tuple(methods),
                tuple(_names(item.get("datasets"), f"{where}.datasets", fail)),
                merge,
                tuple(_names(item.get("test_on", []), f"{where}.test_on", fail, allow_empty=True)),
                dict(overrides),
                _seeds(item.get("seeds"), f"{where}.seeds", fail) or default_seeds,
                recipe,
            )
        )
    name = data.get("name", Path(path).stem)
    return Suite(name, tuple(entries), str(data.get("description", "")), str(path))


def _names(value: Any, where: str, fail: Any, allow_empty: bool = False) -> list[str]:
    if (
        not isinstance(value, list)
        or not all(isinstance(v, str) for v in value)
        or not (value or allow_empty)
    ):
        raise fail(where, "a list of names", value)
    return list(value)


def _seeds(value: Any, where: str, fail: Any) -> tuple[int, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value or not all(type(v) is int for v in value):
        raise fail(where, "a non-empty list of integers", value)
    return tuple(value)


def present(
    specs: list[RunSpec], data_root: Path, allow_partial: bool = False
) -> tuple[list[RunSpec], list[str]]:
    """The specs whose every dataset (sources and targets) can be read under ``data_root``, and one line per
    dataset that cannot (why)."""
    from reidbench.data.loading import load_dataset

    missing: dict[str, str] = {}
    for name in dict.fromkeys(n for spec in specs for n in spec.datasets):
        try:
            load_dataset(name, data_root, allow_partial)
        except UserError as exc:
            missing[name] = str(exc)
    kept = [s for s in specs if not any(n in missing for n in s.datasets)]
    return kept, [f"{name}: {why}" for name, why in missing.items()]
