"""Benchmark: reidbench's float32 ``a @ b.T`` (``matmul_nt``) against ``torch.mm`` and NumPy.

    python benchmarks/perf/gemm_speed.py [--threads 1] [--rows 2048] [--cols 19281] [--dim 768]

The product is the re-ranking / evaluation distance tile (2,048 rows against all 19,281 Market-sized
images, 768-d by default). Prints the median time of each kernel over ``--repeats`` runs measured in the
same process, the speed-up of ``matmul_nt`` over ``torch.mm``, and each result's largest deviation
from a float64 reference. Timings are printed, never asserted. Run from the repository root.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))
sys.path.insert(0, str(HERE))


def median_time(fn, repeats: int) -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=2048)
    p.add_argument("--cols", type=int, default=19281)
    p.add_argument("--dim", type=int, default=768)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)  # before NumPy / torch load their BLAS

    import torch
    from _synthetic import cpu_name

    from reidbench.evaluation.gemm import _onednn_usable, matmul_nt, uses_onednn

    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    b = torch.nn.functional.normalize(torch.randn(args.cols, args.dim, generator=gen), dim=1)
    a = b[: args.rows].clone()
    an, bn = a.numpy(), b.numpy()
    ref = a.double() @ b.double().t()
    flops = 2.0 * args.rows * args.cols * args.dim
    print(
        f"CPU: {cpu_name()}, {os.cpu_count()} cores; threads: {args.threads}; oneDNN kernel usable: "
        f"{_onednn_usable()}; matmul_nt uses {'oneDNN' if uses_onednn() else 'torch.mm (MKL)'}; "
        f"product {args.rows} x {args.dim} by {args.dim} x {args.cols}"
    )
    kernels = {
        "torch.mm (baseline)": lambda: a @ b.t(),
        "numpy @": lambda: torch.from_numpy(an @ bn.T),
        "reidbench matmul_nt": lambda: matmul_nt(a, b),
    }
    if _onednn_usable():  # the kernel matmul_nt picks on non-Intel CPUs, timed here on any
        onednn = torch.ops.mkldnn._linear_pointwise
        kernels["oneDNN linear kernel"] = lambda: onednn(a, b, None, "none", [], "")
    times = {}
    for name, fn in kernels.items():
        times[name] = median_time(fn, args.repeats)
        err = (fn().double() - ref).abs().max().item()
        print(
            f"{name:22s} {times[name] * 1e3:8.1f} ms  {flops / times[name] / 1e9:6.1f} GFLOP/s  "
            f"max |error| vs float64 {err:.2e}"
        )
    base = times["torch.mm (baseline)"]
    print(
        f"speed-up of matmul_nt over torch.mm: {base / times['reidbench matmul_nt']:.2f}x; "
        f"over numpy: {times['numpy @'] / times['reidbench matmul_nt']:.2f}x"
        + (f"; oneDNN over torch.mm: {base / times['oneDNN linear kernel']:.2f}x" if _onednn_usable() else "")
    )


if __name__ == "__main__":
    main()
