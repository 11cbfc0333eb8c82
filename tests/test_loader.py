from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from reidbench.data.images import decode_samples, read_image
from reidbench.data.strips import read_strip_split
from reidbench.data.synthetic import SyntheticConfig, generate
from reidbench.errors import UserError
from reidbench.registry import DATASETS, load_plugins

SMALL = SyntheticConfig(train_ids=4, test_ids=2, cameras=2, per_camera=2)


def test_synthetic_reads_back_through_the_strip_loader(synthetic_dataset):
    ds = synthetic_dataset
    assert ds.info.modalities == ["rgb", "nir", "tir"]
    assert ds.info.num_train_ids == 48
    assert (len(ds.splits.train), len(ds.splits.gallery), len(ds.splits.query)) == (768, 384, 96)
    s = ds.splits.train[0]
    assert (s.pid, s.camid) == (1, 0)
    assert [s.images[m].tile for m in ("rgb", "nir", "tir")] == [0, 1, 2]
    assert s.caption and "object" in s.caption
    assert not {x.pid for x in ds.splits.train} & {x.pid for x in ds.splits.gallery}


def test_tiles_are_cropped_and_resized(tmp_path):
    root = generate(tmp_path, SMALL, show_progress=False)
    samples = read_strip_split(root / "rgbir" / "bounding_box_train", ["rgb", "nir", "tir"], ["rgb", "nir", "tir"])
    arr = decode_samples(samples[:3], ["rgb", "nir", "tir"], (16, 24), show_progress=False)
    assert arr.shape == (3, 3, 3, 16, 24) and arr.dtype == np.uint8
    strip = np.asarray(Image.open(samples[0].images["rgb"].path).convert("RGB"))
    tir_tile = Image.fromarray(strip[:, 2 * SMALL.width :]).resize((24, 16), Image.BILINEAR)
    assert np.array_equal(arr[0, 2], np.asarray(tir_tile).transpose(2, 0, 1))


def test_missing_root_names_expected_folder_and_source(tmp_path):
    load_plugins()
    with pytest.raises(UserError) as err:
        DATASETS.get("rgbnt100").builder(tmp_path)
    assert str(tmp_path / "RGBNT100") in str(err.value) and "HAMNet" in str(err.value)


def test_bad_file_name_is_reported(tmp_path):
    root = generate(tmp_path, SMALL, show_progress=False)
    folder = root / "rgbir" / "query"
    next(folder.glob("*.jpg")).rename(folder / "car7.jpg")
    with pytest.raises(UserError, match=r"car7\.jpg: file name does not parse"):
        read_strip_split(folder, ["rgb"], ["rgb"])


def test_truncated_image_is_reported_with_its_path(tmp_path):
    root = generate(tmp_path, SMALL, show_progress=False)
    path = next((root / "rgbir" / "query").glob("*.jpg"))
    path.write_bytes(path.read_bytes()[:100])
    samples = read_strip_split(root / "rgbir" / "query", ["rgb", "nir", "tir"], ["rgb"])
    with pytest.raises(UserError, match=str(path)):
        decode_samples(samples, ["rgb"], (8, 8), show_progress=False)
    with pytest.raises(UserError, match="cannot read image"):
        read_image(samples[[s.images["rgb"].path for s in samples].index(path)].images["rgb"], (8, 8))


def test_rgbnt100_layout_is_found_case_insensitively(tmp_path):
    root = generate(tmp_path / "gen", SMALL, show_progress=False)
    (tmp_path / "data").mkdir()
    root.rename(tmp_path / "data" / "rgbnt100")
    load_plugins()
    ds = DATASETS.get("rgbnt100").builder(Path(tmp_path / "data"))
    assert len(ds.splits.train) == 4 * 2 * 2
