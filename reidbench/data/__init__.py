"""Datasets: loaders (registered in DATASETS), decoding, sampling and augmentation."""

from reidbench.data import builtin  # noqa: F401  (registers the datasets)
from reidbench.data.types import Dataset, DatasetInfo, DatasetSplits, ImageRef, Sample

__all__ = ["Dataset", "DatasetInfo", "DatasetSplits", "ImageRef", "Sample"]
