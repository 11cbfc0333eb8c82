"""Cross-domain evaluation: the final model of a run scored on other datasets' query / gallery sets.

A target is read under the *source* protocol's image settings (size, normalisation, evaluation batch)
and scored with the *target's* junk rule, on the modalities it shares with the training modalities
(``RunSpec.test_on``); a modality the model was trained on that the target lacks is absent in the
method's missing-modality way (zero-filled, or left out of the batch for a model with
``drops_missing_modalities``), as in :mod:`reidbench.evaluation.settings`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace

import torch
from torch import nn

from reidbench.data.evalset import Batch, EvalSet
from reidbench.data.module import DataModule
from reidbench.data.text import CaptionTokenizer
from reidbench.data.types import Dataset
from reidbench.evaluation.features import evaluate
from reidbench.generalisation import target_key
from reidbench.protocol import EvalCfg, Protocol
from reidbench.spec import RunSpec


def target_eval_sets(
    dataset: Dataset,
    protocol: Protocol,
    modalities: Sequence[str],
    device: torch.device,
    tokenizer: CaptionTokenizer | None = None,
    fill_absent: bool = True,
    show_progress: bool = False,
) -> tuple[EvalSet, EvalSet]:
    """``dataset``'s query and gallery as EvalSets for a model trained under ``protocol``.

    The images are decoded at ``protocol``'s image size and normalised with its per-modality mean / std;
    only ``modalities`` (those of ``protocol.data.modalities`` the dataset has) are read. With
    ``fill_absent`` every batch also carries the training modalities the dataset lacks as zeros (a
    mid-grey image after normalisation); without, they are left out. The one place that builds a
    dataset's evaluation sets under another dataset's protocol (cross-domain runs, saved weights).
    """
    trained = list(protocol.data.modalities)
    kept = [m for m in trained if m in modalities]
    local = replace(protocol, data=replace(protocol.data, modalities=kept))
    data = DataModule(dataset, local, device, show_progress=show_progress, tokenizer=tokenizer, train=False)
    absent = [m for m in trained if m not in kept] if fill_absent else []
    return _with_absent(data.eval_set("query"), absent, data.size), _with_absent(
        data.eval_set("gallery"), absent, data.size
    )


def target_eval_cfg(dataset: Dataset, source: EvalCfg) -> EvalCfg:
    """The source protocol's evaluation settings with the target's junk rule and query = gallery fact."""
    return replace(source, junk=dataset.info.junk, same_set=dataset.info.same_set)


def _with_absent(data: EvalSet, absent: list[str], size: tuple[int, int]) -> EvalSet:
    """``data`` whose batches also hold zero images for the ``absent`` modalities."""
    if not absent:
        return data

    def batches(batch_size: int, drop: tuple[str, ...] = ()) -> Iterator[Batch]:
        for batch in data.batches(batch_size, drop):
            rows = len(batch["index"])
            for m in absent:
                batch[m] = torch.zeros((rows, 3, *size), device=data.device)
            yield batch

    return replace(data, batches=batches)


def evaluate_targets(
    model: nn.Module,
    spec: RunSpec,
    targets: dict[str, Dataset],
    device: torch.device,
    tokenizer: CaptionTokenizer | None = None,
    show_progress: bool = False,
) -> dict[str, float]:
    """Every metric of ``model`` on each of ``spec.test_on``, named ``<metric>@to_<target>``."""
    fill = not getattr(model, "drops_missing_modalities", False)
    metrics: dict[str, float] = {}
    for name, modalities in spec.test_on.items():
        dataset = targets[name]
        query, gallery = target_eval_sets(
            dataset, spec.protocol, modalities, device, tokenizer, fill, show_progress
        )
        found = evaluate(model, query, gallery, target_eval_cfg(dataset, spec.protocol.eval))
        metrics.update({target_key(key, name): value for key, value in found.items()})
    return metrics
