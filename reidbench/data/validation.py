"""A validation split carved from the training identities, for tuning without touching the test set.

A fraction of the training identities (chosen deterministically) leaves the training set and becomes a
query / gallery pair: one image per camera and identity is a query, the identity's other images are the
gallery. Only identities whose gallery spans at least two cameras qualify, so every query has a positive
from another camera (Market-style junk removes same-camera matches).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace

import numpy as np

from reidbench.data.types import Dataset, DatasetSplits, Sample
from reidbench.errors import UserError
from reidbench.spec import check_fraction

MIN_VALIDATION_IDS = 2  # a query needs a positive of its own identity and a negative of another one
MIN_TRAINING_IDS = 1


def validation_ids(num_ids: int, fraction: float, name: str, option: str = "--val-fraction") -> int:
    """How many of ``num_ids`` training identities a validation split of ``fraction`` takes: at least
    :data:`MIN_VALIDATION_IDS`, leaving at least :data:`MIN_TRAINING_IDS` for training, else UserError."""
    check_fraction(fraction, option)
    wanted = round(fraction * num_ids)
    if wanted < MIN_VALIDATION_IDS:
        raise UserError(
            f"{option} {fraction}: dataset {name!r} has {num_ids} training identities, so the validation "
            f"split would hold {wanted} (at least {MIN_VALIDATION_IDS} needed); use a larger fraction"
        )
    if num_ids - wanted < MIN_TRAINING_IDS:
        raise UserError(
            f"{option} {fraction}: dataset {name!r} has {num_ids} training identities and the validation "
            f"split would take all of them (none left to train on); use a smaller fraction"
        )
    return wanted


def validation_split(
    dataset: Dataset, fraction: float = 0.2, seed: int = 0, option: str = "--val-fraction"
) -> Dataset:
    """``dataset`` with ``fraction`` of its training identities moved into a validation query / gallery.

    The same (dataset, fraction, seed) always gives the same split; the test split is not used: query and
    gallery are a strict subset of the training identities, and at least one identity is left to train.
    """
    by_id: dict[int, list[Sample]] = defaultdict(list)
    for sample in dataset.splits.train:
        by_id[sample.pid].append(sample)
    ids = sorted(by_id)
    wanted = validation_ids(len(ids), fraction, dataset.info.name, option)
    eligible = [pid for pid in ids if _split_identity(by_id[pid]) is not None]
    if len(eligible) < wanted:
        raise UserError(
            f"{option} {fraction}: dataset {dataset.info.name!r}: a validation split of {fraction:.0%} "
            f"needs {wanted} training identities seen by two or more cameras with spare images, found "
            f"{len(eligible)}; use a smaller fraction"
        )
    chosen = set(np.random.default_rng(seed).choice(eligible, wanted, replace=False).tolist())
    train, query, gallery = [], [], []
    for sample in dataset.splits.train:
        if sample.pid not in chosen:
            train.append(sample)
    for pid in sorted(chosen):
        q, g = _split_identity(by_id[pid])
        query += q
        gallery += g
    remaining = len(ids) - len(chosen)
    info = replace(dataset.info, name=f"{dataset.info.name}:val", num_train_ids=remaining, same_set=False)
    return replace(dataset, info=info, splits=DatasetSplits(train=train, query=query, gallery=gallery))


def _split_identity(samples: list[Sample]) -> tuple[list[Sample], list[Sample]] | None:
    """(query, gallery) of one identity: the first image of each camera (by file name) is its query.

    None when the gallery would not span two cameras (some query would have no valid positive).
    """
    ordered = sorted(samples, key=lambda s: (s.camid, s.name))
    query, gallery, seen = [], [], set()
    for sample in ordered:
        (gallery if sample.camid in seen else query).append(sample)
        seen.add(sample.camid)
    if len({s.camid for s in gallery}) < 2:
        return None
    return query, gallery
