"""Benchmark: rank_metrics vs a plain NumPy evaluator (full argsort + per-query loop), same run.

    python benchmarks/perf/eval_speed.py                 # Market-1501 size: 3,368 x 15,913, 768-d
    python benchmarks/perf/eval_speed.py --dim 2048
    python benchmarks/perf/eval_speed.py --large         # 100k x 100k from features, peak RSS

Prints wall and CPU times (min and median over --repeat interleaved runs), the speed-up, and the max
abs difference of the metrics (vs the baseline with quicksort, as the toolkits sort, and with a stable
sort, which breaks ties like rank_metrics). ``--threads`` sets torch's intra-op threads (default 1,
like the single-threaded NumPy baseline; try 2). Timings are printed, never asserted. Run from the
repository root.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _synthetic import cpu_name, market_like, peak_rss_gb  # noqa: E402

from reidbench.evaluation.metrics import pairwise_distance, rank_metrics, rank_metrics_from_features  # noqa: E402


def numpy_baseline(
    dist: np.ndarray,
    q_pids: np.ndarray,
    g_pids: np.ndarray,
    q_camids: np.ndarray,
    g_camids: np.ndarray,
    max_rank: int = 50,
    kind: str = "quicksort",
) -> tuple[float, np.ndarray, float, int]:
    """The usual evaluator (torchreid ``eval_market1501`` logic, vectorised AP): full argsort per row.

    ``kind="quicksort"`` is what the toolkits use (tied distances in arbitrary order); ``"stable"``
    breaks ties by gallery index like rank_metrics.
    """
    indices = np.argsort(dist, axis=1, kind=kind)
    matches = (g_pids[indices] == q_pids[:, np.newaxis]).astype(np.int32)
    all_cmc, all_ap, all_inp = [], [], []
    for i in range(dist.shape[0]):
        order = indices[i]
        remove = (g_pids[order] == q_pids[i]) & (g_camids[order] == q_camids[i])
        raw = matches[i][~remove]
        if not raw.any():
            continue
        hits = np.flatnonzero(raw)
        cmc = np.zeros(max_rank)
        cmc[hits[0] :] = 1.0
        all_cmc.append(cmc)
        all_ap.append(float(np.mean(np.arange(1, hits.size + 1) / (hits + 1.0))))
        all_inp.append(hits.size / (hits[-1] + 1.0))
    return float(np.mean(all_ap)), np.mean(all_cmc, 0), float(np.mean(all_inp)), len(all_ap)


def timed(fn) -> tuple[float, float, object]:
    """(wall seconds, CPU seconds of this process, result)."""
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - t, time.process_time() - c, out


def market(args: argparse.Namespace) -> None:
    qf, gf, qp, gp, qc, gc = market_like(dim=args.dim, seed=args.seed, noise=args.noise)
    t = time.perf_counter()
    dist_t = pairwise_distance(torch.from_numpy(qf), torch.from_numpy(gf))
    t_dist = time.perf_counter() - t
    dist = dist_t.numpy()
    print(
        f"case: {qf.shape[0]} queries x {gf.shape[0]} gallery, {args.dim}-d, 751 ids, 6 cams, "
        f"seed {args.seed}"
    )
    print(f"distance matrix (torch addmm, float32): {t_dist:.2f} s (not included below)")

    ours_t, base_t, ours_c, base_c = [], [], [], []
    ours = base = None
    for _ in range(args.repeat):  # interleaved, so load changes on a shared machine hit both
        w, c, ours = timed(lambda: rank_metrics(dist_t, qp, gp, qc, gc))
        ours_t.append(w)
        ours_c.append(c)
        w, c, base = timed(lambda: numpy_baseline(dist, qp, gp, qc, gc))
        base_t.append(w)
        base_c.append(c)
    assert ours is not None and base is not None
    stable = numpy_baseline(dist, qp, gp, qc, gc, kind="stable")
    print(
        f"metrics: mAP {ours.mAP:.4f}  R1 {ours.rank(1):.4f}  R5 {ours.rank(5):.4f}  "
        f"mINP {ours.mINP:.4f}  valid {ours.num_valid_queries}"
    )
    for name, (m_ap, cmc, m_inp, n_valid) in (("quicksort", base), ("stable", stable)):
        diff = max(abs(ours.mAP - m_ap), abs(ours.mINP - m_inp), float(np.abs(ours.cmc.numpy() - cmc).max()))
        print(
            f"max abs diff vs baseline with {name} argsort (mAP, mINP, CMC): {diff:.3g}; "
            f"valid queries equal: {n_valid == ours.num_valid_queries}"
        )
    ties = int((np.diff(np.sort(dist[:200], axis=1), axis=1) == 0).sum())
    print(
        f"(float32 distances tie: {ties} equal neighbours in the first 200 rows; "
        "quicksort orders them arbitrarily)"
    )
    med = statistics.median
    print(
        f"numpy baseline (argsort + loop): wall min {min(base_t):.3f} s  median {med(base_t):.3f} s   "
        f"CPU min {min(base_c):.3f} s"
    )
    print(
        f"rank_metrics                  : wall min {min(ours_t):.3f} s  median {med(ours_t):.3f} s   "
        f"CPU min {min(ours_c):.3f} s"
    )
    print(
        f"speed-up: {min(base_t) / min(ours_t):.1f}x wall (min/min), {med(base_t) / med(ours_t):.1f}x wall "
        f"(median/median), {min(base_c) / min(ours_c):.1f}x CPU time"
    )


def large(args: argparse.Namespace) -> None:
    n = args.large_n
    ids = max(1, n // 20)
    qf, gf, qp, gp, qc, gc = market_like(
        num_q=n, num_g=n, num_ids=ids, dim=args.dim, seed=args.seed, noise=args.noise
    )
    q, g = torch.from_numpy(qf), torch.from_numpy(gf)
    print(f"large case: {n} queries x {n} gallery, {args.dim}-d, {ids} ids, 6 cams")
    print(
        f"peak RSS after building features: {peak_rss_gb():.2f} GB "
        f"(features alone {(qf.nbytes + gf.nbytes) / 2**30:.2f} GiB)"
    )
    wall, cpu, r = timed(lambda: rank_metrics_from_features(q, g, qp, gp, qc, gc))
    print(f"metrics: mAP {r.mAP:.4f}  R1 {r.rank(1):.4f}  mINP {r.mINP:.4f}  valid {r.num_valid_queries}")
    print(f"rank_metrics_from_features: wall {wall:.1f} s, CPU {cpu:.1f} s (distance products included)")
    print(f"peak RSS (whole process): {peak_rss_gb():.2f} GB")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dim", type=int, default=768)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--noise", type=float, default=2.5, help="feature noise (2.5: R1 ~0.92, mAP ~0.53)")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--large", action="store_true", help="100k x 100k from features, rank_metrics only")
    p.add_argument("--large-n", type=int, default=100_000)
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads (default 1: the NumPy baseline is single-threaded, and on a "
        "shared 2-core machine oversubscribed OpenMP threads stall)",
    )
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"CPU: {cpu_name()}, {os.cpu_count()} cores; "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"numpy {np.__version__}; load avg {os.getloadavg()[0]:.1f}"
    )
    if args.large:
        large(args)
    else:
        market(args)


if __name__ == "__main__":
    main()
