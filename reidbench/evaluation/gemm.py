"""``a @ b.T`` in float32 with the fastest kernel PyTorch ships for the CPU.

PyTorch sends float32 matrix products to MKL, which on AMD CPUs takes a slower code path; there
oneDNN's JIT kernel (``torch.ops.mkldnn._linear_pointwise``, the op ``torch.compile`` emits for CPU
linear layers) computes the same float32 product 2.2x faster (AMD EPYC, ``benchmarks/perf/
gemm_speed.py``). On Intel CPUs MKL is the faster of the two (oneDNN at 0.92x on this project's Intel
Xeon) and takes an output buffer, so it is kept there. oneDNN is used for float32 CPU tensors on other
CPUs when present and when a one-time check against ``torch.mm`` passes; ``torch.mm`` otherwise (Intel
CPUs, GPUs, other dtypes).
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch

__all__ = ["matmul_nt", "uses_onednn"]


def _cpu_vendor() -> str:
    """The CPU's vendor string from ``/proc/cpuinfo`` ("" where there is none, e.g. off Linux)."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return ""
    for line in text.splitlines():
        if line.startswith("vendor_id"):
            return line.partition(":")[2].strip()
    return ""


@functools.cache
def _onednn_usable() -> bool:
    """Whether oneDNN's float32 linear kernel exists here and agrees with ``torch.mm``."""
    op = getattr(getattr(torch.ops, "mkldnn", None), "_linear_pointwise", None)
    if op is None or not torch.backends.mkldnn.is_available():
        return False
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(37, 70, generator=gen)
    b = torch.randn(53, 70, generator=gen)
    try:
        got = op(a, b, None, "none", [], "")
    except (RuntimeError, NotImplementedError):
        return False
    return got.shape == (37, 53) and bool(torch.allclose(got, a @ b.t(), rtol=1e-5, atol=1e-4))


@functools.cache
def uses_onednn() -> bool:
    """Whether :func:`matmul_nt` sends float32 CPU products to oneDNN (not on Intel CPUs: MKL)."""
    return _cpu_vendor() != "GenuineIntel" and _onednn_usable()


def matmul_nt(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``a @ b.T`` for 2-D ``a`` [m, d] and ``b`` [n, d]: a contiguous [m, n] tensor, written into
    ``out`` (contiguous, [m, n]) where the kernel takes one, else new."""
    if (
        a.device.type == "cpu"
        and a.dtype == torch.float32
        and b.dtype == torch.float32
        and a.numel() > 0
        and b.numel() > 0
        and uses_onednn()
    ):
        return torch.ops.mkldnn._linear_pointwise(a.contiguous(), b.contiguous(), None, "none", [], "")
    if out is not None:
        return torch.mm(a, b.t(), out=out)
    return a @ b.t()
