"""Global L1 unstructured pruning (GraFT's study): zero the smallest-magnitude weights of the backbones'
attention and MLP matrices, across all blocks at once, and keep them at zero while fine-tuning.

The matrices stay dense: parameter count, FLOPs and latency are unchanged, only the number of non-zero
weights falls. A pruned weight is exactly 0.0, so the mask is the set of zeros itself: it survives saving,
loading and resuming without a separate mask file (a trained weight that is exactly 0.0 counts as pruned).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from reidbench.prune.blocks import backbone_blocks


def prunable_weights(model: nn.Module) -> list[nn.Parameter]:
    """The weight matrices unstructured pruning ranks (biases are not pruned)."""
    return [linear.weight for view in backbone_blocks(model) for _, linear in view.weights()]


@torch.no_grad()
def prune_l1_unstructured(model: nn.Module, fraction: float) -> int:
    """Zero ``round(fraction * remaining)`` of the still non-zero prunable weights, smallest |w| first,
    ranked globally over every block; returns how many were zeroed."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
    params = prunable_weights(model)
    magnitude = torch.cat([p.detach().abs().flatten().float() for p in params])
    alive = magnitude != 0
    amount = round(fraction * int(alive.sum()))
    if amount == 0:
        return 0
    ranked = magnitude.masked_fill(~alive, float("inf"))
    keep = torch.ones_like(magnitude, dtype=torch.bool)
    keep[torch.topk(ranked, amount, largest=False).indices] = False
    for param, part in zip(params, keep.split([p.numel() for p in params]), strict=True):
        param.mul_(part.view_as(param).to(param.dtype))
    return amount


@contextmanager
def zeros_kept(model: nn.Module) -> Iterator[None]:
    """While inside, the gradients of pruned (zero) prunable weights are zeroed, so an optimiser that starts
    from a fresh state (SGD, Adam, AdamW, with or without weight decay) leaves them exactly at zero."""
    handles = []
    for param in prunable_weights(model):
        mask = (param.detach() != 0).to(param.dtype)
        handles.append(param.register_hook(lambda grad, mask=mask: grad * mask))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
