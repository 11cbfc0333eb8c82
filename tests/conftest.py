"""Shared fixtures: a per-session cache (synthetic data), few threads, a temporary MLflow store."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(2)


@pytest.fixture(scope="session", autouse=True)
def _cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cache")
    os.environ["REIDBENCH_CACHE"] = str(path)
    return path


@pytest.fixture(scope="session")
def synthetic_dataset():
    """The default synthetic dataset, generated once per test session."""
    from reidbench.registry import DATASETS, load_plugins

    load_plugins()
    return DATASETS.get("synthetic").builder(Path("unused"))


@pytest.fixture
def mlflow_uri(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


# A protocol small enough for a CPU test: 1 epoch, 4x4 batches.
TINY = ["train.epochs=1", "sampler.p=4", "sampler.k=4", "train.max_steps_per_epoch=4"]

from tests.slurm_cluster import slurm_cluster, slurm_cluster_session  # noqa: E402,F401  (real Slurm fixtures)
