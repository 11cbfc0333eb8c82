"""Evaluation settings beyond "all modalities in, all modalities out".

A setting says which modalities the query side and the gallery side see. Missing-modality settings
(named by what is missing, ``no_tir``, ``no_rgb_nir``; the same on both sides, as in DeMo / TOP-ReID
tables) and cross-modal settings (``rgb->nir+tir``: RGB-only queries against a NIR+TIR gallery).

What an absent modality becomes is a convention (:mod:`reidbench.evaluation.missing`): zero-filled, or
left out of the batch for the model to drop or reconstruct. A missing-modality setting is evaluated under
each convention asked for; those other than the model's own carry it in their name (``no_tir:zero``).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from reidbench.errors import UserError
from reidbench.evaluation.missing import suffix


@dataclass(frozen=True)
class Setting:
    """Which modalities each side sees; ``name`` is the metric suffix (``mAP@<name>``)."""

    name: str
    query: tuple[str, ...]
    gallery: tuple[str, ...]
    convention: str | None = None  # missing-modality convention; None: the model's own way


def missing_modality_settings(modalities: list[str], conventions: list[str] | None = None) -> list[Setting]:
    """Every non-empty proper subset of ``modalities`` on both sides (RGBNT201: 6 settings besides 'all'),
    under each of ``conventions`` (the first is the model's own: plain names; None: the own one, unnamed)."""
    out = []
    own = conventions[0] if conventions else None
    for convention in conventions or [None]:
        for size in range(len(modalities) - 1, 0, -1):
            for kept in itertools.combinations(modalities, size):
                missing = [m for m in modalities if m not in kept]
                name = "no_" + "_".join(missing) + (suffix(convention, own) if convention else "")
                out.append(Setting(name, kept, kept, convention))
    return out


def cross_modal_settings(modalities: list[str], specs: list[str]) -> list[Setting]:
    """Parse ``q1+q2->g1`` specs; ``all`` means each single modality against all the others."""
    if specs == ["all"]:
        specs = [f"{m}->{'+'.join(x for x in modalities if x != m)}" for m in modalities]
    out = []
    for spec in specs:
        query, sep, gallery = spec.partition("->")
        q, g = tuple(query.split("+")), tuple(gallery.split("+"))
        bad = [m for m in (*q, *g) if m not in modalities]
        if not sep or bad or not all(q) or not all(g):
            raise UserError(
                f"eval.cross_modal entry {spec!r}: expected QUERY->GALLERY with modalities joined by '+' "
                f"from {modalities} (e.g. rgb->nir+tir)"
            )
        out.append(Setting(spec, q, g))
    return out
