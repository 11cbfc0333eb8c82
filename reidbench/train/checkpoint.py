"""Training-state checkpoints: one file per run under ``<checkpoint root>/<config_hash>/``, saved every epoch.

The file holds a :class:`reidbench.train.state.TrainState`. Files are replaced atomically (write, then
rename), so a kill during a save leaves the previous epoch's checkpoint intact.
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reidbench.train.state import TrainState

STATE_FILE = "state.pt"


def checkpoint_root(results_dir: Path | str = "results") -> Path:
    """``REIDBENCH_CHECKPOINTS``, else ``<results_dir>/checkpoints``."""
    return Path(os.environ.get("REIDBENCH_CHECKPOINTS") or Path(results_dir) / "checkpoints")


class Checkpointer:
    """Saves and loads the training state of one run (one config hash) in ``folder``."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    @property
    def path(self) -> Path:
        return self.folder / STATE_FILE

    def exists(self) -> bool:
        return self.path.is_file()

    def load(self, device: torch.device | str = "cpu") -> TrainState | None:
        """The last saved state (tensors on ``device``), or None when there is none."""
        if not self.exists():
            return None
        return TrainState.from_dict(torch.load(self.path, map_location=device, weights_only=False))

    def save(self, state: TrainState) -> None:
        """Write ``state`` atomically: a crash mid-write keeps the previous checkpoint."""
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{STATE_FILE}.{os.getpid()}.tmp")
        torch.save(state.to_dict(), tmp)
        os.replace(tmp, self.path)

    def clear(self) -> None:
        """Delete the folder (after a run finished)."""
        shutil.rmtree(self.folder, ignore_errors=True)


def capture_rng() -> dict[str, Any]:
    """The state of every global RNG a training step may draw from (Python, NumPy, torch CPU and CUDA)."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng`."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
