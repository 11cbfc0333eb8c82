"""k-reciprocal re-ranking (Zhong et al., CVPR 2017) with memory linear in the number of images.

Definition implemented (the original paper / its reference code ``re_ranking_feature.py``):

* Original distance: squared Euclidean distance ``d(i, j) = ||x_i - x_j||^2`` between the features
  (pass L2-normalised features for the usual protocol), each row divided by its maximum over all
  ``N = Q + G`` images: ``o(i, j) = d(i, j) / max_k d(i, k)``. Neighbours are ranked by ``o`` with ties
  broken by index (a stable sort). The input is *not* squared again (torchreid squares an already
  squared distance, variant 10a in reid-toolkits.md).
* ``N(i, k)``: the first ``k`` entries of that ranking (``i`` itself is usually the first).
  k-reciprocal set ``R(i, k1) = {j in N(i, k1 + 1) : i in N(j, k1 + 1)}`` (effective ``k1 + 1``
  neighbours including self, as in the reference code).
* Expansion: for every ``c in R(i, k1)``, ``R(c, h)`` with ``h = round(k1 / 2)`` (half to even, as
  ``np.around``) is added when ``|R(c, h) ∩ R(i, k1)| > 2/3 |R(c, h)|``.
* ``V[i, j] = exp(-o(i, j)) / sum_j' exp(-o(i, j'))`` over the expanded set, 0 elsewhere.
* Query expansion (``k2 > 1``): ``V[i] <- mean(V[j] for j in N(i, k2))``.
* Jaccard distance ``1 - m / (2 - m)`` with ``m = sum_l min(V[i, l], V[j, l])``.
* Final distance ``(1 - lambda) * jaccard + lambda * o`` for query rows and gallery columns.

Two implementations of the same steps, tested equal to each other and to a dense implementation
written from the paper:

* CPU tensors (numba installed): ``rerank_cpu`` with the compiled kernels of ``rerank_kernels``. The
  features are read once into float32 (float64 ones that float32 holds exactly are kept only as
  float32) with their float64 squared norms. The upper triangle of ``x @ x.T`` is computed in 768-wide
  float32 tiles (one ``matmul_nt`` product each, into a reused buffer), turned in place into squared
  distances ``|x_i|^2 + |x_j|^2 - 2 x_i . x_j`` and scanned once into per-row heaps of the k1 + 1 +
  extra smallest values and the row argmax. Those values are only a pre-selection: their error against
  the float64 distance is bounded (``rerank_cpu.error_bounds``: ``gamma_(D+2) (|x_i| + |x_j|)^2`` plus
  the float32 roundings, times two), so the heap provably holds every neighbour that can rank within
  the first k1 + 1 when its largest value exceeds the (k1 + 1)-th by twice the bound; those candidates
  get exact float64 distances (``|x_i|^2 + |x_j|^2 - 2 x_i . x_j``, the dense code's formula) and are
  ranked by (o, index); a row without that margin (near-duplicate clusters larger than the heap) is
  recomputed whole in float64. Neighbours, their ``o`` and the row maxima are therefore those of the
  float64 dense code for float32 features too. Two float32 quantities remain, each moving the output
  by well under 1e-6: the row maximum is the exact float64 distance at the float32 argmax (it differs
  from the true maximum only when two columns are within float32 error of the maximum, and then by at
  most twice that error, about 2e-6 / 2 relative for unit features), and the query x gallery ``o``
  in the final ``lambda * o`` term comes from the float32 tile (absolute error ~2e-6 on the distance,
  times ``lambda / max``). The k-reciprocal sets, weights, query expansion and the Jaccard join over
  shared non-zero columns are plain compiled loops over CSR rows. Thread policy: PyTorch at one thread
  for the duration; the tiles and row ranges are taken one after the other by a few Python threads
  (the kernels release the GIL), so that a descheduled thread on a shared machine delays one piece
  instead of stalling an OpenMP barrier (on this project's shared 2-core machine the torch path's
  k-NN step took 56 s at 2 threads against 24 s at 1 thread, N = 19,281). A tile's scan holds the
  locks of its row and column blocks only, and consecutive tiles pair different blocks (round-robin),
  so that two threads seldom wait for each other.
* Otherwise (GPUs, no numba): torch code. The tiles' running top-(k1+1) are kept with ``topk`` on the
  diagonal tiles and one comparison pass per tile; ``V`` is kept as padded sparse rows, query expansion
  merges sparse rows, and the Jaccard join is accumulated a few query rows at a time in a reused buffer.

Both order neighbours by (o, index) and recompute the rows whose neighbour boundary is tied (the torch
path ranks in the features' dtype). Memory: the features (and their float32 copy where it differs),
one tile per thread, O(N * k1) neighbour data, the sparse ``V`` (about N x |support|), and the Q x G
output.
Speed (``benchmarks/perf/rerank_speed.py``): see the README's performance section.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from reidbench.evaluation.gemm import matmul_nt

__all__ = ["k_reciprocal_rerank"]

_BLOCK = 2048  # tile size of the distance matrix
_JOIN_ELEMENTS = 1 << 22  # (query, gallery) contributions per Jaccard step
_ACCUMULATOR_ELEMENTS = 1 << 20  # query x gallery entries accumulated per Jaccard step
_PAIR_ELEMENTS = 1 << 18  # feature values gathered per step of the pairwise distances


def _rows(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``x[index]`` for an integer ``index`` of any shape. ``index_select`` is more than 10x faster than
    advanced indexing on CPUs, and the sparse steps below are mostly such gathers."""
    return x.index_select(0, index.reshape(-1)).view(*index.shape, *x.shape[1:])


def _sorted(x: torch.Tensor) -> torch.Tensor:
    """``x`` sorted along its last dimension. On CPUs NumPy's sort (SIMD quicksort on x86) is 4x-30x
    faster than ``torch.sort`` for the short integer rows sorted here."""
    if x.device.type == "cpu":
        return torch.from_numpy(np.sort(x.numpy(), axis=-1))
    return x.sort(dim=-1).values


def _flat_nonzero(mask: torch.Tensor) -> torch.Tensor:
    """Positions of the true entries of ``mask`` in its flattened order (NumPy's is ~3x faster on CPUs)."""
    if mask.device.type == "cpu":
        return torch.from_numpy(np.flatnonzero(mask.numpy()))
    return mask.reshape(-1).nonzero().squeeze(1)


def _stable_order(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(sorted x, stable argsort)`` along the last dimension for non-negative integer ``x``: one value
    sort of ``x * width + position``, whose ties cannot occur."""
    width = x.shape[-1]
    key = _sorted(x * width + torch.arange(width, device=x.device))
    return torch.div(key, width, rounding_mode="floor"), key % width


def _order_by_value_then_index(o: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of ``(o, idx)`` reordered by (o, idx) for float32 ``o >= 0`` and ``0 <= idx < 2**31``: the
    bit patterns of non-negative float32 values order like the values, so one integer sort suffices."""
    key = _sorted((o.view(torch.int32).to(torch.int64) << 32) | idx)
    return (key >> 32).to(torch.int32).view(torch.float32), key & 0xFFFFFFFF


def _smallest_k_stable(x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Values and indices of the ``k`` smallest entries per row, ordered by (value, index)."""
    vals = torch.topk(x, k, dim=1, largest=False, sorted=True).values
    t = vals[:, -1:]
    eq = x == t
    take = (x < t) | (eq & (eq.cumsum(1) <= (k - (vals < t).sum(1))[:, None]))
    idx = take.nonzero()[:, 1].view(-1, k)  # ascending index within each row
    v = x.gather(1, idx)
    o = v.argsort(dim=1, stable=True)
    return v.gather(1, o), idx.gather(1, o)


def _keep_smallest(
    best_v: torch.Tensor, best_i: torch.Tensor, new_v: torch.Tensor, new_i: torch.Tensor
) -> None:
    """Keep, in place, the ``best_v.shape[1]`` smallest of each row's kept and new entries."""
    v = torch.cat([best_v, new_v], 1)
    i = torch.cat([best_i, new_i], 1)
    v, o = torch.topk(v, best_v.shape[1], dim=1, largest=False, sorted=False)
    best_v.copy_(v)
    best_i.copy_(i.gather(1, o))


def _merge_dense(best_v: torch.Tensor, best_i: torch.Tensor, d: torch.Tensor, offset: int) -> None:
    """Merge the smallest entries of every row of ``d`` (column ``c`` is item ``offset + c``)."""
    v, i = torch.topk(d, min(best_v.shape[1], d.shape[1]), dim=1, largest=False, sorted=False)
    _keep_smallest(best_v, best_i, v, i + offset)


def _merge_sparse(
    best_v: torch.Tensor, best_i: torch.Tensor, rows: torch.Tensor, items: torch.Tensor, vals: torch.Tensor
) -> None:
    """Merge entries ``(rows, items, vals)`` (``rows`` ascending) into the running best lists."""
    if rows.numel() == 0:
        return
    m = best_v.shape[0]
    cnt = torch.bincount(rows, minlength=m)
    width = int(cnt.max())
    flat = torch.arange(rows.numel(), device=rows.device) - _rows(torch.cumsum(cnt, 0) - cnt, rows)
    flat += rows * width  # position in the padded [m, width] block
    v = torch.full((m * width,), math.inf, dtype=vals.dtype, device=vals.device).index_copy_(0, flat, vals)
    i = torch.zeros(m * width, dtype=torch.int64, device=vals.device).index_copy_(0, flat, items)
    v, i = v.view(m, width), i.view(m, width)
    _keep_smallest(best_v, best_i, v, i)


def _merge_tile(best_v: torch.Tensor, best_i: torch.Tensor, d: torch.Tensor, a: int, b: int) -> None:
    """Merge an off-diagonal tile ``d`` (rows ``a..``, columns ``b..``) into the running best lists of
    its rows and, transposed, of its columns.

    Only entries below the row's or the column's current worst kept value can enter; one comparison
    pass finds them for both sides, and they are merged sparsely.
    """
    h, w = d.shape
    tau_r = best_v[a : a + h].amax(1)
    tau_c = best_v[b : b + w].amax(1)
    hit = torch.lt(d, torch.maximum(tau_r[:, None], tau_c[None, :]))
    flat = _flat_nonzero(hit)
    if flat.numel() > d.numel() // 8:  # thresholds still loose (first tiles of tiny blocks)
        _merge_dense(best_v[a : a + h], best_i[a : a + h], d, b)
        _merge_dense(best_v[b : b + w], best_i[b : b + w], d.t(), a)
        return
    vals = d.view(-1).index_select(0, flat)
    r = torch.div(flat, w, rounding_mode="floor")
    c = flat - r * w
    row_hit = vals < _rows(tau_r, r)
    rows, cols, hit_vals = r.masked_select(row_hit), c.masked_select(row_hit), vals.masked_select(row_hit)
    _merge_sparse(best_v[a : a + h], best_i[a : a + h], rows, cols + b, hit_vals)
    col_hit = vals < _rows(tau_c, c)
    rows, cols, hit_vals = r.masked_select(col_hit), c.masked_select(col_hit), vals.masked_select(col_hit)
    order = _stable_order(cols)[1]  # the column side needs its entries grouped by column
    _merge_sparse(
        best_v[b : b + w],
        best_i[b : b + w],
        _rows(cols, order),
        _rows(rows, order) + a,
        _rows(hit_vals, order),
    )


def _distance_operands(q: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``[x, |x|^2, 1]`` and ``[-2x, 1, |x|^2]`` for the rows ``x`` of ``q`` then ``g``: a row of the first
    times a row of the second is their squared Euclidean distance, so a tile of distances is one product."""
    num_q, dim = q.shape
    lhs = torch.empty((num_q + g.shape[0], dim + 2), dtype=q.dtype, device=q.device)
    lhs[:num_q, :dim] = q
    lhs[num_q:, :dim] = g
    feats = lhs[:, :dim]
    step = max(1, _PAIR_ELEMENTS // max(1, dim))
    sq = torch.cat([(x * x).sum(1) for x in feats.split(step)])  # in steps: no N x D temporary
    rhs = torch.empty_like(lhs)
    torch.mul(feats, -2.0, out=rhs[:, :dim])
    lhs[:, dim], lhs[:, dim + 1] = sq, 1.0
    rhs[:, dim], rhs[:, dim + 1] = 1.0, sq
    return lhs, rhs


def _knn(
    lhs: torch.Tensor, rhs: torch.Tensor, k: int, block: int, num_q: int, out: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``k`` nearest neighbours of every row by the row-max-normalised squared distance ``o``.

    Walks the upper triangle of the symmetric distance matrix in ``block`` x ``block`` tiles (each
    product computed once, used for its rows and its columns; diagonal tiles first, so that every
    row has a finite running threshold before the off-diagonal tiles), keeping a running top-(k+1)
    and row maxima. Neighbours are ordered by (o, index); rows whose boundary is tied in ``o`` are
    recomputed exactly. Also writes the query x gallery squared distances (unclamped) into ``out``.
    ``lhs`` and ``rhs`` come from :func:`_distance_operands`.
    Returns (neighbour indices [n, k], their ``o`` values, row maxima of the squared distance).
    """
    n = lhs.shape[0]
    kk = min(k + 1, n)
    best_v = torch.full((n, kk), math.inf, dtype=lhs.dtype, device=lhs.device)
    best_i = torch.full((n, kk), n, dtype=torch.int64, device=lhs.device)
    row_max = torch.full((n,), -math.inf, dtype=lhs.dtype, device=lhs.device)
    starts = range(0, n, block)
    tiles = [(a, a) for a in starts] + [(a, b) for a in starts for b in starts if b > a]
    for a, b in tiles:
        ae, be = min(n, a + block), min(n, b + block)
        # Unclamped: clamping at 0 is monotone, applied to the kept values below.
        d = matmul_nt(lhs[a:ae], rhs[b:be])
        torch.maximum(row_max[a:ae], d.amax(1), out=row_max[a:ae])
        if a == b:
            _merge_dense(best_v[a:ae], best_i[a:ae], d, b)
        else:
            _merge_tile(best_v, best_i, d, a, b)
            torch.maximum(row_max[b:be], d.amax(0), out=row_max[b:be])
        if a < num_q and be > num_q:
            qe, g0 = min(ae, num_q), max(b, num_q)
            out[a:qe, g0 - num_q : be - num_q] = d[: qe - a, g0 - b :]
    return _finish_knn(best_v, best_i, row_max, lhs, rhs, k, block)


def _finish_knn(
    best_v: torch.Tensor,
    best_i: torch.Tensor,
    row_max: torch.Tensor,
    lhs: torch.Tensor,
    rhs: torch.Tensor,
    k: int,
    block: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Order each row's kept top-(k+1) squared distances ``best_v`` (items ``best_i``) by (o, index)
    with ``o = max(d, 0) / row_max``; recompute the rows whose k-th and (k+1)-th ``o`` tie exactly.
    Returns (neighbour indices [n, k], their ``o`` values, row maxima clamped above 0)."""
    n, kk = best_v.shape
    row_max.clamp_(min=torch.finfo(row_max.dtype).tiny)
    o = (best_v.clamp(min=0) / row_max[:, None]).abs_()  # abs: -0.0 -> +0.0 for the bit-pattern sort
    if o.dtype == torch.float32:
        o, idx = _order_by_value_then_index(o, best_i)
    else:  # exact order by (o, index): sort by index, then stably by o
        p = best_i.argsort(dim=1)
        o, idx = o.gather(1, p), best_i.gather(1, p)
        p = o.argsort(dim=1, stable=True)
        o, idx = o.gather(1, p), idx.gather(1, p)
    if kk < n:
        # The k-th and (k+1)-th values tie: the running top-k may hold the wrong members of the tie.
        (bad,) = (o[:, k - 1] == o[:, k]).nonzero(as_tuple=True)
        for s in range(0, bad.numel(), block):
            r = bad[s : s + block]
            d = matmul_nt(lhs[r], rhs).clamp_(min=0) / row_max[r, None]
            o[r, :k], idx[r, :k] = _smallest_k_stable(d, k)
    return idx[:, :k].contiguous(), o[:, :k].contiguous(), row_max


def _unique_per_row(
    idx: torch.Tensor, sentinel: int, vals: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Distinct entries of each row of ``idx`` in ascending order, padded with ``sentinel`` (the largest
    value; sentinel entries are dropped), and with ``vals`` the sum of each distinct entry's values."""
    c = idx.shape[0]
    if vals is None:
        idx = _sorted(idx)
    else:
        idx, order = _stable_order(idx)
        vals = vals.gather(1, order)
    first = idx != sentinel
    first[:, 1:] &= idx[:, 1:] != idx[:, :-1]
    slot = first.cumsum(1) - 1  # output position of each entry's distinct value (-1: none yet)
    width = max(1, int(slot[:, -1].max()) + 1)
    flat = (torch.arange(c, device=idx.device)[:, None] * width + slot.clamp_(min=0)).view(-1)
    first = first.view(-1)
    out = torch.full((c * width,), sentinel, dtype=idx.dtype, device=idx.device)
    out.index_copy_(0, flat.masked_select(first), idx.view(-1).masked_select(first))
    if vals is None:
        return out.view(c, width), None
    vals = torch.where(idx != sentinel, vals, 0)  # sentinel entries share the last slot: add nothing
    summed = torch.zeros(c * width, dtype=vals.dtype, device=vals.device).index_add_(
        0, flat, vals.reshape(-1)
    )
    return out.view(c, width), summed.view(c, width)


def _to_tensor(x: torch.Tensor | np.ndarray, name: str) -> torch.Tensor:
    t = torch.from_numpy(x) if isinstance(x, np.ndarray) else torch.as_tensor(x)
    if t.dim() != 2:
        raise ValueError(f"{name} must be 2-D (num x dim), got shape {tuple(t.shape)}")
    return t


def k_reciprocal_rerank(
    qf: torch.Tensor | np.ndarray,
    gf: torch.Tensor | np.ndarray,
    *,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """Re-ranked query x gallery distance matrix (float32, on ``qf``'s device).

    ``qf`` [Q, D] and ``gf`` [G, D] are query and gallery features (L2-normalise them first for the
    usual protocol); computations run in ``qf``'s floating dtype. See the module docstring for the exact
    definition. ``chunk_size`` is the tile size of the distance matrix (default 768 on the compiled
    CPU path, 2048 otherwise). On CPUs the work is shared by ``torch.get_num_threads()`` threads of its
    own (PyTorch runs at one thread meanwhile; its thread count is restored after).
    """
    q = _to_tensor(qf, "qf")
    g = _to_tensor(gf, "gf").to(device=q.device)
    if not q.is_floating_point():
        q = q.float()
    g = g.to(q.dtype)
    if q.shape[1] != g.shape[1]:
        raise ValueError(f"qf and gf must have the same width, got {q.shape[1]} and {g.shape[1]}")
    if k1 < 1 or k2 < 1:
        raise ValueError(f"k1 and k2 must be >= 1, got k1={k1}, k2={k2}")
    if not 0.0 <= lambda_value <= 1.0:
        raise ValueError(f"lambda_value must be in [0, 1], got {lambda_value}")
    num_q, num_g = q.shape[0], g.shape[0]
    n = num_q + num_g
    device = q.device
    out = torch.empty((num_q, num_g), dtype=torch.float32, device=device)
    if num_q == 0 or num_g == 0:
        return out
    k_all = min(max(k1 + 1, k2), n)
    sizes = (min(k1 + 1, n), min(round(k1 / 2) + 1, n), min(k2, n))  # k_fwd, k_half, k_qe
    cpu = _compiled_path() if device.type == "cpu" else None
    block = chunk_size or (cpu.BLOCK if cpu is not None else _BLOCK)
    if cpu is not None:
        threads = torch.get_num_threads()
        with cpu.one_torch_thread():
            if q.dtype not in (torch.float32, torch.float64):  # half precision: exact in float32
                q, g = q.float(), g.float()
            feats = cpu.features([q, g])
            nn, nn_o, row_max = cpu.knn(feats, num_q, k_all, block, out, threads)
            cpu.sparse_rerank(nn, nn_o, feats, row_max, sizes, lambda_value, out, threads)
        return out
    k_fwd, k_half, k_qe = sizes
    lhs, rhs = _distance_operands(q, g)
    feats, sq = lhs[:, : q.shape[1]], lhs[:, q.shape[1]]
    if not bool(torch.isfinite(feats).all()):
        raise ValueError("features contain NaN or inf")

    # 1. Nearest neighbours by the row-max-normalised distance; row maxima; query rows of o.
    nn, nn_o, row_max = _knn(lhs, rhs, k_all, block, num_q, out)

    # 2. k-reciprocal sets with their 1/2 expansion, and the Gaussian weights: sparse rows of V.
    members = _expanded_sets(nn, k_fwd, k_half)
    v_val = _weights(feats, sq, row_max, members, nn, nn_o)

    # 3. Query expansion: V[i] <- mean of V over N(i, k2) (sparse row merge).
    if k2 != 1:
        v_idx, v_val = _query_expand(members, v_val, nn[:, :k_qe], n)
    else:
        v_idx = members

    # 4. Jaccard distance over shared non-zeros, mixed with o (from the distances in out) into out.
    _jaccard_mix(out, v_idx, v_val, row_max[:num_q].to(out.dtype), lambda_value)
    return out


def _compiled_path():  # noqa: ANN202 - returns a module or None
    """The compiled CPU path (``rerank_cpu``), or None where numba is not installed."""
    try:
        from reidbench.evaluation import rerank_cpu
    except ImportError:
        return None
    return rerank_cpu


def _expanded_sets(nn: torch.Tensor, k_fwd: int, k_half: int) -> torch.Tensor:
    """Expanded k-reciprocal set of every row, padded (ascending indices, sentinel ``n`` last)."""
    n = nn.shape[0]
    device = nn.device
    fwd_all = nn[:, :k_fwd]
    # recip[i, a]: i is among the first k_fwd neighbours of its a-th neighbour; half: both within k_half.
    recip = torch.empty((n, k_fwd), dtype=torch.bool, device=device)
    recip_half = torch.empty((n, k_half), dtype=torch.bool, device=device)
    step = max(1, _PAIR_ELEMENTS // (k_fwd * k_fwd))
    for s in range(0, n, step):
        e = min(n, s + step)
        hit = _rows(fwd_all, fwd_all[s:e]) == torch.arange(s, e, device=device)[:, None, None]
        recip[s:e] = hit.any(2)
        recip_half[s:e] = hit[:, :k_half, :k_half].any(2)
    half_size = recip_half.sum(1)
    half_sets = torch.where(recip_half, nn[:, :k_half], -1)  # R(c, h), sentinel -1
    parts: list[torch.Tensor] = []
    step = max(1, _PAIR_ELEMENTS // (k_fwd * k_half))
    for s in range(0, n, step):
        e = min(n, s + step)
        r_set = torch.where(recip[s:e], fwd_all[s:e], n)  # R(i, k1), sentinel n
        r_sorted = _sorted(r_set)
        cand = fwd_all[s:e]  # candidates (valid where recip)
        c_set = _rows(half_sets, cand)  # [c, k_fwd, k_half]
        flat = c_set.view(e - s, -1)
        pos = torch.searchsorted(r_sorted, flat).clamp_(max=k_fwd - 1)
        inter = (r_sorted.gather(1, pos) == flat).view_as(c_set).sum(2)
        cond = recip[s:e] & (3 * inter > 2 * _rows(half_size, cand))
        add = torch.where(cond[..., None] & (c_set >= 0), c_set, n).flatten(1)
        parts.append(_unique_per_row(torch.cat([r_set, add], 1), n)[0])
    width = max(p.shape[1] for p in parts)
    return torch.cat([torch.nn.functional.pad(p, (0, width - p.shape[1]), value=n) for p in parts])


def _weights(
    feats: torch.Tensor,
    sq: torch.Tensor,
    row_max: torch.Tensor,
    members: torch.Tensor,
    nn: torch.Tensor,
    nn_o: torch.Tensor,
) -> torch.Tensor:
    """``V[i, j] = exp(-o(i, j)) / sum_j exp(-o(i, j))`` over the members of row i (float32, padded 0).

    ``o`` is looked up in the neighbour lists where the member is a listed neighbour, computed from
    the features otherwise (in chunks of pairs small enough to stay in cache).
    """
    n, width = members.shape
    ok = members < n
    by_index, p = _stable_order(nn)
    pos = torch.searchsorted(by_index, members).clamp_(max=nn.shape[1] - 1)
    known = by_index.gather(1, pos) == members
    o = torch.where(known, nn_o.gather(1, p).gather(1, pos), 0.0)
    todo = _flat_nonzero(ok & ~known)
    flat_o = o.view(-1)
    step = max(1, _PAIR_ELEMENTS // feats.shape[1])
    for s in range(0, todo.numel(), step):
        t = todo[s : s + step]
        r = torch.div(t, width, rounding_mode="floor")
        c = _rows(members.view(-1), t)
        dots = torch.linalg.vecdot(_rows(feats, r), _rows(feats, c))
        d = (_rows(sq, r) + _rows(sq, c) - 2.0 * dots).clamp_(min=0)
        flat_o.index_copy_(0, t, d / _rows(row_max, r))
    w = torch.where(ok, torch.exp(-o.float()), 0.0)
    # A row can have no members (exact duplicates listed before it): it stays 0, as in the dense code.
    return w / w.sum(1, keepdim=True).clamp_(min=torch.finfo(w.dtype).tiny)


def _query_expand(
    idx: torch.Tensor, val: torch.Tensor, nbrs: torch.Tensor, n: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows ``mean(V[j] for j in nbrs[i])`` of a padded sparse matrix (sentinel column ``n``)."""
    k = nbrs.shape[1]
    rows_out: list[torch.Tensor] = []
    vals_out: list[torch.Tensor] = []
    step = max(1, _PAIR_ELEMENTS // (k * idx.shape[1]))
    for s in range(0, idx.shape[0], step):
        e = min(idx.shape[0], s + step)
        ui, uv = _unique_per_row(
            _rows(idx, nbrs[s:e]).view(e - s, -1), n, _rows(val, nbrs[s:e]).view(e - s, -1)
        )
        rows_out.append(ui)
        vals_out.append(uv / k)
    width = max(t.shape[1] for t in rows_out)
    out_i = torch.cat([torch.nn.functional.pad(t, (0, width - t.shape[1]), value=n) for t in rows_out])
    out_v = torch.cat([torch.nn.functional.pad(t, (0, width - t.shape[1]), value=0.0) for t in vals_out])
    return out_i, out_v


def _jaccard_mix(
    out: torch.Tensor, idx: torch.Tensor, val: torch.Tensor, q_max: torch.Tensor, lam: float
) -> None:
    """Turn ``out`` (query x gallery squared distances) into ``(1 - lam) * jaccard + lam * o`` with
    ``o = max(out, 0) / q_max`` (the query rows' maxima).

    ``idx``/``val`` are the padded sparse rows of V (sentinel column ``n``). For every query row, each
    non-zero column ``l`` is joined with the gallery rows that are non-zero in ``l`` (a CSC index).
    Query rows go in chunks small enough for their accumulator to stay in cache.
    """
    n = idx.shape[0]
    num_q = q_max.shape[0]
    num_g = n - num_q
    device = out.device
    ok = idx < n
    g_ok = ok[num_q:]
    flat = _flat_nonzero(g_ok)
    g_rows = torch.div(flat, idx.shape[1], rounding_mode="floor")
    g_cols = _rows(idx[num_q:].reshape(-1), flat)
    g_vals = _rows(val[num_q:].reshape(-1), flat)
    order = _stable_order(g_cols)[1]
    csc_rows, csc_vals = _rows(g_rows, order), _rows(g_vals, order)
    col_counts = torch.bincount(g_cols, minlength=n)
    col_ptr = torch.cumsum(col_counts, 0) - col_counts
    q_ok = ok[:num_q]
    q_cols = idx[:num_q].clamp(max=n - 1)
    per_q = torch.where(q_ok, _rows(col_counts, q_cols), 0).sum(1)
    cum = torch.cumsum(per_q, 0)
    max_rows = max(1, _ACCUMULATOR_ELEMENTS // num_g)
    # Reused buffers: fresh multi-megabyte temporaries per chunk cost page faults on every step.
    buf = torch.empty(max_rows * num_g, dtype=torch.float32, device=device)
    den = torch.empty_like(buf)
    s = 0
    while s < num_q:
        base = int(cum[s - 1]) if s > 0 else 0
        e = int(torch.searchsorted(cum, torch.tensor(base + _JOIN_ELEMENTS, device=device), right=True))
        e = min(max(e, s + 1), s + max_rows, num_q)
        c = e - s
        sel = q_ok[s:e]
        flat = _flat_nonzero(sel)
        qi = torch.div(flat, idx.shape[1], rounding_mode="floor")
        ql = _rows(idx[s:e].reshape(-1), flat)
        qv = _rows(val[s:e].reshape(-1), flat)
        cnt = _rows(col_counts, ql)
        base = _rows(col_ptr, ql) - (torch.cumsum(cnt, 0) - cnt)  # p = base + running position
        rep = torch.repeat_interleave(torch.arange(ql.numel(), device=device), cnt)
        p = _rows(base, rep)
        p += torch.arange(rep.numel(), device=device)
        contrib = torch.minimum(_rows(qv, rep), _rows(csc_vals, p))
        target = _rows(qi, rep)
        target *= num_g
        target += _rows(csc_rows, p)
        m = buf[: c * num_g].zero_()
        m.index_add_(0, target, contrib)
        # jaccard = 1 - m / (2 - m), in place
        m.div_(torch.mul(m, -1.0, out=den[: c * num_g]).add_(2.0)).neg_().add_(1.0)
        o = out[s:e].clamp_(min=0).div_(q_max[s:e, None])
        torch.lerp(m.view(c, num_g), o, lam, out=out[s:e])
        s = e
