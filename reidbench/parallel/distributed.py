"""One run on several processes: the process group and the DDP pieces (launching is in
reidbench.parallel.launch).

Design (see DESIGN.md "Scale"): every rank builds the same global PK batch and keeps its slice of P/N
identities, the model outputs are gathered so the loss is computed on the global batch (so the gradient
equals the single-process one), BatchNorm uses global batch statistics, and evaluation features are
gathered from every rank. The result does not depend on the number of processes.
"""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from reidbench.errors import UserError
from reidbench.nn.output import ModelOutput
from reidbench.parallel.launch import DistEnv, env_from_os

__all__ = ["DistEnv", "env_from_os"]  # re-exported: the environment lives in the torch-free launch module


def device_for(env: DistEnv | None, device: torch.device) -> torch.device:
    """The device of this rank: ``cuda:LOCAL_RANK`` on GPUs, the given device otherwise."""
    if env is not None and device.type == "cuda":
        device = torch.device("cuda", env.local_rank)
    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)
    return device


def init(env: DistEnv, device: torch.device) -> None:
    """Join the process group (NCCL on GPUs, gloo on CPU)."""
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(
        backend,
        init_method=f"tcp://{env.master_addr}:{env.master_port}",
        rank=env.rank,
        world_size=env.world_size,
    )


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    """Number of processes of this run (1 without a process group)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


# ---------------------------------------------------------------------------------------------------------
# Training pieces


def check_divisible(p: int, world: int) -> None:
    if p % world:
        raise UserError(
            f"sampler.p={p} identities per batch cannot be split over {world} processes: "
            f"use a --gpus-per-run that divides {p}"
        )


class _GatherRows(torch.autograd.Function):
    """All-gather equal-sized row blocks along dim 0; the backward sums the gradient over ranks."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous()
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x)
        ctx.rows = x.shape[0]
        return torch.cat(parts)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)  # every rank's loss depends on this rank's rows
        lo = dist.get_rank() * ctx.rows
        return grad[lo : lo + ctx.rows]


def gather_rows(x: torch.Tensor) -> torch.Tensor:
    """Rows of every rank, in rank order, differentiable (identity on one process)."""
    if world_size() == 1:
        return x
    if x.requires_grad:
        return _GatherRows.apply(x)
    parts = [torch.empty_like(x) for _ in range(world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


def gather_output(out: ModelOutput, rows: int) -> ModelOutput:
    """The model output of the global batch: every per-sample tensor (first dim ``rows``) gathered.

    The loss computed on it is the single-process loss; with DDP's gradient averaging and the summing
    backward of :class:`_GatherRows`, so is the gradient.
    """
    if world_size() == 1:
        return out

    def gather(v: Any) -> Any:
        return gather_rows(v) if isinstance(v, torch.Tensor) and v.dim() > 0 and v.shape[0] == rows else v

    values = {f.name: gather(getattr(out, f.name)) for f in fields(out) if f.name != "extras"}
    return replace(out, **values, extras={k: gather(v) for k, v in out.extras.items()})


def gather_by_index(feats: torch.Tensor, index: torch.Tensor, total: int | None = None) -> torch.Tensor:
    """Evaluation features of every rank placed at their split index (each rank holds some rows)."""
    if world_size() == 1:
        return feats
    parts: list[Any] = [None] * world_size()
    dist.all_gather_object(parts, (feats.cpu(), index.cpu()))
    dim = next(f.shape[1] for f, _ in parts if f.numel())
    n = total if total is not None else sum(len(i) for _, i in parts)
    full = torch.zeros(n, dim, dtype=feats.dtype)
    for f, i in parts:
        if len(i):
            full[i] = f
    return full.to(feats.device)


def all_gather_object(obj: Any) -> list[Any]:
    """``obj`` of every rank (a one-item list on one process)."""
    if world_size() == 1:
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


class _AllReduceSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics are those of the global batch, on any device and backend.

    ``torch.nn.SyncBatchNorm`` needs CUDA; this is the portable version (two all-reduces per call) used on
    CPU. Parameters and buffers are those of ``nn.BatchNorm*d``, so state dicts are interchangeable.
    """

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {x.dim()}D input)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        if not self.training or world_size() == 1:
            return super().forward(x)
        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        count = _AllReduceSum.apply(torch.tensor([x.numel() / x.shape[1]], device=x.device, dtype=x.dtype))
        mean = _AllReduceSum.apply(x.sum(dims)) / count
        centred = x - mean.view(shape)
        var = _AllReduceSum.apply(centred.pow(2).sum(dims)) / count
        y = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                n = float(count)
                self.running_mean.lerp_(mean.detach(), factor)
                self.running_var.lerp_(var.detach() * n / max(n - 1, 1), factor)
        return y


def sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """BatchNorm layers with global statistics: torch's SyncBatchNorm on CUDA, GlobalBatchNorm elsewhere."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return _convert(model)


def _convert(module: nn.Module) -> nn.Module:
    if type(module) in (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d):
        new = GlobalBatchNorm(
            module.num_features,
            module.eps,
            module.momentum,
            module.affine,
            module.track_running_stats,
            device=_device_of(module),
        )
        new.load_state_dict(module.state_dict())
        for name, param in module.named_parameters(recurse=False):
            getattr(new, name).requires_grad_(param.requires_grad)
        new.train(module.training)
        return new
    for name, child in module.named_children():
        module.add_module(name, _convert(child))
    return module


def _device_of(module: nn.Module) -> torch.device:
    tensor = next(iter(module.state_dict().values()), None)
    return tensor.device if tensor is not None else torch.device("cpu")


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` in DistributedDataParallel (call again after changing which parameters train)."""
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids, find_unused_parameters=True)
