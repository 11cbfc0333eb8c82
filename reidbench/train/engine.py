"""The one training loop: stages (fresh optimizer each), AMP, LR schedule, progress and per-epoch logging,
checkpoint + resume, and DDP (one run on several processes, see reidbench.parallel.distributed)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from rich.progress import TextColumn
from torch import nn

from reidbench.data.module import DataModule
from reidbench.errors import UserError
from reidbench.parallel import distributed
from reidbench.progress import make_progress
from reidbench.protocol import Protocol, StageCfg
from reidbench.train.checkpoint import capture_rng, restore_rng
from reidbench.train.losses import Criterion

EpochLogger = Callable[[int, dict[str, float]], None]
StateSaver = Callable[[dict[str, Any]], None]


@dataclass
class FitResult:
    """What training measured: per-epoch curves and throughput."""

    history: list[dict[str, float]] = field(default_factory=list)
    train_time_s: float = 0.0
    samples_seen: int = 0

    @property
    def samples_per_s(self) -> float:
        return self.samples_seen / self.train_time_s if self.train_time_s else 0.0


def lr_factor(
    kind: str, step: int, total: int, warmup: int, warmup_factor: float, min_factor: float
) -> float:
    """LR multiplier at ``step`` of ``total``: linear warmup, then cosine / constant / inverse-sqrt."""
    if step < warmup:
        return warmup_factor + (1 - warmup_factor) * step / warmup
    if kind == "constant":
        return 1.0
    if kind == "warmup_sqrt":  # GraFT: lr * sqrt(warmup / step), last 10% linear to 0
        base = math.sqrt(max(warmup, 1) / max(step, 1))
        tail = int(0.9 * total)
        return base * (1 - (step - tail) / max(total - tail, 1)) if step >= tail else base
    progress = min((step - warmup) / max(total - warmup, 1), 1.0)
    return min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * progress))


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


def build_optimizer(
    model: nn.Module, criterion: nn.Module, protocol: Protocol, stage: StageCfg
) -> torch.optim.Optimizer:
    """A fresh optimizer over the trainable parameters (biases and norms without weight decay)."""
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (no_decay if param.ndim <= 1 else decay).append(param)
    groups = [
        {"params": decay, "weight_decay": stage.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
        {
            "params": [p for p in criterion.parameters() if p.requires_grad],
            "weight_decay": 0.0,
            "lr": protocol.loss.center_lr,
        },
    ]
    groups = [g for g in groups if g["params"]]
    opt = protocol.optim
    if opt.name == "sgd":
        return torch.optim.SGD(groups, lr=stage.lr, momentum=opt.momentum)
    cls = torch.optim.AdamW if opt.name == "adamw" else torch.optim.Adam
    return cls(groups, lr=stage.lr, betas=tuple(opt.betas))


def fit(
    model: nn.Module,
    criterion: Criterion,
    data: DataModule,
    protocol: Protocol,
    device: torch.device,
    on_epoch: EpochLogger | None = None,
    show_progress: bool = True,
    resume: dict[str, Any] | None = None,
    save: StateSaver | None = None,
) -> FitResult:
    """Train ``model`` through the protocol's stages; ``on_epoch(epoch, metrics)`` after every epoch.

    ``save(state)`` gets the full training state after every epoch (on every rank); passing a saved state
    back as ``resume`` continues after its last epoch and ends as the uninterrupted run would. Under
    torch.distributed each rank trains on its slice of the global batch (``data`` built with the rank and
    world size) and the loss is computed on the gathered outputs of the global batch.
    """
    result = FitResult()
    use_amp = protocol.train.amp and device.type == "cuda"
    rank, world = distributed.rank(), distributed.world_size()
    if world > 1:
        distributed.check_divisible(protocol.sampler.p, world)
    steps = data.steps_per_epoch()
    epoch_offset, done = 0, 0
    if resume is not None:
        model.load_state_dict(resume["model"])
        criterion.load_state_dict(resume["criterion"])
        result = FitResult(**resume["result"])
        done = resume["epoch"]
    columns = (TextColumn("loss {task.fields[loss]:.3f}"), TextColumn("{task.fields[ips]:.0f} img/s"))
    with make_progress(*columns) if show_progress else _NoProgress() as progress:
        for stage_index, stage in enumerate(protocol.resolved_stages()):
            if epoch_offset + stage.epochs <= done:  # finished before the interruption
                epoch_offset += stage.epochs
                continue
            set_frozen(model, stage.freeze)
            train_model = (
                model  # drops the previous stage's DDP wrapper: DDP fixes its parameters at wrap time
            )
            if world > 1:
                train_model = distributed.wrap(model, device)
            forward = torch.compile(train_model) if protocol.train.compile else train_model
            optimizer = build_optimizer(model, criterion, protocol, stage)
            base_lrs = [g["lr"] for g in optimizer.param_groups]
            total = stage.epochs * steps
            warmup = int(stage.warmup_epochs * steps)
            step, first = 0, 0
            if resume is not None:
                if done > epoch_offset:  # interrupted inside this stage
                    optimizer.load_state_dict(resume["optimizer"])
                    step, first = resume["step"], done - epoch_offset
                rngs = resume["rng"]
                restore_rng(rngs[rank % len(rngs)])
                resume = None
            task = progress.add_task(
                f"train {stage.name}", total=total, completed=step, loss=float("nan"), ips=0.0
            )
            for epoch in range(first, stage.epochs):
                model.train()
                sums: dict[str, float] = {}
                count, t0 = 0, time.perf_counter()
                for batch in data.train_batches(epoch_offset + epoch):
                    factor = lr_factor(
                        stage.schedule,
                        step,
                        total,
                        warmup,
                        protocol.schedule.warmup_factor,
                        protocol.schedule.min_lr_factor,
                    )
                    for group, base in zip(optimizer.param_groups, base_lrs, strict=True):
                        group["lr"] = base * factor
                    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                        out = forward(batch)
                    labels = batch["pid"]
                    if world > 1:  # the loss of the global batch, as on one process
                        out, labels = (
                            distributed.gather_output(out, len(labels)),
                            distributed.gather_rows(labels),
                        )
                    losses = criterion(out, labels, stage.loss, stage.label_smoothing)
                    if not torch.isfinite(losses["loss"]):
                        raise FloatingPointError(
                            f"loss is {losses['loss'].item()} at epoch {epoch_offset + epoch}, step {step}"
                        )
                    optimizer.zero_grad(set_to_none=True)
                    losses["loss"].backward()
                    if protocol.optim.grad_clip:
                        nn.utils.clip_grad_norm_(model.parameters(), protocol.optim.grad_clip)
                    optimizer.step()
                    step += 1
                    count += 1
                    n = len(labels)
                    result.samples_seen += n
                    for k, v in losses.items():
                        sums[k] = sums.get(k, 0.0) + float(v.detach())
                    elapsed = time.perf_counter() - t0
                    progress.update(
                        task,
                        advance=1,
                        loss=sums["loss"] / count,
                        ips=count * n * len(data.modalities) / max(elapsed, 1e-9),
                    )
                epoch_time = time.perf_counter() - t0
                result.train_time_s += epoch_time
                metrics = {f"train_{k}": v / max(count, 1) for k, v in sums.items()}
                metrics["lr"] = optimizer.param_groups[0]["lr"]
                metrics["epoch_time_s"] = epoch_time
                result.history.append(metrics)
                if on_epoch:
                    on_epoch(epoch_offset + epoch, metrics)
                if save is not None:
                    save(
                        {
                            "epoch": epoch_offset + epoch + 1,
                            "stage": stage_index,
                            "step": step,
                            "model": model.state_dict(),
                            "criterion": criterion.state_dict(),
                            "optimizer": optimizer.state_dict(),
                            "result": asdict(result),
                            "rng": distributed.all_gather_object(capture_rng()),
                        }
                    )
            epoch_offset += stage.epochs
    return result


class _NoProgress:
    def __enter__(self) -> _NoProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def add_task(self, *args: object, **kwargs: object) -> int:
        return 0

    def update(self, *args: object, **kwargs: object) -> None:
        return None
