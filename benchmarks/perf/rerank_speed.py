"""Benchmark: k_reciprocal_rerank vs a dense NumPy implementation of the published algorithm.

    python benchmarks/perf/rerank_speed.py --reuse-dense    # all 12 cells; dense code: minutes, ~9 GB
    python benchmarks/perf/rerank_speed.py --sizes 5000 --settings 50,15 --threads 2 --background 2

Cells: N in {5,000; 19,281} (Market-1501 size: 3,368 + 15,913, same query share at 5,000) x (k1, k2)
in {(20, 6), (50, 15)} x {1, 2} threads, and the 2-thread cells once more with a CPU-bound background
process running (``--background``). Each implementation runs in its own subprocess (one at a time, so
only one dense N x N run holds memory), so that its peak RSS (VmHWM) is its own; both get the same
features (fixed seed) and the same thread count (torch, OpenMP, BLAS). Prints per cell the wall and CPU
time, the speed-up in wall and in CPU time (the steadier figure on a shared machine), the peak memory of
each, the largest difference of the two outputs (goal: 1e-6) and the 1-minute load average after the
cell. ``--sizes``, ``--settings``, ``--threads`` and ``--background`` pick a subset. Timings are printed,
never asserted. Run from the repository root.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))
sys.path.insert(0, str(HERE))

from _synthetic import cpu_name, market_like, peak_rss_gb  # noqa: E402

MARKET_Q, MARKET_G = 3368, 15913


def dense_re_ranking(
    qf: np.ndarray, gf: np.ndarray, k1: int = 20, k2: int = 6, lambda_value: float = 0.3
) -> np.ndarray:
    """The usual dense implementation (Zhong et al. reference code, as copied into torchreid and
    TransReID), on features: N x N squared Euclidean distances, row-max normalised, full argsort; the
    distances in the features' dtype (float64 here: two float32 codes order near-ties differently),
    built in place (one N x N temporary)."""
    feat = np.concatenate([qf, gf])
    query_num = qf.shape[0]
    all_num = feat.shape[0]
    sq = np.square(feat).sum(1)
    original_dist = np.empty((all_num, all_num), feat.dtype)
    for s in range(0, all_num, 4096):  # the product in row blocks: NumPy's OpenBLAS crashed (SIGSEGV)
        np.matmul(feat[s : s + 4096], feat.T, out=original_dist[s : s + 4096])  # on 19,281^2 at 2 threads
    original_dist *= -2.0
    original_dist += sq[:, None]
    original_dist += sq[None, :]
    np.maximum(original_dist, 0, out=original_dist)
    original_dist /= original_dist.max(axis=1, keepdims=True)
    V = np.zeros_like(original_dist, dtype=np.float32)
    initial_rank = np.argsort(original_dist).astype(np.int32)
    half = int(np.around(k1 / 2.0))
    for i in range(all_num):
        forward_k_neigh_index = initial_rank[i, : k1 + 1]
        backward_k_neigh_index = initial_rank[forward_k_neigh_index, : k1 + 1]
        fi = np.where(backward_k_neigh_index == i)[0]
        k_reciprocal_index = forward_k_neigh_index[fi]
        k_reciprocal_expansion_index = k_reciprocal_index
        for j in range(len(k_reciprocal_index)):
            candidate = k_reciprocal_index[j]
            candidate_forward = initial_rank[candidate, : half + 1]
            candidate_backward = initial_rank[candidate_forward, : half + 1]
            fi_candidate = np.where(candidate_backward == candidate)[0]
            candidate_k_reciprocal_index = candidate_forward[fi_candidate]
            if len(np.intersect1d(candidate_k_reciprocal_index, k_reciprocal_index)) > 2.0 / 3 * len(
                candidate_k_reciprocal_index
            ):
                k_reciprocal_expansion_index = np.append(
                    k_reciprocal_expansion_index, candidate_k_reciprocal_index
                )
        k_reciprocal_expansion_index = np.unique(k_reciprocal_expansion_index)
        weight = np.exp(-original_dist[i, k_reciprocal_expansion_index])
        V[i, k_reciprocal_expansion_index] = weight / np.sum(weight)
    original_dist = original_dist[:query_num]
    if k2 != 1:
        V_qe = np.zeros_like(V, dtype=np.float32)
        for i in range(all_num):
            V_qe[i, :] = np.mean(V[initial_rank[i, :k2], :], axis=0)
        V = V_qe
        del V_qe
    del initial_rank
    inv_index = [np.where(V[:, i] != 0)[0] for i in range(all_num)]
    jaccard_dist = np.zeros_like(original_dist, dtype=np.float32)
    for i in range(query_num):
        temp_min = np.zeros(shape=[1, all_num], dtype=np.float32)
        ind_non_zero = np.where(V[i, :] != 0)[0]
        ind_images = [inv_index[ind] for ind in ind_non_zero]
        for j in range(len(ind_non_zero)):
            temp_min[0, ind_images[j]] += np.minimum(V[i, ind_non_zero[j]], V[ind_images[j], ind_non_zero[j]])
        jaccard_dist[i] = 1 - temp_min / (2.0 - temp_min)
    final_dist = jaccard_dist * (1 - lambda_value) + original_dist * lambda_value
    return final_dist[:, query_num:]


def worker(args: argparse.Namespace) -> None:
    """Run one implementation; save its matrix; print a JSON line with time and peak memory."""
    qf, gf, *_ = market_like(args.num_q, args.num_g, dim=args.dim, seed=args.seed, noise=args.noise)
    qf, gf = qf.astype(args.dtype), gf.astype(args.dtype)
    warm = 0.0
    if args.worker == "ours":
        import torch

        from reidbench.evaluation.rerank import k_reciprocal_rerank

        torch.set_num_threads(args.threads)
        t = time.perf_counter()  # first call: imports numba, loads (or compiles) the cached kernels
        k_reciprocal_rerank(torch.from_numpy(qf[:20]), torch.from_numpy(gf[:80]), k1=args.k1, k2=args.k2)
        warm = time.perf_counter() - t
        rss_before = peak_rss_gb()
        t, c = time.perf_counter(), time.process_time()
        out = k_reciprocal_rerank(
            torch.from_numpy(qf), torch.from_numpy(gf), k1=args.k1, k2=args.k2, lambda_value=args.lam
        ).numpy()
    else:
        rss_before = peak_rss_gb()
        t, c = time.perf_counter(), time.process_time()
        out = dense_re_ranking(qf, gf, args.k1, args.k2, args.lam)
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    peak = peak_rss_gb()
    np.save(args.out, out)
    print(json.dumps({"wall": wall, "cpu": cpu, "peak_gb": peak, "before_gb": rss_before, "warm": warm}))


def run_worker(kind: str, cell: dict, args: argparse.Namespace, out: str) -> dict:
    """One implementation on one cell, in a fresh subprocess with the cell's thread count."""
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(cell["threads"])
    env["PYTHONPATH"] = str(HERE.parents[1]) + os.pathsep + env.get("PYTHONPATH", "")
    flags = {
        **cell,
        "dim": args.dim,
        "seed": args.seed,
        "noise": args.noise,
        "lam": args.lam,
        "dtype": args.dtype,
    }
    cmd = [sys.executable, __file__, "--worker", kind, "--out", out]
    for key in ("num_q", "num_g", "dim", "seed", "noise", "k1", "k2", "lam", "threads", "dtype"):
        cmd += [f"--{key.replace('_', '-')}", str(flags[key])]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def cells(args: argparse.Namespace) -> list[dict]:
    """The benchmark grid: sizes x settings x threads, plus the background-load cells."""
    grid = []
    for n in args.sizes:
        num_q = round(n * MARKET_Q / (MARKET_Q + MARKET_G))
        for k1, k2 in args.settings:
            for threads in args.threads:
                for busy in [False, True] if threads in args.background else [False]:
                    grid.append(
                        {
                            "num_q": num_q,
                            "num_g": n - num_q,
                            "k1": k1,
                            "k2": k2,
                            "threads": threads,
                            "busy": busy,
                        }
                    )
    return grid


def measure(cell: dict, args: argparse.Namespace, tmp: str, dense_runs: dict) -> dict:
    """Both implementations on one cell (with a busy-looping process alongside when ``busy``). With
    ``--reuse-dense`` the dense code runs once per (N, k1, k2), in the first cell, and is reused."""
    key = (cell["num_q"], cell["k1"], cell["k2"])
    dense_out = f"{tmp}/dense-{'-'.join(map(str, key))}.npy"
    spinner = None
    if cell["busy"]:
        spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        ours = run_worker("ours", cell, args, f"{tmp}/ours.npy")
        if not (args.reuse_dense and key in dense_runs):
            dense_runs[key] = {**run_worker("dense", cell, args, dense_out), "cell": cell}
    finally:
        if spinner is not None:
            spinner.kill()
            spinner.wait()
    diff = float(np.abs(np.load(f"{tmp}/ours.npy") - np.load(dense_out)).max())
    return {**cell, "ours": ours, "dense": dense_runs[key], "diff": diff, "load": os.getloadavg()[0]}


def report(r: dict) -> str:
    """One table row: times, speed-up in wall and CPU time, peak memory, largest difference."""
    o, d = r["ours"], r["dense"]
    busy = "yes" if r["busy"] else "no"
    ok = "ok" if r["diff"] <= 1e-6 else "ABOVE 1e-6"
    reused = "" if d["cell"] == {k: v for k, v in r.items() if k in d["cell"]} else " (reused)"
    return (
        f"| {r['num_q'] + r['num_g']:,} | {r['k1']}, {r['k2']} | {r['threads']} | {busy} | "
        f"{o['wall']:.2f} s ({o['cpu']:.2f} s CPU) | {d['wall']:.1f} s ({d['cpu']:.1f} s CPU){reused} | "
        f"**{d['wall'] / o['wall']:.1f}x** | **{d['cpu'] / o['cpu']:.1f}x** | "
        f"{o['peak_gb']:.2f} GB ({o['before_gb']:.2f} before) | {d['peak_gb']:.2f} GB | "
        f"{r['diff']:.1e} {ok} | {o['warm']:.1f} s | {r['load']:.1f} |"
    )


def pairs(text: str) -> tuple[int, int]:
    k1, k2 = text.split(",")
    return int(k1), int(k2)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[5000, MARKET_Q + MARKET_G], help="N = Q + G")
    p.add_argument("--settings", type=pairs, nargs="+", default=[(20, 6), (50, 15)], help="k1,k2 pairs")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--background", type=int, nargs="*", default=[2], help="thread counts also run busy")
    p.add_argument(
        "--reuse-dense",
        action="store_true",
        help="run the dense code once per (N, k1, k2) (1st thread count, no background) and reuse it",
    )
    p.add_argument(
        "--dtype",
        default="float64",
        choices=["float64", "float32"],
        help="features (both implementations); float32 codes may order near-tied neighbours differently",
    )
    p.add_argument("--dim", type=int, default=768)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--noise", type=float, default=2.5)
    p.add_argument("--lam", type=float, default=0.3)
    for hidden in ("--worker", "--out", "--num-q", "--num-g", "--k1", "--k2"):
        p.add_argument(
            hidden, help=argparse.SUPPRESS, type=int if hidden not in ("--worker", "--out") else str
        )
    args = p.parse_args()
    if args.worker:
        args.threads = args.threads[0]
        worker(args)
        return
    print(
        f"CPU: {cpu_name()}, {os.cpu_count()} cores; load avg at start {os.getloadavg()[0]:.1f}; "
        f"lambda {args.lam}; features {args.dtype}"
    )
    print(
        "| N | k1, k2 | threads | background process | ours | dense NumPy | speed-up (wall) | "
        "speed-up (CPU) | ours peak RSS | dense peak RSS | max abs diff | ours first call | load |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        dense_runs: dict = {}
        for cell in cells(args):
            print(report(measure(cell, args, tmp, dense_runs)), flush=True)
    print(f"load avg at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
