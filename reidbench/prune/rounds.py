"""One pruning round inside a run: the previous round's weights into the freshly built model, then prune.

The runner builds the model as for any run, calls :func:`start_round` with the source run's weights (and
their recorded backbone shapes), trains inside the returned context (which keeps unstructured zeros at
zero) and evaluates as usual. Rebuilding the pruned shapes before loading makes the load strict.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch
from torch import nn

from reidbench.prune.schedule import PruneStep
from reidbench.prune.structured import apply_structure, prune_structured
from reidbench.prune.unstructured import prune_l1_unstructured, zeros_kept


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
