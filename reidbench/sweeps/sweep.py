"""Sweeps: grids and ablations -> RunSpecs -> an executor, skipping finished points, under an MLflow parent run.

Idempotent: a point whose config hash already has a FINISHED run with the same sweep identity (ablation /
axis / value tags) is skipped; one trained under another identity (e.g. the default point of an
ablation that a plain grid already ran) is copied into a new run with this point's tags instead of being
trained again. A point whose RUNNING run is still alive (another sweep is training it; see liveness.py) is
left alone unless ``retry_running``. Interrupted points resume from their checkpoints (see
runner.execute). Failed points are reported at the end; the others still run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from reidbench import tracking
from reidbench.progress import make_progress
from reidbench.protocol import config_hash
from reidbench.registry import DATASETS
from reidbench.runner import RunResult
from reidbench.spec import RunSpec, grid  # noqa: F401  (grid: made here before, still found here)
from reidbench.sweeps import liveness
from reidbench.sweeps.executors import Executor, InProcess, Job, Outcome

IDENTITY_TAGS = ("ablation", "axis", "value", "axis_default")
FINISHED_RUNS = "tags.run_kind = 'run' and attributes.status = 'FINISHED'"
RUNNING_RUNS = "tags.run_kind = 'run' and attributes.status = 'RUNNING'"


@dataclass
class Settings:
    """Where points read data, log, checkpoint, and on which device they train."""

    data_root: Path
    uri: str
    experiment: str = tracking.DEFAULT_EXPERIMENT
    device: str = "auto"
    checkpoint_dir: Path | None = None
    keep_checkpoints: bool = False
    show_progress: bool = False
    nprocs: int = 1  # processes per run (DDP when > 1)
    allow_partial: bool = False  # use datasets whose layout check found problems
    retry_running: bool = False  # train points whose RUNNING run looks alive (another sweep's) anyway
    stale_after_s: float = (
        3 * 3600.0
    )  # a RUNNING run on another host without a heartbeat for this long: crashed


@dataclass
class SweepResult:
    """Every point's result (trained, skipped or reused, in point order) and the failures."""

    results: list[RunResult] = field(default_factory=list)
    failures: list[Outcome] = field(default_factory=list)
    trained: int = 0
    skipped: int = 0
    reused: int = 0
    running: int = 0  # left to the live runs of another sweep
    parent_run_id: str | None = None


def identity(tags: dict[str, str]) -> tuple[str | None, ...]:
    return tuple(tags.get(k) for k in IDENTITY_TAGS)


def run_sweep(
    specs: list[RunSpec],
    settings: Settings,
    executor: Executor | None = None,
    *,
    kind: str = "grid",
    name: str = "",
    parent_tags: dict[str, str] | None = None,
    console: Console | None = None,
) -> SweepResult:
    """Run every point of ``specs`` that has no finished run yet; an MLflow parent run when there are several.

    The store and experiment are created here, before any worker starts (concurrent first starts of a
    SQLite store corrupt it).
    """
    executor = executor or InProcess()
    console = console or Console(quiet=True)
    specs = _unique(specs)
    exp_id = tracking.prepare(settings.uri, settings.experiment)
    done: dict[str, list[tracking.RunRecord]] = {}
    for record in tracking.find_runs(settings.uri, settings.experiment, FINISHED_RUNS):
        done.setdefault(record.tags.get("config_hash", ""), []).append(record)
    out = SweepResult()
    same: dict[int, tracking.RunRecord] = {}
    other: dict[int, tracking.RunRecord] = {}
    todo: list[int] = []
    for i, spec in enumerate(specs):
        digest = spec.config_hash
        matches = [r for r in done.get(digest, []) if identity(r.tags) == identity(spec.tags)]
        if matches:
            same[i] = matches[0]
        elif digest in done:
            other[i] = done[digest][0]
        else:
            todo.append(i)
    running = set() if settings.retry_running else _running_elsewhere(specs, todo, settings)
    todo = [i for i in todo if i not in running]
    check_datasets(
        {specs[i].dataset for i in todo}, settings
    )  # a missing download: one error, before any run
    parent = (
        _parent(specs, settings, exp_id, kind, name, parent_tags)
        if kind != "grid" or len(specs) > 1
        else None
    )
    out.parent_run_id = parent.run_id if parent else None
    results = {i: RunResult(specs[i], record.metrics, record.run_id) for i, record in same.items()}
    results.update(
        {i: _reuse(specs[i], record, settings, exp_id, out.parent_run_id) for i, record in other.items()}
    )
    out.skipped, out.reused, out.running = len(same), len(other), len(running)
    jobs = [
        (
            i,
            Job(
                specs[i],
                settings.data_root,
                settings.uri,
                settings.experiment,
                out.parent_run_id,
                settings.checkpoint_dir,
                settings.keep_checkpoints,
                settings.device,
                settings.nprocs,
                settings.show_progress,
                settings.allow_partial,
            ),
        )
        for i in todo
    ]
    elsewhere = (
        (f", {out.running} being trained by another sweep (left alone; --retry-running trains them here)")
        if out.running
        else ""
    )
    console.print(
        f"{len(specs)} point(s): {out.skipped} finished (skipped), {out.reused} reused from other "
        f"sweeps, {len(jobs)} to train{elsewhere}"
    )
    try:
        outcomes = _execute(executor, [job for _, job in jobs], console)
    except BaseException:
        if parent is not None:
            parent.finish("KILLED")
        raise
    for (i, job), outcome in zip(jobs, outcomes, strict=True):
        if outcome.ok:
            results[i] = RunResult(job.spec, outcome.metrics or {}, outcome.run_id)
            out.trained += 1
        else:
            out.failures.append(outcome)
    out.results = [results[i] for i in sorted(results)]
    if parent is not None:
        parent.log_metrics(
            {
                "points": len(specs),
                "trained": out.trained,
                "skipped": out.skipped,
                "reused": out.reused,
                "failed": len(out.failures),
            }
        )
        parent.finish("FAILED" if out.failures else "FINISHED")
    return out


def _running_elsewhere(specs: list[RunSpec], todo: list[int], settings: Settings) -> set[int]:
    """Indices in ``todo`` whose point has a RUNNING run with the same sweep identity that is alive."""
    live: dict[str, list[tracking.RunRecord]] = {}
    for record in tracking.find_runs(settings.uri, settings.experiment, RUNNING_RUNS):
        if liveness.is_alive(record.tags, settings.stale_after_s):
            live.setdefault(record.tags.get("config_hash", ""), []).append(record)
    return {
        i
        for i in todo
        if any(identity(r.tags) == identity(specs[i].tags) for r in live.get(specs[i].config_hash, []))
    }


def check_datasets(names: set[str], settings: Settings) -> None:
    """Load every dataset once (file lists and layout checks, no decoding): a UserError for a missing or
    mismatching download stops the sweep before it starts instead of failing each of its points."""
    for name in sorted(names):
        DATASETS.get(name).builder(Path(settings.data_root), allow_partial=settings.allow_partial)


def _unique(specs: list[RunSpec]) -> list[RunSpec]:
    seen, out = set(), []
    for spec in specs:
        key = (spec.config_hash, identity(spec.tags))
        if key not in seen:
            seen.add(key)
            out.append(spec)
    return out


def _parent(
    specs: list[RunSpec], settings: Settings, exp_id: str, kind: str, name: str, tags: dict[str, str] | None
) -> tracking.Run:
    """The sweep's parent run: the same sweep (same points) run again reuses its parent."""
    key = config_hash(
        {
            "kind": kind,
            "name": name,
            "points": sorted([s.config_hash, *map(str, identity(s.tags))] for s in specs),
        }
    )
    for record in tracking.find_runs(settings.uri, settings.experiment, f"tags.sweep_key = '{key}'"):
        run = tracking.Run.reopen(settings.uri, record.run_id)
        if run is not None:
            return run
    all_tags = {
        "run_kind": "parent",
        "kind": kind,
        "sweep_key": key,
        "git_commit": tracking.git_commit(),
        **(tags or {}),
    }
    return tracking.Run(settings.uri, exp_id, f"{kind}:{name}" if name else kind, all_tags)


def _reuse(
    spec: RunSpec, source: tracking.RunRecord, settings: Settings, exp_id: str, parent_run_id: str | None
) -> RunResult:
    tags = {k: v for k, v in source.tags.items() if not k.startswith("mlflow.") and k not in IDENTITY_TAGS}
    tags.update(spec.tags)
    run_id = tracking.copy_run(settings.uri, exp_id, source, spec.name, tags, parent_run_id)
    return RunResult(spec, source.metrics, run_id)


def _execute(executor: Executor, jobs: list[Job], console: Console) -> list[Outcome]:
    def report(outcome: Outcome) -> None:
        if outcome.ok:
            console.print(
                f"[green]done[/] {outcome.job.spec.name} {_label(outcome.job.spec)} "
                f"mAP {100 * (outcome.metrics or {}).get('mAP', float('nan')):.1f}",
                highlight=False,
            )
        else:
            console.print(
                f"[red]failed[/] {outcome.job.spec.name} {_label(outcome.job.spec)}: {outcome.error}",
                highlight=False,
            )

    if not jobs:
        return []
    if isinstance(executor, InProcess):  # each run shows its own progress bars
        return executor.run(jobs, report)
    with make_progress(transient=True) as progress:
        task = progress.add_task("sweep", total=len(jobs))

        def advance(outcome: Outcome) -> None:
            report(outcome)
            progress.advance(task)

        return executor.run(jobs, advance)


def _label(spec: RunSpec) -> str:
    return f"({spec.tags['axis']}={spec.tags['value']})" if "axis" in spec.tags else ""


def failure_lines(result: SweepResult) -> list[str]:
    """One line per failed point: name, axis value, error and where the log is."""
    lines = []
    for outcome in result.failures:
        where = f" (log: {outcome.log})" if outcome.log else ""
        lines.append(f"{outcome.job.spec.name} {_label(outcome.job.spec)}: {outcome.error}{where}")
    return lines


def sweep_tags(specs: list[RunSpec], **extra: Any) -> dict[str, str]:
    """Parent-run tags summarising the points (methods, datasets)."""
    return {
        "methods": ",".join(sorted({s.method for s in specs})),
        "datasets": ",".join(sorted({s.dataset for s in specs})),
        **{k: str(v) for k, v in extra.items()},
    }
