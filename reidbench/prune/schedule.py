"""A pruning schedule as run specs: round 0 is the trained model, each later round prunes the previous
round's weights and fine-tunes them (torch-free: the CLI builds the specs before anything heavy loads).

Round ``r`` is an ordinary run whose spec carries a :class:`PruneStep` naming the config hash of the run it
starts from (round ``r - 1``; round 0 is the base run), so a finished round is recognised like any run, a
schedule stopped after round 2 continues at round 3, and extending ``--rounds`` reuses every round done.
Fine-tuning is the base protocol with ``train.epochs``, a constant ``optim.lr`` and no stages overridden.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

from reidbench.errors import UserError
from reidbench.spec import RunSpec, make_spec
from reidbench.train import warm_start

SCHEDULES = ("unstructured-l1", "structured")
AXIS = "prune.round"


@dataclass(frozen=True)
class PruneStep:
    """Round ``round`` of ``schedule``: prune ``fraction`` of what remains of the run ``source`` (a config
    hash), then fine-tune."""

    kind: ClassVar[str] = "prune"  # its warm-start transform, and its section of the run config

    schedule: str
    fraction: float
    round: int
    source: str

    @property
    def label(self) -> str:
        return f":{self.schedule}-r{self.round}"

    @property
    def hint(self) -> str:
        return "run the study from round 0 (`reidbench prune ...` trains it) and without --no-save-weights"


# every process that holds a PruneStep (made here, or unpickled in a worker / Slurm task) has its transform
warm_start.register(
    PruneStep.kind,
    "reidbench.prune.rounds:warm_start",
    "a pruning round: the previous round's weights, pruned",
)


def round_tags(schedule: str, round_: int) -> dict[str, str]:
    """The sweep identity of a round (an ablation over the round index; round 0 is the default)."""
    return {"ablation": f"prune_{schedule}", "axis": AXIS, "value": str(round_), "axis_default": "0"}


def finetune_overrides(epochs: int, lr: float) -> list[str]:
    """What a round's fine-tuning changes in the base protocol."""
    return [
        f"train.epochs={epochs}",
        "train.stages=[]",
        f"optim.lr={lr}",
        "schedule.kind=constant",
        "schedule.warmup_epochs=0",
    ]


def check_schedule(schedule: str, fraction: float, rounds: int, epochs: int, lr: float | None) -> None:
    """Refuse a schedule no run could follow, before anything is stored."""
    if schedule not in SCHEDULES:
        raise UserError(f"--schedule {schedule!r}: expected one of {', '.join(SCHEDULES)}")
    if not 0.0 < fraction < 1.0:
        raise UserError(f"--fraction {fraction}: the share pruned per round must be in (0, 1), e.g. 0.2")
    if rounds < 1:
        raise UserError(f"--rounds {rounds}: at least one round")
    if epochs < 1 or (lr is not None and not lr > 0):
        raise UserError(f"--finetune-epochs {epochs} / --finetune-lr {lr}: need >= 1 epoch and lr > 0")


def round_specs(
    base: RunSpec, schedule: str, fraction: float, rounds: int, epochs: int, lr: float | None = None
) -> list[RunSpec]:
    """Round 0 (the base spec, tagged as round 0) to ``rounds``: one spec per round. ``lr`` None: the
    fine-tuning lr is 0.1 x the base protocol's ``optim.lr``."""
    check_schedule(schedule, fraction, rounds, epochs, lr)
    lr = lr if lr is not None else 0.1 * base.protocol.optim.lr
    out = [replace(base, tags={**base.tags, **round_tags(schedule, 0)})]
    overrides = [*base.overrides, *finetune_overrides(epochs, lr)]
    source = base.config_hash
    for r in range(1, rounds + 1):
        tags = {**base.tags, **round_tags(schedule, r)}
        spec = make_spec(base.method, base.dataset, base.seed, overrides, tags, recipe=base.recipe)
        spec = replace(spec, warm_start=PruneStep(schedule, fraction, r, source))
        source = spec.config_hash
        out.append(spec)
    return out
