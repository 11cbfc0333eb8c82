"""A pruning study: every base spec's schedule, round by round, each round one sweep over the seeds.

Rounds run in order (round ``r`` needs round ``r - 1``'s weights); the seeds of a round run as one sweep
(in parallel where the executor allows). Finished rounds are skipped like any finished point, so a study
stopped mid-schedule continues where it stopped, and one run again with more ``rounds`` only adds rounds.
"""

from __future__ import annotations

from typing import Any

from reidbench.context import RunContext
from reidbench.prune.schedule import round_specs
from reidbench.spec import RunSpec
from reidbench.sweeps.sweep import SweepResult, run_sweep, sweep_tags


def run_study(
    bases: list[RunSpec],
    schedule: str,
    fraction: float,
    rounds: int,
    epochs: int,
    lr: float | None,
    ctx: RunContext,
    executor: Any = None,
    **sweep_options: Any,
) -> SweepResult:
    """Rounds 0 (the base runs, trained or reused) to ``rounds`` of ``schedule``; the results of every
    round in order. Stops after the first round with a failed point."""
    chains = [round_specs(base, schedule, fraction, rounds, epochs, lr) for base in bases]
    out = SweepResult()
    for r in range(rounds + 1):
        specs = [chain[r] for chain in chains]
        name = f"{'+'.join(sorted({s.method for s in specs}))}@{'+'.join(sorted({s.dataset for s in specs}))}"
        tags = sweep_tags(specs, ablation=f"prune_{schedule}", axis="prune.round", value=str(r))
        result = run_sweep(
            specs,
            ctx,
            executor,
            kind="prune",
            name=f"{name}:{schedule}:r{r}",
            parent_tags=tags,
            **sweep_options,
        )
        out.results += result.results
        out.failures += result.failures
        out.trained += result.trained
        out.skipped += result.skipped
        out.reused += result.reused
        out.running += result.running
        if result.failures or result.running:
            break
    return out
