"""Helpers for tests: small generated data roots in every official layout, and patched expected counts."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

from reidbench.data.checks import EXPECTED_COUNTS
from reidbench.data.synthetic import LAYOUTS, SyntheticConfig, expected_counts, write_data_root

SMALL = SyntheticConfig(train_ids=4, test_ids=2, cameras=2, per_camera=2, query_per_camera=1)
_PRISTINE: dict[SyntheticConfig, Path] = {}


def small(layout: str, **changes) -> SyntheticConfig:
    return replace(SMALL, layout=layout, **changes)


def data_root(tmp_path: Path, config: SyntheticConfig, store: Path) -> Path:
    """A fresh copy of ``config`` generated as ``<tmp_path>/data/<Official folder>``; returns the data root.

    Each config is generated once per session under ``store`` and copied, so tests may damage their copy.
    """
    if config not in _PRISTINE:
        _PRISTINE[config] = store / f"{config.layout}-{len(_PRISTINE)}"
        write_data_root(_PRISTINE[config], config)
    root = tmp_path / "data"
    shutil.copytree(_PRISTINE[config], root)
    return root


def official(root: Path, config: SyntheticConfig) -> Path:
    return root / LAYOUTS[config.layout][0]


def use_counts_of(monkeypatch, name: str, config: SyntheticConfig) -> None:
    """Make the loader expect the generated sizes instead of the published ones."""
    monkeypatch.setitem(EXPECTED_COUNTS, name, expected_counts(config))


def small_rgbnt201_root(tmp_path: Path, tmp_path_factory, monkeypatch) -> Path:
    """A small RGBNT201 data root whose counts are the expected ones, with a private decode cache."""
    config = small("rgbnt201")
    root = data_root(tmp_path, config, tmp_path_factory.getbasetemp() / "layouts")
    use_counts_of(monkeypatch, "rgbnt201", config)
    monkeypatch.setenv("REIDBENCH_CACHE", str(tmp_path / "cache"))
    return root
