"""What a run is given besides its spec (:class:`RunContext`) and what it gives back (:class:`RunResult`).

Both are plain data and import nothing heavy: the CLI builds one context and passes it whole through the
sweep and the executors to every run, including runs in worker processes and Slurm jobs (pickled).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from reidbench.spec import RunSpec
from reidbench.tracking import DEFAULT_EXPERIMENT


@dataclass(frozen=True)
class RunContext:
    """Where a run reads its data, logs and checkpoints, on which device, and whether it shows progress.

    ``tracking_uri`` None: nothing is logged (tests, benchmarks). ``checkpoint_dir``: the training state is
    saved under ``<checkpoint_dir>/<config_hash>/`` after every epoch, and an interrupted run resumes from
    there. ``save_weights``: a finished, logged run saves its final weights (safetensors, with their sha256)
    and config under its ``model/`` artifacts. ``parent_run_id``: the sweep's MLflow parent run.
    """

    data_root: Path
    tracking_uri: str | None = None
    experiment: str = DEFAULT_EXPERIMENT
    device: str = "auto"
    checkpoint_dir: Path | None = None
    keep_checkpoints: bool = False  # keep the training state of finished runs
    show_progress: bool = False
    allow_partial: bool = False  # use a dataset whose layout check found problems (warns)
    parent_run_id: str | None = None
    save_weights: bool = True  # a finished run's final weights and config as MLflow artifacts (model/)

    def under(self, parent_run_id: str | None) -> RunContext:
        """The same context for the runs of a sweep whose parent run is ``parent_run_id``."""
        return replace(self, parent_run_id=parent_run_id)

    def quiet(self) -> RunContext:
        """The same context without progress bars (runs whose output nobody watches)."""
        return replace(self, show_progress=False)


@dataclass
class RunResult:
    """How one run ended: its metrics and MLflow run id, or its error (and where its log is)."""

    spec: RunSpec
    metrics: dict[str, float] = field(default_factory=dict)
    run_id: str | None = None
    error: str | None = None
    log: Path | None = None

    @property
    def ok(self) -> bool:
        return self.error is None
