"""Tests for reidbench.evaluation.metrics against a plain per-query reference and hand-computed cases."""

from __future__ import annotations

import math
import zlib

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import reidbench.evaluation.metrics as metrics_mod
from reidbench.evaluation import RankMetrics, rank_metrics
from reidbench.evaluation.metrics import pairwise_distance, rank_metrics_from_features


def reference(
    dist,
    q_pids,
    g_pids,
    q_camids,
    g_camids,
    q_sceneids=None,
    g_sceneids=None,
    junk="market",
    max_rank=50,
    same_set=False,
):
    """Plain protocol: stable argsort per query, drop junk, then the usual AP / CMC / INP loop."""
    dist = np.asarray(dist, dtype=np.float64)
    aps, inps, cmcs = [], [], []
    ap_all = np.full(dist.shape[0], np.nan)
    for i in range(dist.shape[0]):
        order = np.argsort(dist[i], kind="stable")
        same_pid = g_pids[order] == q_pids[i]
        if junk == "market":
            junk_mask = same_pid & (g_camids[order] == q_camids[i])
        elif junk == "scene":
            junk_mask = same_pid & (g_sceneids[order] == q_sceneids[i])
        else:
            junk_mask = np.zeros_like(same_pid)
        if same_set:
            junk_mask = junk_mask | (order == i)
        hits = same_pid[~junk_mask]
        if not hits.any():
            continue
        positions = np.nonzero(hits)[0]  # 0-based ranks of the positives
        ap = np.mean(np.arange(1, len(positions) + 1) / (positions + 1))
        aps.append(ap)
        ap_all[i] = ap
        inps.append(len(positions) / (positions[-1] + 1))
        cmc = np.zeros(max_rank)
        cmc[positions[0] :] = 1.0  # carry forward, also past the end of a short list
        cmcs.append(cmc)
    if not aps:
        return None
    return float(np.mean(aps)), np.mean(cmcs, 0), float(np.mean(inps)), len(aps), ap_all


def assert_matches(got: RankMetrics, ref) -> None:
    assert ref is not None
    m_ap, cmc, m_inp, n_valid, ap_all = ref
    assert got.num_valid_queries == n_valid
    assert got.mAP == pytest.approx(m_ap, abs=1e-12)
    assert got.mINP == pytest.approx(m_inp, abs=1e-12)
    np.testing.assert_allclose(got.cmc.numpy(), cmc, atol=1e-12)
    np.testing.assert_allclose(got.ap.numpy(), ap_all, atol=1e-12)  # NaN positions must agree too


def random_case(rng, num_q, num_g, num_ids=6, num_cams=3, levels=5, dtype=np.float32, same_set=False):
    """Quantised distances (many ties), few ids and cameras (junk, queries without positives)."""
    g_pids = rng.integers(0, num_ids, num_g)
    g_cams = rng.integers(0, num_cams, num_g)
    g_scenes = rng.integers(0, 3, num_g)
    if same_set:
        num_q = num_g
        q_pids, q_cams, q_scenes = g_pids, g_cams, g_scenes
        dist = rng.integers(0, levels, (num_q, num_g)).astype(dtype)
        dist = np.minimum(dist, dist.T)
        np.fill_diagonal(dist, 0)
    else:
        q_pids = rng.integers(0, num_ids + 2, num_q)  # some pids absent from the gallery
        q_cams = rng.integers(0, num_cams, num_q)
        q_scenes = rng.integers(0, 3, num_q)
        dist = rng.integers(0, levels, (num_q, num_g)).astype(dtype)
    return dist, q_pids, g_pids, q_cams, g_cams, q_scenes, g_scenes


@pytest.fixture(params=["numpy", "torch-sparse", "torch-dense"])
def path(request, monkeypatch):
    """Run a test through every implementation: the NumPy one used on CPU, and both rank-counting
    paths of the torch one (used on GPU; here run on CPU)."""
    if request.param != "numpy":
        monkeypatch.setattr(metrics_mod, "_NUMPY_ON_CPU", False)
        monkeypatch.setattr(metrics_mod, "_SPARSE_FRACTION", 2.0 if request.param == "torch-sparse" else -1.0)
    return request.param


@pytest.mark.parametrize("junk", ["market", "scene", "none"])
@pytest.mark.parametrize("same_set", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_random_cases_match_reference(path, junk, same_set, dtype):
    rng = np.random.default_rng(zlib.crc32(f"{junk}-{same_set}-{np.dtype(dtype).name}".encode()))
    checked = 0
    for trial in range(16):
        num_q, num_g = int(rng.integers(1, 25)), int(rng.integers(1, 30 if same_set else 70))
        levels = int(rng.choice([2, 5, 1000]))
        dist, qp, gp, qc, gc, qs, gs = random_case(
            rng, num_q, num_g, levels=levels, dtype=dtype, same_set=same_set
        )
        max_rank = int(rng.choice([1, 5, 50]))
        ref = reference(dist, qp, gp, qc, gc, qs, gs, junk=junk, max_rank=max_rank, same_set=same_set)
        kwargs = dict(
            q_sceneids=qs,
            g_sceneids=gs,
            junk=junk,
            max_rank=max_rank,
            same_set=same_set,
            chunk_size=int(rng.integers(1, 12)) if trial % 2 else None,
        )
        if ref is None:
            with pytest.raises(ValueError, match="no valid query"):
                rank_metrics(dist, qp, gp, qc, gc, **kwargs)
            continue
        assert_matches(rank_metrics(dist, qp, gp, qc, gc, **kwargs), ref)
        checked += 1
    assert checked >= 6


def test_larger_case_duplicates_and_chunks(path):
    rng = np.random.default_rng(7)
    gf = rng.integers(-2, 3, (300, 4)).astype(np.float32)  # small integer features: many duplicates
    qf = rng.integers(-2, 3, (40, 4)).astype(np.float32)
    gp, gc = rng.integers(0, 10, 300), rng.integers(0, 4, 300)
    qp, qc = rng.integers(0, 10, 40), rng.integers(0, 4, 40)
    dist = pairwise_distance(torch.from_numpy(qf), torch.from_numpy(gf))
    ref = reference(dist.numpy(), qp, gp, qc, gc)
    results = [rank_metrics(dist, qp, gp, qc, gc, chunk_size=cs) for cs in (1, 7, 1000)]
    for r in results:
        assert_matches(r, ref)
    for r in results[1:]:  # identical, not merely close
        assert r.mAP == results[0].mAP and r.mINP == results[0].mINP
        assert torch.equal(r.cmc, results[0].cmc)
        assert torch.equal(r.ap.isnan(), results[0].ap.isnan())


def test_hand_computed_market_and_none():
    # gallery: junk (same pid, same cam), neg, pos, neg, pos
    dist = np.array([[0.1, 0.2, 0.3, 0.4, 0.5]])
    gp, gc = np.array([1, 2, 1, 3, 1]), np.array([0, 1, 1, 1, 2])
    qp, qc = np.array([1]), np.array([0])
    r = rank_metrics(dist, qp, gp, qc, gc, max_rank=5)
    # positives at ranks 2 and 4 of [neg, pos, neg, pos]
    assert r.mAP == pytest.approx((1 / 2 + 2 / 4) / 2)
    assert r.mINP == pytest.approx(2 / 4)
    assert r.cmc.tolist() == [0.0, 1.0, 1.0, 1.0, 1.0]
    assert r.num_valid_queries == 1
    r = rank_metrics(dist, qp, gp, qc, gc, junk="none", max_rank=5)
    # positives at ranks 1, 3, 5
    assert r.mAP == pytest.approx((1 + 2 / 3 + 3 / 5) / 3)
    assert r.mAP == pytest.approx(34 / 45)
    assert r.mINP == pytest.approx(3 / 5)
    assert r.cmc.tolist() == [1.0] * 5


def test_hand_computed_ties_broken_by_gallery_index():
    dist = np.ones((1, 4), dtype=np.float32)
    qp, qc = np.array([1]), np.array([0])
    gc = np.array([1, 1, 1, 1])
    r = rank_metrics(dist, qp, np.array([2, 1, 3, 1]), qc, gc, max_rank=4)  # neg, pos, neg, pos
    assert r.mAP == pytest.approx(0.5) and r.mINP == pytest.approx(0.5)
    assert r.cmc.tolist() == [0.0, 1.0, 1.0, 1.0]
    r = rank_metrics(dist, qp, np.array([1, 1, 3, 2]), qc, gc, max_rank=4)  # pos, pos, neg, neg
    assert r.mAP == 1.0 and r.mINP == 1.0 and r.rank(1) == 1.0


def test_negative_zero_ties_with_zero(path):
    # -0.0 == +0.0, so the tie is broken by index: the negative (index 0) ranks first
    dist = torch.tensor([[0.0, -0.0, 1.0]])
    r = rank_metrics(dist, [1], [2, 1, 1], [0], [1, 1, 1], max_rank=3)
    assert r.mAP == pytest.approx((1 / 2 + 2 / 3) / 2)
    dist = torch.tensor([[-0.0, 0.0, 1.0]])
    r2 = rank_metrics(dist, [1], [2, 1, 1], [0], [1, 1, 1], max_rank=3)
    assert r2.mAP == r.mAP


def test_negative_and_infinite_distances(path):
    dist = torch.tensor([[-3.0, -1.0, math.inf, -math.inf, 2.0, math.inf]])
    gp = [1, 2, 1, 2, 2, 2]
    ref = reference(
        dist.numpy(), np.array([1]), np.array(gp), np.array([0]), np.ones(6, dtype=int), max_rank=6
    )
    assert_matches(rank_metrics(dist, [1], gp, [0], [1] * 6, max_rank=6), ref)


def test_hand_computed_scene_rule():
    # order by distance: g2 (neg), g0, g3, g1
    dist = np.array([[0.1, 0.2, 0.05, 0.15]])
    gp = np.array([1, 1, 2, 1])
    gc = np.array([1, 0, 1, 2])
    gs = np.array([5, 6, 5, 5])
    qp, qc, qs = np.array([1]), np.array([0]), np.array([5])
    r = rank_metrics(dist, qp, gp, qc, gc, q_sceneids=qs, g_sceneids=gs, junk="scene", max_rank=4)
    # g0 and g3 share the query's scene -> junk; [neg, g1] -> rank 2
    assert r.mAP == pytest.approx(1 / 2) and r.mINP == pytest.approx(1 / 2)
    assert r.cmc.tolist() == [0.0, 1.0, 1.0, 1.0]
    r = rank_metrics(dist, qp, gp, qc, gc, junk="market", max_rank=4)
    # g1 shares the query's camera -> junk; [neg, g0, g3] -> ranks 2, 3
    assert r.mAP == pytest.approx(7 / 12) and r.mINP == pytest.approx(2 / 3)
    r = rank_metrics(dist, qp, gp, qc, gc, junk="none", max_rank=4)
    # [neg, g0, g3, g1] -> ranks 2, 3, 4
    assert r.mAP == pytest.approx(23 / 36) and r.mINP == pytest.approx(3 / 4)
    with pytest.raises(ValueError, match="sceneids"):
        rank_metrics(dist, qp, gp, qc, gc, junk="scene")


def test_hand_computed_same_set():
    pids, cams = np.array([1, 1, 2]), np.array([0, 1, 0])
    dist = np.array([[0.0, 0.5, 0.2], [0.5, 0.0, 0.3], [0.2, 0.3, 0.0]])
    for junk in ("market", "none"):
        r = rank_metrics(dist, pids, pids, cams, cams, junk=junk, same_set=True, max_rank=2)
        # each of items 0 and 1: [item 2 (neg), the other (pos)] -> rank 2; item 2 has no positive
        assert r.mAP == pytest.approx(0.5) and r.mINP == pytest.approx(0.5)
        assert r.num_valid_queries == 2
        assert r.cmc.tolist() == [0.0, 1.0]
        assert math.isnan(float(r.ap[2]))
    r = rank_metrics(dist, pids, pids, cams, cams, junk="none", max_rank=3)
    # without same_set, item 0 finds itself first: ranks 1 and 3
    assert float(r.ap[0]) == pytest.approx((1 + 2 / 3) / 2)
    with pytest.raises(ValueError, match="same_set"):
        rank_metrics(dist[:2], pids[:2], pids, cams[:2], cams, same_set=True)


def test_skipped_queries_and_no_valid_query():
    dist = np.array([[0.1, 0.2], [0.3, 0.4]])
    r = rank_metrics(dist, [1, 9], [1, 2], [0, 0], [1, 1], max_rank=2)
    assert r.num_valid_queries == 1
    assert r.mAP == 1.0 and math.isnan(float(r.ap[1]))
    # every positive shares the query's camera: the classic custom-dataset mistake
    with pytest.raises(ValueError, match="share camera ids"):
        rank_metrics(dist, [1, 2], [1, 2], [0, 0], [0, 0])
    with pytest.raises(ValueError, match="no query identity"):
        rank_metrics(dist, [7, 8], [1, 2], [0, 0], [0, 0], junk="none")


def test_cmc_carries_forward_on_short_lists():
    # torchreid/fast-reid Cython read stale memory here: query A's positive is last of 12 items,
    # query B's first; expected CMC = [0.5] * 11 + [1.0] * (max_rank - 11)
    num_g = 12
    gp = np.array([5] * 11 + [1])
    gp_b = gp.copy()
    gp_b[0] = 2
    dist = np.tile(np.arange(num_g, dtype=np.float32), (2, 1))
    r = rank_metrics(dist, [1, 2], gp_b, [0, 0], [1] * num_g, max_rank=50)
    assert r.cmc.tolist() == [0.5] * 11 + [1.0] * 39
    # junk shortens the list below max_rank: curve stays 1 after the first positive
    r = rank_metrics(np.array([[0.1, 0.2, 0.3]]), [1], [1, 1, 1], [0], [0, 0, 1], max_rank=10)
    assert r.cmc.tolist() == [1.0] * 10
    assert r.as_dict() == {
        "mAP": 1.0,
        "rank1": 1.0,
        "rank5": 1.0,
        "rank10": 1.0,
        "mINP": 1.0,
        "num_valid_queries": 1,
    }


def test_numpy_and_torch_inputs_agree():
    rng = np.random.default_rng(3)
    dist, qp, gp, qc, gc, _, _ = random_case(rng, 20, 60, levels=7)
    a = rank_metrics(dist, qp, gp, qc, gc)
    b = rank_metrics(
        torch.from_numpy(dist),
        torch.from_numpy(qp),
        torch.from_numpy(gp),
        torch.from_numpy(qc),
        torch.from_numpy(gc),
    )
    c = rank_metrics(dist.tolist(), qp.tolist(), gp.tolist(), qc.tolist(), gc.tolist())
    d = rank_metrics(torch.from_numpy(dist).half(), qp.astype(np.int32), gp, qc, gc)  # fp16 is upcast
    for x in (b, c, d):
        assert x.mAP == a.mAP and torch.equal(x.cmc, a.cmc) and x.mINP == a.mINP
    assert a.cmc.dtype == torch.float64 and a.cmc.shape == (50,)
    assert a.ap.dtype == torch.float64 and a.ap.shape == (20,)


def test_from_features_matches_distance_matrix():
    rng = np.random.default_rng(11)
    qf = rng.integers(-3, 4, (30, 6)).astype(np.float32)
    gf = rng.integers(-3, 4, (90, 6)).astype(np.float32)
    qp, gp = rng.integers(0, 8, 30), rng.integers(0, 8, 90)
    qc, gc = rng.integers(0, 3, 30), rng.integers(0, 3, 90)
    for metric in ("sqeuclidean", "cosine"):
        dist = pairwise_distance(torch.from_numpy(qf), torch.from_numpy(gf), metric)
        want = rank_metrics(dist, qp, gp, qc, gc)
        got = rank_metrics_from_features(qf, gf, qp, gp, qc, gc, metric=metric, chunk_size=4)
        assert got.num_valid_queries == want.num_valid_queries
        if metric == "sqeuclidean":  # exact arithmetic on small integers: identical ranks
            assert got.mAP == want.mAP and torch.equal(got.cmc, want.cmc)
        else:
            assert got.mAP == pytest.approx(want.mAP, abs=1e-6)
    with pytest.raises(ValueError, match="metric"):
        rank_metrics_from_features(qf, gf, qp, gp, qc, gc, metric="l1")  # type: ignore[arg-type]


def test_input_validation():
    dist = np.zeros((2, 3))
    with pytest.raises(ValueError, match="NaN"):
        rank_metrics(np.array([[0.1, np.nan]]), [1], [1, 2], [0], [1, 1])
    with pytest.raises(ValueError, match="expected 3"):
        rank_metrics(dist, [1, 2], [1, 2], [0, 0], [1, 1, 1])
    with pytest.raises(ValueError, match="junk"):
        rank_metrics(dist, [1, 2], [1, 2, 3], [0, 0], [1, 1, 1], junk="cuhk")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="2-D"):
        rank_metrics(np.zeros(3), [1], [1, 2, 3], [0], [1, 1, 1])
    with pytest.raises(ValueError, match="integers"):
        rank_metrics(dist, [1.0, 2.0], [1, 2, 3], [0, 0], [1, 1, 1])
    r = rank_metrics(np.array([[0.1, 0.2]]), [1], [1, 2], [0], [1, 1], max_rank=1)
    assert math.isnan(r.as_dict()["rank5"])
    with pytest.raises(ValueError, match="rank k"):
        r.rank(2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    rng = np.random.default_rng(5)
    dist, qp, gp, qc, gc, _, _ = random_case(rng, 40, 200, levels=9)
    cpu = rank_metrics(dist, qp, gp, qc, gc)
    gpu = rank_metrics(torch.from_numpy(dist).cuda(), qp, gp, qc, gc)
    assert gpu.mAP == pytest.approx(cpu.mAP, abs=1e-12) and torch.equal(gpu.cmc, cpu.cmc)


@st.composite
def cases(draw):
    num_q = draw(st.integers(1, 8))
    num_g = draw(st.integers(1, 20))
    dist = np.array(
        draw(st.lists(st.integers(0, 4), min_size=num_q * num_g, max_size=num_q * num_g)), dtype=np.float32
    ).reshape(num_q, num_g)
    ids = st.integers(0, 3)
    qp = np.array(draw(st.lists(ids, min_size=num_q, max_size=num_q)))
    gp = np.array(draw(st.lists(ids, min_size=num_g, max_size=num_g)))
    qc = np.array(draw(st.lists(st.integers(0, 1), min_size=num_q, max_size=num_q)))
    gc = np.array(draw(st.lists(st.integers(0, 1), min_size=num_g, max_size=num_g)))
    junk = draw(st.sampled_from(["market", "none"]))
    max_rank = draw(st.integers(1, 25))
    return dist, qp, gp, qc, gc, junk, max_rank


@settings(max_examples=80, deadline=None)
@given(cases())
def test_properties(case):
    dist, qp, gp, qc, gc, junk, max_rank = case
    ref = reference(dist, qp, gp, qc, gc, junk=junk, max_rank=max_rank)
    assume(ref is not None)
    r = rank_metrics(dist, qp, gp, qc, gc, junk=junk, max_rank=max_rank)
    assert 0.0 <= r.mAP <= 1.0 and 0.0 < r.mINP <= 1.0
    cmc = r.cmc.numpy()
    assert ((cmc >= 0) & (cmc <= 1)).all() and (np.diff(cmc) >= 0).all()
    assert_matches(r, ref)
    # a perfect ranking: every positive closer than every negative
    perfect = np.where(gp[None, :] == qp[:, None], 0.0, 1.0) + dist * 1e-3
    perfect = np.where(gp[None, :] == qp[:, None], perfect, perfect + 1.0)
    p = rank_metrics(perfect, qp, gp, qc, gc, junk=junk, max_rank=max_rank)
    assert p.mAP == 1.0 and p.mINP == 1.0 and (p.cmc == 1.0).all()
