"""One pruning round inside a run: the previous round's weights into the freshly built model, then prune.

Pruning's warm-start transform (:func:`warm_start`, registered by :mod:`reidbench.prune.schedule` with
:mod:`reidbench.train.warm_start`): the runner builds the model as for any run and hands it over with the
source run's weights (and their recorded backbone shapes); :func:`start_round` loads and prunes it, training
runs inside the returned context (which keeps unstructured zeros at zero) and the run evaluates as usual.
Rebuilding the pruned shapes before loading makes the load strict.
"""

from __future__ import annotations

import json
from contextlib import AbstractContextManager, nullcontext

import torch
from torch import nn

from reidbench.prune.schedule import PruneStep
from reidbench.prune.structured import apply_structure, prune_structured, structure
from reidbench.prune.unstructured import prune_l1_unstructured, zeros_kept
from reidbench.train.warm_start import Started
from reidbench.train.weights import META_SHAPES, Weights


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


def warm_start(model: nn.Module, step: PruneStep, weights: Weights) -> Started:
    """The pruning transform of :mod:`reidbench.train.warm_start`: :func:`start_round` from the weights of
    the run ``step`` starts from; the round's final weights record their backbone shapes (structured rounds
    change them), so that they load strictly into a freshly built model."""
    return Started(start_round(model, step, weights.state, weights.shapes), weights_meta=backbone_shapes)


def backbone_shapes(model: nn.Module) -> dict[str, str]:
    """The weights-file header pair of ``model``'s backbone shapes (:func:`structure`)."""
    return {META_SHAPES: json.dumps(structure(model))}
