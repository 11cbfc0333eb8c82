"""Benchmark: k_reciprocal_rerank vs the usual dense NumPy re-ranking, Market size (N = 3,368 + 15,913).

    python benchmarks/perf/rerank_speed.py                # both; the dense one takes minutes and ~9 GB
    python benchmarks/perf/rerank_speed.py --skip-dense

Each implementation runs in its own subprocess so that its peak RSS (VmHWM) is its own; both get
the same features (fixed seed) and the same thread count. Prints wall and CPU time, peak memory, the
speed-up, how far the two results differ, and mAP / R1 before and after re-ranking. Timings are printed,
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


def dense_re_ranking(
    qf: np.ndarray, gf: np.ndarray, k1: int = 20, k2: int = 6, lambda_value: float = 0.3
) -> np.ndarray:
    """The usual dense implementation (Zhong et al. reference code, as copied into torchreid and
    TransReID), on features: N x N squared Euclidean distances, row-max normalised, full argsort."""
    feat = np.concatenate([qf, gf]).astype(np.float32)
    query_num = qf.shape[0]
    all_num = feat.shape[0]
    sq = np.square(feat).sum(1)
    original_dist = sq[:, None] + sq[None, :] - 2.0 * (feat @ feat.T)
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
    if args.worker == "ours":
        import torch

        from reidbench.evaluation.rerank import k_reciprocal_rerank

        torch.set_num_threads(args.threads)
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
    print(json.dumps({"wall": wall, "cpu": cpu, "peak_gb": peak, "before_gb": rss_before}))


def run_worker(kind: str, args: argparse.Namespace, out: str) -> dict:
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(args.threads)
    env["PYTHONPATH"] = str(HERE.parents[1]) + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        kind,
        "--out",
        out,
        "--num-q",
        str(args.num_q),
        "--num-g",
        str(args.num_g),
        "--dim",
        str(args.dim),
        "--seed",
        str(args.seed),
        "--noise",
        str(args.noise),
        "--k1",
        str(args.k1),
        "--k2",
        str(args.k2),
        "--lam",
        str(args.lam),
        "--threads",
        str(args.threads),
    ]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num-q", type=int, default=3368)
    p.add_argument("--num-g", type=int, default=15913)
    p.add_argument("--dim", type=int, default=768)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--noise", type=float, default=2.5)
    p.add_argument("--k1", type=int, default=20)
    p.add_argument("--k2", type=int, default=6)
    p.add_argument("--lam", type=float, default=0.3)
    p.add_argument("--threads", type=int, default=1, help="threads for both (torch, BLAS); default 1")
    p.add_argument("--skip-dense", action="store_true")
    p.add_argument("--worker", choices=["ours", "dense"], help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(args)
        return

    import torch

    from reidbench.evaluation.metrics import pairwise_distance, rank_metrics

    print(
        f"CPU: {cpu_name()}, {os.cpu_count()} cores; threads per implementation: {args.threads}; "
        f"load avg {os.getloadavg()[0]:.1f}"
    )
    qf, gf, qp, gp, qc, gc = market_like(
        args.num_q, args.num_g, dim=args.dim, seed=args.seed, noise=args.noise
    )
    print(
        f"case: {qf.shape[0]} + {gf.shape[0]} = {qf.shape[0] + gf.shape[0]} images, {args.dim}-d; "
        f"k1={args.k1} k2={args.k2} lambda={args.lam}"
    )
    base = rank_metrics(pairwise_distance(torch.from_numpy(qf), torch.from_numpy(gf)), qp, gp, qc, gc)
    print(f"before re-ranking: mAP {base.mAP:.4f}  R1 {base.rank(1):.4f}")

    def measure(kind: str, label: str, before: str) -> tuple[dict, np.ndarray]:
        """Run one implementation in its worker; print its time, memory and metrics after re-ranking."""
        info = run_worker(kind, args, f"{tmp}/{kind}.npy")
        matrix = np.load(f"{tmp}/{kind}.npy")
        r = rank_metrics(matrix, qp, gp, qc, gc)
        print(
            f"{label:19s}: wall {info['wall']:.1f} s, CPU {info['cpu']:.1f} s, "
            f"peak RSS {info['peak_gb']:.2f} GB "
            f"(of which {info['before_gb']:.2f} GB before the call{before}); after: mAP {r.mAP:.4f}  "
            f"R1 {r.rank(1):.4f}"
        )
        return info, matrix

    with tempfile.TemporaryDirectory() as tmp:
        ours, d_ours = measure("ours", "k_reciprocal_rerank", ": python, torch, features")
        if args.skip_dense:
            return
        dense, d_dense = measure("dense", "dense numpy", "")
        diff = np.abs(d_ours - d_dense)
        print(
            f"max abs diff of the matrices: {diff.max():.3g}; entries differing by > 1e-4: "
            f"{(diff > 1e-4).mean() * 100:.4f} %  (float32 near-ties can order neighbours differently)"
        )
        print(
            f"speed-up: {dense['wall'] / ours['wall']:.1f}x wall, "
            f"{dense['cpu'] / ours['cpu']:.1f}x CPU time; "
            f"peak memory {dense['peak_gb'] / ours['peak_gb']:.1f}x lower"
        )


if __name__ == "__main__":
    main()
