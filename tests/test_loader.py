"""The official-layout loaders, on files generated exactly like each real download (and broken copies)."""

import json
import shutil
import warnings

import numpy as np
import pytest
from PIL import Image

from reidbench.data.checks import EXPECTED_COUNTS, Expected, PartialDataWarning
from reidbench.data.images import decode_samples, read_image
from reidbench.data.synthetic import expected_counts
from reidbench.errors import UserError
from reidbench.registry import DATASETS, load_plugins
from tests.layouts import data_root, official, small, use_counts_of

load_plugins()
LAYOUTS = ["rgbnt100", "rgbn300", "rgbnt201", "msvr310", "market1501_mm"]


@pytest.fixture
def make_root(tmp_path, tmp_path_factory):
    store = tmp_path_factory.getbasetemp() / "layouts"
    return lambda config: data_root(tmp_path, config, store)


def load(name, root, **kw):
    return DATASETS.get(name).builder(root, **kw)


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
    assert ds.problems == []


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_layout_loads_with_the_generated_counts(layout, make_root, monkeypatch):
    config = small(layout)
    root = make_root(config)
    use_counts_of(monkeypatch, layout, config)
    ds = load(layout, root)
    counts = expected_counts(config)
    for split in ("train", "query", "gallery"):
        samples = getattr(ds.splits, split)
        assert len(samples) == counts[split].samples, split
        assert len({s.pid for s in samples}) == counts[split].ids, split
        for s in samples:
            assert set(s.images) == set(ds.info.modalities)
            assert all(ref.path.is_file() for ref in s.images.values())
            assert s.caption and "object" in s.caption
    assert ds.problems == [] and ds.info.has_text
    assert ds.info.num_train_ids == config.train_ids
    assert ds.info.modalities == (["rgb", "nir"] if layout == "rgbn300" else ["rgb", "nir", "tir"])
    assert {s.camid for s in ds.splits.train} == {0, 1}  # cameras 1, 2 (MSVR310 views v0, v1) -> 0, 1
    assert not {s.pid for s in ds.splits.train} & {s.pid for s in ds.splits.gallery}
    assert ds.info.same_set == (layout == "rgbnt201")
    assert (ds.splits.gallery is ds.splits.query) == (layout == "rgbnt201")
    assert ds.info.junk == ("scene" if layout == "msvr310" else "market")


def test_rgbnt201_pairs_modalities_by_name_and_parses_pid_and_camera(make_root, monkeypatch):
    config = small("rgbnt201")
    root = make_root(config)
    use_counts_of(monkeypatch, "rgbnt201", config)
    s = load("rgbnt201", root).splits.train[0]
    assert s.images["rgb"].path.relative_to(root).as_posix() == "RGBNT201/train_171/RGB/000001_cam1_0_00.jpg"
    assert s.images["tir"].path.relative_to(root).as_posix() == "RGBNT201/train_171/TI/000001_cam1_0_00.jpg"
    assert (s.pid, s.camid, s.images["nir"].num_tiles) == (1, 0, 1)


def test_msvr310_reads_scene_and_view_and_accepts_lower_case_folder(make_root, monkeypatch):
    config = small("msvr310")
    root = make_root(config)
    official(root, config).rename(root / "msvr310")
    use_counts_of(monkeypatch, "msvr310", config)
    ds = load("msvr310", root)
    s = next(s for s in ds.splits.gallery if s.images["rgb"].path.name == "0002_s009_v1_001.jpg")
    assert (s.pid, s.camid, s.sceneid) == (2, 1, 9)  # test identity index 4: scenes 8 and 9; view v1 -> 1
    assert s.images["tir"].path.parts[-3:] == ("0002", "th", "0002_s009_v1_001.jpg")
    # query3 holds the gallery images of the identities seen in two scenes
    assert {q.images["rgb"].path.name for q in ds.splits.query} <= {
        g.images["rgb"].path.name for g in ds.splits.gallery
    }
    assert all(len({g.sceneid for g in ds.splits.gallery if g.pid == q.pid}) == 2 for q in ds.splits.query)


def test_market_junk_identity_is_skipped_not_a_problem(make_root, monkeypatch):
    config = small("market1501_mm")
    root = make_root(config)
    assert (official(root, config) / "gallery" / "NI" / "-1_c1s1_000000_00.jpg").is_file()
    ds = load("market1501_mm", root)
    assert ds.problems == [] and -1 not in {s.pid for s in ds.splits.gallery}


def test_strip_tiles_are_cropped_and_resized(make_root, monkeypatch):
    config = small("rgbnt100")
    root = make_root(config)
    use_counts_of(monkeypatch, "rgbnt100", config)
    samples = load("rgbnt100", root).splits.train
    arr = decode_samples(samples[:3], ["rgb", "nir", "tir"], (16, 24), show_progress=False)
    assert arr.shape == (3, 3, 3, 16, 24) and arr.dtype == np.uint8
    strip = np.asarray(Image.open(samples[0].images["rgb"].path).convert("RGB"))
    tir_tile = Image.fromarray(strip[:, 2 * config.width :]).resize((24, 16), Image.BILINEAR)
    assert np.array_equal(arr[0, 2], np.asarray(tir_tile).transpose(2, 0, 1))


# ---- what is wrong is reported, with the path -------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "folder"),
    [
        ("rgbnt201", "RGBNT201"),
        ("rgbnt100", "RGBNT100"),
        ("rgbn300", "RGBN300"),
        ("msvr310", "MSVR310"),
        ("market1501_mm", "Market1501-MM"),
    ],
)
def test_missing_root_names_expected_folder_and_source(tmp_path, name, folder):
    with pytest.raises(UserError) as err:
        load(name, tmp_path)
    assert str(tmp_path / folder) in str(err.value) and "comes from" in str(err.value)


def test_published_count_mismatch_names_path_expected_and_found(make_root):
    config = small("rgbnt201")
    root = make_root(config)
    with pytest.raises(UserError) as err:
        load("rgbnt201", root)
    text = str(err.value)
    train_dir = official(root, config) / "train_171"
    assert f"{train_dir}: expected 3951 samples (train), found 16" in text
    assert f"{train_dir}: expected 171 identities (train), found 4" in text
    assert f"{official(root, config) / 'test'}: expected 836 samples (query), found 8" in text
    assert "--allow-partial" in text


def test_allow_partial_turns_problems_into_a_warning(make_root):
    config = small("rgbnt201")
    root = make_root(config)
    with pytest.warns(PartialDataWarning, match=r"expected 3951 samples \(train\), found 16"):
        ds = load("rgbnt201", root, allow_partial=True)
    assert len(ds.splits.train) == 16 and len(ds.problems) == 4


def test_count_table_is_consulted_per_dataset(make_root, monkeypatch):
    config = small("msvr310")
    root = make_root(config)
    counts = expected_counts(config)
    monkeypatch.setitem(EXPECTED_COUNTS, "msvr310", {**counts, "query": Expected(591, 52)})
    with pytest.raises(UserError, match=r"query3: expected 591 samples \(query\), found 4"):
        load("msvr310", root)


def test_missing_modality_file_is_reported_and_sample_dropped(make_root, monkeypatch):
    config = small("rgbnt201")
    root = make_root(config)
    use_counts_of(monkeypatch, "rgbnt201", config)
    gone = official(root, config) / "train_171" / "NI" / "000003_cam2_1_01.jpg"
    gone.unlink()
    with pytest.raises(UserError) as err:
        load("rgbnt201", root)
    assert f"{gone}: missing (its RGB/ counterpart exists)" in str(err.value)
    assert "expected 16 samples (train), found 15" in str(err.value)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        ds = load("rgbnt201", root, allow_partial=True)
    assert "000003_cam2_1_01.jpg" not in {s.name for s in ds.splits.train}


def test_missing_split_and_modality_folders(make_root, monkeypatch):
    config = small("msvr310")
    root = make_root(config)
    use_counts_of(monkeypatch, "msvr310", config)
    shutil.rmtree(official(root, config) / "bounding_box_train" / "0003" / "th")
    shutil.rmtree(official(root, config) / "query3")
    ds = load("msvr310", root, validate=False)
    assert f"{official(root, config) / 'bounding_box_train' / '0003'}: missing folder(s) th/" in ds.problems
    assert f"{official(root, config) / 'query3'}: missing folder" in ds.problems
    with pytest.raises(UserError, match="no usable samples in split.s. query"):  # even with allow_partial
        load("msvr310", root, allow_partial=True)


@pytest.mark.parametrize(
    ("layout", "rel", "new_name", "message"),
    [
        ("rgbnt100", "rgbir/query", "car7.jpg", "file name does not parse as VVVV_cCCCC_NNN.jpg"),
        ("rgbnt100", "rgbir/query", "0002_c0009_001.jpg", "camera 9 outside 1..8"),
        ("rgbnt100", "rgbir/query", "0700_c0001_001.jpg", "identity 700 outside 1..600"),
        ("rgbnt201", "test/{m}", "000002_cam5_0_00.jpg", "camera 5 outside 1..4"),
        ("market1501_mm", "query/{m}", "0002_c7s1_000009_01.jpg", "camera 7 outside 1..6"),
        (
            "msvr310",
            "bounding_box_test/0002/{m}",
            "0002_s8_v0_000.jpg",
            "file name does not parse as VVVV_sSSS_vC_NNN.jpg",
        ),
        (
            "msvr310",
            "bounding_box_test/0002/{m}",
            "0004_s008_v0_009.jpg",
            "identity 4 in the folder of identity 2",
        ),
    ],
)
def test_bad_names_and_ranges_are_reported_with_the_path(
    make_root, monkeypatch, layout, rel, new_name, message
):
    config = small(layout)
    root = make_root(config)
    use_counts_of(monkeypatch, layout, config)
    base = official(root, config)
    subs = {
        "rgbnt201": ("RGB", "NI", "TI"),
        "market1501_mm": ("RGB", "NI", "TI"),
        "msvr310": ("vis", "ni", "th"),
    }
    for sub in subs.get(layout, ("",)):  # rename the sample in every modality folder
        folder = base / rel.format(m=sub)
        next(iter(sorted(folder.glob("*.jpg")))).rename(folder / new_name)
    with pytest.raises(UserError) as err:
        load(layout, root)
    first = subs.get(layout, ("",))[0]
    assert f"{base / rel.format(m=first) / new_name}: {message}" in str(err.value)


def test_rgbn300_loader_rejects_three_tile_strips(make_root):
    config = small("rgbnt100")
    root = make_root(config)
    official(root, config).rename(root / "RGBN300")
    ds = load("rgbn300", root, validate=False)
    assert any(
        "expected a strip of 2 tiles of 2:1 (512x128 in the official download), found 192x32" in p
        for p in ds.problems
    )


def test_rgbnt100_layout_is_found_case_insensitively(make_root, monkeypatch):
    config = small("rgbnt100")
    root = make_root(config)
    official(root, config).rename(root / "rgbnt100")
    use_counts_of(monkeypatch, "rgbnt100", config)
    assert len(load("rgbnt100", root).splits.train) == 4 * 2 * 2


def test_truncated_image_is_reported_with_its_path(make_root, monkeypatch):
    config = small("rgbnt100")
    root = make_root(config)
    use_counts_of(monkeypatch, "rgbnt100", config)
    samples = load("rgbnt100", root).splits.query
    path = samples[1].images["rgb"].path
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(UserError, match=f"cannot read image {path}"):
        decode_samples(samples, ["rgb"], (8, 8), show_progress=False)
    with pytest.raises(UserError, match="cannot read image"):
        read_image(samples[1].images["rgb"], (8, 8))


def test_malformed_caption_file_names_its_path(make_root, monkeypatch):
    config = small("rgbnt201")
    root = make_root(config)
    use_counts_of(monkeypatch, "rgbnt201", config)
    bad = official(root, config) / "text" / "train_NI.json"
    bad.write_text(json.dumps({"not": "a list"}))
    with pytest.raises(UserError, match=f"{bad}: expected a JSON list"):
        load("rgbnt201", root)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_each_dataset_has_a_protocol_matching_its_evaluation_rules(layout, make_root, monkeypatch):
    from reidbench.protocol import build_protocol

    config = small(layout)
    use_counts_of(monkeypatch, layout, config)
    ds = load(layout, make_root(config))
    protocol = build_protocol(layout)
    assert protocol.eval.junk == ds.info.junk and protocol.eval.same_set == ds.info.same_set
    assert protocol.data.modalities == ds.info.modalities
    person = layout in ("rgbnt201", "market1501_mm")
    assert protocol.data.image_size == ([256, 128] if person else [128, 256])
    assert protocol.backbone.name == "vit_base_patch16_224" and protocol.seeds == [0, 1, 2]
    assert 50 <= protocol.train.epochs <= 60
    assert (protocol.sampler.p, protocol.sampler.k) == ((8, 8) if layout == "rgbnt201" else (16, 4))


def test_partial_data_warning_prints_once_as_a_plain_line(tmp_path):
    """In a fresh process (pytest replaces the warning display): twice the same dataset, one plain line."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(
        """
        import warnings
        from pathlib import Path
        from reidbench.data.checks import finish
        from reidbench.data.types import Dataset, DatasetInfo, DatasetSplits, ImageRef, Sample

        sample = Sample({"rgb": ImageRef(Path("a.jpg"))}, 1, 0)
        def scan():
            info = DatasetInfo("demo", ["rgb"], 1)
            return Dataset(info, DatasetSplits([sample], [sample], [sample]), {}, ["x/y.jpg: missing"])
        finish(scan(), allow_partial=True)
        warnings.resetwarnings()  # what some imports do: the registry of shown warnings is forgotten
        finish(scan(), allow_partial=True)
        warnings.warn("another one")
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    lines = out.stderr.splitlines()
    assert lines.count("warning: dataset 'demo': proceeding despite 1 problem(s) (--allow-partial):") == 1
    assert "  x/y.jpg: missing" in lines
    assert not any("finish(" in line or "PartialDataWarning" in line for line in lines)
    assert any("UserWarning: another one" in line for line in lines)  # other warnings unchanged
