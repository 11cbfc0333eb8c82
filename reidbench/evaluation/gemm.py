"""``a @ b.T`` in float32 with the fastest kernel PyTorch ships for the device.

On x86 CPUs PyTorch sends float32 matrix products to MKL, which on AMD CPUs takes a slower code
path; oneDNN's JIT kernel (``torch.ops.mkldnn._linear_pointwise``, the op ``torch.compile`` emits for
CPU linear layers) computes the same float32 product 2.2x faster on this project's CPU
(``benchmarks/perf/gemm_speed.py``). It is used for float32 CPU tensors when present and when a
one-time check against ``torch.mm`` passes; ``torch.mm`` otherwise (GPUs, other dtypes).
"""

from __future__ import annotations

import functools

import torch

__all__ = ["matmul_nt"]


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


def matmul_nt(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b.T`` for 2-D ``a`` [m, d] and ``b`` [n, d]: a new contiguous [m, n] tensor."""
    if (
        a.device.type == "cpu"
        and a.dtype == torch.float32
        and b.dtype == torch.float32
        and a.numel() > 0
        and b.numel() > 0
        and _onednn_usable()
    ):
        return torch.ops.mkldnn._linear_pointwise(a.contiguous(), b.contiguous(), None, "none", [], "")
    return a @ b.t()
