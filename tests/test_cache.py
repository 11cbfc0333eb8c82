"""The decoded-image cache: contents, reuse, invalidation when the source changes, bad files."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from reidbench.data import cache
from reidbench.data.cache import load_split, split_dir
from reidbench.data.images import read_image
from reidbench.errors import UserError
from reidbench.registry import DATASETS, load_plugins
from tests.layouts import small_rgbnt201_root

load_plugins()
SIZE = (16, 8)


@pytest.fixture
def dataset(tmp_path, tmp_path_factory, monkeypatch):
    root = small_rgbnt201_root(tmp_path, tmp_path_factory, monkeypatch)
    return lambda **kw: DATASETS.get("rgbnt201").builder(root, **kw)


def test_cache_holds_every_decoded_modality_image(dataset):
    ds = dataset()
    arrays = load_split(ds, "train", SIZE, show_progress=False)
    assert sorted(arrays) == ["nir", "rgb", "tir"]
    for m, arr in arrays.items():
        assert isinstance(arr, np.memmap) and arr.shape == (16, 3, *SIZE) and arr.dtype == np.uint8
        for i, sample in enumerate(ds.splits.train):
            assert np.array_equal(arr[i], read_image(sample.images[m], SIZE))
    folder = split_dir(ds, "train", SIZE)
    assert folder.is_relative_to(cache.cache_dir() / "decoded" / "rgbnt201")
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["samples"] == 16 and manifest["files"] == 48 and len(manifest["digest"]) == 64


def test_a_valid_cache_is_reused_without_decoding(dataset, monkeypatch):
    ds = dataset()
    first = load_split(ds, "query", SIZE, show_progress=False)

    def no_decoding(*_, **__):
        raise AssertionError("decoded again")

    monkeypatch.setattr(cache, "decode_into", no_decoding)
    again = load_split(dataset(), "query", SIZE, show_progress=False)
    assert np.array_equal(first["tir"], again["tir"])
    other_size = (8, 8)
    with pytest.raises(AssertionError, match="decoded again"):
        load_split(ds, "query", other_size, show_progress=False)


def test_a_changed_source_file_invalidates_the_cache(dataset, monkeypatch):
    ds = dataset()
    before = np.array(load_split(ds, "train", SIZE, show_progress=False)["nir"])
    path = ds.splits.train[3].images["nir"].path
    Image.fromarray(np.full((32, 64, 3), 200, np.uint8)).save(path)
    after = load_split(dataset(), "train", SIZE, show_progress=False)["nir"]
    assert np.all(after[3] == 200) and not np.array_equal(before[3], after[3])
    assert np.array_equal(before[2], after[2])

    builds = []
    real_build = cache.build
    monkeypatch.setattr(cache, "build", lambda *a, **kw: builds.append(1) or real_build(*a, **kw))
    load_split(dataset(), "train", SIZE, show_progress=False)
    assert builds == []
    stamp = os.stat(path)
    os.utime(path, ns=(stamp.st_atime_ns, stamp.st_mtime_ns + 10**9))  # touched, same bytes: rebuilt too
    load_split(dataset(), "train", SIZE, show_progress=False)
    assert builds == [1]


def test_a_removed_sample_invalidates_the_cache(dataset):
    ds = dataset()
    assert len(load_split(ds, "train", SIZE, show_progress=False)["rgb"]) == 16
    ds.splits.train[0].images["tir"].path.unlink()
    with pytest.warns(UserWarning, match="missing"):
        partial = dataset(allow_partial=True)
    assert len(load_split(partial, "train", SIZE, show_progress=False)["rgb"]) == 15


def test_unreadable_image_is_an_error_naming_it_and_leaves_no_cache(dataset):
    ds = dataset()
    path = ds.splits.query[5].images["rgb"].path
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(UserError, match=f"cannot read image {path}"):
        load_split(ds, "query", SIZE, show_progress=False)
    folder = split_dir(ds, "query", SIZE)
    assert not folder.exists()
    assert not [p for p in folder.parent.iterdir() if ".tmp-" in p.name]


def test_every_unreadable_image_is_listed(dataset):
    ds = dataset()
    bad = [ds.splits.train[i].images["nir"].path for i in (2, 9)]
    for path in bad:
        path.write_bytes(b"not a jpeg")
    with pytest.raises(UserError) as err:
        load_split(ds, "train", SIZE, show_progress=False)
    assert str(err.value).startswith("2 images cannot be read")
    assert all(f"cannot read image {p}" in str(err.value) for p in bad)
