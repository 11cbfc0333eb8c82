"""Structured pruning: attention heads and MLP hidden channels physically removed from the backbones.

A head's importance is the L1 norm of its rows in the query / key / value projections plus its columns in
the output projection; a channel's is the L1 norm of its ``fc1`` row (and bias) plus its ``fc2`` column
(GraFT's first pruning version ranked MLP neurons this way). Heads and channels are ranked globally over
all blocks; every block keeps at least one of each. The matrices shrink and the head count is updated, so
parameters, FLOPs and latency fall together. :func:`structure` / :func:`apply_structure` record and rebuild
the shapes, which is how a pruned model's saved weights load into a freshly built model.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from reidbench.errors import UserError
from reidbench.prune.blocks import BlockView, backbone_blocks


@dataclass(frozen=True)
class StructuredStep:
    """What one structured round removed."""

    heads: int
    channels: int


def head_scores(view: BlockView) -> torch.Tensor:
    """``(heads,)`` L1 importance of each attention head of ``view``."""
    heads, dim = view.num_heads, view.head_dim
    score = torch.zeros(heads)
    for linear, groups in view.inputs:
        rows = linear.weight.detach().abs().view(groups, heads, dim, -1).sum(dim=(0, 2, 3))
        score += rows.float().cpu()
        if linear.bias is not None:
            score += linear.bias.detach().abs().view(groups, heads, dim).sum(dim=(0, 2)).float().cpu()
    score += view.output.weight.detach().abs().view(-1, heads, dim).sum(dim=(0, 2)).float().cpu()
    return score


def channel_scores(view: BlockView) -> torch.Tensor:
    """``(hidden,)`` L1 importance of each MLP hidden channel of ``view``."""
    score = view.fc1.weight.detach().abs().sum(dim=1) + view.fc2.weight.detach().abs().sum(dim=0)
    if view.fc1.bias is not None:
        score = score + view.fc1.bias.detach().abs()
    return score.float().cpu()


def _lowest(scores: list[torch.Tensor], amount: int) -> list[list[int]]:
    """Per block, the indices to keep after removing the ``amount`` lowest scores overall (>= 1 kept each)."""
    order = sorted(
        ((float(s), block, i) for block, values in enumerate(scores) for i, s in enumerate(values)),
        key=lambda t: (t[0], t[1], t[2]),
    )
    left = [len(values) for values in scores]
    removed: set[tuple[int, int]] = set()
    for _, block, index in order:
        if len(removed) == amount:
            break
        if left[block] > 1:
            removed.add((block, index))
            left[block] -= 1
    return [
        [i for i in range(len(values)) if (block, i) not in removed] for block, values in enumerate(scores)
    ]


def _take(linear: nn.Linear, index: torch.Tensor, dim: int) -> None:
    """Keep ``index`` along ``dim`` of ``linear``'s weight (0: output rows, also the bias; 1: input cols)."""
    weight = linear.weight.detach().index_select(dim, index.to(linear.weight.device)).clone()
    linear.weight = nn.Parameter(weight, requires_grad=linear.weight.requires_grad)
    if dim == 0:
        if linear.bias is not None:
            bias = linear.bias.detach().index_select(0, index.to(linear.bias.device)).clone()
            linear.bias = nn.Parameter(bias, requires_grad=linear.bias.requires_grad)
        linear.out_features = weight.shape[0]
    else:
        linear.in_features = weight.shape[1]


def keep_heads(view: BlockView, keep: list[int]) -> None:
    """Shrink ``view``'s attention to the heads ``keep`` (in that order)."""
    heads, dim = view.num_heads, view.head_dim
    per_head = torch.arange(heads * dim).view(heads, dim)[torch.tensor(keep)].flatten()
    for linear, groups in view.inputs:
        rows = torch.cat([per_head + g * heads * dim for g in range(groups)])
        _take(linear, rows, 0)
    _take(view.output, per_head, 1)
    view.set_num_heads(len(keep))


def keep_channels(view: BlockView, keep: list[int]) -> None:
    """Shrink ``view``'s MLP to the hidden channels ``keep``."""
    index = torch.tensor(keep)
    _take(view.fc1, index, 0)
    _take(view.fc2, index, 1)


@torch.no_grad()
def prune_structured(model: nn.Module, fraction: float) -> StructuredStep:
    """Remove ``round(fraction * remaining)`` heads and as many of the MLP channels, lowest L1 first."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
    views = backbone_blocks(model)
    before = [(v.num_heads, v.hidden) for v in views]
    heads = _lowest([head_scores(v) for v in views], round(fraction * sum(h for h, _ in before)))
    channels = _lowest([channel_scores(v) for v in views], round(fraction * sum(c for _, c in before)))
    for view, keep_h, keep_c in zip(views, heads, channels, strict=True):
        keep_heads(view, keep_h)
        keep_channels(view, keep_c)
    return StructuredStep(
        heads=sum(h for h, _ in before) - sum(map(len, heads)),
        channels=sum(c for _, c in before) - sum(map(len, channels)),
    )


def structure(model: nn.Module) -> dict[str, list[int]]:
    """The backbones' shapes: heads and MLP hidden channels per block, in block order."""
    views = backbone_blocks(model)
    return {"heads": [v.num_heads for v in views], "hidden": [v.hidden for v in views]}


@torch.no_grad()
def apply_structure(model: nn.Module, shapes: dict[str, list[int]]) -> None:
    """Shrink a freshly built ``model`` to ``shapes`` (from :func:`structure`) so pruned weights load."""
    views = backbone_blocks(model)
    heads, hidden = list(shapes.get("heads", [])), list(shapes.get("hidden", []))
    if len(heads) != len(views) or len(hidden) != len(views):
        raise UserError(
            f"the saved pruned structure has {len(heads)} blocks, the model {len(views)}: the weights were "
            "pruned from a different architecture"
        )
    for view, h, c in zip(views, heads, hidden, strict=True):
        if not (1 <= h <= view.num_heads and 1 <= c <= view.hidden):
            raise UserError(f"block {view.name}: saved {h} heads / {c} channels do not fit the model")
        keep_heads(view, list(range(h)))
        keep_channels(view, list(range(c)))
