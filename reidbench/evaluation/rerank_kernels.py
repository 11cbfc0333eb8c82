"""Compiled (numba) CPU kernels of k-reciprocal re-ranking; the definitions are in ``rerank.py``.

Each kernel is a plain loop over a range of rows, compiled once (``cache=True``) and run without the
GIL, so that :mod:`reidbench.evaluation.rerank` can hand ranges of rows to its own threads, which
take the next range when they finish one (no barrier where a descheduled thread stalls the others).
Sparse rows are CSR triples ``(indptr, cols, vals)``; scratch arrays of length N are stamped with the
row number instead of being cleared.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# numpy error model: no zero-division checks (no divisor here can be 0), so loops with divisions vectorise
_OPTS = {"nogil": True, "cache": True, "boundscheck": False, "error_model": "numpy"}


@njit(**_OPTS)
def _sift_down(hv, hi, v, j):  # pragma: no cover - compiled
    """Replace the root of the max-heap ``(hv, hi)`` (ordered by (value, index)) by ``(v, j)``."""
    k = hv.shape[0]
    p = 0
    while True:
        c = 2 * p + 1
        if c >= k:
            break
        if c + 1 < k and (hv[c + 1] > hv[c] or (hv[c + 1] == hv[c] and hi[c + 1] > hi[c])):
            c += 1
        if hv[c] > v or (hv[c] == v and hi[c] > j):
            hv[p], hi[p] = hv[c], hi[c]
            p = c
        else:
            break
    hv[p], hi[p] = v, j


@njit(**_OPTS)
def _insert_top(tv, tc, x, j):  # pragma: no cover - compiled
    """Insert ``(x, j)`` into a row's descending list ``tv`` (columns ``tc``) of its largest values,
    dropping the smallest (the caller checked ``x > tv[-1]``)."""
    t = tv.shape[0] - 1
    while t > 0 and tv[t - 1] < x:
        tv[t], tc[t] = tv[t - 1], tc[t - 1]
        t -= 1
    tv[t], tc[t] = x, j


@njit(**_OPTS)
def scan_tile(g, a, b, diagonal, sq, hv, hi, tv, tc, out):  # pragma: no cover - compiled
    """Merge a tile of approximate squared distances ``|x_i|^2 + |x_j|^2 - 2 g`` (``g`` the tile of
    products ``x_i . x_j``, rows ``a..``, columns ``b..``; the sum in float64, rounded to the heaps'
    dtype) into the per-row max-heaps of the smallest values (an entry enters when below the root:
    every entry left out is >= the final root) and the per-row descending lists ``tv`` (columns
    ``tc``) of the largest values; an off-diagonal tile also serves its columns (the matrix is
    symmetric). Copies its query x gallery entries into ``out`` (rows ``0..Q``, columns ``Q..N``;
    ``Q = out.shape[0]``)."""
    h, w = g.shape
    last = tv.shape[1] - 1
    num_q = out.shape[0]
    for r in range(h):
        i = a + r
        d = g[r]  # becomes the distances, in place (plain loops: SIMD code)
        for c in range(w):
            d[c] = sq[i] + sq[b + c] - 2.0 * np.float64(d[c])
        if i < num_q:
            for c in range(max(0, num_q - b), w):
                out[i, b + c - num_q] = d[c]
        low = tv[i, last]
        for c in range(w):
            x = d[c]
            j = b + c
            if x > low:
                _insert_top(tv[i], tc[i], x, j)
                low = tv[i, last]
            if x < hv[i, 0]:
                _sift_down(hv[i], hi[i], x, j)
            if not diagonal:
                if x > tv[j, last]:
                    _insert_top(tv[j], tc[j], x, i)
                if x < hv[j, 0]:
                    _sift_down(hv[j], hi[j], x, i)


@njit(**_OPTS)
def features(src, row0, x, sq):  # pragma: no cover - compiled
    """Rows ``row0..`` of ``x`` (in its dtype) and of ``sq = |x|^2`` (float64) from the features
    ``src``; whether ``x`` holds ``src``'s values exactly. (Two plain loops per row: SIMD code.)"""
    dim = src.shape[1]
    exact = True
    for r in range(src.shape[0]):
        i = row0 + r
        a, b = src[r], x[i]
        for t in range(dim):
            b[t] = a[t]
        s = 0.0
        changed = 0
        for t in range(dim):
            v = np.float64(a[t])
            changed += np.float64(b[t]) != v
            s += v * v
        exact &= changed == 0
        sq[i] = s
    return exact


@njit(fastmath=True, **_OPTS)
def _dot(feats, i, j):  # pragma: no cover - compiled
    """``x_i . x_j`` accumulated in float64 (reassociated: SIMD)."""
    s = 0.0
    for t in range(feats.shape[1]):
        s += np.float64(feats[i, t]) * np.float64(feats[j, t])
    return s


@njit(**_OPTS)
def _exact_sq(feats, sq, i, j):  # pragma: no cover - compiled
    """``max(|x_i|^2 + |x_j|^2 - 2 x_i . x_j, 0)`` in float64, the dense code's formula."""
    d = sq[i] + sq[j] - 2.0 * _dot(feats, i, j)
    return d if d > 0 else 0.0


@njit(**_OPTS)
def refine(lo, hi, feats, sq, err, hv, hi_idx, tv, tc, k, nn, nn_o, row_max, bad):  # pragma: no cover
    """Exact neighbours of rows ``lo..hi`` from their heaps of approximate distances.

    A row's heap holds the ``kk`` smallest approximate values ``~d`` (every other entry is >= its
    largest, ``top``); with ``|~d - d| <= err[i]`` the ``k`` nearest by the exact ``d`` are among its
    entries with ``~d <= tau + 2 err`` (``tau`` the ``k``-th smallest ``~d``) when ``top - err > max(tau +
    err, 0)``: their exact distances are then ranked by (o, index), ``o = d / max_j d`` with the row
    maximum over the columns ``tc[i, :-1]`` of the largest approximate values ``tv[i]`` (descending),
    which hold the exact argmax when ``tv[i, 0] - tv[i, -1] > 2 err``. Otherwise ``bad[i] = 1``: the
    caller recomputes the row.
    """
    n, kk = hv.shape[0], hv.shape[1]
    d = np.empty(kk, np.float64)
    idx = np.empty(kk, np.int64)
    vals = np.empty(kk, hv.dtype)
    for i in range(lo, hi):
        if not tv[i, 0] - tv[i, -1] > 2 * err[i]:  # the maximum's column may be beyond the list
            bad[i] = 1
            continue
        cut = np.inf
        if kk < n:
            vals[:] = hv[i]
            vals.sort()
            cut = np.float64(vals[k - 1]) + 2 * err[i]  # beyond it: provably after the k-th
            if not np.float64(vals[kk - 1]) - err[i] > max(cut - err[i], 0.0):
                bad[i] = 1
                continue
        m = 0.0
        for t in range(tv.shape[1] - 1):
            if tv[i, t] >= tv[i, 0] - 2 * err[i]:  # the others are provably below the maximum
                m = max(m, _exact_sq(feats, sq, i, tc[i, t]))
        c = 0
        for t in range(kk):
            if hv[i, t] <= cut:
                idx[c] = hi_idx[i, t]
                d[c] = _exact_sq(feats, sq, i, idx[c])
                m = max(m, d[c])
                c += 1
        m = max(m, np.finfo(np.float64).tiny)
        for t in range(c):
            d[t] /= m  # o
        _sort_pairs(d, idx, c)
        nn[i, :k] = idx[:k]
        nn_o[i, :k] = d[:k]
        row_max[i] = m


@njit(**_OPTS)
def _sort_pairs(o, idx, c):  # pragma: no cover - compiled
    """Order the first ``c`` pairs ``(o, idx)`` by o, then index (insertion sort: a row's few
    candidates, in place)."""
    for t in range(1, c):
        v, j = o[t], idx[t]
        s = t
        while s > 0 and (o[s - 1] > v or (o[s - 1] == v and idx[s - 1] > j)):
            o[s], idx[s] = o[s - 1], idx[s - 1]
            s -= 1
        o[s], idx[s] = v, j


@njit(**_OPTS)
def reciprocal(nn, k, out, size):  # pragma: no cover - compiled
    """``R(i, k)``: the first ``k`` neighbours ``j`` of each row ``i`` that list ``i`` among their own
    first ``k`` (in neighbour order), into ``out[i, :size[i]]``."""
    for i in range(nn.shape[0]):
        s = 0
        for a in range(k):
            j = nn[i, a]
            for b in range(k):
                if nn[j, b] == i:
                    out[i, s] = j
                    s += 1
                    break
        size[i] = s


@njit(**_OPTS)
def expand(lo, hi, r_set, r_size, h_set, h_size, indptr, cols):  # pragma: no cover - compiled
    """Expanded sets of rows ``lo..hi``: ``R(i, k1)`` plus every ``R(c, h)``, ``c`` in ``R(i, k1)``,
    sharing more than 2/3 of its members with ``R(i, k1)``. With ``cols`` empty only the sizes are
    written (into ``indptr[i + 1]``); otherwise the members go to ``cols[indptr[i]:]``, ascending."""
    n = r_set.shape[0]
    in_r = np.zeros(n, np.int64)
    seen = np.zeros(n, np.int64)
    buf = np.empty(r_set.shape[1] * (1 + h_set.shape[1]), np.int64)
    fill = cols.shape[0] > 0
    for i in range(lo, hi):
        stamp = i + 1
        t = 0
        for a in range(r_size[i]):
            in_r[r_set[i, a]] = stamp
            seen[r_set[i, a]] = stamp
            buf[t] = r_set[i, a]
            t += 1
        for a in range(r_size[i]):
            c = r_set[i, a]
            shared = 0
            for b in range(h_size[c]):
                if in_r[h_set[c, b]] == stamp:
                    shared += 1
            if 3 * shared > 2 * h_size[c]:
                for b in range(h_size[c]):
                    y = h_set[c, b]
                    if seen[y] != stamp:
                        seen[y] = stamp
                        buf[t] = y
                        t += 1
        if fill:
            cols[indptr[i] : indptr[i] + t] = np.sort(buf[:t])
        else:
            indptr[i + 1] = t


@njit(fastmath=True, **_OPTS)
def _sq_dist(feats, i, j):  # pragma: no cover - compiled
    """``||x_i - x_j||^2`` accumulated in float64 (reassociated: SIMD)."""
    s = 0.0
    for t in range(feats.shape[1]):
        e = np.float64(feats[i, t]) - np.float64(feats[j, t])
        s += e * e
    return s


@njit(**_OPTS)
def weights(lo, hi, indptr, cols, nn, nn_o, feats, row_max, vals):  # pragma: no cover - compiled
    """``V[i, j] = exp(-o(i, j)) / sum_j' exp(-o(i, j'))`` over the members ``j`` of rows ``lo..hi``;
    ``o`` from the neighbour lists where listed, from the features otherwise."""
    n = nn.shape[0]
    where = np.zeros(n, np.int64)
    pos = np.zeros(n, np.int64)
    for i in range(lo, hi):
        stamp = i + 1
        for b in range(nn.shape[1]):
            where[nn[i, b]] = stamp
            pos[nn[i, b]] = b
        total = 0.0
        for p in range(indptr[i], indptr[i + 1]):
            j = cols[p]
            if where[j] == stamp:
                o = np.float64(nn_o[i, pos[j]])
            else:
                o = _sq_dist(feats, i, j) / row_max[i]
            w = np.exp(-o)
            vals[p] = w
            total += w
        # A row without members (exact duplicates listed before it) stays empty: V = 0 as in the paper.
        for p in range(indptr[i], indptr[i + 1]):
            vals[p] = vals[p] / total


@njit(**_OPTS)
def query_expand(lo, hi, indptr, cols, vals, nbrs, out_ptr, out_cols, out_vals):  # pragma: no cover
    """Rows ``lo..hi`` of ``mean(V[j] for j in nbrs[i])`` (sparse row merge). With ``out_cols`` empty
    only the row sizes are written (into ``out_ptr[i + 1]``)."""
    n = nbrs.shape[0]
    k = nbrs.shape[1]
    seen = np.zeros(n, np.int64)
    acc = np.zeros(n, np.float64)
    fill = out_cols.shape[0] > 0
    for i in range(lo, hi):
        stamp = i + 1
        t = out_ptr[i] if fill else 0
        for b in range(k):
            r = nbrs[i, b]
            for p in range(indptr[r], indptr[r + 1]):
                c = cols[p]
                if seen[c] != stamp:
                    seen[c] = stamp
                    acc[c] = 0.0
                    if fill:
                        out_cols[t] = c
                    t += 1
                acc[c] += vals[p]
        if fill:
            for p in range(out_ptr[i], t):
                out_vals[p] = acc[out_cols[p]] / k
        else:
            out_ptr[i + 1] = t


@njit(**_OPTS)
def transpose(lo, hi, indptr, cols, vals, n):  # pragma: no cover - compiled
    """Rows ``lo..hi`` of a CSR matrix as CSC over ``n`` columns: ``(col_ptr, rows - lo, vals)``."""
    ptr = np.zeros(n + 1, np.int64)
    for p in range(indptr[lo], indptr[hi]):
        ptr[cols[p] + 1] += 1
    for c in range(n):
        ptr[c + 1] += ptr[c]
    nxt = ptr[:-1].copy()
    rows = np.empty(indptr[hi] - indptr[lo], np.int32)  # (half the index traffic of the join)
    out = np.empty(indptr[hi] - indptr[lo], vals.dtype)
    for i in range(lo, hi):
        for p in range(indptr[i], indptr[i + 1]):
            q = nxt[cols[p]]
            rows[q], out[q] = i - lo, vals[p]
            nxt[cols[p]] = q + 1
    return ptr, rows, out


@njit(**_OPTS)
def jaccard_mix(lo, hi, indptr, cols, vals, g_ptr, g_rows, g_vals, q_max, lam, out):  # pragma: no cover
    """Query rows ``lo..hi`` of ``out`` (squared distances to the gallery) become
    ``(1 - lam) * (1 - m / (2 - m)) + lam * max(out, 0) / q_max`` with ``m[i, j] = sum_l min(V[i, l],
    V[j, l])``, joined over the gallery rows (CSC ``g_*``) that are non-zero in each column of row i."""
    m = np.zeros(out.shape[1], np.float64)
    mixed = np.empty(out.shape[1], np.float64)
    for i in range(lo, hi):
        for p in range(indptr[i], indptr[i + 1]):
            a = vals[p]
            c = cols[p]
            for t in range(g_ptr[c], g_ptr[c + 1]):
                b = g_vals[t]
                m[g_rows[t]] += a if a < b else b
        for j in range(m.shape[0]):  # (two plain loops: the second compiles to SIMD code)
            mixed[j] = (1.0 - lam) * (1.0 - m[j] / (2.0 - m[j]))
            m[j] = 0.0
        scale = lam / q_max[i]
        row = out[i]
        for j in range(row.shape[0]):
            x = np.float64(row[j])
            row[j] = mixed[j] + (x if x > 0 else 0.0) * scale
