"""The training state of one run, shared by the engine (which advances it), the checkpointer (which saves
it every epoch) and the runner (which resumes from it and reports what training measured).

Everything an interrupted run needs to end with the metrics of an uninterrupted one: the epoch, stage and
scheduler step reached, model / criterion / optimizer state, the per-epoch history and the RNG state of
every rank. The PK sampler and the augmentation draw from generators seeded by (seed, epoch), so the
epoch number is their position. ``config_hash`` and ``run_id`` say which run the state belongs to.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

StateDict = dict[str, Any]


@dataclass
class TrainState:
    """Where training stands after ``epoch`` finished epochs (0: not started)."""

    config_hash: str = ""
    run_id: str | None = None  # the MLflow run being trained (continued on resume)
    epoch: int = 0  # epochs finished, over all stages
    stage: int = 0  # index of the stage the last finished epoch belongs to
    step: int = 0  # scheduler step inside that stage
    history: list[dict[str, float]] = field(default_factory=list)  # per-epoch training metrics
    train_time_s: float = 0.0
    samples_seen: int = 0
    model: StateDict | None = None  # the state dicts below are filled when a checkpoint is taken
    criterion: StateDict | None = None
    optimizer: StateDict | None = None
    rng: list[dict[str, Any]] = field(default_factory=list)  # per rank (see checkpoint.capture_rng)

    @property
    def started(self) -> bool:
        """Whether this state holds trained weights to resume from."""
        return self.model is not None

    @property
    def samples_per_s(self) -> float:
        """Training throughput so far (samples of the global batch per second of training)."""
        return self.samples_seen / self.train_time_s if self.train_time_s else 0.0

    def to_dict(self) -> dict[str, Any]:
        """The checkpoint file's layout (kept from the first format, so older checkpoints still resume)."""
        return {
            "config_hash": self.config_hash,
            "run_id": self.run_id,
            "epoch": self.epoch,
            "stage": self.stage,
            "step": self.step,
            "model": self.model,
            "criterion": self.criterion,
            "optimizer": self.optimizer,
            "result": {
                "history": self.history,
                "train_time_s": self.train_time_s,
                "samples_seen": self.samples_seen,
            },
            "rng": self.rng,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainState:
        """Inverse of :meth:`to_dict`."""
        result = data.get("result", {})
        return cls(
            config_hash=data.get("config_hash", ""),
            run_id=data.get("run_id"),
            epoch=data["epoch"],
            stage=data.get("stage", 0),
            step=data["step"],
            history=list(result.get("history", [])),
            train_time_s=float(result.get("train_time_s", 0.0)),
            samples_seen=int(result.get("samples_seen", 0)),
            model=data["model"],
            criterion=data["criterion"],
            optimizer=data.get("optimizer"),
            rng=list(data.get("rng", [])),
        )
