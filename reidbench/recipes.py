"""Recipe tracks: how a method is trained, separate from what it is.

``shared`` (the default, the leaderboard's main table): every method trains with the dataset protocol's
recipe (its one stage, optimiser, schedule, epochs, augmentation and loss: ID CE + batch-hard triplet on the
retrieval embedding); the method contributes its architecture and the settings the architecture needs
(registration ``defaults``, e.g. MMET's captions). ``official``: the method's published recipe on top
(registration ``official``), as close to the official code as the data allows; what still differs is listed
in the registration's ``deviations`` (``reidbench list methods --verbose``). Torch-free.
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


def recipe_settings(method: str, recipe: str) -> dict[str, Any]:
    """The dotted settings ``method`` applies under ``recipe`` (before the protocol's method_settings and
    the user's --set)."""
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
    return settings


def deviations(method: str) -> list[str]:
    """What ``method``'s official track still does differently from the official code."""
    return list(METHODS.get(method).meta.get("deviations") or [])
