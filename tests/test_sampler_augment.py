import numpy as np
import pytest
import torch

from reidbench.data.augment import augment_numpy, augment_torch, draw_params, synced_augment
from reidbench.data.sampler import PKSampler
from reidbench.protocol import AugmentCfg


def _labels():
    rng = np.random.default_rng(0)
    return np.repeat(np.arange(10), rng.integers(2, 9, size=10))


def test_pk_batches_hold_p_ids_times_k():
    labels = _labels()
    sampler = PKSampler(labels, p=4, k=4, seed=3)
    batches = sampler.global_batches(0)
    assert batches
    for b in batches:
        assert len(b) == 16
        ids, counts = np.unique(labels[b], return_counts=True)
        assert len(ids) == 4 and set(counts) == {4}
        # identity-grouped: each consecutive block of K shares one identity
        assert all(len(set(labels[b[i : i + 4]])) == 1 for i in range(0, 16, 4))


def test_pk_is_deterministic_per_seed_and_epoch():
    labels = _labels()
    a = PKSampler(labels, 4, 4, seed=1).global_batches(2)
    b = PKSampler(labels, 4, 4, seed=1).global_batches(2)
    c = PKSampler(labels, 4, 4, seed=1).global_batches(3)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=False))


@pytest.mark.parametrize("world", [1, 2, 4])
def test_rank_slices_rebuild_the_global_batch(world):
    sampler = PKSampler(_labels(), 4, 4, seed=0)
    glob = sampler.global_batches(1)
    parts = [sampler.rank_batches(1, r, world) for r in range(world)]
    for i, g in enumerate(glob):
        assert np.array_equal(np.concatenate([p[i] for p in parts]), g)


def test_too_few_ids_is_an_error():
    with pytest.raises(ValueError, match="P=20"):
        PKSampler([0, 1, 2], 20, 2)


def test_augmentation_is_synchronised_across_modalities():
    x = torch.randint(0, 256, (16, 1, 3, 20, 12), dtype=torch.uint8).repeat(1, 3, 1, 1, 1)  # same image x3
    out = synced_augment(x, AugmentCfg(flip=0.5, pad=3, erase=0.7), np.random.default_rng(0))
    assert out.shape == x.shape
    assert torch.equal(out[:, 0], out[:, 1]) and torch.equal(out[:, 0], out[:, 2])
    assert not torch.equal(out, x)


def test_augmentation_ops_do_what_they_say():
    x = torch.arange(1, 2 * 1 * 1 * 4 * 5 + 1, dtype=torch.uint8).view(2, 1, 1, 4, 5)
    rng = np.random.default_rng(0)
    flipped = synced_augment(x, AugmentCfg(flip=1.0, pad=0, erase=0.0), rng)
    assert torch.equal(flipped, x.flip(-1))
    same = synced_augment(x, AugmentCfg(flip=0.0, pad=0, erase=0.0), rng)
    assert torch.equal(same, x)
    for _ in range(5):
        crops = synced_augment(x, AugmentCfg(flip=0.0, pad=2, erase=0.0), rng)
        padded = torch.nn.functional.pad(x, (2, 2, 2, 2))  # padding takes the fill value (0 here)
        for b in range(2):  # every crop is a window of the padded image
            windows = [padded[b, 0, 0, i : i + 4, j : j + 5] for i in range(5) for j in range(5)]
            assert any(torch.equal(crops[b, 0, 0], w) for w in windows)
    erased = synced_augment(x, AugmentCfg(flip=0.0, pad=0, erase=1.0, erase_scale=[0.2, 0.2]), rng, fill=0)
    assert ((erased == 0).sum(dim=(1, 2, 3, 4)) > 0).all()  # about 20% of 20 pixels (rounded box sides)


def _random_case(seed):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (12, 3, 14, 10), dtype=np.uint8)
    index = rng.choice(12, 8)
    params = draw_params(8, (14, 10), AugmentCfg(flip=0.5, pad=4, erase=0.6), rng)
    fill = np.array([7, 8, 9], np.uint8).reshape(3, 1, 1)
    return images, index, params, fill


@pytest.mark.parametrize("seed", range(4))
def test_numpy_and_torch_executors_agree(seed):
    images, index, params, fill = _random_case(seed)
    a = augment_numpy(images, index, params, fill)
    b = augment_torch(
        torch.from_numpy(images), torch.from_numpy(index), params, torch.from_numpy(fill.ravel())
    )
    assert np.array_equal(a, b.numpy())


def test_executors_match_a_plain_per_sample_reference():
    images, index, p, fill = _random_case(9)
    out = augment_numpy(images, index, p, fill)
    for b, i in enumerate(index):
        img = images[i][:, :, ::-1] if p.flip[b] else images[i]
        padded = np.broadcast_to(fill, (3, 14 + 8, 10 + 8)).copy()
        padded[:, 4:-4, 4:-4] = img
        ref = padded[:, 4 + p.dy[b] : 4 + p.dy[b] + 14, 4 + p.dx[b] : 4 + p.dx[b] + 10].copy()
        if p.erase[b]:
            ref[:, p.ey[b] : p.ey[b] + p.eh[b], p.ex[b] : p.ex[b] + p.ew[b]] = fill
        assert np.array_equal(out[b], ref)
    assert p.flip.any() and (~p.flip).any() and p.erase.any() and (p.dy != 0).any()


def test_erase_boxes_follow_scale_and_ratio():
    p = draw_params(
        2000,
        (128, 64),
        AugmentCfg(erase=0.5, erase_scale=[0.02, 0.4], erase_ratio=[0.3, 3.3]),
        np.random.default_rng(1),
    )
    area = p.eh * p.ew / (128 * 64)
    assert 0.01 < area.min() and area.max() < 0.45 and abs(p.erase.mean() - 0.5) < 0.05
    assert (p.ey >= 0).all() and (p.ey + p.eh <= 128).all() and (p.ex + p.ew <= 64).all()
