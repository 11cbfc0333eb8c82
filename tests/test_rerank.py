"""Tests for k-reciprocal re-ranking against a plain dense implementation written from the paper."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reidbench.evaluation import k_reciprocal_rerank, rerank
from reidbench.evaluation.gemm import matmul_nt
from reidbench.evaluation.rerank import (
    _distance_operands,
    _knn,
    _order_by_value_then_index,
    _stable_order,
    _unique_per_row,
)


def dense_rerank(qf: np.ndarray, gf: np.ndarray, k1: int, k2: int, lam: float) -> np.ndarray:
    """Zhong et al. 2017, dense N x N, full stable argsort; one loop per image, as in the paper."""
    feats = np.concatenate([qf, gf]).astype(np.float64)
    n, num_q = len(feats), len(qf)
    sq = (feats**2).sum(1)
    d = np.maximum(sq[:, None] + sq[None, :] - 2 * feats @ feats.T, 0)  # squared Euclidean
    o = d / d.max(1, keepdims=True)  # each row divided by its maximum
    rank = np.argsort(o, axis=1, kind="stable")  # ties broken by index

    def k_reciprocal(i: int, k: int) -> np.ndarray:
        forward = rank[i, : k + 1]
        return np.array([j for j in forward if i in rank[j, : k + 1]], dtype=int)

    half = int(np.around(k1 / 2))
    v = np.zeros((n, n))
    for i in range(n):
        r_i = k_reciprocal(i, k1)
        expanded = list(r_i)
        for c in r_i:
            r_c = k_reciprocal(c, half)
            if len(np.intersect1d(r_c, r_i)) > 2.0 / 3 * len(r_c):
                expanded.extend(r_c)
        expanded = np.unique(np.array(expanded, dtype=int))  # may be empty with duplicates
        w = np.exp(-o[i, expanded])
        v[i, expanded] = w / w.sum()
    if k2 != 1:
        v = np.stack([v[rank[i, :k2]].mean(0) for i in range(n)])
    m = np.minimum(v[:num_q, None, :], v[None, :, :]).sum(2)  # sum_l min(V_il, V_jl)
    jaccard = 1 - m / (2 - m)
    return ((1 - lam) * jaccard + lam * o[:num_q])[:, num_q:]


@pytest.fixture(params=["compiled", "torch"])
def backend(request, monkeypatch):
    """Both CPU paths: the compiled kernels (numba) and the torch code (also the GPU path)."""
    if request.param == "compiled":
        pytest.importorskip("numba")
        assert rerank._compiled_path() is not None
    else:
        monkeypatch.setattr(rerank, "_compiled_path", lambda: None)
    return request.param


def features(rng: np.random.Generator, n: int, dim: int, quantised: bool) -> np.ndarray:
    """Quantised: small dyadic values (exact distances, many exact ties) with duplicated images.

    Continuous: L2-normalised Gaussian features without duplicates (a duplicate's distance is then a
    rounding residue whose order depends on how the matrix product is blocked).
    """
    if not quantised:
        f = rng.standard_normal((n, dim))
        return f / np.linalg.norm(f, axis=1, keepdims=True)
    f = rng.integers(-3, 4, (n, dim)) / 4.0
    f[rng.integers(0, n, n // 4)] = f[rng.integers(0, n, n // 4)]
    return f


@pytest.mark.parametrize(
    ("quantised", "dtype"), [(True, np.float64), (True, np.float32), (False, np.float64)]
)
def test_matches_dense_reference(quantised, dtype, backend):
    """Quantised features are exact in float32 too (same ties), so float32 runs the CPU fast paths."""
    rng = np.random.default_rng(1 if quantised else 2)
    for _ in range(6):
        num_q, num_g = int(rng.integers(1, 40)), int(rng.integers(1, 140))
        f = features(rng, num_q + num_g, int(rng.integers(2, 9)), quantised).astype(dtype)
        k1, k2, lam = int(rng.integers(1, 25)), int(rng.integers(1, 8)), float(rng.uniform(0, 1))
        want = dense_rerank(f[:num_q], f[num_q:], k1, k2, lam)
        got = k_reciprocal_rerank(
            torch.from_numpy(f[:num_q]),
            torch.from_numpy(f[num_q:]),
            k1=k1,
            k2=k2,
            lambda_value=lam,
            chunk_size=int(rng.integers(4, 60)),
        )
        assert got.dtype == torch.float32 and got.shape == (num_q, num_g)
        np.testing.assert_allclose(got.numpy(), want, atol=2e-6)


def test_defaults_float32_numpy_input(backend):
    rng = np.random.default_rng(3)
    f = features(rng, 150, 16, quantised=False).astype(np.float32)
    want = dense_rerank(f[:50], f[50:], 20, 6, 0.3)
    got = k_reciprocal_rerank(f[:50], f[50:])
    np.testing.assert_allclose(got.numpy(), want, atol=1e-5)


@pytest.mark.parametrize(("k1", "k2", "lam"), [(1, 1, 0.0), (3, 1, 1.0), (500, 3, 0.5), (5, 500, 0.3)])
def test_edge_parameters(k1, k2, lam, backend):
    rng = np.random.default_rng(k1 + k2)
    f = features(rng, 40, 4, quantised=True)
    want = dense_rerank(f[:10], f[10:], k1, k2, lam)
    got = k_reciprocal_rerank(
        torch.from_numpy(f[:10]), torch.from_numpy(f[10:]), k1=k1, k2=k2, lambda_value=lam, chunk_size=7
    )
    np.testing.assert_allclose(got.numpy(), want, atol=2e-6)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_knn_tiles_and_boundary_ties_are_exact(dtype):
    rng = np.random.default_rng(4)
    f = torch.from_numpy(rng.integers(-1, 2, (120, 3)).astype(dtype))  # very many ties
    sq = (f * f).sum(1)
    d = torch.clamp(sq[:, None] + sq[None, :] - 2 * f @ f.T, min=0)
    o = d / d.max(1, keepdim=True).values
    want = np.argsort(o.numpy(), axis=1, kind="stable")[:, :9]
    for block in (7, 16, 64, 500):
        out = torch.empty(20, 100, dtype=torch.float32)
        nn, nn_o, row_max = _knn(*_distance_operands(f[:20], f[20:]), 9, block, 20, out)
        np.testing.assert_array_equal(nn.numpy(), want)
        np.testing.assert_allclose(nn_o.numpy(), np.take_along_axis(o.numpy(), want, 1), rtol=1e-6)
        np.testing.assert_allclose(out.clamp(min=0).numpy(), d[:20, 20:].numpy())  # written unclamped


@pytest.mark.parametrize("quantised", [False, True])
def test_field_settings_k1_50_k2_15(quantised, backend):
    """TransReID / TOP-ReID settings (k1=50, k2=15, lambda=0.3) against the dense reference."""
    rng = np.random.default_rng(7)
    f = features(rng, 230, 6, quantised)
    want = dense_rerank(f[:50], f[50:], 50, 15, 0.3)
    got = k_reciprocal_rerank(torch.from_numpy(f[:50]), torch.from_numpy(f[50:]), k1=50, k2=15, chunk_size=64)
    np.testing.assert_allclose(got.numpy(), want, atol=1e-6)
    f32 = f.astype(np.float32)  # float32 features: the fast paths, same neighbours on these features
    got = k_reciprocal_rerank(f32[:50], f32[50:], k1=50, k2=15, chunk_size=100)
    np.testing.assert_allclose(got.numpy(), want, atol=2e-6)


@pytest.mark.parametrize(("num_q", "num_g"), [(1, 1), (1, 37), (37, 1), (2, 3), (60, 5)])
def test_edge_sizes_with_k1_beyond_n(num_q, num_g, backend):
    """Query-only and gallery-only sized problems, k1 > N, duplicated images and exact ties."""
    rng = np.random.default_rng(num_q * 100 + num_g)
    f = features(rng, num_q + num_g, 3, quantised=True)
    if num_q + num_g > 2:  # (with two images only, a duplicate leaves no distance to normalise by)
        f[-1] = f[0]  # a duplicate across query and gallery
    for k1, k2 in [(50, 15), (2, 1)]:
        want = dense_rerank(f[:num_q], f[num_q:], k1, k2, 0.3)
        got = k_reciprocal_rerank(f[:num_q], f[num_q:], k1=k1, k2=k2, chunk_size=16)
        np.testing.assert_allclose(got.numpy(), want, atol=1e-6)


def test_compiled_path_equals_torch_path_and_keeps_thread_count(monkeypatch):
    """The two CPU paths agree at the field's settings; the compiled one gives the same bits at one
    and two threads and restores PyTorch's thread count."""
    cpu = pytest.importorskip("reidbench.evaluation.rerank_cpu")
    rng = np.random.default_rng(8)
    f = torch.from_numpy(features(rng, 400, 32, quantised=False).astype(np.float32))
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        two = k_reciprocal_rerank(f[:90], f[90:], k1=50, k2=15, chunk_size=128)
        assert torch.get_num_threads() == 2
        torch.set_num_threads(1)
        one = k_reciprocal_rerank(f[:90], f[90:], k1=50, k2=15, chunk_size=128)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(one, two)
    assert rerank._compiled_path() is cpu
    monkeypatch.setattr(rerank, "_compiled_path", lambda: None)
    slow = k_reciprocal_rerank(f[:90], f[90:], k1=50, k2=15, chunk_size=128)
    np.testing.assert_allclose(one.numpy(), slow.numpy(), atol=1e-6)


def _exact_order(f: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Float64 reference: first ``k`` neighbours by (o, index), their o and the row maxima."""
    f = f.astype(np.float64)
    sq = (f * f).sum(1)
    d = np.maximum(sq[:, None] + sq[None, :] - 2 * f @ f.T, 0)
    m = d.max(1)
    o = d / m[:, None]
    want = np.argsort(o, axis=1, kind="stable")[:, :k]
    return want, np.take_along_axis(o, want, 1), m


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_compiled_knn_and_boundary_ties_are_exact(dtype):
    cpu = pytest.importorskip("reidbench.evaluation.rerank_cpu")
    rng = np.random.default_rng(9)
    f = rng.integers(-1, 2, (120, 3)).astype(dtype)  # very many ties
    want, want_o, want_m = _exact_order(f, 9)
    sq = (f * f).sum(1)
    d = np.maximum(sq[:20, None] + sq[None, 20:] - 2 * f[:20] @ f[20:].T, 0)
    for block, threads in [(7, 1), (16, 2), (64, 2), (500, 1)]:
        out = torch.empty(20, 100, dtype=torch.float32)
        nn, nn_o, row_max = cpu.knn(cpu.features([torch.from_numpy(f)]), 20, 9, block, out, threads)
        np.testing.assert_array_equal(nn.numpy(), want)
        np.testing.assert_allclose(nn_o.numpy(), want_o, rtol=1e-12)
        np.testing.assert_allclose(row_max.numpy(), want_m, rtol=1e-12)
        np.testing.assert_allclose(out.clamp(min=0).numpy(), d, atol=1e-6)


@pytest.mark.parametrize("scale", [1.0, 1e-3, 1e4])
def test_compiled_knn_float32_preselection_is_exact_on_near_ties(scale, monkeypatch):
    """Near-duplicates closer than float32 distances tell apart (1e-6 apart) and a tight cluster larger
    than the heap: the float32 pre-selection must keep every candidate (margin) or recompute the row in
    float64, and the ranking equals the float64 one, at any feature scale."""
    cpu = pytest.importorskip("reidbench.evaluation.rerank_cpu")
    rng = np.random.default_rng(10)
    f = rng.standard_normal((150, 24))
    f /= np.linalg.norm(f, axis=1, keepdims=True)
    f[:60] = f[0] + 1e-6 * rng.standard_normal((60, 24))  # one cluster of 60 near-duplicates
    f[60:90:3] = f[61:91:3] + 1e-6 * rng.standard_normal((10, 24))  # near-tied pairs
    f *= scale
    recomputed = []
    real = cpu._recompute
    monkeypatch.setattr(cpu, "_recompute", lambda rows, *a: recomputed.append(len(rows)) or real(rows, *a))
    for dtype in (np.float64, np.float32):
        g = f.astype(dtype)
        want, want_o, want_m = _exact_order(g, 9)
        nn, nn_o, row_max = cpu.knn(cpu.features([torch.from_numpy(g)]), 30, 9, 32, torch.empty(30, 120), 2)
        np.testing.assert_array_equal(nn.numpy(), want)
        np.testing.assert_allclose(nn_o.numpy(), want_o, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(row_max.numpy(), want_m, rtol=1e-9)
    assert 0 < recomputed[0] < 150  # the cluster's rows took the float64 fallback, the others did not


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_error_bounds_hold(dtype):
    """The margin bounds the tile distances' error (float32 operands; float64 ones for features too
    large for float32) against float64 distances of the input features."""
    cpu = pytest.importorskip("reidbench.evaluation.rerank_cpu")
    rng = np.random.default_rng(11)
    for scale, dim, operands in [
        (1.0, 768, np.float32),
        (1e-3, 64, np.float32),
        (1e3, 300, np.float32),
        (1e16, 40, np.float64),
    ]:
        f = (rng.standard_normal((200, dim)) * scale * rng.uniform(0.1, 3, (200, 1))).astype(dtype)
        feats = cpu.features([torch.from_numpy(f)])
        assert feats.x.dtype == torch.from_numpy(np.zeros(1, operands)).dtype
        f = f.astype(np.float64)
        sq = (f * f).sum(1)
        exact = sq[:, None] + sq[None, :] - 2 * f @ f.T
        products = matmul_nt(feats.x, feats.x).double().numpy()
        approx = (feats.sq[:, None] + feats.sq[None, :] - 2 * products).astype(operands)  # as the scan
        bound = cpu.error_bounds(np.sqrt(sq), dim, np.dtype(operands))
        assert (np.abs(approx - exact) <= bound[:, None]).all()
        assert bound.max() < 1e-3 * (2 * np.sqrt(sq).max()) ** 2  # and it is not vacuous


def test_features_keep_float32_exact_values_once():
    """Float64 features that float32 holds exactly are read from the float32 operands; others keep a
    float64 copy; the squared norms are float64 either way."""
    cpu = pytest.importorskip("reidbench.evaluation.rerank_cpu")
    rng = np.random.default_rng(14)
    widened = rng.standard_normal((30, 7)).astype(np.float32).astype(np.float64)
    feats = cpu.features([torch.from_numpy(widened[:10]), torch.from_numpy(widened[10:])])
    assert np.shares_memory(feats.rows, feats.x.numpy()) and feats.x.dtype == torch.float32
    np.testing.assert_array_equal(feats.rows, widened)
    np.testing.assert_allclose(feats.sq, (widened**2).sum(1), rtol=1e-14)
    full = widened + 1e-12
    feats = cpu.features([torch.from_numpy(full)])
    assert feats.rows.dtype == np.float64
    np.testing.assert_array_equal(feats.rows, full)


def test_compiled_float32_features_equal_the_float64_reference():
    """Float32 features (real models): the compiled path ranks by float64 distances, as the dense
    reference on the upcast features does (a float32 ranking would order near-ties differently)."""
    pytest.importorskip("reidbench.evaluation.rerank_cpu")
    rng = np.random.default_rng(12)
    f = features(rng, 300, 16, quantised=False).astype(np.float32)
    for k1, k2 in [(20, 6), (50, 15)]:
        want = dense_rerank(f[:60], f[60:], k1, k2, 0.3)
        got = k_reciprocal_rerank(f[:60], f[60:], k1=k1, k2=k2, chunk_size=64)
        np.testing.assert_allclose(got.numpy(), want, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_features_are_ranked_as_their_float32_values(dtype):
    """The compiled path takes half-precision features as their (exact) float32 values."""
    pytest.importorskip("reidbench.evaluation.rerank_cpu")
    rng = np.random.default_rng(13)
    f = torch.from_numpy(features(rng, 60, 8, quantised=True)).to(dtype)
    got = k_reciprocal_rerank(f[:15], f[15:], k1=10, k2=3)
    want = dense_rerank(f[:15].float().numpy(), f[15:].float().numpy(), 10, 3, 0.3)
    np.testing.assert_allclose(got.numpy(), want, atol=1e-6)


def test_upper_tiles_cover_each_pair_once():
    cpu = pytest.importorskip("reidbench.evaluation.rerank_cpu")
    for n, block in [(1, 4), (37, 8), (100, 64), (5, 100)]:
        cover = np.zeros((n, n), int)
        for a, ae, b, be in cpu.upper_tiles(n, block):
            cover[a:ae, b:be] += 1
            if a != b:
                cover[b:be, a:ae] += 1
        assert (cover == 1).all()


def test_round_robin_pairs_each_block_once_per_round():
    """Off-diagonal tiles come in rounds in which no block appears twice (so that two threads scanning
    consecutive tiles hold different block locks), and every pair comes exactly once."""
    cpu = pytest.importorskip("reidbench.evaluation.rerank_cpu")
    for m in [1, 2, 5, 8]:
        pairs = cpu._round_robin(list(range(m)))
        assert sorted(pairs) == [(a, b) for a in range(m) for b in range(a + 1, m)]
        per_round = m // 2
        for r in range(0, len(pairs), max(1, per_round)):
            blocks = [x for pair in pairs[r : r + per_round] for x in pair]
            assert len(blocks) == len(set(blocks))


def test_validation():
    q, g = torch.randn(3, 4), torch.randn(5, 4)
    with pytest.raises(ValueError, match="width"):
        k_reciprocal_rerank(q, torch.randn(5, 3))
    with pytest.raises(ValueError, match="k1"):
        k_reciprocal_rerank(q, g, k1=0)
    with pytest.raises(ValueError, match="lambda"):
        k_reciprocal_rerank(q, g, lambda_value=1.5)
    with pytest.raises(ValueError, match="NaN"):
        k_reciprocal_rerank(torch.full((3, 4), float("nan")), g)
    assert k_reciprocal_rerank(q[:0], g).shape == (0, 5)


def test_matmul_nt_matches_torch_mm():
    gen = torch.Generator().manual_seed(0)
    for m, n, d in [(1, 1, 1), (37, 300, 770), (256, 5, 3)]:
        a, b = torch.randn(m, d, generator=gen), torch.randn(n, d, generator=gen)
        torch.testing.assert_close(matmul_nt(a, b), a @ b.t(), rtol=1e-5, atol=1e-4)
        assert matmul_nt(a.double(), b.double()).dtype == torch.float64
    wide = torch.randn(8, 20, generator=gen)
    torch.testing.assert_close(matmul_nt(wide[:, ::2], wide[:3, 1::2]), wide[:, ::2] @ wide[:3, 1::2].t())
    assert matmul_nt(torch.zeros(0, 4), torch.zeros(3, 4)).shape == (0, 3)


@pytest.mark.parametrize("vendor", ["GenuineIntel", "AuthenticAMD"])
def test_matmul_nt_kernel_by_vendor_and_output_buffer(vendor, monkeypatch):
    """MKL (``torch.mm``, which writes into a given buffer) on Intel CPUs; oneDNN elsewhere where it is
    usable; the same product either way."""
    from reidbench.evaluation import gemm

    monkeypatch.setattr(gemm, "_cpu_vendor", lambda: vendor)
    gemm.uses_onednn.cache_clear()
    try:
        assert gemm.uses_onednn() == (vendor != "GenuineIntel" and gemm._onednn_usable())
        gen = torch.Generator().manual_seed(1)
        a, b = torch.randn(40, 770, generator=gen), torch.randn(30, 770, generator=gen)
        buf = torch.full((40 * 30,), float("nan"))
        got = matmul_nt(a, b, out=buf.view(40, 30))
        torch.testing.assert_close(got, a @ b.t(), rtol=1e-5, atol=1e-4)
        assert np.shares_memory(got.numpy(), buf.numpy()) == (not gemm.uses_onednn())
    finally:
        gemm.uses_onednn.cache_clear()


def test_cpu_vendor_is_read_from_cpuinfo(tmp_path, monkeypatch):
    from reidbench.evaluation import gemm

    assert isinstance(gemm._cpu_vendor(), str)
    fake = tmp_path / "cpuinfo"
    fake.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC\n")
    monkeypatch.setattr(gemm, "Path", lambda _: fake)
    assert gemm._cpu_vendor() == "AuthenticAMD"
    monkeypatch.setattr(gemm, "Path", lambda _: tmp_path / "missing")
    assert gemm._cpu_vendor() == ""


def test_order_by_value_then_index_breaks_ties_by_index():
    rng = np.random.default_rng(5)
    o = rng.integers(0, 4, (50, 30)).astype(np.float32) / 3  # many ties
    o[:, 0] = -0.0  # sorts with +0.0, by index
    o[:, 1] = 0.0
    idx = np.stack([rng.permutation(1000)[:30] for _ in range(50)])
    got_o, got_i = _order_by_value_then_index(torch.from_numpy(np.abs(o)), torch.from_numpy(idx))
    order = np.lexsort((idx, np.abs(o)), axis=1)
    np.testing.assert_array_equal(got_i.numpy(), np.take_along_axis(idx, order, 1))
    np.testing.assert_array_equal(got_o.numpy(), np.take_along_axis(np.abs(o), order, 1))


def test_stable_order_and_unique_per_row():
    rng = np.random.default_rng(6)
    x = rng.integers(0, 6, (40, 25))
    values, order = _stable_order(torch.from_numpy(x))
    np.testing.assert_array_equal(order.numpy(), np.argsort(x, axis=1, kind="stable"))
    np.testing.assert_array_equal(values.numpy(), np.sort(x, axis=1))
    x[:, ::3] = 6  # sentinel entries are dropped
    vals = rng.random(x.shape)
    got_i, got_v = _unique_per_row(torch.from_numpy(x), 6, torch.from_numpy(vals))
    for row in range(len(x)):
        keys = sorted(set(x[row]) - {6})
        assert got_i[row, : len(keys)].tolist() == keys and (got_i[row, len(keys) :] == 6).all()
        want = [vals[row][x[row] == key].sum() for key in keys]
        np.testing.assert_allclose(got_v[row, : len(keys)].numpy(), want)
        assert (got_v[row, len(keys) :] == 0).all()
