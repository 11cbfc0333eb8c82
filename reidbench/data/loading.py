"""A dataset by name: its registered loader's file lists and layout checks (no decoding), once per process."""

from __future__ import annotations

import functools
import os
from pathlib import Path

from reidbench.data.merge import merge_datasets
from reidbench.data.types import Dataset
from reidbench.generalisation import source_names
from reidbench.registry import DATASETS, load_plugins


def load_dataset(name: str, data_root: Path, allow_partial: bool = False) -> Dataset:
    """The dataset's file lists and layout checks (no decoding), scanned once per process; a merged name
    (``rgbnt100+msvr310``) gives the union of its sources (:func:`reidbench.data.merge.merge_datasets`)."""
    sources = source_names(name)
    if len(sources) > 1:
        return merge_datasets([load_dataset(source, data_root, allow_partial) for source in sources])
    return _scan(name, Path(data_root).resolve(), allow_partial, os.environ.get("REIDBENCH_CACHE", ""))


@functools.lru_cache(maxsize=16)
def _scan(name: str, data_root: Path, allow_partial: bool, _cache_dir: str) -> Dataset:
    load_plugins()
    return DATASETS.get(name).builder(data_root, allow_partial=allow_partial)
