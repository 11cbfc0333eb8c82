"""The Optuna storage of ``reidbench tune``: checked up front, and a fresh SQLite storage created exactly
once when several workers start on it together. Imports nothing heavy."""

from __future__ import annotations

import logging
from contextlib import nullcontext
from typing import Any

from reidbench.util.embedded import check_sqlite, creation_lock


def open_study(storage: str, study_name: str, seed: int = 0) -> Any:
    """Create or load ``study_name`` (maximised) in ``storage``; a SQLite storage is created under a file
    lock next to it, so workers started together on a fresh one all get the same study."""
    import optuna

    optuna.logging.set_verbosity(logging.WARNING)
    path = check_sqlite(storage, "--storage") if storage.startswith("sqlite:") else None
    with creation_lock(path, "--storage") if path is not None else nullcontext():
        return optuna.create_study(
            study_name=study_name,
            storage=storage,
            direction="maximize",
            load_if_exists=True,
            sampler=optuna.samplers.TPESampler(seed=seed),
        )
