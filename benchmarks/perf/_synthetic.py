"""Synthetic Market-1501-sized retrieval problem and helpers shared by the perf benchmarks."""

from __future__ import annotations

import platform
import resource
from pathlib import Path

import numpy as np


def peak_rss_gb() -> float:
    """Peak resident set size of this process in GiB: VmHWM (reset by exec, unlike ru_maxrss which a
    subprocess inherits from the process that forked it), else ru_maxrss."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def cpu_name() -> str:
    """CPU model name (Linux /proc/cpuinfo), for the benchmark headers."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def market_like(
    num_q: int = 3368,
    num_g: int = 15913,
    num_ids: int = 751,
    num_cams: int = 6,
    dim: int = 768,
    seed: int = 0,
    noise: float = 1.0,
    cam_shift: float = 0.5,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """L2-normalised float32 features ``identity centroid + camera shift + noise`` and labels.

    Returns ``qf, gf, q_pids, g_pids, q_camids, g_camids``. The camera shift makes same-camera items
    closer, so the junk rule matters as it does on real data.
    """
    rng = np.random.default_rng(seed)
    centroids = rng.standard_normal((num_ids, dim), dtype=np.float32)
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    shifts = rng.standard_normal((num_cams, dim), dtype=np.float32)
    shifts *= cam_shift / np.linalg.norm(shifts, axis=1, keepdims=True)

    def make(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pids = rng.integers(0, num_ids, n)
        cams = rng.integers(0, num_cams, n)
        out = np.empty((n, dim), dtype=np.float32)
        step = 8192
        for s in range(0, n, step):
            e = min(n, s + step)
            f = centroids[pids[s:e]] + shifts[cams[s:e]]
            f += rng.standard_normal((e - s, dim), dtype=np.float32) * (noise / np.sqrt(dim))
            f /= np.linalg.norm(f, axis=1, keepdims=True)
            out[s:e] = f
        return out, pids, cams

    qf, q_pids, q_cams = make(num_q)
    gf, g_pids, g_cams = make(num_g)
    return qf, gf, q_pids, g_pids, q_cams, g_cams
