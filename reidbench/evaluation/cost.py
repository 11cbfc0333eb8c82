"""Model cost: parameter count and FLOPs counted by ``torch.utils.flop_counter`` (matmuls, convolutions,
attention; a multiply-add counts 2). PyTorch's fused ``nn.TransformerEncoderLayer`` inference fast path is
invisible to the counter, so it is switched off while counting."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_params(model: nn.Module) -> int:
    """Number of parameters (shared ones once)."""
    return sum(p.numel() for p in model.parameters())


def count_nonzero(params: list[torch.Tensor] | Iterator[torch.Tensor]) -> int:
    """Number of non-zero entries over ``params`` (e.g. ``model.parameters()``; a pruned weight is an
    exact zero)."""
    return int(sum(int(torch.count_nonzero(p)) for p in params))


@contextmanager
def _counting() -> Iterator[FlopCounterMode]:
    previous = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with FlopCounterMode(display=False) as counter:
            yield counter
    finally:
        torch.backends.mha.set_fastpath_enabled(previous)


def _batch_size(batch: dict) -> int:
    return len(batch["pid"])


@torch.no_grad()
def forward_gflops(model: nn.Module, batch: dict) -> float:
    """Inference GFLOPs per sample of ``model(batch)`` (evaluation mode; the mode is restored)."""
    was_training = model.training
    model.eval()
    try:
        with _counting() as counter:
            model(batch)
    finally:
        model.train(was_training)
    return counter.get_total_flops() / _batch_size(batch) / 1e9


def train_step_flops(step: Callable[[], torch.Tensor]) -> float:
    """FLOPs of one training step: ``step()`` runs forward + loss and returns the loss; backward is added."""
    with _counting() as counter:
        step().backward()
    return float(counter.get_total_flops())


@torch.no_grad()
def inference_throughput(
    model: nn.Module, batch: object, samples: int, repeats: int = 10, warmup: int = 3
) -> float:
    """Samples per second of ``model(batch)`` in evaluation mode: ``warmup`` untimed calls, then the median
    of ``repeats`` timed calls (CUDA synchronised); ``samples`` is the batch size. The mode is restored."""
    import statistics
    import time

    def sync() -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    was_training = model.training
    model.eval()
    try:
        for _ in range(warmup):
            model(batch)
        times = []
        for _ in range(repeats):
            sync()
            start = time.perf_counter()
            model(batch)
            sync()
            times.append(time.perf_counter() - start)
    finally:
        model.train(was_training)
    return samples / statistics.median(times)
