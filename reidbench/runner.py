"""One run end to end: dataset -> DataModule -> model -> engine.fit -> evaluate -> MLflow."""

from __future__ import annotations

import random
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reidbench import tracking
from reidbench.config import to_dict
from reidbench.data.module import DataModule
from reidbench.data.validation import validation_split
from reidbench.evaluation import evaluate
from reidbench.evaluation.cost import forward_gflops
from reidbench.factory import BuildInfo, create_loss_terms, create_method, create_tokenizer
from reidbench.parallel import distributed
from reidbench.protocol import dump_yaml
from reidbench.registry import DATASETS, load_plugins
from reidbench.spec import RunSpec, method_config
from reidbench.sweeps import liveness
from reidbench.train import engine
from reidbench.train.checkpoint import Checkpointer
from reidbench.train.losses import Criterion


@dataclass
class RunResult:
    spec: RunSpec
    metrics: dict[str, float]
    run_id: str | None = None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device(name: str = "auto") -> torch.device:
    """``auto``: CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def execute(
    spec: RunSpec,
    data_root: Path,
    uri: str | None,
    experiment: str = tracking.DEFAULT_EXPERIMENT,
    device: torch.device | None = None,
    show_progress: bool = True,
    parent_run_id: str | None = None,
    checkpoint_dir: Path | None = None,
    keep_checkpoint: bool = False,
    allow_partial: bool = False,
) -> RunResult:
    """Train and evaluate ``spec``; log everything to MLflow when ``uri`` is given.

    With ``checkpoint_dir`` the training state is saved under ``<checkpoint_dir>/<config_hash>/`` after every
    epoch; an interrupted run resumes from there (continuing its MLflow run) and ends with the metrics of an
    uninterrupted one. The state is deleted once the run finished unless ``keep_checkpoint``. Under
    torch.distributed (process group set up by the caller) every rank calls this; rank 0 logs and saves.
    ``allow_partial``: use a dataset whose layout check found problems (warns instead of failing).
    """
    load_plugins()
    device = device or pick_device()
    seed_everything(spec.seed)
    config = spec.config()
    digest = spec.config_hash
    rank = distributed.rank()
    ckpt = Checkpointer(Path(checkpoint_dir) / digest) if checkpoint_dir is not None else None
    state = ckpt.load(device) if ckpt is not None else None
    run = (
        _open_run(spec, config, digest, uri, experiment, device, parent_run_id, state)
        if uri and rank == 0
        else None
    )

    def save(train_state: dict[str, Any]) -> None:
        if rank == 0:
            ckpt.save({**train_state, "config_hash": digest, "run_id": run.run_id if run else None})

    try:
        metrics = _train_and_evaluate(
            spec,
            data_root,
            device,
            show_progress and rank == 0,
            run,
            state,
            save if ckpt is not None else None,
            allow_partial,
        )
    except BaseException as exc:
        if run is not None:
            run.set_tags({"error": f"{type(exc).__name__}: {exc}"[:5000]})
            run.log_text(traceback.format_exc(), "error.txt")
            run.finish("KILLED" if isinstance(exc, KeyboardInterrupt | SystemExit) else "FAILED")
        raise
    if run is not None:
        run.log_metrics(metrics)
        run.finish()
    if ckpt is not None and not keep_checkpoint and rank == 0:
        ckpt.clear()
    return RunResult(spec, metrics, run.run_id if run else None)


def _open_run(
    spec: RunSpec,
    config: dict[str, Any],
    digest: str,
    uri: str,
    experiment: str,
    device: torch.device,
    parent_run_id: str | None,
    state: dict[str, Any] | None,
) -> tracking.Run:
    """The MLflow run of ``spec``: the interrupted run when resuming from ``state``, else a new one."""
    if state is not None and state.get("run_id"):
        run = tracking.Run.reopen(uri, state["run_id"])
        if run is not None:
            run.set_tags({"resumed_at_epoch": str(state["epoch"]), **liveness.owner_tags()})
            return run
    exp_id = tracking.prepare(uri, experiment)
    tags = {
        "run_kind": "run",
        "method": spec.method,
        "dataset": spec.dataset,
        "seed": str(spec.seed),
        "config_hash": digest,
        "git_commit": tracking.git_commit(),
        "device": str(device),
        **liveness.owner_tags(),
        **spec.tags,
    }
    if distributed.world_size() > 1:
        tags["world_size"] = str(distributed.world_size())
    run = tracking.Run(uri, exp_id, spec.name, tags, parent_run_id)
    run.log_params(tracking.flatten(to_dict(config)))
    run.log_text(dump_yaml(config), "config.yaml")
    if state is not None:  # resumed into a new store: replay the curves of the finished epochs
        run.set_tags({"resumed_at_epoch": str(state["epoch"])})
        for epoch, values in enumerate(state["result"]["history"]):
            run.log_metrics(values, step=epoch)
    return run


def _train_and_evaluate(
    spec: RunSpec,
    data_root: Path,
    device: torch.device,
    show_progress: bool,
    run: tracking.Run | None,
    state: dict[str, Any] | None = None,
    save: engine.StateSaver | None = None,
    allow_partial: bool = False,
) -> dict[str, float]:
    dataset = DATASETS.get(spec.dataset).builder(Path(data_root), allow_partial=allow_partial)
    if spec.validation:
        dataset = validation_split(dataset, spec.validation)
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
        show_progress=show_progress,
        tokenizer=tokenizer,
    )
    info = BuildInfo.from_protocol(spec.protocol, dataset.info, data.num_classes, tokenizer)
    model = create_method(spec.method, cfg, info).to(device)
    if distributed.world_size() > 1:
        model = distributed.sync_batchnorm(model, device)
    criterion = Criterion(
        spec.protocol.loss,
        data.num_classes,
        model.embed_dim,
        create_loss_terms(spec.method, cfg, spec.protocol.loss),
    ).to(device)
    params = sum(p.numel() for p in model.parameters())

    def on_epoch(epoch: int, values: dict[str, float]) -> None:
        if run is not None:
            run.log_metrics(values, step=epoch)
            run.set_tags(liveness.heartbeat_tags())

    fit = engine.fit(model, criterion, data, spec.protocol, device, on_epoch, show_progress, state, save)
    metrics = evaluate(model, data)
    gflops = forward_gflops(model, next(data.eval_batches("query", 2)))  # inference GFLOPs per sample
    metrics.update(
        params=float(params),
        gflops=gflops,
        train_time_s=fit.train_time_s,
        train_samples_per_s=fit.samples_per_s,
        train_images_per_s=fit.samples_per_s * len(data.modalities),
    )
    return metrics
