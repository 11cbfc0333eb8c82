"""What evaluation reads: a query or gallery set as labels plus a source of un-augmented, normalised
batches (:class:`EvalSet`), made by :class:`reidbench.data.module.DataModule` and scored by
:mod:`reidbench.evaluation`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

Batch = dict[str, object]
# (batch size, modalities to zero-fill) -> batches in set order, each with an ``index`` tensor
BatchSource = Callable[[int, tuple[str, ...]], Iterator[Batch]]


@dataclass(frozen=True)
class EvalSet:
    """A query or gallery set: its modalities, labels (on ``device``) and un-augmented batches."""

    modalities: tuple[str, ...]
    pids: torch.Tensor
    camids: torch.Tensor
    sceneids: torch.Tensor
    batches: BatchSource
    device: torch.device

    def __len__(self) -> int:
        return len(self.pids)
