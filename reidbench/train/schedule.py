"""Learning-rate schedules as official code computes them.

Recipe keys (``schedule.*``; a stage may set its own ``schedule`` kind, ``warmup_epochs``, ``warmup_steps``):

* ``step_per``: ``step`` (default): ``t`` counts the stage's optimiser steps and the lr is set before every
  step (``torch.optim.lr_scheduler`` / Hugging Face schedules stepped per batch); ``epoch``: ``t`` counts
  epochs, ``first_epoch`` + the epoch's index in the stage, and the lr is constant within an epoch (timm
  schedulers stepped with ``scheduler.step(epoch)``; the TransReID family counts epochs from 1).
* ``total`` ``T``: the stage's steps (epochs x steps per epoch) or epochs. Warmup ``W``: ``warmup_steps``
  when set (step_per=step only), else ``warmup_epochs`` (x steps per epoch, truncated, for step_per=step).
* ``warmup_factor`` ``a``, ``min_lr_factor`` ``m``, ``bounds``: with ``per_group`` the warmup start is
  ``a x`` each group's lr and the cosine floor ``m x`` it; with ``shared`` both are ``a x`` / ``m x`` the
  stage lr for every group (timm's scalar ``warmup_lr_init`` / ``lr_min``: a group above the stage lr warms
  up from below, one under it "warms down").
* ``kind``, for a group of lr ``b``, start ``s``, floor ``f``:

  - every kind, ``t < W``: ``s + (b - s) t / W``;
  - ``constant``: ``b``;
  - ``cosine``: ``f + (b - f) (1 + cos(pi p)) / 2`` with ``p = (t - W) / (T - W)`` (``cosine:
    after_warmup``, Hugging Face ``get_cosine_schedule_with_warmup``) or ``p = t / T`` (``cosine: whole``,
    timm's ``warmup_prefix=False``), ``p`` at most 1;
  - ``warmup_sqrt`` (GraFT's ``WarmupSqrtDecayWithPercentageCoolDown``): ``b sqrt(W / t)`` until the
    cool-down of ``C = int(0.1 T)`` steps starting at ``T - C``, then ``b sqrt(W / (T - C)) (1 - (t - (T -
    C)) / C)``: a linear ramp to 0 from the value frozen at the cool-down start (W under 1 counts as 1).
* ``noise_pct`` ``q > 0`` (timm's ``_add_noise``, as in DeMo): for ``t < T`` every group's lr is multiplied
  by ``1 + n``; ``n`` is ``torch.randn(1)`` from a ``torch.Generator`` seeded ``noise_seed + t``, redrawn
  until ``|n| < q`` (the noise std setting is unused there, so none here).

The shared track: ``step_per: step``, ``bounds: per_group``, ``cosine: after_warmup``, warmup from 0.01 x
lr over ``warmup_epochs``, floor 0, no noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

from reidbench.protocol import ScheduleCfg, StageCfg


@dataclass(frozen=True)
class Schedule:
    """One stage's schedule with its lengths resolved in units of ``t``."""

    kind: str
    total: int
    warmup: float
    cfg: ScheduleCfg

    @property
    def per_epoch(self) -> bool:
        return self.cfg.step_per == "epoch"

    def t(self, step: int, epoch: int) -> int:
        """``t`` at the stage's ``step``-th optimiser step, in its ``epoch``-th epoch (both from 0)."""
        return self.cfg.first_epoch + epoch if self.per_epoch else step

    def lr(self, t: int, base: float, stage_lr: float) -> float:
        """The learning rate at ``t`` of a group whose lr is ``base`` in a stage of lr ``stage_lr``."""
        cfg = self.cfg
        if cfg.bounds == "shared":
            value = _shared(self, t, base, cfg.warmup_factor * stage_lr, cfg.min_lr_factor * stage_lr)
        else:
            value = base * _factor(self, t)
        if cfg.noise_pct > 0 and 0 <= t < self.total:
            noise = lr_noise(cfg.noise_seed + t, cfg.noise_pct)
            value = value + value * noise
        return value


def resolve_schedule(cfg: ScheduleCfg, stage: StageCfg, steps_per_epoch: int) -> Schedule:
    """The schedule of ``stage`` (resolved by Protocol.resolved_stages) at ``steps_per_epoch``."""
    if cfg.step_per == "epoch":
        return Schedule(stage.schedule, stage.epochs, float(stage.warmup_epochs), cfg)
    warmup = stage.warmup_steps
    if warmup is None:
        warmup = int(stage.warmup_epochs * steps_per_epoch)
    return Schedule(stage.schedule, stage.epochs * steps_per_epoch, float(warmup), cfg)


def _factor(s: Schedule, t: int) -> float:
    """The lr multiplier at ``t`` with per-group bounds."""
    a, m = s.cfg.warmup_factor, s.cfg.min_lr_factor
    if t < s.warmup:
        return a + (1 - a) * t / s.warmup
    if s.kind == "constant":
        return 1.0
    if s.kind == "warmup_sqrt":
        return _sqrt_decay(s, t)
    return m + (1 - m) * 0.5 * (1 + math.cos(math.pi * _progress(s, t)))


def _shared(s: Schedule, t: int, base: float, start: float, floor: float) -> float:
    """The lr at ``t`` with one warmup start and floor for every group (timm's operation order)."""
    if t < s.warmup:
        return start + t * ((base - start) / s.warmup)
    if s.kind == "constant":
        return base
    if s.kind == "warmup_sqrt":
        return base * _sqrt_decay(s, t)
    return floor + 0.5 * (base - floor) * (1 + math.cos(math.pi * _progress(s, t)))


def _progress(s: Schedule, t: int) -> float:
    if s.cfg.cosine == "whole":
        return min(t / max(s.total, 1), 1.0)
    span = s.total - s.warmup
    return min((t - s.warmup) / span, 1.0) if span > 0 else 1.0


def _sqrt_decay(s: Schedule, t: int) -> float:
    warmup = max(s.warmup, 1.0)
    cool = int(0.1 * s.total)
    start = s.total - cool
    if t < start or cool == 0:
        return math.sqrt(warmup / max(t, 1))
    return math.sqrt(warmup / start) * (1.0 - (t - start) / cool)


@lru_cache(maxsize=4096)
def lr_noise(seed: int, pct: float) -> float:
    """timm's normal lr noise: ``torch.randn(1)`` from a generator seeded ``seed``, redrawn until
    ``|n| < pct``."""
    import torch

    generator = torch.Generator()
    generator.manual_seed(seed)
    while True:
        noise = torch.randn(1, generator=generator).item()
        if abs(noise) < pct:
            return noise
