"""One pruning round inside a run: the previous round's weights into the freshly built model, then prune.

The runner builds the model as for any run, calls :func:`start_round` with the source run's weights (and
their recorded backbone shapes), trains inside the returned context (which keeps unstructured zeros at
zero) and evaluates as usual. Rebuilding the pruned shapes before loading makes the load strict.
"""

from __future__ import annotations

import tempfile
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from reidbench.errors import UserError
from reidbench.prune.schedule import PruneStep
from reidbench.prune.structured import apply_structure, prune_structured
from reidbench.prune.unstructured import prune_l1_unstructured, zeros_kept

if TYPE_CHECKING:
    from reidbench.zoo.weights import Weights


def start_round(
    model: nn.Module, step: PruneStep, state: dict[str, torch.Tensor], shapes: dict[str, list[int]] | None
) -> AbstractContextManager:
    """Load ``state`` (shaped by ``shapes``, from :func:`structure`) into ``model`` and prune it by ``step``;
    the returned context is what fine-tuning runs inside."""
    if shapes:
        apply_structure(model, shapes)
    model.load_state_dict(state)
    if step.schedule == "structured":
        prune_structured(model, step.fraction)
        return nullcontext()
    prune_l1_unstructured(model, step.fraction)
    return zeros_kept(model)


def source_weights(step: PruneStep, uri: str | None, experiment: str, work: Path) -> Weights:
    """The saved weights of the finished run a round starts from (its config hash is ``step.source``);
    a copied (reused) run points to the run that trained the weights."""
    from reidbench import tracking
    from reidbench.zoo.evaluate import from_run

    if uri is None:
        raise UserError("a pruning round loads the previous round's weights from MLflow: set a tracking URI")
    found = tracking.find_runs(
        uri,
        experiment,
        f"tags.config_hash = '{step.source}' and tags.run_kind = 'run' and attributes.status = 'FINISHED'",
    )
    for record in found:  # the trained run first: its copies hold no artifacts of their own
        if "weights_sha256" in record.tags:
            return from_run(uri, tracking.origin_run(uri, record.run_id).run_id, work).weights
    raise UserError(
        f"round {step.round} of {step.schedule} starts from the finished run with config {step.source}, "
        f"but experiment {experiment!r} has none with saved weights: run the study from round 0 "
        "(`reidbench prune ...` trains it) and without --no-save-weights"
    )


def prepare_round(
    model: nn.Module, step: PruneStep, uri: str | None, experiment: str
) -> AbstractContextManager:
    """:func:`start_round` from the weights of the run ``step`` starts from (downloaded to a temp dir)."""
    with tempfile.TemporaryDirectory(prefix="reidbench-prune-") as tmp:
        weights = source_weights(step, uri, experiment, Path(tmp))
    return start_round(model, step, weights.state, weights.shapes)
