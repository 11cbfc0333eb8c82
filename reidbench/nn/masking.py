"""Masks for masked modeling: BEiT blockwise patch masks, BERT whole-word masks, patch targets.

Random draws come from the global torch RNG (seeded per run), so a run is reproducible. The batch-level
functions are data preparation in Python: ``torch.compile`` leaves them out of the graph.
"""

from __future__ import annotations

import math
import random

import torch


def block_mask(
    grid: tuple[int, int],
    num_mask: int,
    min_block: int = 16,
    rng: random.Random | None = None,
    min_aspect: float = 0.3,
) -> torch.Tensor:
    """BEiT's blockwise mask on a ``grid`` (rows, cols) of patches: rectangles of at least ``min_block``
    patches (clamped to ``num_mask``) with aspect ratio in [min_aspect, 1/min_aspect], added until
    ``num_mask`` patches are masked (or no block fits). Returns a flat bool mask of rows*cols."""
    rng = rng or random.Random()
    rows, cols = grid
    mask = torch.zeros(rows, cols, dtype=torch.bool)
    num_mask = min(num_mask, rows * cols)
    min_block = max(1, min(min_block, num_mask))
    log_ratio = (math.log(min_aspect), math.log(1 / min_aspect))
    count = 0
    while count < num_mask:
        room = num_mask - count
        delta = 0
        for _ in range(10):
            area = rng.uniform(min_block, room)
            aspect = math.exp(rng.uniform(*log_ratio))
            h = int(round(math.sqrt(area * aspect)))
            w = int(round(math.sqrt(area / aspect)))
            if 0 < h < rows and 0 < w < cols:  # strictly inside the grid, as BEiT
                top, left = rng.randint(0, rows - h), rng.randint(0, cols - w)
                block = mask[top : top + h, left : left + w]
                new = h * w - int(block.sum())
                if 0 < new <= room:
                    block.fill_(True)
                    delta = new
                    break
        if delta == 0:
            break
        count += delta
    return mask.flatten()


@torch.compiler.disable
def block_masks(batch: int, grid: tuple[int, int], ratio: float, min_block: int = 16) -> torch.Tensor:
    """``(batch, rows*cols)`` blockwise masks covering ``round(ratio * patches)`` patches each."""
    rng = random.Random(int(torch.randint(0, 2**62, ())))
    num = round(ratio * grid[0] * grid[1])
    if num == 0:
        return torch.zeros(batch, grid[0] * grid[1], dtype=torch.bool)
    return torch.stack([block_mask(grid, num, min_block, rng) for _ in range(batch)])


@torch.compiler.disable
def whole_word_mask(
    input_ids: torch.Tensor,
    word_ids: torch.Tensor,
    prob: float,
    mask_id: int,
    vocab_size: int,
    special_ids: frozenset[int] | set[int],
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT whole-word masking (as HF ``DataCollatorForWholeWordMask``): per caption, whole words are
    picked in random order until ``max(1, round(prob * tokens))`` tokens are covered; picked tokens become
    [MASK] (80%), a random token (10%) or stay (10%). ``word_ids`` (B, L): the word index of each token,
    -1 for none (special tokens, padding). Returns (masked ids, labels with -100 elsewhere), on the device
    of ``input_ids``; the draws come from the global CPU generator."""
    device = input_ids.device
    original = input_ids.cpu()
    ids = original.clone()
    labels = torch.full_like(ids, -100)
    if prob <= 0:
        return ids.to(device), labels.to(device)
    for row, (tokens, words) in enumerate(zip(original.tolist(), word_ids.tolist(), strict=True)):
        groups: dict[int, list[int]] = {}
        for pos, (token, word) in enumerate(zip(tokens, words, strict=True)):
            if word >= 0 and token not in special_ids:
                groups.setdefault(word, []).append(pos)
        if not groups:
            continue
        chosen = _pick_words(list(groups.values()), prob)
        pos = torch.tensor(chosen)
        labels[row, pos] = original[row, pos]
        draw = torch.rand(len(pos))
        ids[row, pos[draw < 0.8]] = mask_id
        rand = pos[(draw >= 0.8) & (draw < 0.9)]
        ids[row, rand] = torch.randint(0, vocab_size, (len(rand),), dtype=ids.dtype)
    return ids.to(device), labels.to(device)


def _pick_words(groups: list[list[int]], prob: float) -> list[int]:
    """Token positions of whole words (``groups``) taken in random order up to ``round(prob * tokens)``
    (at least 1); when every word is longer than that, the shortest one."""
    budget = max(1, round(prob * sum(len(g) for g in groups)))
    chosen: list[int] = []
    for k in torch.randperm(len(groups)).tolist():
        group = groups[k]
        if len(chosen) + len(group) > budget:
            continue
        chosen += group
        if len(chosen) >= budget:
            break
    return chosen or min(groups, key=len)


def patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    """``(B, C, H, W)`` -> ``(B, H/p * W/p, p*p*C)`` in row-major patch order (as the ViT patch grid)."""
    b, c, h, w = images.shape
    x = images.reshape(b, c, h // patch, patch, w // patch, patch)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(b, (h // patch) * (w // patch), patch * patch * c)


def normalised_patches(images: torch.Tensor, patch: int, eps: float = 1e-6) -> torch.Tensor:
    """Patch targets normalised per patch (zero mean, unit variance), as MAE's ``norm_pix_loss``."""
    x = patchify(images.float(), patch)
    return (x - x.mean(-1, keepdim=True)) / (x.var(-1, keepdim=True, unbiased=True) + eps).sqrt()
