"""Sweeps: grids and ablations -> RunSpecs -> an executor, skipping finished points, under an MLflow
parent run.

Idempotent: a point whose config hash already has a FINISHED run with the same sweep identity (ablation /
axis / value tags) is skipped; one trained under another identity (e.g. the default point of an
ablation that a plain grid already ran) is copied into a new run with this point's tags instead of being
trained again. A point whose RUNNING run is still alive (another sweep is training it; see liveness.py) is
left alone unless ``retry_running``. Interrupted points resume from their checkpoints (see
runner.run_one). Failed points are reported at the end; the others still run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.text import Text

from reidbench import tracking
from reidbench.context import RunContext, RunResult
from reidbench.errors import UserError
from reidbench.protocol import config_hash
from reidbench.spec import RunSpec
from reidbench.sweeps.executors import Executor, InProcess, Job
from reidbench.util import liveness
from reidbench.util.progress import NullProgress, make_progress

IDENTITY_TAGS = ("ablation", "axis", "value", "axis_default")
FINISHED_RUNS = "tags.run_kind = 'run' and attributes.status = 'FINISHED'"
RUNNING_RUNS = "tags.run_kind = 'run' and attributes.status = 'RUNNING'"
STALE_AFTER_S = liveness.STALE_AFTER_S  # a RUNNING run elsewhere without a heartbeat this long: crashed


@dataclass
class SweepResult:
    """Every point's result (trained, skipped or reused, in point order) and the failures."""

    results: list[RunResult] = field(default_factory=list)
    failures: list[RunResult] = field(default_factory=list)
    trained: int = 0
    skipped: int = 0
    reused: int = 0
    running: int = 0  # left to the live runs of another sweep
    parent_run_id: str | None = None


@dataclass
class _Plan:
    """What the store already holds for each point (by index): finished under this identity, finished
    under another one (to copy), alive elsewhere, or to train."""

    same: dict[int, tracking.RunRecord] = field(default_factory=dict)
    other: dict[int, tracking.RunRecord] = field(default_factory=dict)
    running: set[int] = field(default_factory=set)
    todo: list[int] = field(default_factory=list)


def identity(tags: dict[str, str]) -> tuple[str | None, ...]:
    """The sweep identity of a point or run (ablation, axis, value, axis default)."""
    return tuple(tags.get(k) for k in IDENTITY_TAGS)


def run_sweep(
    specs: list[RunSpec],
    ctx: RunContext,
    executor: Executor | None = None,
    *,
    kind: str = "grid",
    name: str = "",
    parent_tags: dict[str, str] | None = None,
    console: Console | None = None,
    retry_running: bool = False,
    stale_after_s: float = STALE_AFTER_S,
) -> SweepResult:
    """Run every point of ``specs`` that has no finished run yet; an MLflow parent run when there are several.

    The store and experiment are created here, before any worker starts (concurrent first starts of a
    SQLite store corrupt it). ``retry_running``: also train points whose RUNNING run looks alive.
    """
    executor = executor or InProcess()
    console = console or Console(quiet=True)
    specs = _unique(specs)
    exp_id = tracking.prepare(ctx.tracking_uri, ctx.experiment)
    plan = _plan(specs, ctx, None if retry_running else stale_after_s)
    # a missing download: one error, up front (training sets, merged sources and --test-on targets)
    check_datasets({name for i in plan.todo for name in specs[i].datasets}, ctx)
    parent = (
        _parent(specs, ctx, exp_id, kind, name, parent_tags) if kind != "grid" or len(specs) > 1 else None
    )
    out = SweepResult(parent_run_id=parent.run_id if parent else None)
    out.skipped, out.reused, out.running = len(plan.same), len(plan.other), len(plan.running)
    results = {i: RunResult(specs[i], record.metrics, record.run_id) for i, record in plan.same.items()}
    for i, record in plan.other.items():
        results[i] = _reuse(specs[i], record, ctx, exp_id, out.parent_run_id)
    context = ctx.under(out.parent_run_id)
    if not executor.shows_run_progress:
        context = context.quiet()
    jobs = [Job(specs[i], context, executor.nprocs) for i in plan.todo]
    console.print(_summary(len(specs), out, len(jobs)))
    try:
        trained = _run_jobs(executor, jobs, console)
    except BaseException:
        if parent is not None:
            parent.finish("KILLED")
        raise
    for i, result in zip(plan.todo, trained, strict=True):
        if result.ok:
            results[i] = result
            out.trained += 1
        else:
            out.failures.append(result)
    out.results = [results[i] for i in sorted(results)]
    if parent is not None:
        counts = {"points": len(specs), "trained": out.trained, "skipped": out.skipped}
        parent.log_metrics({**counts, "reused": out.reused, "failed": len(out.failures)})
        parent.finish("FAILED" if out.failures else "FINISHED")
    return out


def _plan(specs: list[RunSpec], ctx: RunContext, stale_after_s: float | None) -> _Plan:
    """Sort the points by what the store holds; ``stale_after_s`` None: ignore live runs elsewhere."""
    done: dict[str, list[tracking.RunRecord]] = {}
    for record in tracking.find_runs(ctx.tracking_uri, ctx.experiment, FINISHED_RUNS):
        done.setdefault(record.tags.get("config_hash", ""), []).append(record)
    plan = _Plan()
    for i, spec in enumerate(specs):
        matches = [r for r in done.get(spec.config_hash, []) if identity(r.tags) == identity(spec.tags)]
        if matches:
            plan.same[i] = matches[0]
        elif spec.config_hash in done:
            plan.other[i] = done[spec.config_hash][0]
        else:
            plan.todo.append(i)
    if stale_after_s is not None:
        plan.running = _running_elsewhere(specs, plan.todo, ctx, stale_after_s)
        plan.todo = [i for i in plan.todo if i not in plan.running]
    return plan


def _running_elsewhere(
    specs: list[RunSpec], todo: list[int], ctx: RunContext, stale_after_s: float
) -> set[int]:
    """Indices in ``todo`` whose point has a RUNNING run with the same sweep identity that is alive."""
    live: dict[str, list[tracking.RunRecord]] = {}
    for record in tracking.find_runs(ctx.tracking_uri, ctx.experiment, RUNNING_RUNS):
        if liveness.is_alive(record.tags, stale_after_s):
            live.setdefault(record.tags.get("config_hash", ""), []).append(record)
    return {
        i
        for i in todo
        if any(identity(r.tags) == identity(specs[i].tags) for r in live.get(specs[i].config_hash, []))
    }


def check_datasets(names: set[str], ctx: RunContext) -> None:
    """Load every dataset once (file lists and layout checks, no decoding): a UserError for a missing or
    mismatching download stops the sweep before it starts instead of failing each of its points. The
    scan is kept for the runs in this process (data.loading.load_dataset). Every missing dataset is named in
    the one error."""
    from reidbench.data.loading import load_dataset

    problems = []
    for name in sorted(names):
        try:
            load_dataset(name, ctx.data_root, ctx.allow_partial)
        except UserError as exc:
            problems.append(str(exc))
    if len(problems) == 1:
        raise UserError(problems[0])
    if problems:
        raise UserError(f"{len(problems)} datasets cannot be read:\n  " + "\n  ".join(problems))


def _unique(specs: list[RunSpec]) -> list[RunSpec]:
    seen, out = set(), []
    for spec in specs:
        key = (spec.config_hash, identity(spec.tags))
        if key not in seen:
            seen.add(key)
            out.append(spec)
    return out


def _summary(points: int, out: SweepResult, to_train: int) -> str:
    elsewhere = ""
    if out.running:
        elsewhere = (
            f", {out.running} being trained by another sweep (left alone; --retry-running trains them here)"
        )
    return (
        f"{points} point(s): {out.skipped} finished (skipped), {out.reused} reused from other "
        f"sweeps, {to_train} to train{elsewhere}"
    )


def _parent(
    specs: list[RunSpec], ctx: RunContext, exp_id: str, kind: str, name: str, tags: dict[str, str] | None
) -> tracking.Run:
    """The sweep's parent run: the same sweep (same points) run again reuses its parent."""
    points = sorted([s.config_hash, *map(str, identity(s.tags))] for s in specs)
    key = config_hash({"kind": kind, "name": name, "points": points})
    for record in tracking.find_runs(ctx.tracking_uri, ctx.experiment, f"tags.sweep_key = '{key}'"):
        run = tracking.Run.reopen(ctx.tracking_uri, record.run_id)
        if run is not None:
            return run
    all_tags = {"run_kind": "parent", "kind": kind, "sweep_key": key, "git_commit": tracking.git_commit()}
    return tracking.Run(
        ctx.tracking_uri, exp_id, f"{kind}:{name}" if name else kind, {**all_tags, **(tags or {})}
    )


def _reuse(
    spec: RunSpec, source: tracking.RunRecord, ctx: RunContext, exp_id: str, parent_run_id: str | None
) -> RunResult:
    tags = {k: v for k, v in source.tags.items() if not k.startswith("mlflow.") and k not in IDENTITY_TAGS}
    tags.update(spec.tags)
    run_id = tracking.copy_run(ctx.tracking_uri, exp_id, source, spec.name, tags, parent_run_id)
    return RunResult(spec, source.metrics, run_id)


def _run_jobs(executor: Executor, jobs: list[Job], console: Console) -> list[RunResult]:
    """Run ``jobs`` on ``executor``, a line per finished point; one bar over the points unless the runs
    show their own."""
    if not jobs:
        return []
    quiet = executor.shows_run_progress
    with NullProgress() if quiet else make_progress(transient=True) as progress:
        task = progress.add_task("sweep", total=len(jobs))

        def done(result: RunResult) -> None:
            console.print(_result_line(result), highlight=False)
            progress.advance(task)

        return executor.run(jobs, done)


def _result_line(result: RunResult) -> Text:
    """``done NAME (axis=value) mAP 71.2`` / ``failed NAME: error``, coloured; names and errors as they are
    (no rich markup read from them)."""
    what = f"{result.spec.name} {_label(result.spec)}"
    if result.ok:
        return Text.assemble(
            ("done", "green"), f" {what} mAP {100 * result.metrics.get('mAP', float('nan')):.1f}"
        )
    return Text.assemble(("failed", "red"), f" {what}: {result.error}")


def _label(spec: RunSpec) -> str:
    return f"({spec.tags['axis']}={spec.tags['value']})" if "axis" in spec.tags else ""


def failure_lines(result: SweepResult) -> list[str]:
    """One line per failed point: name, axis value, error and where the log is."""
    lines = []
    for failed in result.failures:
        where = f" (log: {failed.log})" if failed.log else ""
        lines.append(f"{failed.spec.name} {_label(failed.spec)}: {failed.error}{where}")
    return lines


def sweep_tags(specs: list[RunSpec], **extra: Any) -> dict[str, str]:
    """Parent-run tags summarising the points (methods, datasets)."""
    return {
        "methods": ",".join(sorted({s.method for s in specs})),
        "datasets": ",".join(sorted({s.dataset for s in specs})),
        **{k: str(v) for k, v in extra.items()},
    }
