"""Missing-modality conventions: what a model is given in place of a modality that is absent at test time.

The field uses three, and their numbers are not comparable (reference notes, sota-methods.md):

* ``zero``: the modality's input is zero-filled after normalisation, a mid-grey image (DeMo); every model
  accepts it, since the batch looks like a full one;
* ``drop``: the modality is left out of the batch and the model fuses what is present (its part of the
  descriptor dropped or its weight re-spread: MDReID, GraFT with ``drop_missing``);
* ``reconstruct``: the modality is left out of the batch and the model rebuilds it from the present ones
  (TOP-ReID's CRM).

A method declares the conventions it supports at registration (``METHODS.add(..., missing=("reconstruct",
"zero"))``, the first being its own; default ``("zero",)``). A model may name its own at run time with a
``missing_convention`` attribute (``drops_missing_modalities = True`` means ``drop``), for conventions that
depend on a knob. The protocol's ``eval.missing_conventions`` picks which to evaluate (``[]``: the own one,
``[all]``: every supported one); metrics under the own convention keep their plain names (``mAP@no_tir``),
the others carry it (``mAP@no_tir:zero``), and the run is tagged ``missing_convention=<own>``.
"""

from __future__ import annotations

from typing import Any

from reidbench.errors import UserError
from reidbench.protocol import MISSING_CONVENTIONS

CONVENTIONS = MISSING_CONVENTIONS  # name -> what the model is given, in a table caption's words
OMITTED = ("drop", "reconstruct")  # conventions that leave the modality's key out of the batch
DEFAULT_DECLARED = ("zero",)
SEPARATOR = ":"  # mAP@no_tir:zero


def declared_conventions(method: str) -> tuple[str, ...]:
    """The conventions method ``method`` registered (its own first), ``("zero",)`` when it declared none."""
    from reidbench.registry import METHODS

    return tuple(METHODS.get(method).meta.get("missing") or DEFAULT_DECLARED)


def model_conventions(model: Any, declared: tuple[str, ...] = DEFAULT_DECLARED) -> list[str]:
    """The conventions ``model`` supports, its own first: its ``missing_convention`` attribute, else
    ``drop`` for a model with ``drops_missing_modalities``, else the first declared; ``zero`` always."""
    own = getattr(model, "missing_convention", None)
    if own is None:
        own = "drop" if getattr(model, "drops_missing_modalities", False) else declared[0]
    return list(dict.fromkeys([own, *declared, "zero"]))


def resolve_conventions(requested: list[str], supported: list[str], where: str = "") -> list[str]:
    """The conventions to evaluate: ``requested`` (``[]``: the own one, ``["all"]``: every supported one),
    each checked to be supported (a UserError naming them otherwise)."""
    if not requested:
        return supported[:1]
    if list(requested) == ["all"]:
        return list(supported)
    bad = [c for c in requested if c not in supported]
    if bad:
        raise UserError(
            f"eval.missing_conventions={list(requested)}: {where or 'this method'} supports "
            f"{', '.join(supported)} (its own first), not {', '.join(bad)}; pick from those or [all]"
        )
    return list(dict.fromkeys(requested))


def suffix(convention: str, own: str) -> str:
    """The metric-name suffix of ``convention``: none for the model's own convention."""
    return "" if convention == own else f"{SEPARATOR}{convention}"


def split_setting(setting: str) -> tuple[str, str]:
    """``no_tir:zero`` -> (``no_tir``, ``zero``); ``no_tir`` -> (``no_tir``, ``""``: the run's own)."""
    base, _, convention = setting.partition(SEPARATOR)
    return base, convention
