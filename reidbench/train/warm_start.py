"""Warm starts: a run that begins from another finished run's saved weights, transformed before training.

A spec's ``warm_start`` step (:attr:`reidbench.spec.RunSpec.warm_start`) is a frozen dataclass with the
attributes of :class:`WarmStep`: its ``kind`` names a transform registered here with :func:`register`, its
``source`` the config hash of the run whose weights it starts from. The runner calls :func:`start` and
knows nothing of what a transform does: this module finds the source run's weights, the transform loads
them into the freshly built model and changes it (a pruning round, :mod:`reidbench.prune.rounds`, prunes
it) and returns a :class:`Started`: the context training runs inside and the header pairs the run's final
weights need to load again.

A transform is registered by the module that defines its step (pruning: :mod:`reidbench.prune.schedule`),
so every process that holds such a step (built there, or unpickled in a worker, a Slurm task or a queue job)
has it; a step whose transform is missing fails with one line.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from reidbench import tracking
from reidbench.errors import UserError
from reidbench.registry import Registry
from reidbench.train.weights import Weights, run_weights

if TYPE_CHECKING:
    from torch import nn

TRANSFORMS = Registry("warm-start transform")


class WarmStep(Protocol):
    """What a warm-start step provides (its dataclass fields are the run config's ``<kind>`` section)."""

    kind: ClassVar[str]  # the transform's name; also the config key of the step's fields

    @property
    def source(self) -> str:
        """Config hash of the finished run whose saved weights this run starts from."""

    @property
    def label(self) -> str:
        """Suffix of the run's name, e.g. ``:structured-r2``."""

    @property
    def hint(self) -> str:
        """What to do when the source run has no saved weights."""


@dataclass
class Started:
    """A warm-started model: the context its training runs inside, and ``weights_meta(model)``: the header
    pairs its final weights need to load again (:func:`reidbench.train.weights.log_run_weights`)."""

    during: AbstractContextManager = field(default_factory=nullcontext)
    weights_meta: Callable[[nn.Module], dict[str, str]] | None = None

    def meta(self, model: nn.Module) -> dict[str, str]:
        """The extra header pairs of ``model``'s saved weights."""
        return self.weights_meta(model) if self.weights_meta is not None else {}


Transform = Callable[["nn.Module", Any, Weights], Started]


def register(kind: str, transform: Transform | str, description: str) -> None:
    """Register ``transform(model, step, weights) -> Started`` (a callable or a ``"module:function"``
    reference, imported on first use) for steps of ``kind``."""
    TRANSFORMS.add(kind, transform, description)


def start(model: nn.Module, step: WarmStep | None, uri: str | None, experiment: str) -> Started:
    """Warm-start ``model`` by ``step`` from its source run's weights in ``uri`` / ``experiment``; a plain
    :class:`Started` for ``step`` None."""
    if step is None:
        return Started()
    if step.kind not in TRANSFORMS:
        known = ", ".join(TRANSFORMS.names()) or "none"
        raise UserError(
            f"the run starts from run {step.source} through the warm-start transform {step.kind!r}, but no "
            f"such transform is registered in this process (registered: {known}); import the module that "
            f"defines {type(step).__name__} (it registers the transform)"
        )
    transform = TRANSFORMS.get(step.kind).load()
    with tempfile.TemporaryDirectory(prefix="reidbench-warm-start-") as tmp:
        weights = source_weights(step, uri, experiment, Path(tmp))
    return transform(model, step, weights)


def source_weights(step: WarmStep, uri: str | None, experiment: str, work: Path) -> Weights:
    """The saved weights of the finished run ``step`` starts from (its config hash is ``step.source``); a
    copied (reused) run leads to the run that trained the weights."""
    if uri is None:
        raise UserError("this run starts from another run's weights, read from MLflow: set a tracking URI")
    found = tracking.find_runs(
        uri,
        experiment,
        f"tags.config_hash = '{step.source}' and tags.run_kind = 'run' and attributes.status = 'FINISHED'",
    )
    for record in found:  # the trained run first: its copies hold no artifacts of their own
        if "weights_sha256" in record.tags:
            return run_weights(uri, record.run_id, work)
    raise UserError(
        f"this run ({step.kind}{step.label}) starts from the finished run with config {step.source}, but "
        f"experiment {experiment!r} has none with saved weights: {step.hint}"
    )
