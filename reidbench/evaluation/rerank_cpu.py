"""The CPU path of k-reciprocal re-ranking: compiled kernels (``rerank_kernels``) on a thread policy of
its own.

Thread policy: PyTorch runs at one intra-op thread for the duration (restored after); the work is cut
into many independent pieces (distance tiles, ranges of rows) that ``threads`` Python threads take one
after the other, each piece a single-threaded torch product or a compiled kernel that releases the GIL.
On a machine shared with other jobs a descheduled thread then only delays the piece it holds, instead
of stalling an OpenMP barrier that the other threads spin at, as thousands of small multi-threaded
torch calls do.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from reidbench.evaluation import rerank_kernels as kern
from reidbench.evaluation.gemm import matmul_nt

__all__ = ["knn_heaps", "one_torch_thread", "sparse_rerank"]

_ROWS = 512  # rows per piece of the row kernels
_QUERY_ROWS = 32  # query rows per piece of the Jaccard kernel


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """Run PyTorch at one intra-op thread inside the block; restore the previous count after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@functools.cache
def _pool(threads: int) -> ThreadPoolExecutor:
    """A lasting pool of ``threads`` threads (new threads pay for their first oneDNN/OpenMP call). Each
    sets its own OpenMP thread count to one: without it oneDNN would start a team in every thread."""
    return ThreadPoolExecutor(
        threads, thread_name_prefix="rerank", initializer=torch.set_num_threads, initargs=(1,)
    )


def _each(fn: Callable[..., object], pieces: list, threads: int) -> None:
    """``fn(*piece)`` for every piece, by ``threads`` threads that each take the next piece when done."""
    if threads <= 1 or len(pieces) <= 1:
        for piece in pieces:
            fn(*piece)
        return
    for _ in _pool(threads).map(lambda piece: fn(*piece), pieces):
        pass


def _row_ranges(n: int, step: int) -> list[tuple[int, int]]:
    return [(s, min(n, s + step)) for s in range(0, n, step)]


def knn_heaps(
    lhs: torch.Tensor, rhs: torch.Tensor, kk: int, block: int, num_q: int, out: torch.Tensor, threads: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The ``kk`` smallest ``(max(d, 0), index)`` of every row of the squared distance matrix (unordered)
    and its row maxima, from the upper-triangle tiles; writes the query x gallery part of ``d`` into
    ``out``. ``lhs``/``rhs`` come from ``rerank._distance_operands``."""
    n = lhs.shape[0]
    dtype = lhs.numpy().dtype
    hv = np.full((n, kk), np.inf, dtype)
    hi = np.full((n, kk), n, np.int64)
    row_max = np.full(n, -np.inf, dtype)
    starts = range(0, n, block)
    tiles = [(a, b) for a in starts for b in starts if b >= a]
    lock = threading.Lock()

    def tile(a: int, b: int) -> None:
        ae, be = min(n, a + block), min(n, b + block)
        d = matmul_nt(lhs[a:ae], rhs[b:be])
        if a < num_q and be > num_q:
            qe, g0 = min(ae, num_q), max(b, num_q)
            out[a:qe, g0 - num_q : be - num_q] = d[: qe - a, g0 - b :]
        with lock:
            kern.scan_tile(d.numpy(), a, b, a == b, hv, hi, row_max)

    _each(tile, tiles, threads)
    return torch.from_numpy(hv), torch.from_numpy(hi), torch.from_numpy(row_max)


def _csr_rows(n: int, rows: Callable[..., None], dtypes: tuple, threads: int) -> tuple[np.ndarray, ...]:
    """A CSR matrix from a two-pass row kernel ``rows(lo, hi, indptr, *outputs)``: with empty outputs it
    writes the row sizes into ``indptr[i + 1]``, then the rows into the outputs."""
    indptr = np.zeros(n + 1, np.int64)
    pieces = _row_ranges(n, _ROWS)
    empty = tuple(np.empty(0, dt) for dt in dtypes)
    _each(lambda lo, hi: rows(lo, hi, indptr, *empty), pieces, threads)
    np.cumsum(indptr, out=indptr)
    outs = tuple(np.empty(indptr[-1], dt) for dt in dtypes)
    _each(lambda lo, hi: rows(lo, hi, indptr, *outs), pieces, threads)
    return (indptr, *outs)


def _expanded_sets(nn: np.ndarray, k_fwd: int, k_half: int, threads: int) -> tuple[np.ndarray, ...]:
    """CSR ``(indptr, cols)`` of the expanded k-reciprocal set of every row (ascending members)."""
    n = nn.shape[0]
    r_set, r_size = np.empty((n, k_fwd), np.int64), np.empty(n, np.int64)
    h_set, h_size = np.empty((n, k_half), np.int64), np.empty(n, np.int64)
    kern.reciprocal(nn, k_fwd, r_set, r_size)
    kern.reciprocal(nn, k_half, h_set, h_size)

    def rows(lo: int, hi: int, indptr: np.ndarray, cols: np.ndarray) -> None:
        kern.expand(lo, hi, r_set, r_size, h_set, h_size, indptr, cols)

    return _csr_rows(n, rows, (np.int64,), threads)


def _query_expand(
    indptr: np.ndarray, cols: np.ndarray, vals: np.ndarray, nbrs: np.ndarray, threads: int
) -> tuple[np.ndarray, ...]:
    """CSR ``(indptr, cols, vals)`` of ``mean(V[j] for j in nbrs[i])`` for every row ``i``."""

    def rows(lo: int, hi: int, ptr: np.ndarray, out_c: np.ndarray, out_v: np.ndarray) -> None:
        kern.query_expand(lo, hi, indptr, cols, vals, nbrs, ptr, out_c, out_v)

    return _csr_rows(nbrs.shape[0], rows, (np.int64, np.float32), threads)


def sparse_rerank(
    nn: torch.Tensor,
    nn_o: torch.Tensor,
    feats: torch.Tensor,
    row_max: torch.Tensor,
    sizes: tuple[int, int, int],
    lam: float,
    out: torch.Tensor,
    threads: int,
) -> None:
    """Steps 2-4 of the re-ranking (expanded sets and weights, query expansion, Jaccard mix) from the
    ordered neighbours ``nn`` and their ``o``; ``sizes`` is ``(k_fwd, k_half, k_qe)``; turns ``out``
    (query x gallery squared distances) into the re-ranked distances."""
    k_fwd, k_half, k_qe = sizes
    n, num_q = nn.shape[0], out.shape[0]
    nn_np = np.ascontiguousarray(nn.numpy())
    indptr, cols = _expanded_sets(nn_np, k_fwd, k_half, threads)
    vals = np.empty(cols.shape[0], np.float32)
    f, nn_o_np, rmax = np.ascontiguousarray(feats.numpy()), nn_o.numpy(), row_max.numpy()
    weigh = lambda lo, hi: kern.weights(lo, hi, indptr, cols, nn_np, nn_o_np, f, rmax, vals)  # noqa: E731
    _each(weigh, _row_ranges(n, _ROWS), threads)
    if k_qe > 1:
        indptr, cols, vals = _query_expand(indptr, cols, vals, np.ascontiguousarray(nn_np[:, :k_qe]), threads)
    g_ptr, g_rows, g_vals = kern.transpose(num_q, n, indptr, cols, vals, n)
    q_max = rmax[:num_q]  # clamped above 0 by rerank._finish_knn
    res = out.numpy()
    _each(
        lambda lo, hi: kern.jaccard_mix(lo, hi, indptr, cols, vals, g_ptr, g_rows, g_vals, q_max, lam, res),
        _row_ranges(num_q, _QUERY_ROWS),
        threads,
    )
