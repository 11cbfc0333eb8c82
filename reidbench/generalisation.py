"""Train on one dataset (or several merged), test on others: names and checks that need no torch.

* Target metrics: a run trained on ``synthetic`` and tested on ``synthetic_shift`` logs the in-domain
  ``mAP`` and ``mAP@to_synthetic_shift`` (every metric of the evaluation, suffixed ``@to_<target>``).
* Merged sources: ``rgbnt100+msvr310`` names one training set, the union of the sources (identity and
  camera ids offset per source, :mod:`reidbench.data.merge`); its protocol is the first source's.
* Modalities: a target is scored on the modalities it shares with the model's training modalities;
  sharing none is a UserError before anything runs.
"""

from __future__ import annotations

from collections.abc import Sequence

from reidbench.errors import UserError

TARGET_PREFIX = "to_"
MERGE_SEP = "+"


def target_key(metric: str, target: str) -> str:
    """``mAP`` on target ``rgbn300`` -> ``mAP@to_rgbn300`` (``mAP@no_tir`` -> ``mAP@no_tir@to_rgbn300``)."""
    return f"{metric}@{TARGET_PREFIX}{target}"


def split_target(key: str) -> tuple[str, str] | None:
    """``mAP@to_rgbn300`` -> ``("mAP", "rgbn300")``; None for a metric that is not a target metric."""
    metric, sep, last = key.rpartition("@")
    if not sep or not last.startswith(TARGET_PREFIX):
        return None
    return metric, last.removeprefix(TARGET_PREFIX)


def is_target_metric(key: str) -> bool:
    """Whether ``key`` is a metric measured on a target dataset (``...@to_<target>``)."""
    return split_target(key) is not None


def merged_name(sources: Sequence[str]) -> str:
    """The dataset name of several sources trained on together: ``rgbnt100+msvr310``."""
    names = list(dict.fromkeys(sources))
    if len(names) != len(sources):
        raise UserError(f"--merge-sources: a dataset is named twice in {list(sources)}; name each once")
    return MERGE_SEP.join(names)


def source_names(dataset: str) -> list[str]:
    """The sources of a dataset name: ``rgbnt100+msvr310`` -> both, ``rgbnt100`` -> itself. A UserError for
    an empty source (``rgbnt100+``) or one named twice (its identities would be counted twice)."""
    names = dataset.split(MERGE_SEP)
    if len(names) > 1:
        if not all(name.strip() for name in names):
            raise UserError(f"--dataset {dataset!r}: an empty source name; merge as NAME{MERGE_SEP}NAME")
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise UserError(
                f"--dataset {dataset!r}: {', '.join(repeated)} merged with itself; name each source once"
            )
    return names


def common_modalities(trained: Sequence[str], target: str, target_modalities: Sequence[str]) -> list[str]:
    """The modalities ``target`` is scored on: those of ``trained`` it has, in training order.

    A UserError naming both modality sets when they share none (the model could not embed a single
    target sample).
    """
    common = [m for m in trained if m in target_modalities]
    if not common:
        raise UserError(
            f"--test-on {target}: the model is trained on {'+'.join(trained)} but {target!r} has "
            f"{'+'.join(target_modalities)}; they share no modality, so the model cannot embed its images. "
            f"Choose a target with one of {', '.join(trained)}, or train on one it has (data.modalities)"
        )
    return common
