"""Ranking metrics for re-identification: mAP, CMC and mINP under an explicit junk rule.

Protocol (what :func:`rank_metrics` computes)
---------------------------------------------
For every query ``i`` the gallery is ranked by ascending distance ``dist[i, j]``.

* **Ties** are broken by gallery index: among equal distances the lower gallery index ranks first.
  This is the order a *stable* sort gives, so results are deterministic and independent of the
  device, the chunk size and the sorting algorithm.
* **Junk** gallery items are removed from the ranked list before anything is counted: they are
  neither positives nor negatives and occupy no rank position.

  - ``junk="market"`` (Market-1501, RGBNT201, RGBNT100, RGBN300): items with the query's pid **and**
    the query's camid.
  - ``junk="scene"`` (MSVR310): items with the query's pid **and** the query's scene id, whatever the
    camera (needs ``q_sceneids`` / ``g_sceneids``).
  - ``junk="none"``: nothing is removed.
  - ``same_set=True`` (query set *is* the gallery, e.g. RGBNT201 when the query list equals the
    gallery list): additionally the query's own item (``j == i``) is removed.

* **Positives** are the remaining items with the query's pid; all other remaining items are negatives
  (distractor ids such as Market pid 0 are ordinary negatives). A query with no remaining positive is
  *skipped*: it is not counted in ``num_valid_queries`` and does not enter any average (its ``ap`` entry
  is NaN). If no query is valid a ``ValueError`` explains the usual cause.
* **AP** is the non-interpolated average precision over the *whole* remaining list:
  ``AP = (1/P) * sum_k k / rank_k`` with ``rank_k`` the 1-based rank of the k-th positive.
  **mAP** is the mean AP over valid queries (accumulated in float64).
* **CMC**: ``cmc[r-1]`` is the fraction of valid queries whose first positive has rank ``<= r``, for
  ``r = 1..max_rank``. The curve always has ``max_rank`` entries: when a query's remaining gallery is
  shorter than ``max_rank`` its curve stays 1 after its first positive ("carry forward").
* **mINP** (Ye et al., TPAMI 2021) is the mean over valid queries of ``P / rank_P``, the number of
  positives divided by the rank of the hardest (last) positive.

Differences from the usual implementations
------------------------------------------
* torchreid / fast-reid / TransReID (``eval_func``) sort with ``np.argsort`` (quicksort, not stable), so
  tied distances are ordered arbitrarily; here ties are broken by gallery index.
* They truncate ``max_rank`` to the *raw* gallery size and, when a query's junk-filtered gallery is
  shorter than ``max_rank``, the Cython versions read stale CMC values of the previous query and the
  Python versions crash on NumPy >= 1.24 (ragged arrays). Here the CMC carries forward (see above).
* The Cython versions accumulate AP in float32; here float64.
* TransReID-family repos report no mINP; fast-reid's mINP equals the definition used here.
* PaddleClas does not remove junk (it keeps its rank positions); its numbers are not comparable.
* The MSVR310 scene rule matches ``eval_func_msrv`` of TOP-ReID/EDITOR/MambaPro (without its side
  effects: no ``re.txt`` is written).

Algorithm
---------
No gallery list is ever fully sorted. Per query only its positives are sorted (by distance, then
index). Writing ``b_j`` for the number of positives ranked before gallery item ``j``, the rank of the
k-th positive is ``k + #{negatives j with b_j < k}``, so a per-query histogram of ``b`` over the
negatives gives every positive's rank, hence AP, INP and the first-hit rank for CMC. Only negatives
ranked no later than the hardest positive can count; they are found with one comparison per item and
bucketed with ``searchsorted`` against the few sorted positives; exact distance ties are resolved by
index. Queries are processed in chunks (~1M distances on CPU, where temporaries stay in cache; ~256 MB
of temporaries on GPU). On CPU the chunk work runs in NumPy (faster here than the same torch ops, and
unaffected by torch's intra-op thread setting); on other devices a torch twin of the same algorithm
runs on ``dist``'s device (one packed-key ``searchsorted`` for all queries of a chunk, or a batched one
when most of the chunk precedes the hardest positives). Both are tested against a plain reference.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from reidbench.evaluation.gemm import matmul_nt

__all__ = ["RankMetrics", "rank_metrics", "rank_metrics_from_features"]

JunkRule = Literal["market", "scene", "none"]
ArrayLike = torch.Tensor | np.ndarray

_DEFAULT_BUDGET_BYTES = 256 * 2**20
_CPU_CHUNK_ELEMENTS = 1 << 20
# Bytes of temporaries per (query, gallery) element: int64 bucket, int64 histogram key, int64 gather
# index, gathered distance and a bool, plus a converted copy of the distance row.
_BYTES_PER_ELEMENT = 40
_TIE_PIECE = 1 << 16
# Sparse path (bucket only the items up to the hardest positive, one 1-D searchsorted on packed keys)
# when they are at most this fraction of the chunk; otherwise batched searchsorted over the whole chunk.
_SPARSE_FRACTION = 0.5
# CPU chunks run the NumPy twin of the torch code (tests flip this to cover the torch code on CPU).
_NUMPY_ON_CPU = True


@dataclass(frozen=True)
class RankMetrics:
    """Result of :func:`rank_metrics`.

    Attributes:
        mAP: mean average precision over valid queries.
        cmc: float64 CPU tensor of length ``max_rank``; ``cmc[k-1]`` is the rank-k accuracy.
        mINP: mean inverse negative penalty over valid queries.
        num_valid_queries: queries with at least one positive left after junk removal.
        ap: float64 CPU tensor with one AP per query, NaN for skipped queries.
    """

    mAP: float
    cmc: torch.Tensor
    mINP: float
    num_valid_queries: int
    ap: torch.Tensor

    def rank(self, k: int) -> float:
        """Rank-k accuracy (``cmc[k-1]``), for ``1 <= k <= max_rank``."""
        if not 1 <= k <= self.cmc.numel():
            raise ValueError(f"rank k must be in [1, {self.cmc.numel()}] (max_rank), got {k}")
        return float(self.cmc[k - 1])

    def as_dict(self) -> dict[str, float | int]:
        """``{"mAP", "rank1", "rank5", "rank10", "mINP", "num_valid_queries"}``; ranks above max_rank
        are NaN."""
        out: dict[str, float | int] = {"mAP": self.mAP}
        for k in (1, 5, 10):
            out[f"rank{k}"] = self.rank(k) if k <= self.cmc.numel() else math.nan
        out["mINP"] = self.mINP
        out["num_valid_queries"] = self.num_valid_queries
        return out


def _as_tensor(x: ArrayLike | None, name: str, length: int | None = None) -> torch.Tensor | None:
    if x is None:
        return None
    t = torch.from_numpy(np.ascontiguousarray(x)) if isinstance(x, np.ndarray) else torch.as_tensor(x)
    if t.dim() != 1:
        raise ValueError(f"{name} must be 1-D, got shape {tuple(t.shape)}")
    if length is not None and t.numel() != length:
        raise ValueError(f"{name} has {t.numel()} entries, expected {length}")
    return t


def _labels(x: ArrayLike, name: str, length: int, device: torch.device) -> torch.Tensor:
    t = _as_tensor(x, name, length)
    assert t is not None
    if t.is_floating_point() or t.dtype == torch.bool:
        raise ValueError(f"{name} must hold integers, got dtype {t.dtype}")
    return t.to(device=device, dtype=torch.int64)


@dataclass(frozen=True)
class _Labels:
    """Gallery grouped by pid, plus per-query lookups, all on the compute device."""

    q_code: torch.Tensor  # index of the query pid in the gallery id table, -1 if absent
    g_code: torch.Tensor  # index of each gallery pid in the id table
    table: torch.Tensor  # [num_ids, max_count] gallery indices per id (ascending), -1 padded
    counts: torch.Tensor  # [num_ids]
    q_key: torch.Tensor | None  # camid / sceneid of queries for the junk rule
    g_key: torch.Tensor | None
    same_set: bool

    def numpy(self) -> dict[str, np.ndarray | bool | None]:
        """Zero-copy NumPy views of the (CPU) tensors."""
        return {
            "q_code": self.q_code.numpy(),
            "table": self.table.numpy(),
            "counts": self.counts.numpy(),
            "q_key": None if self.q_key is None else self.q_key.numpy(),
            "g_key": None if self.g_key is None else self.g_key.numpy(),
            "same_set": self.same_set,
        }


def _build_labels(
    q_pids: torch.Tensor,
    g_pids: torch.Tensor,
    q_key: torch.Tensor | None,
    g_key: torch.Tensor | None,
    same_set: bool,
) -> _Labels:
    device = g_pids.device
    uniq, inverse = torch.unique(g_pids, return_inverse=True)
    counts = torch.bincount(inverse, minlength=uniq.numel())
    order = torch.argsort(inverse, stable=True)  # gallery indices grouped by id, ascending within id
    starts = torch.cumsum(counts, 0) - counts
    grp = inverse[order]
    slot = torch.arange(order.numel(), device=device) - starts[grp]
    width = int(counts.max()) if counts.numel() else 0
    table = torch.full((uniq.numel(), max(width, 1)), -1, dtype=torch.int64, device=device)
    table[grp, slot] = order
    if uniq.numel():
        code = torch.searchsorted(uniq, q_pids).clamp(max=uniq.numel() - 1)
        code = torch.where(uniq[code] == q_pids, code, torch.full_like(code, -1))
    else:
        code = torch.full_like(q_pids, -1)
    return _Labels(code, inverse, table, counts, q_key, g_key, same_set)


def _goods_before_dense(
    sorted_d: torch.Tensor, sorted_idx: torch.Tensor, n_good: torch.Tensor, d: torch.Tensor
) -> torch.Tensor:
    """For every column j of ``d`` [c, G]: number of good positives ranked before gallery item j.

    ``sorted_d``/``sorted_idx`` [c, P] hold each row's good positives ordered by (distance, index),
    padded with +inf / a sentinel index larger than any gallery index; ``n_good`` [c] counts them.
    """
    b = torch.searchsorted(sorted_d, d, side="left")
    width = sorted_d.shape[1]
    at = sorted_d.gather(1, b.clamp(max=width - 1))
    tie = (at == d) & (b < n_good[:, None])
    if bool(tie.any()):
        rows, cols = tie.nonzero(as_tuple=True)
        for s in range(0, rows.numel(), _TIE_PIECE):
            r, j = rows[s : s + _TIE_PIECE], cols[s : s + _TIE_PIECE]
            v = d[r, j]
            extra = ((sorted_d[r] == v[:, None]) & (sorted_idx[r] < j[:, None])).sum(1)
            b[r, j] += extra
    return b


def _ordered_key32(x: torch.Tensor, nonnegative: bool = False) -> torch.Tensor:
    """Map float32 values to integer keys with the same order and equality (NaN excluded, -0 == +0).

    Keys lie in ``(-2**31, 2**31)``; int64, or int32 when ``nonnegative=True`` (a faster path valid
    when ``x >= 0``, giving the same keys).
    """
    bits = (x + 0.0).view(torch.int32)  # + 0.0 turns -0.0 into +0.0
    if nonnegative:
        return bits
    bits = bits.to(torch.int64)
    return torch.where(bits < 0, -(bits & 0x7FFFFFFF), bits)


def _negatives_histogram(
    sorted_d: torch.Tensor,
    sorted_idx: torch.Tensor,
    per_row: torch.Tensor,
    values: torch.Tensor,
    cols: Callable[[torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """Per row, how many of the listed float32 negatives have ``b`` good positives before them.

    ``values`` lists the negatives row after row (``per_row[r]`` of row r). One 1-D ``searchsorted``
    serves all rows: the keys ``row * 2**32 + ordered_bits(distance)`` are globally sorted, and each
    row's positives get one extra +inf column so that the position found is the histogram bin. Exact
    distance ties are then resolved by gallery index; ``cols(sel)`` returns the gallery indices of the
    selected items (only called when there are ties). Returns [c, P + 1].
    """
    c, width = sorted_d.shape[0], sorted_d.shape[1] + 1
    padded = torch.cat([sorted_d, torch.full_like(sorted_d[:, :1], math.inf)], 1)
    row_base = torch.arange(c, device=sorted_d.device, dtype=torch.int64) << 32
    seq = (row_base[:, None] + _ordered_key32(padded)).view(-1)
    nonneg = values.numel() == 0 or bool(values.min() >= 0)
    vkey = torch.repeat_interleave(row_base, per_row, output_size=values.numel())
    vkey += _ordered_key32(values, nonneg)
    pos = torch.searchsorted(seq, vkey, side="left")  # = row * width + (positives before)
    tie = seq[pos] == vkey
    if bool(tie.any()):
        (sel,) = tie.nonzero(as_tuple=True)
        for s in range(0, sel.numel(), _TIE_PIECE):
            t = sel[s : s + _TIE_PIECE]
            r = pos[t] // width
            j, v = cols(t), values[t]
            pos[t] += ((sorted_d[r] == v[:, None]) & (sorted_idx[r] < j[:, None])).sum(1)
    return torch.bincount(pos, minlength=c * width).view(c, width)


def _sparse_negatives_histogram(
    d: torch.Tensor,
    near: torch.Tensor,
    per_row: torch.Tensor,
    valid: torch.Tensor,
    cand: torch.Tensor,
    sorted_d: torch.Tensor,
    sorted_idx: torch.Tensor,
) -> torch.Tensor:
    """The [c, p_max + 2] histogram of negatives by goods ranked before them, from the few gallery items
    at most as far as each query's hardest positive (``near``: that mask; cleared of same-pid items here)."""
    c = d.shape[0]
    # Only negatives: clear the same-pid items (positives and junk) from the mask.
    vr, vc = valid.nonzero(as_tuple=True)
    vc = cand[vr, vc]
    was = near[vr, vc]
    near[vr, vc] = False
    per_row = per_row - torch.bincount(vr[was], minlength=c)
    values = d.masked_select(near)
    row_end = torch.cumsum(per_row, 0)

    def cols(sel: torch.Tensor) -> torch.Tensor:
        # gallery indices of the selected items: nonzero over only the rows they lie in
        r = torch.searchsorted(row_end, sel, right=True)
        ur, inv = torch.unique(r, return_inverse=True)
        counts = per_row[ur]
        nz = near[ur].nonzero()[:, 1]
        pos = sel - (row_end[r] - per_row[r])
        return nz[(torch.cumsum(counts, 0) - counts)[inv] + pos]

    hist = _negatives_histogram(sorted_d, sorted_idx, per_row, values, cols)
    hist = torch.cat([hist, torch.zeros_like(hist[:, :1])], 1)  # [c, nb]
    return hist


def _ranks_torch(
    d: torch.Tensor, start: int, labels: _Labels, junk: JunkRule
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Ranks [c, P] of each query's good positives (1-based, by (distance, index)) and their counts.

    Torch implementation (any device). None when no query of the chunk has a positive.
    """
    c, num_g = d.shape
    device = d.device
    code = labels.q_code[start : start + c]
    found = code >= 0
    row_counts = torch.where(found, labels.counts[code.clamp(min=0)], torch.zeros_like(code))
    width = int(row_counts.max()) if c else 0
    if width == 0:
        return None
    cand = labels.table[code.clamp(min=0), :width]
    cand = torch.where(found[:, None], cand, torch.full_like(cand, -1))
    valid = cand >= 0
    safe = cand.clamp(min=0)
    junk_mask = torch.zeros_like(valid)
    if junk != "none":
        assert labels.q_key is not None and labels.g_key is not None
        qk = labels.q_key[start : start + c]
        junk_mask = labels.g_key[safe] == qk[:, None]
    if labels.same_set:
        qidx = torch.arange(start, start + c, device=device)
        junk_mask = junk_mask | (cand == qidx[:, None])
    good = valid & ~junk_mask
    n_good = good.sum(1)
    p_max = int(n_good.max())
    if p_max == 0:
        return None

    # Good positives sorted by (distance, index): cand is ascending in index, so a stable sort on
    # distance followed by a stable sort pushing non-goods to the end gives that order.
    dc = d.gather(1, safe)
    inf = torch.full_like(dc, math.inf)
    perm = torch.argsort(torch.where(good, dc, inf), dim=1, stable=True)
    perm = perm.gather(1, torch.argsort((~good).gather(1, perm).to(torch.uint8), dim=1, stable=True))
    perm = perm[:, :p_max]
    k_pos = torch.arange(p_max, device=device)
    is_good = k_pos[None, :] < n_good[:, None]
    sorted_d = torch.where(is_good, dc.gather(1, perm), inf[:, :p_max]).contiguous()
    sorted_idx = torch.where(is_good, cand.gather(1, perm), torch.full_like(perm, num_g))

    # Histogram per row of b = number of good positives ranked before each negative (buckets
    # 0..p_max plus a garbage bucket). Only items up to the hardest positive matter.
    nb = p_max + 2
    last = sorted_d.gather(1, (n_good - 1).clamp(min=0)[:, None])
    last = torch.where(n_good[:, None] > 0, last, torch.full_like(last, -math.inf))
    near = d <= last
    per_row = torch.count_nonzero(near, 1)
    if d.dtype == torch.float32 and int(per_row.sum()) <= _SPARSE_FRACTION * near.numel():
        hist = _sparse_negatives_histogram(d, near, per_row, valid, cand, sorted_d, sorted_idx)
        del near
    else:
        del near
        b = _goods_before_dense(sorted_d, sorted_idx, n_good, d)
        offs = torch.arange(c, device=device, dtype=torch.int64)[:, None] * nb
        hist = torch.bincount((b + offs).view(-1), minlength=c * nb).view(c, nb)
        # Remove the same-pid items (goods and junk) so that only negatives remain.
        b_cand = torch.where(valid, b.gather(1, safe), torch.full_like(safe, nb - 1))
        del b
        # (bincount rather than scatter_add_: deterministic on CUDA, also under deterministic mode)
        hist -= torch.bincount((b_cand + offs[:, :1]).view(-1), minlength=c * nb).view(c, nb)
    neg_before = torch.cumsum(hist[:, :p_max], 1)  # [c, p_max]: negatives before the k-th good
    ranks = (k_pos + 1)[None, :] + neg_before  # 1-based rank of the k-th good positive
    return ranks, n_good


def _ranks_numpy(
    dn: np.ndarray, start: int, lab: dict, junk: JunkRule
) -> tuple[np.ndarray, np.ndarray] | None:
    """NumPy twin of :func:`_ranks_torch` for CPU: same algorithm, one ``searchsorted`` per query."""
    c, num_g = dn.shape
    code = lab["q_code"][start : start + c]
    found = code >= 0
    cc = np.where(found, code, 0)
    width = int(np.where(found, lab["counts"][cc], 0).max()) if c else 0
    if width == 0:
        return None
    cand = np.where(found[:, None], lab["table"][cc, :width], -1)
    valid = cand >= 0
    safe = np.where(valid, cand, 0)
    junk_mask = np.zeros_like(valid)
    if junk != "none":
        junk_mask = lab["g_key"][safe] == lab["q_key"][start : start + c, None]
    if lab["same_set"]:
        junk_mask |= cand == np.arange(start, start + c)[:, None]
    good = valid & ~junk_mask
    n_good = good.sum(1)
    p_max = int(n_good.max())
    if p_max == 0:
        return None
    # Good positives first, ordered by (distance, index) (cand is ascending in index).
    dc = np.take_along_axis(dn, safe, 1)
    perm = np.argsort(np.where(good, dc, np.inf), axis=1, kind="stable")
    perm = np.take_along_axis(perm, np.argsort(~np.take_along_axis(good, perm, 1), axis=1, kind="stable"), 1)
    sorted_d = np.take_along_axis(dc, perm, 1)
    sorted_idx = np.take_along_axis(cand, perm, 1)
    ok = n_good > 0
    last = np.full(c, -np.inf, dtype=dn.dtype)
    last[ok] = sorted_d[ok, n_good[ok] - 1]
    # Negatives ranked no later than the hardest positive: the same-pid items are cleared.
    near = dn <= last[:, None]
    vr, vc = np.nonzero(valid)
    near[vr, cand[vr, vc]] = False
    ranks = np.ones((c, p_max), dtype=np.int64)
    for r in np.flatnonzero(ok):
        p = int(n_good[r])
        sd, si = sorted_d[r, :p], sorted_idx[r, :p]
        cols = np.flatnonzero(near[r])
        v = dn[r, cols]
        b = np.searchsorted(sd, v, side="left")
        tie = sd[np.minimum(b, p - 1)] == v
        if tie.any():
            t = np.flatnonzero(tie)
            b[t] += ((sd[None, :] == v[t, None]) & (si[None, :] < cols[t, None])).sum(1)
        ranks[r, :p] = np.arange(1, p + 1) + np.cumsum(np.bincount(b, minlength=p + 1)[:p])
    return ranks, n_good.astype(np.int64)


class _Accumulator:
    """Accumulates per-query results chunk by chunk."""

    def __init__(self, num_q: int, max_rank: int) -> None:
        self.ap = torch.full((num_q,), math.nan, dtype=torch.float64)
        self.inp = torch.full((num_q,), math.nan, dtype=torch.float64)
        self.first_counts = torch.zeros(max_rank + 1, dtype=torch.int64)
        self.max_rank = max_rank

    def add(self, start: int, d: torch.Tensor, labels: _Labels, junk: JunkRule) -> None:
        """Evaluate queries ``start .. start + len(d)`` given their distance rows ``d`` [c, G]."""
        d = d.detach()
        if d.dtype not in (torch.float32, torch.float64):
            d = d.float()
        d = d.contiguous()
        if d.device.type == "cpu" and _NUMPY_ON_CPU:
            # NumPy on CPU: measured several times faster than the same torch ops here, and free of
            # OpenMP thread synchronisation (which stalls badly on a busy machine).
            dn = d.numpy()
            with np.errstate(invalid="ignore", over="ignore"):
                total = dn.sum()  # cheap NaN screen; inf - inf or overflow fall through to isnan
            if not np.isfinite(total) and bool(np.isnan(dn).any()):
                raise ValueError("dist contains NaN; distances must be comparable numbers")
            out = _ranks_numpy(dn, start, labels.numpy(), junk)
            if out is not None:
                self._record(start, torch.from_numpy(out[0]), torch.from_numpy(out[1]))
            return
        if not bool(torch.isfinite(d.sum())) and bool(torch.isnan(d).any()):
            raise ValueError("dist contains NaN; distances must be comparable numbers")
        out_t = _ranks_torch(d, start, labels, junk)
        if out_t is not None:
            self._record(start, out_t[0].cpu(), out_t[1].cpu())

    def _record(self, start: int, ranks: torch.Tensor, n_good: torch.Tensor) -> None:
        """Store AP / INP and the first-hit histogram from the ranks [c, P] of each query's positives."""
        c, p_max = ranks.shape
        k_pos = torch.arange(p_max)
        is_good = k_pos[None, :] < n_good[:, None]
        ok = n_good > 0
        ranks64 = ranks.to(torch.float64).clamp(min=1)
        prec = torch.where(is_good, (k_pos + 1).to(torch.float64)[None, :] / ranks64, 0.0)
        n64 = n_good.clamp(min=1).to(torch.float64)
        ap = prec.sum(1) / n64
        hardest = ranks64.gather(1, (n_good - 1).clamp(min=0)[:, None])[:, 0]
        inp = n64 / hardest
        nan = torch.full_like(ap, math.nan)
        self.ap[start : start + c] = torch.where(ok, ap, nan)
        self.inp[start : start + c] = torch.where(ok, inp, nan)
        first = ranks[:, 0].clamp(max=self.max_rank + 1)[ok] - 1
        self.first_counts += torch.bincount(first, minlength=self.max_rank + 1)[: self.max_rank + 1]

    def result(self, junk: JunkRule) -> RankMetrics:
        """Average the accumulated per-query values."""
        valid = ~torch.isnan(self.ap)
        n = int(valid.sum())
        if n == 0:
            hint = {
                "market": "every positive is junk: query and gallery items of an identity share camera ids "
                "(give query and gallery different camids, or use junk='none')",
                "scene": "every positive is junk: query and gallery items of an identity share scene ids",
                "none": "no query identity appears in the gallery",
            }[junk]
            raise ValueError(
                f"no valid query (none has a positive left after junk removal). Usual cause: {hint}"
            )
        cmc = torch.cumsum(self.first_counts[: self.max_rank], 0).to(torch.float64) / n
        return RankMetrics(
            mAP=float(self.ap[valid].sum() / n),
            cmc=cmc,
            mINP=float(self.inp[valid].sum() / n),
            num_valid_queries=n,
            ap=self.ap,
        )


def _default_chunk(num_g: int, device: torch.device, extra_per_row: int = 0) -> int:
    """Queries per chunk: ~1M elements on CPU (temporaries stay cache-resident, measured fastest),
    a ~256 MB budget of temporaries on accelerators."""
    if device.type == "cpu":
        return max(1, _CPU_CHUNK_ELEMENTS // max(1, num_g))
    per_row = max(1, num_g * _BYTES_PER_ELEMENT + extra_per_row)
    return max(1, _DEFAULT_BUDGET_BYTES // per_row)


def _prepare(
    num_q: int,
    num_g: int,
    device: torch.device,
    q_pids: ArrayLike,
    g_pids: ArrayLike,
    q_camids: ArrayLike,
    g_camids: ArrayLike,
    q_sceneids: ArrayLike | None,
    g_sceneids: ArrayLike | None,
    junk: str,
    max_rank: int,
    same_set: bool,
) -> _Labels:
    if junk not in ("market", "scene", "none"):
        raise ValueError(f"junk must be 'market', 'scene' or 'none', got {junk!r}")
    if max_rank < 1:
        raise ValueError(f"max_rank must be >= 1, got {max_rank}")
    qp = _labels(q_pids, "q_pids", num_q, device)
    gp = _labels(g_pids, "g_pids", num_g, device)
    qc = _labels(q_camids, "q_camids", num_q, device)
    gc = _labels(g_camids, "g_camids", num_g, device)
    q_key, g_key = None, None
    if junk == "market":
        q_key, g_key = qc, gc
    elif junk == "scene":
        if q_sceneids is None or g_sceneids is None:
            raise ValueError("junk='scene' (MSVR310 protocol) needs q_sceneids and g_sceneids")
        q_key = _labels(q_sceneids, "q_sceneids", num_q, device)
        g_key = _labels(g_sceneids, "g_sceneids", num_g, device)
    if same_set:
        if num_q != num_g or not torch.equal(qp, gp):
            raise ValueError("same_set=True needs the query set to be the gallery (same length and pids)")
    return _build_labels(qp, gp, q_key, g_key, same_set)


def _run(
    rows: Callable[[int, int], torch.Tensor],
    num_q: int,
    labels: _Labels,
    junk: JunkRule,
    max_rank: int,
    block: int,
    chunk: int,
) -> RankMetrics:
    """Fetch distance rows ``block`` queries at a time and evaluate them ``chunk`` queries at a time."""
    if chunk < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk}")
    acc = _Accumulator(num_q, max_rank)
    for s in range(0, num_q, block):
        d = rows(s, min(num_q, s + block))
        for t in range(0, d.shape[0], chunk):
            acc.add(s + t, d[t : t + chunk], labels, junk)
    return acc.result(junk)


def rank_metrics(
    dist: ArrayLike,
    q_pids: ArrayLike,
    g_pids: ArrayLike,
    q_camids: ArrayLike,
    g_camids: ArrayLike,
    *,
    q_sceneids: ArrayLike | None = None,
    g_sceneids: ArrayLike | None = None,
    junk: JunkRule = "market",
    max_rank: int = 50,
    same_set: bool = False,
    chunk_size: int | None = None,
) -> RankMetrics:
    """mAP, CMC and mINP of a query x gallery distance matrix (smaller = more similar).

    See the module docstring for the exact protocol (junk rules, tie-breaking by gallery index, CMC
    carry-forward, mINP). ``dist`` may be a torch tensor (CPU or CUDA; computed on its device) or a
    NumPy array; label arrays may be either. ``chunk_size`` is the number of queries per chunk (default:
    ~1M distances per chunk on CPU, ~256 MB of temporaries on GPU). Raises ``ValueError`` when no query is
    valid.
    float32 distances take the fastest path; float64 is exact too but always buckets whole chunks.
    """
    if isinstance(dist, np.ndarray):
        dist_t = torch.from_numpy(dist)
    else:
        dist_t = torch.as_tensor(dist)
    if dist_t.dim() != 2:
        raise ValueError(f"dist must be 2-D (num_query x num_gallery), got shape {tuple(dist_t.shape)}")
    num_q, num_g = dist_t.shape
    device = dist_t.device
    labels = _prepare(
        num_q,
        num_g,
        device,
        q_pids,
        g_pids,
        q_camids,
        g_camids,
        q_sceneids,
        g_sceneids,
        junk,
        max_rank,
        same_set,
    )
    chunk = chunk_size if chunk_size is not None else _default_chunk(num_g, device)
    return _run(lambda s, e: dist_t[s:e], num_q, labels, junk, max_rank, max(1, chunk), chunk)


def pairwise_distance(
    qf: torch.Tensor, gf: torch.Tensor, metric: Literal["sqeuclidean", "cosine"] = "sqeuclidean"
) -> torch.Tensor:
    """Distance matrix between rows of ``qf`` and ``gf``: squared Euclidean or ``1 - cosine``."""
    if metric == "sqeuclidean":
        qq = (qf * qf).sum(1, keepdim=True)
        gg = (gf * gf).sum(1)[None, :]
        return matmul_nt(qf, gf).mul_(-2.0).add_(qq).add_(gg).clamp_(min=0)
    if metric == "cosine":
        qn = torch.nn.functional.normalize(qf, dim=1)
        gn = torch.nn.functional.normalize(gf, dim=1)
        return matmul_nt(qn, gn).neg_().add_(1.0)
    raise ValueError(f"metric must be 'sqeuclidean' or 'cosine', got {metric!r}")


def rank_metrics_from_features(
    qf: ArrayLike,
    gf: ArrayLike,
    q_pids: ArrayLike,
    g_pids: ArrayLike,
    q_camids: ArrayLike,
    g_camids: ArrayLike,
    *,
    metric: Literal["sqeuclidean", "cosine"] = "sqeuclidean",
    q_sceneids: ArrayLike | None = None,
    g_sceneids: ArrayLike | None = None,
    junk: JunkRule = "market",
    max_rank: int = 50,
    same_set: bool = False,
    chunk_size: int | None = None,
) -> RankMetrics:
    """Like :func:`rank_metrics`, computing distances from features chunk by chunk.

    Never materialises the query x gallery matrix: memory is the features plus one block of distances
    (~256 MB) and the temporaries of one chunk, so 100k x 100k fits in a few GB. Features are used as given
    (L2-normalise them first for the usual protocol); computed on ``qf``'s device and dtype.
    """
    q = torch.from_numpy(qf) if isinstance(qf, np.ndarray) else torch.as_tensor(qf)
    g = torch.from_numpy(gf) if isinstance(gf, np.ndarray) else torch.as_tensor(gf)
    if q.dim() != 2 or g.dim() != 2 or q.shape[1] != g.shape[1]:
        raise ValueError(f"features must be 2-D with equal widths, got {tuple(q.shape)} and {tuple(g.shape)}")
    g = g.to(device=q.device, dtype=q.dtype)
    num_q, num_g = q.shape[0], g.shape[0]
    labels = _prepare(
        num_q,
        num_g,
        q.device,
        q_pids,
        g_pids,
        q_camids,
        g_camids,
        q_sceneids,
        g_sceneids,
        junk,
        max_rank,
        same_set,
    )
    chunk = chunk_size if chunk_size is not None else _default_chunk(num_g, q.device)
    # Distances are computed for blocks of queries large enough for an efficient matrix product.
    block = max(chunk, _DEFAULT_BUDGET_BYTES // max(1, q.element_size() * num_g))
    return _run(
        lambda s, e: pairwise_distance(q[s:e], g, metric), num_q, labels, junk, max_rank, block, chunk
    )
