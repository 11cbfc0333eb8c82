"""Where the shipped YAML lives: protocols/, ablations/ and suites/ of the package ``reidbench.benchmarks``
(the checkout's benchmarks/ folder, mapped into the package by pyproject.toml; package data in a wheel)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

__all__ = ["shipped_dir"]


def shipped_dir(kind: str) -> Path:
    """The shipped folder ``kind`` (``protocols``, ``ablations`` or ``suites``): inside the installed
    package, else (a checkout used without installing it) the checkout's benchmarks/."""
    spec = importlib.util.find_spec("reidbench.benchmarks")
    if spec is not None and spec.submodule_search_locations:
        return Path(list(spec.submodule_search_locations)[0]) / kind
    return Path(__file__).resolve().parents[2] / "benchmarks" / kind
