"""One run in this process: dataset -> DataModule -> model -> engine.fit -> evaluate -> MLflow.

:func:`run_one` is the single entry point every way of starting a run ends in (the sweep's executors,
worker processes, Slurm tasks, tuning trials). Under torch.distributed every rank calls it with the process
group already set up; rank 0 logs and checkpoints.
"""

from __future__ import annotations

import random
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from reidbench import tracking
from reidbench.config import to_dict
from reidbench.context import RunContext, RunResult
from reidbench.data.loading import load_dataset
from reidbench.data.module import DataModule
from reidbench.data.validation import validation_split
from reidbench.evaluation import evaluate
from reidbench.evaluation.cost import count_nonzero, count_params, forward_gflops, inference_throughput
from reidbench.evaluation.missing import declared_conventions, model_conventions, resolve_conventions
from reidbench.evaluation.targets import evaluate_targets
from reidbench.nn.backbones import weights_tags
from reidbench.nn.factory import BuildInfo, create_loss_terms, create_method, create_tokenizer
from reidbench.parallel import distributed
from reidbench.protocol import dump_yaml
from reidbench.registry import load_plugins, plugins
from reidbench.spec import RunSpec, method_config
from reidbench.train import engine
from reidbench.train.checkpoint import Checkpointer
from reidbench.train.losses import Criterion
from reidbench.train.state import TrainState
from reidbench.train.warm_start import start
from reidbench.train.weights import log_run_weights
from reidbench.util import liveness

THROUGHPUT_BATCH = 32  # query samples per timed forward pass (the metric ``throughput``, samples/s)


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device(name: str = "auto") -> torch.device:
    """``auto``: CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def run_one(spec: RunSpec, ctx: RunContext, device: torch.device | None = None) -> RunResult:
    """Train and evaluate ``spec``; log everything to MLflow when ``ctx.tracking_uri`` is set.

    With ``ctx.checkpoint_dir`` the training state is saved under ``<checkpoint_dir>/<config_hash>/`` after
    every epoch; an interrupted run resumes from there (continuing its MLflow run) and ends with the metrics
    of an uninterrupted one. The state is deleted once the run finished unless ``ctx.keep_checkpoints``.
    A failure marks the MLflow run FAILED (KILLED when interrupted) and is raised again.
    """
    load_plugins()
    device = device or pick_device(ctx.device)
    seed_everything(spec.seed)
    lead = distributed.rank() == 0
    ckpt = Checkpointer(Path(ctx.checkpoint_dir) / spec.config_hash) if ctx.checkpoint_dir else None
    state = (ckpt.load(device) if ckpt is not None else None) or TrainState(spec.config_hash)
    run = _open_run(spec, ctx, device, state) if ctx.tracking_uri and lead else None
    if run is not None:
        state.run_id = run.run_id
        replaced = liveness.retire_dead_runs(ctx.tracking_uri, ctx.experiment, spec.config_hash, run.run_id)
        if replaced:
            run.set_tags({"replaces": ",".join(replaced)})
    try:
        metrics = _fit_and_evaluate(spec, ctx, device, state, run, ckpt if lead else None)
    except BaseException as exc:
        if run is not None:
            run.set_tags({"error": f"{type(exc).__name__}: {exc}"[:5000]})
            run.log_text(traceback.format_exc(), "error.txt")
            run.finish("KILLED" if isinstance(exc, KeyboardInterrupt | SystemExit) else "FAILED")
        raise
    if run is not None:
        run.log_metrics(metrics)
        run.finish()
    if ckpt is not None and lead and not ctx.keep_checkpoints:
        ckpt.clear()
    return RunResult(spec, metrics, run.run_id if run is not None else None)


def _open_run(spec: RunSpec, ctx: RunContext, device: torch.device, state: TrainState) -> tracking.Run:
    """The MLflow run of ``spec``: the interrupted run when resuming from ``state``, else a new one."""
    uri = ctx.tracking_uri
    if state.started and state.run_id:
        run = tracking.Run.reopen(uri, state.run_id)
        if run is not None:
            run.set_tags({"resumed_at_epoch": str(state.epoch), **liveness.owner_tags()})
            return run
    tags = {
        "run_kind": "run",
        "method": spec.method,
        "dataset": spec.dataset,
        "seed": str(spec.seed),
        "config_hash": spec.config_hash,
        "recipe": spec.recipe,
        "git_commit": tracking.git_commit(),
        "device": str(device),
        **plugins.plugin_tags(),
        **liveness.owner_tags(),
        **spec.tags,
    }
    if distributed.world_size() > 1:
        tags["world_size"] = str(distributed.world_size())
    config = spec.config()
    run = tracking.Run(uri, tracking.prepare(uri, ctx.experiment), spec.name, tags, ctx.parent_run_id)
    run.log_params({**tracking.flatten(to_dict(config)), "recipe": spec.recipe})
    run.log_text(dump_yaml(config), "config.yaml")
    if state.started:  # resumed into a new store: replay the curves of the finished epochs
        run.set_tags({"resumed_at_epoch": str(state.epoch)})
        for epoch, values in enumerate(state.history):
            run.log_metrics(values, step=epoch)
    return run


@dataclass
class _EpochLog:
    """After every epoch: the curves and a heartbeat to MLflow, the state to the checkpoint."""

    run: tracking.Run | None
    ckpt: Checkpointer | None

    def __call__(self, state: TrainState) -> None:
        if self.run is not None:
            self.run.log_metrics(state.history[-1], step=state.epoch - 1)
            self.run.set_tags(liveness.heartbeat_tags())
        if self.ckpt is not None:
            self.ckpt.save(state)


def missing_conventions(spec: RunSpec, model: torch.nn.Module) -> list[str]:
    """The missing-modality conventions ``spec`` evaluates ``model`` under, its own first (a UserError for
    one the method does not support)."""
    supported = model_conventions(model, declared_conventions(spec.method))
    return resolve_conventions(spec.protocol.eval.missing_conventions, supported, f"method {spec.method!r}")


def _convention_tag(spec: RunSpec, conventions: list[str]) -> dict[str, str]:
    """``missing_convention``: the convention the plain ``@no_*`` metric names mean (when evaluated)."""
    return {"missing_convention": conventions[0]} if spec.protocol.eval.missing_modality else {}


def _fit_and_evaluate(
    spec: RunSpec,
    ctx: RunContext,
    device: torch.device,
    state: TrainState,
    run: tracking.Run | None,
    ckpt: Checkpointer | None,
) -> dict[str, float]:
    dataset = load_dataset(spec.dataset, ctx.data_root, ctx.allow_partial)
    targets = {name: load_dataset(name, ctx.data_root, ctx.allow_partial) for name in spec.test_on}
    if (dataset.problems or any(t.problems for t in targets.values())) and run is not None:
        run.set_tags({"partial_data": "true"})
    if spec.validation is not None:
        dataset = validation_split(dataset, spec.validation)
    show = ctx.show_progress and distributed.rank() == 0
    cfg = method_config(spec.method, spec.protocol.method)
    tokenizer = create_tokenizer(spec.method, cfg, spec.protocol, dataset.info)
    # each rank gets its slice of the same global batch (and its augmentation draws)
    data = DataModule(
        dataset,
        spec.protocol,
        device,
        spec.seed,
        rank=distributed.rank(),
        world_size=distributed.world_size(),
        show_progress=show,
        tokenizer=tokenizer,
    )
    info = BuildInfo.from_protocol(spec.protocol, dataset.info, data.num_classes, tokenizer)
    model = create_method(spec.method, cfg, info).to(device)
    conventions = missing_conventions(spec, model)  # checked before any training
    if run is not None and (tags := {**weights_tags(model), **_convention_tag(spec, conventions)}):
        run.set_tags(tags)
    # a warm start (e.g. a pruning round) loads another run's weights and transforms them
    started = start(model, spec.warm_start, ctx.tracking_uri, ctx.experiment)
    if distributed.world_size() > 1:
        model = distributed.sync_batchnorm(model, device)
    criterion = Criterion(
        spec.protocol.loss,
        data.num_classes,
        model.embed_dim,
        create_loss_terms(spec.method, cfg, spec.protocol.loss),
    ).to(device)
    log = _EpochLog(run, ckpt)
    # every rank takes part in a snapshot (it gathers the RNG states); only the lead rank saves it
    snapshot = ctx.checkpoint_dir is not None
    with started.during:
        state = engine.fit(model, criterion, data, spec.protocol, device, state, log, show, snapshot)
    metrics = evaluate(
        model, data.eval_set("query"), data.eval_set("gallery"), spec.protocol.eval, conventions
    )
    metrics.update(evaluate_targets(model, spec, targets, device, tokenizer, show))
    gflops = forward_gflops(model, next(data.eval_batches("query", 2)))  # inference GFLOPs per sample
    batch = next(data.eval_batches("query", THROUGHPUT_BATCH))
    metrics.update(
        params=float(count_params(model)),
        nonzero_params=float(count_nonzero(model.parameters())),
        gflops=gflops,
        throughput=inference_throughput(model, batch, len(batch["pid"])),
        train_time_s=state.train_time_s,
        train_samples_per_s=state.samples_per_s,
        train_images_per_s=state.samples_per_s * len(data.modalities),
    )
    if run is not None and ctx.save_weights:  # the lead rank's run only
        log_run_weights(run, model, spec.config(), started.meta(model))
    return metrics
