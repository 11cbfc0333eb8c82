"""The one training loop: stages (fresh optimizer each), AMP, LR schedule, progress and per-epoch logging,
checkpoint + resume, and DDP (one run on several processes, see reidbench.parallel.distributed)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from rich.progress import TextColumn
from torch import nn

from reidbench.data.module import DataModule
from reidbench.errors import UserError
from reidbench.nn.output import ModelOutput
from reidbench.parallel import distributed
from reidbench.protocol import Protocol, StageCfg
from reidbench.train.checkpoint import capture_rng, restore_rng
from reidbench.train.losses import Criterion
from reidbench.train.optim import build_optimizer
from reidbench.train.schedule import Schedule, resolve_schedule
from reidbench.train.state import TrainState
from reidbench.util.progress import NullProgress, make_progress

EpochHook = Callable[[TrainState], None]
PROGRESS_COLUMNS = (TextColumn("loss {task.fields[loss]:.3f}"), TextColumn("{task.fields[ips]:.0f} img/s"))


def set_frozen(model: nn.Module, names: list[str]) -> None:
    """Unfreeze everything except the BNNeck bias, then freeze the named submodules."""
    for name, param in model.named_parameters():
        param.requires_grad_(not name.endswith("head.bn.bias"))
    for name in names:
        try:
            module = model.get_submodule(name)
        except AttributeError:
            raise UserError(f"stage freezes {name!r}, which the model does not have") from None
        module.requires_grad_(False)


@dataclass
class StageLoop:
    """One stage set up for training: its forward (DDP-wrapped, compiled), a fresh optimizer, the LR
    schedule, and the scheduler step reached."""

    stage: StageCfg
    forward: Callable[[dict], ModelOutput]
    optimizer: torch.optim.Optimizer
    base_lrs: list[float]
    schedule: Schedule
    total_steps: int
    step: int = 0
    first_epoch: int = 0  # the run's epoch index at which this stage starts

    def apply_lr(self, epoch: int) -> None:
        """Set every group's learning rate for the current step of the stage's ``epoch``-th epoch (from 0)."""
        t = self.schedule.t(self.step, epoch)
        for group, base in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            group["lr"] = self.schedule.lr(t, base, self.stage.lr)


def start_stage(
    model: nn.Module,
    criterion: nn.Module,
    protocol: Protocol,
    stage: StageCfg,
    device: torch.device,
    steps_per_epoch: int,
) -> StageLoop:
    """Freeze what the stage freezes, wrap the model (DDP, torch.compile) and build a fresh optimizer."""
    set_frozen(model, stage.freeze)
    train_model = model  # a fresh DDP wrapper per stage: DDP fixes its parameters at wrap time
    if distributed.world_size() > 1:
        train_model = distributed.wrap(model, device)
    forward = torch.compile(train_model) if protocol.train.compile else train_model
    optimizer = build_optimizer(model, criterion, protocol, stage)
    return StageLoop(
        stage,
        forward,
        optimizer,
        [g["lr"] for g in optimizer.param_groups],
        resolve_schedule(protocol.schedule, stage, steps_per_epoch),
        stage.epochs * steps_per_epoch,
    )


def fit(
    model: nn.Module,
    criterion: Criterion,
    data: DataModule,
    protocol: Protocol,
    device: torch.device,
    state: TrainState | None = None,
    on_epoch: EpochHook | None = None,
    show_progress: bool = True,
    snapshot: bool = False,
) -> TrainState:
    """Train ``model`` through the protocol's stages and return the final :class:`TrainState`.

    ``state``: where to start; a state that holds weights (a checkpoint) resumes after its last epoch
    and ends as the uninterrupted run would. ``on_epoch(state)`` runs after every epoch (on every rank);
    with ``snapshot`` the state then also holds the model, criterion, optimizer and RNG states, ready to be
    saved. Under torch.distributed each rank trains on its slice of the global batch (``data`` built with
    the rank and world size) and the loss is computed on the gathered outputs of the global batch.
    """
    state = state or TrainState()
    if distributed.world_size() > 1:
        distributed.check_divisible(protocol.sampler.p, distributed.world_size())
    resume = _load(state, model, criterion)
    steps = data.steps_per_epoch()
    with make_progress(*PROGRESS_COLUMNS) if show_progress else NullProgress() as progress:
        offset = 0
        for index, stage in enumerate(protocol.resolved_stages()):
            if offset + stage.epochs <= state.epoch:  # finished before the interruption
                offset += stage.epochs
                continue
            loop = start_stage(model, criterion, protocol, stage, device, steps)
            loop.first_epoch = offset
            first = 0
            if resume is not None:
                if state.epoch > offset:  # interrupted inside this stage
                    loop.optimizer.load_state_dict(resume.optimizer)
                    loop.step, first = state.step, state.epoch - offset
                restore_rng(resume.rng[distributed.rank() % len(resume.rng)])
                resume = None
            task = progress.add_task(
                f"train {stage.name}", total=loop.total_steps, completed=loop.step, loss=float("nan"), ips=0.0
            )
            for epoch in range(first, stage.epochs):
                metrics = train_epoch(
                    model, criterion, loop, data, protocol, device, offset + epoch, state, task, progress
                )
                state.epoch, state.stage, state.step = offset + epoch + 1, index, loop.step
                state.history.append(metrics)
                if snapshot:
                    _snapshot(state, model, criterion, loop.optimizer)
                if on_epoch:
                    on_epoch(state)
            offset += stage.epochs
    return state


def train_epoch(
    model: nn.Module,
    criterion: Criterion,
    loop: StageLoop,
    data: DataModule,
    protocol: Protocol,
    device: torch.device,
    epoch: int,
    state: TrainState,
    task: int = 0,
    progress: Any = None,
) -> dict[str, float]:
    """One epoch of ``loop``'s stage; adds to the state's time and sample counts, returns the epoch's
    mean loss terms (``train_<term>``), the last learning rate and the epoch's wall time."""
    use_amp = protocol.train.amp and device.type == "cuda"
    progress = progress or NullProgress()
    model.train()
    for name in loop.stage.freeze:  # frozen modules run as at inference: no dropout, drop path or BN updates
        model.get_submodule(name).eval()
    sums: dict[str, float] = {}
    count, t0 = 0, time.perf_counter()
    for batch in data.train_batches(epoch):
        loop.apply_lr(epoch - loop.first_epoch)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            out = loop.forward(batch)
        labels = batch["pid"]
        if distributed.world_size() > 1:  # the loss of the global batch, as on one process
            out, labels = distributed.gather_output(out, len(labels)), distributed.gather_rows(labels)
        losses = criterion(out, labels, loop.stage.loss, loop.stage.label_smoothing)
        if not torch.isfinite(losses["loss"]):
            raise FloatingPointError(f"loss is {losses['loss'].item()} at epoch {epoch}, step {loop.step}")
        loop.optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        if protocol.optim.grad_clip:
            nn.utils.clip_grad_norm_(model.parameters(), protocol.optim.grad_clip)
        loop.optimizer.step()
        loop.step += 1
        count += 1
        state.samples_seen += len(labels)
        for k, v in losses.items():
            sums[k] = sums.get(k, 0.0) + float(v.detach())
        elapsed = time.perf_counter() - t0
        images = count * len(labels) * len(data.modalities)
        progress.update(task, advance=1, loss=sums["loss"] / count, ips=images / max(elapsed, 1e-9))
    epoch_time = time.perf_counter() - t0
    state.train_time_s += epoch_time
    metrics = {f"train_{k}": v / max(count, 1) for k, v in sums.items()}
    metrics["lr"] = loop.optimizer.param_groups[0]["lr"]
    metrics["epoch_time_s"] = epoch_time
    return metrics


def _load(state: TrainState, model: nn.Module, criterion: nn.Module) -> TrainState | None:
    """Load a checkpointed state's weights; the optimizer and RNG part to resume with (None: fresh start).
    The state keeps no copy of the loaded tensors."""
    if not state.started:
        return None
    model.load_state_dict(state.model)
    criterion.load_state_dict(state.criterion)
    resume = TrainState(optimizer=state.optimizer, rng=state.rng)
    state.model = state.criterion = state.optimizer = None
    return resume


def _snapshot(
    state: TrainState, model: nn.Module, criterion: nn.Module, optimizer: torch.optim.Optimizer
) -> None:
    """Fill in what a checkpoint needs besides the counters (every rank's RNG state: a collective call)."""
    state.model, state.criterion = model.state_dict(), criterion.state_dict()
    state.optimizer = optimizer.state_dict()
    state.rng = distributed.all_gather_object(capture_rng())
