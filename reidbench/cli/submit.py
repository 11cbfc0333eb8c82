"""A job's command line checked exactly as the command would check it, before anything is stored.

The arguments are parsed by the real click command (``make_context``, nothing runs) and the same spec
building code the command calls turns them into its runs, so ``queue add run ...`` fails with the same
message as ``run ...`` would, and a job that could never run is never queued. The queue chooses the
devices: ``--gpus`` and ``--launcher`` belong to ``reidbench serve``.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from reidbench.cli.common import build_executor
from reidbench.cli.runs import ablate, ablate_specs, run, run_specs, tune
from reidbench.errors import UserError

__all__ = ["KINDS", "Submission", "check"]

COMMANDS: dict[str, click.Command] = {"run": run, "ablate": ablate, "tune": tune}
KINDS = tuple(COMMANDS)
# what a job's process inherits from the submitter besides the server's environment; secrets are never
# written to the queue file (the server's own environment still reaches the job)
ENV_PREFIXES = ("REIDBENCH_", "MLFLOW_")
ENV_SECRET_WORDS = ("TOKEN", "PASSWORD", "SECRET", "KEY")
ENV_SKIP = ("REIDBENCH_QUEUE",)


def submitter_env() -> dict[str, str]:
    """The submitter's REIDBENCH_* / MLFLOW_* variables a job runs with, without secrets."""
    return {
        k: v
        for k, v in os.environ.items()
        if k.startswith(ENV_PREFIXES) and k not in ENV_SKIP and not any(w in k for w in ENV_SECRET_WORDS)
    }


@dataclass
class Submission:
    """A checked job: its full command line (tracking URI made explicit), what it trains and needs."""

    kind: str
    args: list[str]
    summary: str
    units: int
    points: list[dict[str, Any]] = field(default_factory=list)
    tracking_uri: str | None = None
    experiment: str | None = None
    env: dict[str, str] = field(default_factory=dict)


def check(kind: str, args: list[str]) -> Submission:
    """Parse and check ``reidbench KIND ARGS...``; a UserError (or click's usage error) when it would fail."""
    if kind not in KINDS:
        raise UserError(f"queue add: unknown command {kind!r}; expected one of {', '.join(KINDS)}")
    command = COMMANDS[kind]
    # parses and checks the options; --help prints the command's help and ends here (click's Exit)
    ctx = command.make_context(f"reidbench queue add {kind}", list(args))
    params = dict(ctx.params)
    if params.get("gpus"):
        raise UserError(
            "queue add: the queue places jobs on GPUs itself; give --gpus-per-run N and start the "
            "scheduler with `reidbench serve --gpus ...` instead of --gpus"
        )
    if params.get("launcher") != "local":
        raise UserError("queue add: --launcher belongs to the scheduler: `reidbench serve --launcher slurm`")
    from reidbench import tracking
    from reidbench.protocol import protocol_file

    # --gpus-per-run, --partition, --slurm-set checked the way the command does (Slurm options for a
    # job meant for `serve --launcher slurm`)
    slurm = bool(params.get("partition") or params.get("slurm_set"))
    build_executor({**params, "launcher": "slurm" if slurm else "local"})
    with protocol_file(params.get("protocol")):
        specs = _specs(kind, params)
    _check_data(kind, params, specs)
    uri = params.get("tracking_uri") or tracking.default_uri()
    uri = _absolute_uri(uri)
    tracking.prepare(uri, params["experiment"])  # created once here, not by racing jobs and readers
    full = [kind, *args]
    if not params.get("tracking_uri"):
        full += ["--tracking-uri", uri]
    points = [{"name": s.name, "config_hash": s.config_hash, "epochs": _epochs(s)} for s in specs]
    env = submitter_env()
    return Submission(
        kind,
        full,
        f"{kind} {shlex.join(args)}",
        int(params["gpus_per_run"]),
        points,
        uri,
        params["experiment"],
        env,
    )


def _specs(kind: str, params: dict[str, Any]) -> list[Any]:
    """The runs the command would train, under its --protocol and --recipe (tune: none known in advance;
    its space is checked)."""
    from reidbench.protocol import protocol_file
    from reidbench.recipes import recipe_choice

    with protocol_file(params.get("protocol")), recipe_choice(params.get("recipe")):
        return _command_specs(kind, params)


def _command_specs(kind: str, params: dict[str, Any]) -> list[Any]:
    if kind == "run":
        return run_specs(**params)
    if kind == "ablate":
        return ablate_specs(**params)[1]
    from reidbench.spec import make_spec
    from reidbench.sweeps.tune import load_space

    if params["gpus_per_run"] != 1:
        raise UserError("queue add tune: a study runs its trials in one process; drop --gpus-per-run")
    if params["trials"] < 1:
        raise UserError(f"--trials must be at least 1, got {params['trials']}")
    load_space(params["space"])
    make_spec(params["method"], params["dataset"], params["seed"], list(params["overrides"]))
    return []


def _check_data(kind: str, params: dict[str, Any], specs: list[Any]) -> None:
    """Refuse a job whose datasets cannot be read (as the command would, before its first run), under the
    job's --data-root (default: the submitter's $REIDBENCH_DATA, which the job inherits, else ./data)."""
    from types import SimpleNamespace

    from reidbench.generalisation import source_names
    from reidbench.spec import default_data_root
    from reidbench.sweeps.sweep import check_datasets

    names = {name for spec in specs for name in spec.datasets}
    if kind == "tune":
        names.update(source_names(params["dataset"]))
    where = SimpleNamespace(
        data_root=params.get("data_root") or default_data_root(), allow_partial=params.get("allow_partial")
    )
    check_datasets(names, where)


def _epochs(spec: Any) -> int:
    return int(sum(s.epochs for s in spec.protocol.resolved_stages()))


def _absolute_uri(uri: str) -> str:
    """``sqlite:///relative.db`` -> the same file by absolute path (the job may start in another cwd)."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri[len(prefix) :].startswith("/"):
        return prefix + str(Path(uri[len(prefix) :]).resolve())
    return uri
