"""`reidbench datasets check / prepare` and `reidbench run --allow-partial`, in process."""

import json

import pytest

from reidbench.data.checks import EXPECTED_COUNTS
from tests.conftest import TINY
from tests.layouts import data_root, official, small, use_counts_of
from tests.test_cli import run_cli

TINY_VIT = [
    "backbone.name=vit_tiny_patch16_224",
    "backbone.pretrained=false",
    "backbone.patch_size=8",
    "backbone.embed_dim=32",
    "backbone.depth=1",
    "backbone.num_heads=2",
    "data.image_size=[32, 16]",
]


@pytest.fixture
def root(tmp_path, tmp_path_factory, monkeypatch):
    monkeypatch.setenv("REIDBENCH_CACHE", str(tmp_path / "cache"))
    return data_root(tmp_path, small("rgbnt201"), tmp_path_factory.getbasetemp() / "layouts")


def test_check_prints_the_layout_report(root, monkeypatch, capsys):
    use_counts_of(monkeypatch, "rgbnt201", small("rgbnt201"))
    code, out = run_cli(monkeypatch, capsys, "datasets", "check", "rgbnt201", "--data-root", str(root))
    assert code == 0, out
    lines = [line for line in out.splitlines() if line.strip().startswith("│")]
    train = next(line for line in lines if " train " in line)
    assert (
        "train_171" in train
        and " 16 " in train
        and " 4 " in train
        and "1-2" in train
        and "rgb+nir+tir" in train
    )
    assert "(= query)" in out and "no problems" in out and "query = gallery" in out


def test_check_lists_problems_and_exits_non_zero(root, monkeypatch, capsys):
    assert "rgbnt201" in EXPECTED_COUNTS  # the published figures apply: the generated set is far smaller
    (official(root, small("rgbnt201")) / "test" / "TI" / "000002_cam1_0_00.jpg").unlink()
    code, out = run_cli(monkeypatch, capsys, "datasets", "check", "rgbnt201", "--data-root", str(root))
    assert code == 1
    assert "problem(s)" in out and "expected 3951 samples (train), found 16" in out
    assert "test/TI/000002_cam1_0_00.jpg: missing (its RGB/ counterpart exists)" in out


def test_check_of_a_missing_download_exits_2(tmp_path, monkeypatch, capsys):
    code, out = run_cli(monkeypatch, capsys, "datasets", "check", "msvr310", "--data-root", str(tmp_path))
    assert code == 2 and "MSVR310" in out and "Traceback" not in out


def test_prepare_builds_the_cache(root, monkeypatch, capsys, tmp_path):
    use_counts_of(monkeypatch, "rgbnt201", small("rgbnt201"))
    code, out = run_cli(
        monkeypatch,
        capsys,
        "datasets",
        "prepare",
        "rgbnt201",
        "--data-root",
        str(root),
        "--image-size",
        "16x8",
        "-q",
    )
    assert code == 0, out
    manifests = sorted((tmp_path / "cache" / "decoded" / "rgbnt201").glob("*/manifest.json"))
    assert [m.parent.name.split("-")[0] for m in manifests] == ["query", "train"]  # gallery is the query set
    assert json.loads(manifests[1].read_text())["samples"] == 16
    assert "cache ready at 16x8" in out
    code, out = run_cli(
        monkeypatch,
        capsys,
        "datasets",
        "prepare",
        "rgbnt201",
        "--data-root",
        str(root),
        "--image-size",
        "16by8",
    )
    assert code == 2 and "HEIGHTxWIDTH" in out


@pytest.mark.slow
def test_run_refuses_a_mismatching_download_unless_allow_partial(root, monkeypatch, capsys, mlflow_uri):
    args = [
        "run",
        "-m",
        "late_fusion",
        "-d",
        "rgbnt201",
        "--seeds",
        "0",
        "--data-root",
        str(root),
        "--tracking-uri",
        mlflow_uri,
        "-q",
        *[a for o in [*TINY, *TINY_VIT] for a in ("--set", o)],
    ]
    code, out = run_cli(monkeypatch, capsys, *args)
    flat = " ".join(out.split())  # the error line is wrapped to the terminal width
    assert code == 2 and "expected 3951 samples (train), found 16" in flat and "--allow-partial" in flat
    with pytest.warns(UserWarning, match="proceeding despite 4 problem"):
        code, out = run_cli(monkeypatch, capsys, *args, "--allow-partial")
    assert code == 0, out
    assert "late_fusion" in out and "mAP" in out


def _prepare(monkeypatch, capsys, root):
    return run_cli(
        monkeypatch,
        capsys,
        "datasets",
        "prepare",
        "rgbnt201",
        "--data-root",
        str(root),
        "--image-size",
        "16x8",
        "-q",
    )


def test_prepare_decodes_everything_then_names_every_unreadable_file(root, monkeypatch, capsys, tmp_path):
    use_counts_of(monkeypatch, "rgbnt201", small("rgbnt201"))
    base = official(root, small("rgbnt201"))
    bad = [
        base / "train_171" / "RGB" / "000001_cam1_0_00.jpg",
        base / "train_171" / "TI" / "000001_cam1_0_00.jpg",  # the same sample's second bad file
        base / "train_171" / "NI" / "000003_cam2_1_01.jpg",
        base / "test" / "TI" / "000002_cam1_0_00.jpg",  # another split
    ]
    for path in bad:
        assert path.is_file(), path
        path.write_bytes(b"not a jpeg")
    code, out = _prepare(monkeypatch, capsys, root)
    flat = " ".join(out.split())
    assert code == 2, out
    assert "4 images cannot be read" in flat and "Traceback" not in out
    assert all(f"cannot read image {p}" in flat for p in bad)
    assert "datasets check" not in flat and "Re-download these files" in flat
    assert "... and" not in flat  # prepare lists every file
    cached = [
        m.parent.name.split("-")[0]
        for m in (tmp_path / "cache" / "decoded" / "rgbnt201").glob("*/manifest.json")
    ]
    assert cached == []  # both splits hold a bad file: nothing half-built is left


def test_prepare_still_caches_the_splits_without_bad_files(root, monkeypatch, capsys, tmp_path):
    use_counts_of(monkeypatch, "rgbnt201", small("rgbnt201"))
    bad = official(root, small("rgbnt201")) / "train_171" / "NI" / "000003_cam2_1_01.jpg"
    bad.write_bytes(bad.read_bytes()[:150])
    code, out = _prepare(monkeypatch, capsys, root)
    assert code == 2 and f"cannot read image {bad}" in " ".join(out.split())
    cached = [
        m.parent.name.split("-")[0]
        for m in (tmp_path / "cache" / "decoded" / "rgbnt201").glob("*/manifest.json")
    ]
    assert cached == ["query"]


def test_check_names_a_badly_named_file_in_one_modality_folder(root, monkeypatch, capsys):
    rgb = official(root, small("rgbnt201")) / "train_171" / "RGB"
    (rgb / "000001_cam1_0_00.jpg").rename(rgb / "000001 cam1 copy.jpg")
    code, out = run_cli(monkeypatch, capsys, "datasets", "check", "rgbnt201", "--data-root", str(root))
    flat = " ".join(out.split())
    assert code == 1
    assert "train_171/RGB/000001 cam1 copy.jpg: file name does not parse as PPPPPP_camC_T_NN.jpg" in flat
    assert "no counterpart in NI/, TI/" in flat
    assert "NI/000001 cam1 copy.jpg" not in flat
    assert "train_171/RGB/000001_cam1_0_00.jpg: missing (its NI/ counterpart exists)" in flat
