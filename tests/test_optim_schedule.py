"""The recipe machinery (reidbench.train.optim / .schedule): parameter-group rules and schedules checked
against plainly written formulas of the official code (timm's CosineLRScheduler as TOP-ReID / DeMo step
it, Hugging Face's cosine with warmup, GraFT's WarmupSqrtDecayWithPercentageCoolDown)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from reidbench.errors import UserError
from reidbench.protocol import build_protocol
from reidbench.train.engine import StageLoop
from reidbench.train.optim import build_optimizer, resolve_groups
from reidbench.train.schedule import resolve_schedule
from tests.conftest import TINY


class Toy(nn.Module):
    """backbone (Linear + LayerNorm) and head (Linear + BatchNorm); 8 tensors, 4 of them biases."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4))
        self.head = nn.Sequential(nn.Linear(4, 2), nn.BatchNorm1d(2))


def groups_of(overrides: list[str]) -> list:
    protocol = build_protocol("synthetic", [*TINY, *overrides])
    return resolve_groups(Toy(), protocol.optim, protocol.resolved_stages()[0])


def summary(groups: list) -> list[tuple[float, float, int]]:
    return sorted((g.lr, g.weight_decay, len(g.params)) for g in groups)


def test_shared_rule_exempts_one_dimensional_tensors():
    groups = groups_of(["optim.lr=0.1", "optim.weight_decay=0.05"])
    assert summary(groups) == [(0.1, 0.0, 6), (0.1, 0.05, 2)]  # 2 weight matrices decay


def test_every_tensor_decays_when_no_decay_is_empty():
    assert summary(groups_of(["optim.lr=0.1", "optim.weight_decay=0.05", "optim.no_decay=[]"])) == [
        (0.1, 0.05, 8)
    ]


def test_transreid_family_bias_rule():
    """TOP-ReID's make_optimizer: every tensor decays; "bias" in the name -> lr x 2, WEIGHT_DECAY_BIAS."""
    groups = groups_of(
        [
            "optim.lr=0.009",
            "optim.weight_decay=1e-4",
            "optim.no_decay=[]",
            "optim.groups=[{name: bias, match: [bias], lr_scale: 2.0, weight_decay: 3e-4}]",
        ]
    )
    assert summary(groups) == [(0.009, 1e-4, 4), (0.018, 3e-4, 4)]
    bias_group = next(g for g in groups if g.lr == 0.018)
    assert all("bias" in n for n in bias_group.names) and bias_group.name == "bias"


def test_a_later_absolute_rule_overrides_an_earlier_scale():
    """DeMo's make_optimizer: bias lr x 2 first, then every "base" (backbone) tensor at an absolute 5e-6."""
    groups = groups_of(
        [
            "optim.lr=3.5e-4",
            "optim.weight_decay=1e-4",
            "optim.no_decay=[]",
            "optim.groups=[{match: [bias], lr_scale: 2.0},"
            " {name: backbone, match: ['re:^backbone\\.'], lr: 5e-6}]",
        ]
    )
    assert summary(groups) == [(5e-6, 1e-4, 4), (3.5e-4, 1e-4, 2), (7e-4, 1e-4, 2)]


def test_norm_and_module_selectors():
    groups = groups_of(
        [
            "optim.lr=1.0",
            "optim.weight_decay=0.5",
            "optim.no_decay=[norm]",
            "optim.groups=[{match: ['in:head'], weight_decay_scale: 0.1}]",
        ]
    )
    # backbone.0 (2 tensors) decays 0.5; backbone.1 is a norm (no decay); head.0 0.05, head.1 norm 0.05
    assert summary(groups) == [(1.0, 0.0, 2), (1.0, 0.05, 4), (1.0, 0.5, 2)]


def test_frozen_tensors_and_criterion_tensors():
    protocol = build_protocol("synthetic", [*TINY, "optim.lr=0.1", "loss.center_lr=0.5"])
    model, criterion = Toy(), nn.Linear(2, 2)
    model.backbone.requires_grad_(False)
    optimizer = build_optimizer(model, criterion, protocol, protocol.resolved_stages()[0])
    counts = sorted((g["lr"], len(g["params"])) for g in optimizer.param_groups)
    assert counts == [(0.1, 1), (0.1, 3), (0.5, 2)]  # head: 1 decayed, 3 exempt; centers


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.no_decay=[biases]", "unknown selector 'biases'"),
        ("optim.groups=[{match: ['re:(']}]", "not a regular expression"),
        ("optim.groups=[{match: [bias], lr: 1.0, lr_scale: 2.0}]", "both lr and lr_scale"),
        ("optim.groups=[{match: [bias]}]", "sets none of"),
        ("optim.groups=[{lr: 1.0}]", "match must list"),
        ("optim.groups=[{match: [bias], lr: -1}]", "optim.groups.0.lr must be"),
    ],
)
def test_bad_rules_are_refused_with_the_key(override, message):
    with pytest.raises(UserError, match=message):
        build_protocol("synthetic", [override])


def test_warmup_in_steps_needs_step_per_step():
    with pytest.raises(UserError, match="warmup_steps is set but schedule.step_per=epoch"):
        build_protocol("synthetic", ["schedule.step_per=epoch", "schedule.warmup_steps=5"])


# ---- schedules: reference formulas written out from the official code -----------------------------


def timm_cosine(epoch, base, total, warmup, warmup_lr_init, lr_min, noise_pct=0.0, seed=42):
    """timm CosineLRScheduler(t_initial=total, warmup_t=warmup, warmup_prefix=False, cycle_limit=1,
    noise_range_t=(0, total)) as ``scheduler.step(epoch)`` sets it (TOP-ReID / DeMo solver/)."""
    if epoch < warmup:
        lr = warmup_lr_init + epoch * (base - warmup_lr_init) / warmup
    elif epoch < total:
        lr = lr_min + 0.5 * (base - lr_min) * (1 + math.cos(math.pi * epoch / total))
    else:
        lr = lr_min
    if noise_pct and 0 <= epoch < total:
        g = torch.Generator()
        g.manual_seed(seed + epoch)
        while True:
            n = torch.randn(1, generator=g).item()
            if abs(n) < noise_pct:
                break
        lr = lr + lr * n
    return lr


def hf_cosine(step, base, warmup, total):
    """transformers.get_cosine_schedule_with_warmup (MMET's fine-tuning)."""
    if step < warmup:
        return base * step / max(1, warmup)
    progress = (step - warmup) / max(1, total - warmup)
    return base * max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))


def graft_warmup_sqrt(step, base, warmup, total):
    """GraFT lr_schedulers/warmup_sqrt_schedule.py."""
    cooldown = int(0.1 * total)
    if step < warmup:
        return base * step / warmup
    if step < total - cooldown:
        return base * math.sqrt(warmup / step)
    start = base * math.sqrt(warmup / (total - cooldown))
    return start * (1.0 - (step - (total - cooldown)) / cooldown)


def schedule_for(overrides: list[str], steps_per_epoch: int):
    protocol = build_protocol("synthetic", overrides)
    stage = protocol.resolved_stages()[0]
    return resolve_schedule(protocol.schedule, stage, steps_per_epoch), stage.lr


DEMO = [
    "train.epochs=50",
    "optim.lr=3.5e-4",
    "schedule.kind=cosine",
    "schedule.step_per=epoch",
    "schedule.first_epoch=1",
    "schedule.warmup_epochs=10",
    "schedule.warmup_factor=0.1",
    "schedule.min_lr_factor=0.001",
    "schedule.bounds=shared",
    "schedule.cosine=whole",
    "schedule.noise_pct=0.67",
    "schedule.noise_seed=42",
]


def test_demo_schedule_per_epoch_with_seeded_noise_and_warm_down():
    schedule, stage_lr = schedule_for(DEMO, steps_per_epoch=7)
    for epoch_index in [0, 1, 5, 9, 10, 25, 48, 49]:
        t = schedule.t(step=123, epoch=epoch_index)
        assert t == epoch_index + 1  # DeMo: for epoch in range(1, epochs + 1): scheduler.step(epoch)
        for base in (3.5e-4, 5e-6):  # the heads, and the backbone's absolute 5e-6
            want = timm_cosine(t, base, 50, 10, 3.5e-5, 3.5e-7, noise_pct=0.67, seed=42)
            assert schedule.lr(t, base, stage_lr) == pytest.approx(want, rel=1e-12)
    # the backbone "warms down": its first epoch is above its nominal 5e-6
    first = schedule.lr(1, 5e-6, stage_lr)
    assert first > 3e-5 * 0.33 and first != pytest.approx(5e-6)
    # the last epoch (t = 50) is the floor, without noise
    assert schedule.lr(50, 3.5e-4, stage_lr) == pytest.approx(3.5e-7, rel=1e-12)
    # the noise is really there: epoch 1 differs from the noiseless formula
    assert schedule.lr(12, 3.5e-4, stage_lr) != pytest.approx(timm_cosine(12, 3.5e-4, 50, 10, 3.5e-5, 3.5e-7))


def test_topreid_schedule_without_noise():
    overrides = [*DEMO[:-2], "train.epochs=120", "optim.lr=0.009", "schedule.warmup_factor=0.01"]
    schedule, stage_lr = schedule_for(overrides, steps_per_epoch=3)
    for t in [1, 2, 9, 10, 11, 60, 119, 120]:
        for base in (0.009, 0.018):  # weights, and biases at lr x 2 (they warm from 0.01 x the base lr)
            want = timm_cosine(t, base, 120, 10, 9e-5, 9e-6)
            assert schedule.lr(t, base, stage_lr) == pytest.approx(want, rel=1e-12)


def test_hf_cosine_per_step_from_zero():
    overrides = ["train.epochs=10", "schedule.warmup_steps=20", "schedule.warmup_factor=0.0"]
    schedule, stage_lr = schedule_for(overrides, steps_per_epoch=13)
    assert schedule.total == 130 and schedule.t(step=57, epoch=4) == 57
    for step in [0, 1, 19, 20, 21, 75, 129]:
        assert schedule.lr(step, 1e-5, stage_lr) == pytest.approx(hf_cosine(step, 1e-5, 20, 130), abs=1e-20)


@pytest.mark.parametrize("total_epochs", [10, 15, 7])
def test_graft_warmup_sqrt_with_the_frozen_cool_down(total_epochs):
    overrides = [
        f"train.epochs={total_epochs}",
        "schedule.kind=warmup_sqrt",
        "schedule.warmup_steps=5",
        "schedule.warmup_factor=0.0",
    ]
    schedule, stage_lr = schedule_for(overrides, steps_per_epoch=3)
    total = 3 * total_epochs
    for step in range(total):
        got = schedule.lr(step, 2.54e-5, stage_lr)
        assert got == pytest.approx(graft_warmup_sqrt(step, 2.54e-5, 5, total), rel=1e-12, abs=1e-20)
    assert schedule.lr(0, 2.54e-5, stage_lr) == 0.0  # the official warmup starts at 0


def test_shared_track_schedule_is_unchanged():
    """The shared track's formula (warmup from 0.01 x lr over warmup_epochs, cosine after it, floor 0)."""
    schedule, stage_lr = schedule_for(["train.epochs=10", "schedule.warmup_epochs=1"], steps_per_epoch=10)
    assert schedule.lr(0, 1.0, stage_lr) == 0.01
    assert schedule.lr(10, 1.0, stage_lr) == 1.0
    assert schedule.lr(55, 1.0, stage_lr) == pytest.approx(0.5)


def test_the_engine_sets_each_group_from_the_schedule():
    protocol = build_protocol(
        "synthetic",
        [*DEMO, "optim.no_decay=[]", "optim.groups=[{match: [backbone], lr: 5e-6}]"],
    )
    stage = protocol.resolved_stages()[0]
    model = Toy()
    optimizer = build_optimizer(model, nn.Identity(), protocol, stage)
    loop = StageLoop(
        stage,
        model,
        optimizer,
        [g["lr"] for g in optimizer.param_groups],
        resolve_schedule(protocol.schedule, stage, 4),
        50 * 4,
        step=9,
    )
    loop.apply_lr(epoch=2)  # the stage's third epoch: t = first_epoch + 2 = 3 (whatever the step)
    lrs = sorted(g["lr"] for g in optimizer.param_groups)
    assert lrs == pytest.approx([timm_cosine(3, b, 50, 10, 3.5e-5, 3.5e-7, 0.67) for b in (5e-6, 3.5e-4)])
