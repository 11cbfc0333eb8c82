"""Batched training augmentation on the device, synchronised across the modalities of a sample.

Input and output are float batches ``(B, M, 3, H, W)``. One random draw per sample is applied to all
of its M modalities (the peers draw per modality, which misaligns RGB, NIR and TIR).
"""

from __future__ import annotations

import torch

from reidbench.protocol import AugmentCfg


def synced_augment(x: torch.Tensor, cfg: AugmentCfg, gen: torch.Generator) -> torch.Tensor:
    """Flip, pad + random crop and random erasing with one draw per sample for all modalities."""
    b, _, _, h, w = x.shape
    dev = x.device

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=gen, device=gen.device).to(dev)

    if cfg.flip > 0:
        flip = rand(b) < cfg.flip
        x = torch.where(flip[:, None, None, None, None], x.flip(-1), x)
    if cfg.pad > 0:
        p = cfg.pad
        padded = torch.nn.functional.pad(x, (p, p, p, p))
        oy = (rand(b) * (2 * p + 1)).long().clamp_max(2 * p)
        ox = (rand(b) * (2 * p + 1)).long().clamp_max(2 * p)
        rows = (oy[:, None] + torch.arange(h, device=dev))[:, None, None, :, None].expand(b, *x.shape[1:4], w + 2 * p)
        padded = padded.gather(3, rows)
        cols = (ox[:, None] + torch.arange(w, device=dev))[:, None, None, None, :].expand(*x.shape)
        x = padded.gather(4, cols)
    if cfg.erase > 0:
        area = rand(b) * (cfg.erase_scale[1] - cfg.erase_scale[0]) + cfg.erase_scale[0]
        log_r = torch.log(torch.tensor(cfg.erase_ratio, device=dev))
        ratio = torch.exp(rand(b) * (log_r[1] - log_r[0]) + log_r[0])
        eh = (torch.sqrt(area * h * w * ratio)).round().clamp(1, h)
        ew = (torch.sqrt(area * h * w / ratio)).round().clamp(1, w)
        y0 = (rand(b) * (h - eh + 1)).floor()
        x0 = (rand(b) * (w - ew + 1)).floor()
        ys = torch.arange(h, device=dev)[None, :]
        xs = torch.arange(w, device=dev)[None, :]
        in_y = (ys >= y0[:, None]) & (ys < (y0 + eh)[:, None])
        in_x = (xs >= x0[:, None]) & (xs < (x0 + ew)[:, None])
        erase = (rand(b) < cfg.erase)[:, None, None] & in_y[:, :, None] & in_x[:, None, :]
        x = x.masked_fill(erase[:, None, None], 0.0)  # 0 after normalisation = the mean value
    return x
