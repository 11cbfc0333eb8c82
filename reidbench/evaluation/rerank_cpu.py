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
import dataclasses
import functools
import itertools
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from reidbench.evaluation import rerank_kernels as kern
from reidbench.evaluation.gemm import matmul_nt

__all__ = ["Features", "error_bounds", "features", "knn", "one_torch_thread", "sparse_rerank"]

BLOCK = 768  # tile size of the distance matrix: float32 tiles this size run ~10 % faster than 2048
_ROWS = 512  # rows per piece of the row kernels
_QUERY_ROWS = 32  # query rows per piece of the Jaccard kernel
_TOP = 4  # largest values kept per row (candidates for the row maximum)


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


@dataclasses.dataclass(frozen=True)
class Features:
    """The images' features as the kernels read them (:func:`features`)."""

    x: torch.Tensor  # float32 (float64 for features too large for it): the tiles' product operand
    sq: np.ndarray  # |x|^2 in float64 (of the input features)
    rows: np.ndarray  # the input features' exact values: x where it holds them, else float64


def features(parts: list[torch.Tensor]) -> Features:
    """:class:`Features` of the rows of ``parts`` (float32 or float64 CPU tensors, one after the other)
    in one pass per part. Float64 features that float32 holds exactly (a float32 model's, widened) are
    kept once, as float32: the exact distances read half the bytes and are the same float64 values."""
    srcs = [np.ascontiguousarray(p.numpy()) for p in parts]
    n, dim = sum(x.shape[0] for x in srcs), srcs[0].shape[1]
    for dtype in (torch.float32, torch.float64):
        x, sq, exact, row0 = torch.empty((n, dim), dtype=dtype), np.empty(n, np.float64), True, 0
        for src in srcs:
            exact &= kern.features(src, row0, x.numpy(), sq)
            row0 += src.shape[0]
        if not np.isfinite(sq).all() and not all(np.isfinite(src).all() for src in srcs):
            raise ValueError("features contain NaN or inf")
        if dtype == torch.float64 or not sq.max() >= 1e30:  # norms up to 1e15 in float32
            break
    rows = x.numpy() if exact else np.concatenate(srcs).astype(np.float64)
    return Features(x, sq, rows)


def error_bounds(norms: np.ndarray, dim: int, dtype: np.dtype) -> np.ndarray:
    """Per row ``i`` a bound on ``|~d(i, j) - d(i, j)|`` over all ``j``, ``~d = |x_i|^2 + |x_j|^2 -
    2 x_i . x_j`` with the product tile in ``dtype`` (one rounding of x, a ``dim`` term product in any
    summation order: error <= 2 gamma_dim |x_i| |x_j|), the sum in float64 and one rounding to
    ``dtype``, against ``d`` evaluated in float64: all within ``(gamma_(dim+2) + 4 u) (|x_i| +
    |x_j|)^2``; with a 2x safety factor and an absolute floor for underflow."""
    u = float(np.finfo(dtype).eps) / 2
    terms = dim + 2
    gamma = terms * u / (1 - terms * u)
    scale = 2.0 * (gamma + 4 * u + terms * 2.0**-52)
    return scale * (norms + norms.max()) ** 2 + terms * float(np.finfo(dtype).tiny) * 4


def knn(
    feats: Features, num_q: int, k: int, block: int, out: torch.Tensor, threads: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Exact ``k`` nearest neighbours of every row ordered by (o, index), their ``o`` and the row maxima
    of the float64 squared distance (clamped above 0), as the dense float64 code ranks them.

    The upper-triangle tiles of the distance matrix are computed in float32 (float64 for features too
    large for it) and scanned into per-row heaps of the ``k + extra`` smallest values and lists of the
    ``_TOP`` largest; ``rerank_kernels.refine`` then ranks the heap members by exact float64 distances
    and takes the row maximum among the largest values' columns when the margins
    (:func:`error_bounds`) prove both exact; the other rows are recomputed in float64. Writes the
    query x gallery part of the approximate ``d`` into ``out``.
    """
    n, dim = feats.x.shape
    kk = min(n, k + max(8, k // 2))
    hv, hi, tv, tc = _scan(feats.x, feats.sq, kk, block, out, threads)
    err = error_bounds(np.sqrt(feats.sq), dim, feats.x.numpy().dtype)
    nn, nn_o = np.empty((n, k), np.int64), np.empty((n, k), np.float64)
    rmax, bad = np.empty(n, np.float64), np.zeros(n, np.uint8)
    rows, sq = feats.rows, feats.sq
    step = lambda lo, e: kern.refine(lo, e, rows, sq, err, hv, hi, tv, tc, k, nn, nn_o, rmax, bad)  # noqa: E731
    _each(step, _row_ranges(n, _ROWS), threads)
    _recompute(np.flatnonzero(bad), feats, k, block, nn, nn_o, rmax)
    return torch.from_numpy(nn), torch.from_numpy(nn_o), torch.from_numpy(rmax)


def _recompute(rows: np.ndarray, feats: Features, k: int, block: int, *outs: np.ndarray) -> None:
    """Exact float64 rows ``rows`` of the neighbour lists, their ``o`` and row maxima (``outs``), from
    whole rows of the distance matrix (rows whose heap margin did not prove its membership)."""
    if rows.size == 0:
        return
    nn, nn_o, rmax = outs
    f64 = torch.from_numpy(feats.rows).double()
    sq64 = torch.from_numpy(feats.sq)
    for s in range(0, rows.shape[0], block):
        r = torch.from_numpy(rows[s : s + block])
        d = (sq64[r, None] + sq64[None, :] - 2.0 * (f64[r] @ f64.t())).clamp_(min=0)
        m = d.amax(1).clamp_(min=torch.finfo(torch.float64).tiny)
        o = d / m[:, None]
        idx = torch.from_numpy(np.argsort(o.numpy(), axis=1, kind="stable")[:, :k].copy())
        nn[r.numpy()], nn_o[r.numpy()], rmax[r.numpy()] = idx.numpy(), o.gather(1, idx).numpy(), m.numpy()


def upper_tiles(n: int, block: int) -> list[tuple[int, int, int, int]]:
    """Tiles ``(a, a_end, b, b_end)`` covering the upper triangle (diagonal included) of an ``n`` x ``n``
    matrix: ``block``-sized off-diagonal tiles, and each diagonal block cut into quarter-size tiles so
    that little of the lower triangle is computed twice. Consecutive tiles touch different blocks where
    they can (round-robin pairings), so that threads seldom wait for each other's blocks."""
    starts = range(0, n, block)
    ends = lambda s, size: min(n, s + size)  # noqa: E731
    diagonal = []
    for a in starts:
        sub, end = max(16, block // 4), ends(a, block)
        subs = range(a, end, sub)
        diagonal.append([(x, min(end, x + sub), y, min(end, y + sub)) for x in subs for y in subs if y >= x])
    tiles = [t for group in itertools.zip_longest(*diagonal) for t in group if t is not None]
    return tiles + [(a, ends(a, block), b, ends(b, block)) for a, b in _round_robin(list(starts))]


def _round_robin(items: list[int]) -> list[tuple[int, int]]:
    """Every pair ``(a, b)``, ``a < b``, of ``items`` once, in rounds in which no item appears twice
    (the circle method)."""
    ring: list[int | None] = items + [None] * (len(items) % 2)
    pairs = []
    for _ in range(len(ring) - 1):
        for p, q in zip(ring[: len(ring) // 2], reversed(ring[len(ring) // 2 :]), strict=True):
            if p is not None and q is not None:
                pairs.append((min(p, q), max(p, q)))
        ring = [ring[0], ring[-1], *ring[1:-1]]
    return pairs


def _scan(
    x: torch.Tensor, sq: np.ndarray, kk: int, block: int, out: torch.Tensor, threads: int
) -> tuple[np.ndarray, ...]:
    """Heaps ``(values, indices)`` of the ``kk`` smallest entries of every row of the approximate
    squared distances ``|x_i|^2 + |x_j|^2 - 2 x_i . x_j`` (upper triangle tiles of ``x @ x.T``, used
    for rows and columns) and the ``_TOP`` largest with their columns; writes the query x gallery part
    into ``out``."""
    n = x.shape[0]
    dtype = x.numpy().dtype
    hv = np.full((n, kk), np.inf, dtype)
    hi = np.full((n, kk), n, np.int64)
    tv = np.full((n, _TOP), -np.inf, dtype)  # the largest values of each row, descending
    tc = np.zeros((n, _TOP), np.int64)
    locks = [threading.Lock() for _ in range(0, n, block)]  # a tile's scan holds its row and column blocks
    res = out.numpy()
    local = threading.local()  # each thread's product buffer: no fresh pages per tile

    def tile(a: int, ae: int, b: int, be: int) -> None:
        if not hasattr(local, "buf"):
            local.buf = torch.empty(block * block, dtype=x.dtype)
        g = matmul_nt(x[a:ae], x[b:be], out=local.buf[: (ae - a) * (be - b)].view(ae - a, be - b)).numpy()
        with locks[a // block], locks[b // block] if b // block != a // block else contextlib.nullcontext():
            kern.scan_tile(g, a, b, a == b, sq, hv, hi, tv, tc, res)

    _each(tile, upper_tiles(n, block), threads)
    return hv, hi, tv, tc


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
    feats: Features,
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
    f, nn_o_np, rmax = feats.rows, nn_o.numpy(), row_max.numpy()
    weigh = lambda lo, hi: kern.weights(lo, hi, indptr, cols, nn_np, nn_o_np, f, rmax, vals)  # noqa: E731
    _each(weigh, _row_ranges(n, _ROWS), threads)
    if k_qe > 1:
        indptr, cols, vals = _query_expand(indptr, cols, vals, np.ascontiguousarray(nn_np[:, :k_qe]), threads)
    g_ptr, g_rows, g_vals = kern.transpose(num_q, n, indptr, cols, vals, n)
    q_max = rmax[:num_q]  # exact row maxima, clamped above 0
    res = out.numpy()
    _each(
        lambda lo, hi: kern.jaccard_mix(lo, hi, indptr, cols, vals, g_ptr, g_rows, g_vals, q_max, lam, res),
        _row_ranges(num_q, _QUERY_ROWS),
        threads,
    )
