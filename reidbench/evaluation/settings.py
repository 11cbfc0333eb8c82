"""Evaluation settings beyond "all modalities in, all modalities out".

A setting says which modalities the query side and the gallery side see. Missing-modality settings
(named by what is missing, ``no_tir``, ``no_rgb_nir``; the same on both sides, as in DeMo / TOP-ReID
tables) and cross-modal settings (``rgb->nir+tir``: RGB-only queries against a NIR+TIR gallery).

Convention for an absent modality: its input is zero-filled after normalisation (a mid-grey image,
what DeMo does), unless the model sets ``drops_missing_modalities = True``, in which case the key is
left out of the batch and the model fuses what it gets.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from reidbench.errors import UserError


@dataclass(frozen=True)
class Setting:
    """Which modalities each side sees; ``name`` is the metric suffix (``mAP@<name>``)."""

    name: str
    query: tuple[str, ...]
    gallery: tuple[str, ...]


def missing_modality_settings(modalities: list[str]) -> list[Setting]:
    """Every non-empty proper subset of ``modalities`` on both sides (RGBNT201: 6 settings besides 'all')."""
    out = []
    for size in range(len(modalities) - 1, 0, -1):
        for kept in itertools.combinations(modalities, size):
            missing = [m for m in modalities if m not in kept]
            out.append(Setting("no_" + "_".join(missing), kept, kept))
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
