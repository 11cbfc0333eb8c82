"""Training augmentation, synchronised across the modalities of a sample, on uint8 images.

One random draw per sample (:func:`draw_params`) is applied to every modality of that sample, so RGB, NIR
and TIR stay aligned (the peers draw per modality). The ops follow the TransReID recipe: horizontal flip,
zero-mean padding + random crop back to the input size, random erasing. Padding and erased pixels take
the per-channel mean, i.e. (close to) 0 after normalisation.

Two executors apply the same parameters with identical results:

* :func:`augment_numpy` for images in host memory (a memory-mapped cache): one slice copy per sample
  straight from the cache into the batch, no float work, no per-pixel index arithmetic;
* :func:`augment_torch` for images resident on the GPU: one batched gather for all samples.

benchmarks/perf/loader_speed.py measures them against kornia's AugmentationSequential (which is slower
here) and against a conventional per-item PIL + torchvision DataLoader.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np
import torch

from reidbench.protocol import AugmentCfg


@dataclass
class AugmentParams:
    """Per-sample random draws: flip, crop offset (source = output + (dy, dx)) and erase rectangle."""

    flip: np.ndarray  # bool (B,)
    dy: np.ndarray  # int (B,), in [-pad, pad]
    dx: np.ndarray
    erase: np.ndarray  # bool (B,)
    ey: np.ndarray  # erase rectangle: top, left, height, width (output coordinates)
    ex: np.ndarray
    eh: np.ndarray
    ew: np.ndarray

    def __len__(self) -> int:
        return len(self.flip)

    def __getitem__(self, part: slice) -> AugmentParams:
        return AugmentParams(**{f.name: getattr(self, f.name)[part] for f in fields(self)})


def draw_params(n: int, size: tuple[int, int], cfg: AugmentCfg, rng: np.random.Generator) -> AugmentParams:
    """``n`` independent draws for images of ``size`` = (height, width); the same rng stream for any cfg."""
    h, w = size
    flip = rng.random(n) < cfg.flip
    dy = rng.integers(-cfg.pad, cfg.pad + 1, n)
    dx = rng.integers(-cfg.pad, cfg.pad + 1, n)
    area = rng.uniform(cfg.erase_scale[0], cfg.erase_scale[1], n) * h * w
    ratio = np.exp(rng.uniform(math.log(cfg.erase_ratio[0]), math.log(cfg.erase_ratio[1]), n))
    eh = np.clip(np.round(np.sqrt(area * ratio)), 1, h).astype(np.int64)
    ew = np.clip(np.round(np.sqrt(area / ratio)), 1, w).astype(np.int64)
    ey = np.floor(rng.random(n) * (h - eh + 1)).astype(np.int64)
    ex = np.floor(rng.random(n) * (w - ew + 1)).astype(np.int64)
    erase = rng.random(n) < cfg.erase
    return AugmentParams(flip, dy, dx, erase, ey, ex, eh, ew)


def augment_numpy(
    images: np.ndarray, index: np.ndarray, p: AugmentParams, fill: np.ndarray, out: np.ndarray | None = None
) -> np.ndarray:
    """``images[index]`` (uint8 ``(N, 3, H, W)``) flipped, cropped and erased per ``p`` into ``out``
    ``(B, 3, H, W)``.

    ``fill``: uint8 ``(3, 1, 1)`` value of padding and erased pixels.
    """
    _, c, h, w = images.shape
    out = np.empty((len(index), c, h, w), np.uint8) if out is None else out
    for b, i in enumerate(index.tolist()):
        src = images[i, :, :, ::-1] if p.flip[b] else images[i]
        dy, dx = int(p.dy[b]), int(p.dx[b])
        y0, y1, x0, x1 = max(0, -dy), min(h, h - dy), max(0, -dx), min(w, w - dx)
        o = out[b]
        o[:, y0:y1, x0:x1] = src[:, y0 + dy : y1 + dy, x0 + dx : x1 + dx]
        o[:, :y0] = fill
        o[:, y1:] = fill
        o[:, y0:y1, :x0] = fill
        o[:, y0:y1, x1:] = fill
        if p.erase[b]:
            o[:, p.ey[b] : p.ey[b] + p.eh[b], p.ex[b] : p.ex[b] + p.ew[b]] = fill
    return out


def torch_maps(
    p: AugmentParams, size: tuple[int, int], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """For :func:`augment_torch`: the flat source pixel of every output pixel ``(B, 1, H*W)`` and the mask of
    output pixels that keep their source value ``(B, 1, H, W)`` (the others are padding or erased)."""
    h, w = size

    def col(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(a).to(device, non_blocking=True)[:, None]

    ys = torch.arange(h, device=device)[None] + col(p.dy)  # (B, H) source rows
    xs = torch.arange(w, device=device)[None] + col(p.dx)  # (B, W) source columns in the flipped frame
    valid = ((ys >= 0) & (ys < h))[:, :, None] & ((xs >= 0) & (xs < w))[:, None, :]
    xs = torch.where(col(p.flip), w - 1 - xs, xs)
    flat = ys.clamp(0, h - 1)[:, :, None] * w + xs.clamp(0, w - 1)[:, None, :]
    oy, ox = torch.arange(h, device=device)[None], torch.arange(w, device=device)[None]
    in_y = (oy >= col(p.ey)) & (oy < col(p.ey + p.eh))
    in_x = (ox >= col(p.ex)) & (ox < col(p.ex + p.ew))
    erased = col(p.erase)[:, :, None] & in_y[:, :, None] & in_x[:, None, :]
    return flat.view(len(p), 1, h * w), (valid & ~erased)[:, None]


def augment_torch(
    images: torch.Tensor,
    index: torch.Tensor,
    p: AugmentParams,
    fill: torch.Tensor,
    maps: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """The same as :func:`augment_numpy` as one batched gather on ``images``' device;
    ``fill``: uint8 ``(3,)``.

    ``maps``: :func:`torch_maps` of ``p``, computed once and shared by the modalities of a batch.
    """
    _, c, h, w = images.shape
    flat, keep = maps if maps is not None else torch_maps(p, (h, w), images.device)
    b = len(index)
    src = images.index_select(0, index).view(b, c, h * w)
    out = src.gather(2, flat.expand(b, c, h * w)).view(b, c, h, w)
    return torch.where(keep, out, fill.view(1, c, 1, 1).to(images.device))


def synced_augment(x: torch.Tensor, cfg: AugmentCfg, rng: np.random.Generator, fill: int = 0) -> torch.Tensor:
    """Augment a whole batch ``(B, M, C, H, W)``: one draw per sample, applied to all M modalities."""
    b, m, c, h, w = x.shape
    p = draw_params(b, (h, w), cfg, rng)
    index = torch.arange(b, device=x.device)
    value = torch.full((c,), fill, dtype=x.dtype)
    return torch.stack([augment_torch(x[:, j], index, p, value) for j in range(m)], dim=1)
