"""Hyperparameter search with Optuna on a validation split carved from the training identities.

The objective is validation mAP (reidbench.data.validation), never the test set. Every trial is an MLflow
child run (run_kind=trial) of one parent run per study. The study lives in an Optuna storage: SQLite by
default (one process), any RDB URL (PostgreSQL, MySQL) for many workers, which then share the study by
running the same ``reidbench tune`` command.

A search space file maps dotted protocol keys to distributions::

    optim.lr: {type: loguniform, low: 1.0e-5, high: 1.0e-3}
    optim.weight_decay: {type: loguniform, low: 1.0e-4, high: 0.3}
    loss.variant: {type: categorical, choices: [ce+triplet, ce+triplet+center]}
    sampler.k: {type: int, low: 2, high: 8, step: 2}
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from reidbench import tracking
from reidbench.context import RunContext
from reidbench.data.validation import check_fraction
from reidbench.errors import UserError
from reidbench.spec import make_spec
from reidbench.sweeps.storage import check_storage, open_study, process_seed
from reidbench.util.files import read_yaml

DEFAULT_SPACE: dict[str, dict[str, Any]] = {
    "optim.lr": {"type": "loguniform", "low": 1e-5, "high": 1e-3},
    "optim.weight_decay": {"type": "loguniform", "low": 1e-4, "high": 0.3},
    "loss.label_smoothing": {"type": "uniform", "low": 0.0, "high": 0.2},
    "loss.triplet_margin": {"type": "uniform", "low": 0.1, "high": 0.6},
}
KINDS = {
    "loguniform": ("low", "high"),
    "uniform": ("low", "high"),
    "int": ("low", "high"),
    "categorical": ("choices",),
}
OPTIONAL = {"int": ("step", "log"), "uniform": ("step",)}


@dataclass(frozen=True)
class Param:
    """One searched key and its distribution."""

    key: str
    kind: str
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] = ()
    step: float | None = None
    log: bool = False

    def suggest(self, trial: Any) -> Any:
        if self.kind == "categorical":
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(
                self.key, int(self.low), int(self.high), step=int(self.step or 1), log=self.log
            )
        return trial.suggest_float(
            self.key, self.low, self.high, log=self.kind == "loguniform", step=self.step
        )

    def example(self) -> Any:
        return self.choices[0] if self.kind == "categorical" else self.low


def parse_space(data: Any, where: str) -> list[Param]:
    """Validate a search space mapping; errors name ``where`` (the file) and the key."""
    if not isinstance(data, dict) or not data:
        raise UserError(
            f"{where}: expected a mapping of dotted protocol keys to distributions, e.g. "
            f"optim.lr: {{type: loguniform, low: 1.0e-5, high: 1.0e-3}}"
        )
    params = []
    for key, spec in data.items():
        if not isinstance(spec, dict) or spec.get("type") not in KINDS:
            raise UserError(
                f"{where}: key {key!r}: expected a mapping with type one of {', '.join(KINDS)}, got {spec!r}"
            )
        kind = spec["type"]
        allowed = {"type", *KINDS[kind], *OPTIONAL.get(kind, ())}
        unknown = sorted(set(spec) - allowed)
        missing = [k for k in KINDS[kind] if k not in spec]
        if unknown or missing:
            raise UserError(
                f"{where}: key {key!r}: a {kind} distribution takes {', '.join(sorted(allowed - {'type'}))}"
                f" ({'unknown ' + unknown[0] if unknown else 'missing ' + missing[0]})"
            )
        if kind == "categorical":
            if not isinstance(spec["choices"], list) or not spec["choices"]:
                raise UserError(
                    f"{where}: key {key!r}: choices must be a non-empty list, got {spec['choices']!r}"
                )
            params.append(Param(key, kind, choices=tuple(spec["choices"])))
            continue
        try:
            low, high = float(spec["low"]), float(spec["high"])
        except (TypeError, ValueError):
            raise UserError(
                f"{where}: key {key!r}: low and high must be numbers, got {spec['low']!r}, {spec['high']!r}"
            ) from None
        if not low < high or (kind == "loguniform" and low <= 0):
            raise UserError(
                f"{where}: key {key!r}: expected {'0 < ' if kind == 'loguniform' else ''}low < high, "
                f"got low={low}, high={high}"
            )
        if kind == "int" and not (low.is_integer() and high.is_integer()):
            raise UserError(f"{where}: key {key!r}: an int distribution needs integer low and high")
        step = spec.get("step")
        params.append(
            Param(
                key,
                kind,
                low,
                high,
                step=None if step is None else float(step),
                log=bool(spec.get("log", False)),
            )
        )
    return params


def load_space(path: Path | None) -> list[Param]:
    """The search space of ``path`` (YAML), or :data:`DEFAULT_SPACE`."""
    if path is None:
        return parse_space(DEFAULT_SPACE, "default search space")
    try:
        data = read_yaml(Path(path))
    except OSError as exc:
        raise UserError(f"cannot read search space {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    return parse_space(data, str(path))


def default_storage() -> str:
    """SQLite file next to the default MLflow store."""
    return f"sqlite:///{Path.cwd() / 'results' / 'optuna.db'}"


def _overrides(values: dict[str, Any]) -> list[str]:
    return [f"{k}={json.dumps(v)}" for k, v in values.items()]


def check_study_name(name: str | None) -> str | None:
    """``name`` unless it is empty or blank (Optuna would store an unnamed study no worker can join)."""
    if name is not None and not name.strip():
        raise UserError("--study: expected a study name, got an empty one (default: METHOD@DATASET)")
    return name


def check_data(dataset: str, ctx: RunContext, fraction: float) -> None:
    """Load ``dataset`` and carve its validation split once, before the first trial: missing data or a
    fraction the dataset cannot take is one error, not a failed trial per proposal."""
    from reidbench.data.loading import load_dataset
    from reidbench.data.validation import validation_split

    validation_split(load_dataset(dataset, ctx.data_root, ctx.allow_partial), fraction)


def run_args(overrides: list[str] | tuple[str, ...]) -> list[str]:
    """The options besides --method / --dataset that reproduce this process's settings in ``reidbench run``:
    the active --recipe and --protocol and every --set."""
    from reidbench.protocol import active_protocol_file
    from reidbench.recipes import DEFAULT_RECIPE, active_recipe

    args = []
    recipe = active_recipe(None)
    if recipe != DEFAULT_RECIPE:
        args += ["--recipe", recipe]
    path = active_protocol_file(None)
    if path is not None:
        args += ["--protocol", str(Path(path).resolve())]
    for override in overrides:
        args += ["--set", override]
    return args


def tune(
    method: str,
    dataset: str,
    trials: int,
    ctx: RunContext,
    space: list[Param],
    *,
    storage: str | None = None,
    study_name: str | None = None,
    seed: int = 0,
    overrides: list[str] = (),
    fraction: float = 0.2,
    console: Console | None = None,
) -> Any:
    """Run ``trials`` Optuna trials (maximising validation mAP) and return the study.

    Everything is checked before the first trial (keys, fraction, data, storage); a trial that fails makes
    the whole call raise :class:`TrialsFailed` after the others ran (the reason of each is kept)."""
    if trials < 1:
        raise UserError(f"--trials: expected at least 1 trial, got {trials}")
    check_study_name(study_name)
    fraction = check_fraction(fraction)
    base = [*overrides, "eval.same_set=false"]  # the validation query and gallery are separate sets
    for param in space:  # check every key before the first trial
        make_spec(
            method, dataset, seed, [*base, *_overrides({param.key: param.example()})], validation=fraction
        )
    storage = check_storage(storage or default_storage())
    check_data(dataset, ctx, fraction)
    exp_id = tracking.prepare(ctx.tracking_uri, ctx.experiment)
    study = open_study(storage, study_name or f"{method}@{dataset}", process_seed(seed))
    if "run_args" not in study.user_attrs:  # what `best_command` reproduces
        study.set_user_attr("run_args", run_args(overrides))
    parent = _parent(study, ctx, exp_id, method, dataset, storage)
    trial_ctx = ctx.under(parent.run_id)
    objective = _Objective(method, dataset, seed, base, fraction, space, trial_ctx, study.study_name, console)
    try:
        study.optimize(objective, n_trials=trials, catch=(Exception,))
    except BaseException:
        parent.finish("KILLED")
        raise
    if any(t.value is not None for t in study.trials):
        best = study.best_trial
        parent.log_metrics({"best_val_mAP": best.value, "trials": len(study.trials)})
        parent.set_tags(
            {"best_trial": str(best.number), **{f"best.{k}": str(v) for k, v in best.params.items()}}
        )
    parent.finish()
    if objective.failures:
        raise TrialsFailed(study, objective.failures, trials)
    return study


class TrialsFailed(UserError):
    """Some trials of this process failed: the study (still usable) and each failure's reason. The command
    exits with status 1 (a failure, not a usage mistake)."""

    exit_code = 1

    def __init__(self, study: Any, failures: list[str], trials: int) -> None:
        self.study = study
        self.failures = failures
        shown = "\n  ".join(failures[:5]) + ("\n  ..." if len(failures) > 5 else "")
        super().__init__(f"{len(failures)} of {trials} trial(s) failed:\n  {shown}")


@dataclass
class _Objective:
    """One trial: the suggested values as overrides, a run on the validation split, its mAP. A failure is
    recorded (trial number and reason) and raised again for Optuna to mark the trial FAILED."""

    method: str
    dataset: str
    seed: int
    base: list[str]
    fraction: float
    space: list[Param]
    ctx: RunContext
    study_name: str
    console: Console | None = None
    failures: list[str] = field(default_factory=list)

    def __call__(self, trial: Any) -> float:
        try:
            return self._run(trial)
        except Exception as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            self.failures.append(f"trial {trial.number}: {type(exc).__name__}: {reason}")
            (self.console or Console(quiet=True)).print(
                f"trial {trial.number} failed: {reason}", highlight=False, markup=False
            )
            raise

    def _run(self, trial: Any) -> float:
        from reidbench.runner import pick_device, run_one

        console = self.console or Console(quiet=True)
        values = {p.key: p.suggest(trial) for p in self.space}
        tags = {"run_kind": "trial", "study": self.study_name, "trial": str(trial.number)}
        overrides = [*self.base, *_overrides(values)]
        spec = make_spec(self.method, self.dataset, self.seed, overrides, tags, validation=self.fraction)
        shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())
        console.print(f"trial {trial.number}: {shown}", highlight=False, markup=False)
        result = run_one(spec, self.ctx, pick_device(self.ctx.device))
        trial.set_user_attr("mlflow_run_id", result.run_id)
        console.print(
            f"trial {trial.number}: validation mAP {100 * result.metrics['mAP']:.1f}", highlight=False
        )
        return result.metrics["mAP"]


def _parent(
    study: Any, ctx: RunContext, exp_id: str, method: str, dataset: str, storage: str
) -> tracking.Run:
    """The study's MLflow parent run (its id is kept in the study, so every worker logs under it)."""
    known = study.user_attrs.get("mlflow_parent_run_id")
    if known:
        run = tracking.Run.reopen(ctx.tracking_uri, known)
        if run is not None:
            return run
    tags = {
        "run_kind": "parent",
        "kind": "study",
        "study": study.study_name,
        "method": method,
        "dataset": dataset,
        "optuna_storage": storage.split("@")[-1],
        "git_commit": tracking.git_commit(),
    }
    run = tracking.Run(ctx.tracking_uri, exp_id, f"study:{study.study_name}", tags)
    study.set_user_attr("mlflow_parent_run_id", run.run_id)
    return run


def best_command(study: Any, method: str, dataset: str) -> str:
    """The ``reidbench run`` command line that trains the best trial's setting on the test protocol: the
    study's --recipe, --protocol and --set, then the best trial's values (shell-quoted)."""
    args = [
        "reidbench",
        "run",
        "--method",
        method,
        "--dataset",
        dataset,
        *study.user_attrs.get("run_args", []),
    ]
    for override in _overrides(study.best_trial.params):
        args += ["--set", override]
    return shlex.join(args)
