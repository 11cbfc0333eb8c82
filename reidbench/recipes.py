"""Recipe tracks: how a method is trained, separate from what it is.

``shared`` (the default, the leaderboard's main table): every method trains with the dataset protocol's
recipe (its one stage, optimiser, schedule, epochs, augmentation and loss: ID CE + batch-hard triplet on the
retrieval embedding); the method contributes its architecture and the settings the architecture needs
(registration ``defaults``, e.g. MMET's captions). ``official``: the method's published recipe on top
(registration ``official``), as close to the official code as the data allows; what still differs is listed
in the registration's ``fidelity`` rows (:mod:`reidbench.fidelity`; ``reidbench list methods --verbose``).
Torch-free.

A recipe is a mapping of dotted protocol keys. Besides the loss, data and stage keys, it can state:

* the optimiser exactly (:mod:`reidbench.train.optim`): ``optim.name`` (sgd / adam / adamw),
  ``optim.lr``, ``optim.weight_decay``, ``optim.momentum``, ``optim.nesterov``, ``optim.betas``,
  ``optim.eps``; which tensors decay, ``optim.no_decay`` (selectors; ``[]``: all decay); per-group rules
  ``optim.groups`` (``[{name, match: [selectors], lr | lr_scale, weight_decay | weight_decay_scale}]``,
  applied in order; selectors: all, bias, norm, 1d, backbone, in:MODULE, re:REGEX);
* the schedule as the official code computes it (:mod:`reidbench.train.schedule`): ``schedule.kind``
  (cosine / constant / warmup_sqrt), ``schedule.step_per`` (step / epoch), ``schedule.first_epoch``,
  ``schedule.warmup_epochs`` or ``schedule.warmup_steps``, ``schedule.warmup_factor`` (the warmup's start),
  ``schedule.min_lr_factor`` (cosine floor), ``schedule.bounds`` (per_group / shared),
  ``schedule.cosine`` (after_warmup / whole), ``schedule.noise_pct`` and ``schedule.noise_seed``; per
  stage ``train.stages[i].{schedule, warmup_epochs, warmup_steps, lr, lr_scale, weight_decay}``;
* the backbone: ``backbone.name``, ``backbone.source`` (timm / hf), ``backbone.weights`` (a local
  checkpoint), ``backbone.drop_path`` (stochastic depth; timm backbones only);
* method knobs (``method.*``) where the official forward differs from the shared one (MMET).

The shared track's own choices, stated once: AdamW (lr and weight decay per dataset protocol, betas 0.9 /
0.999, eps 1e-8); biases and other 1-D tensors (norm weights) without weight decay (``optim.no_decay:
[1d]``); one cosine schedule stepped per optimiser step, warmup from 0.01 x lr over
``schedule.warmup_epochs``, cosine from the warmup's end to 0, no noise; timm ViT-B/16 with stochastic
depth 0.1.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from reidbench.errors import UserError
from reidbench.registry import METHODS

RECIPES = ("shared", "official")
DEFAULT_RECIPE = "shared"
_ACTIVE: ContextVar[str] = ContextVar("recipe", default=DEFAULT_RECIPE)


@contextmanager
def recipe_choice(recipe: str | None) -> Iterator[None]:
    """Within the block, specs are made with ``recipe`` (``--recipe``) unless one is passed explicitly."""
    token = _ACTIVE.set(recipe or DEFAULT_RECIPE)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def active_recipe(recipe: str | None = None) -> str:
    """``recipe``, else the one chosen by :func:`recipe_choice`, else ``shared``."""
    return recipe or _ACTIVE.get()


def recipe_settings(method: str, recipe: str, dataset: str | None = None) -> dict[str, Any]:
    """The dotted settings ``method`` applies under ``recipe`` (before the protocol's method_settings and
    the user's --set); on ``dataset``, the official track adds what the registration's
    ``official_datasets`` gives that dataset (e.g. TOP-ReID's MSVR310 learning rate)."""
    if recipe not in RECIPES:
        raise UserError(f"--recipe {recipe!r}: expected one of {', '.join(RECIPES)}")
    entry = METHODS.get(method)
    settings = dict(entry.meta.get("defaults") or {})
    if recipe == "official":
        official = entry.meta.get("official")
        if official is None:
            with_official = sorted(e.name for e in METHODS if e.meta.get("official") is not None)
            raise UserError(
                f"method {method!r} has no published recipe of its own (it is a baseline: --recipe shared "
                f"is its only track); methods with an official recipe: {', '.join(with_official)}"
            )
        settings.update(official)
        settings.update((entry.meta.get("official_datasets") or {}).get(dataset, {}))
    return settings
