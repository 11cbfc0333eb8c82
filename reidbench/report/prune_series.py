"""Pruning studies as series a reader can tell apart (torch- and plotting-free).

Each round of ``reidbench prune`` is its own ablation point (tag ``value`` = the round). Two studies of one
base that differ in what they do per round (``--fraction``, the fine-tuning) share round 0, the trained
base run, and differ from round 1 on. So a study's variant is read across all its pruned rounds (not round
by round, where a round only one study reached would lose its label), and the shared round 0 says whose
base it is.
"""

from __future__ import annotations

import pandas as pd

PRUNE_PREFIX = "prune_"  # ablation tag of a pruning study: prune_<schedule>
PRUNED_ROUNDS = "pruned rounds"  # the family value standing for every round after 0
STUDY = ["method", "dataset", "recipe", "ablation", "partial"]


def pruned_rounds(runs: pd.DataFrame) -> pd.Series:
    """True for the runs of a pruning study after round 0 (its default)."""
    return runs["ablation"].str.startswith(PRUNE_PREFIX) & (runs["value"] != runs["axis_default"])


def variant_families(runs: pd.DataFrame, family: list[str]) -> pd.DataFrame:
    """``runs[family]`` with every pruned round of a study in one family (its ``value`` replaced), so the
    params that set two studies apart name both at every round."""
    keys = runs[family].copy()
    if "value" in keys:
        keys.loc[pruned_rounds(runs), "value"] = PRUNED_ROUNDS
    return keys


def shared_base_variants(runs: pd.DataFrame) -> pd.Series:
    """The runs' ``variant`` with the round 0 of pruning studies that differ later labelled as their common
    base: ``unpruned, shared by pruned per round 0.3 / pruned per round 0.5``."""
    variants = runs["variant"].copy()
    studies = runs[runs["ablation"].str.startswith(PRUNE_PREFIX)]
    for _, study in studies.groupby(STUDY, sort=False):
        later = study.loc[pruned_rounds(study), "variant"]
        named = sorted(set(later) - {""})
        if len(named) < 2:
            continue
        base = study.index[~pruned_rounds(study) & (study["variant"] == "")]
        variants.loc[base] = f"unpruned, shared by {_together(named)}"
    return variants


def _together(variants: list[str]) -> str:
    """``pruned per round 0.3 / 0.5`` when the variants differ only in their last word, else each in full."""
    heads = {v.rsplit(" ", 1)[0] for v in variants}
    if len(heads) == 1 and all(" " in v for v in variants):
        return f"{heads.pop()} {' / '.join(v.rsplit(' ', 1)[1] for v in variants)}"
    return " / ".join(variants)
