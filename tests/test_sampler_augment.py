import numpy as np
import pytest
import torch

from reidbench.data.augment import synced_augment
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
    x = torch.rand(16, 1, 3, 20, 12).repeat(1, 3, 1, 1, 1)  # the same image in all 3 modalities
    out = synced_augment(x, AugmentCfg(flip=0.5, pad=3, erase=0.7), torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    assert torch.equal(out[:, 0], out[:, 1]) and torch.equal(out[:, 0], out[:, 2])
    assert not torch.equal(out, x)


def test_augmentation_ops_do_what_they_say():
    x = torch.arange(2 * 1 * 1 * 4 * 5, dtype=torch.float).view(2, 1, 1, 4, 5)
    gen = torch.Generator().manual_seed(0)
    flipped = synced_augment(x, AugmentCfg(flip=1.0, pad=0, erase=0.0), gen)
    assert torch.equal(flipped, x.flip(-1))
    same = synced_augment(x, AugmentCfg(flip=0.0, pad=0, erase=0.0), gen)
    assert torch.equal(same, x)
    crops = synced_augment(x, AugmentCfg(flip=0.0, pad=2, erase=0.0), gen)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for b in range(2):  # every crop is a window of the padded image
        windows = [padded[b, 0, 0, i : i + 4, j : j + 5] for i in range(5) for j in range(5)]
        assert any(torch.equal(crops[b, 0, 0], w) for w in windows)
    erased = synced_augment(x + 1, AugmentCfg(flip=0.0, pad=0, erase=1.0, erase_scale=[0.2, 0.2]), gen)
    assert ((erased == 0).sum(dim=(1, 2, 3, 4)) > 0).all()
