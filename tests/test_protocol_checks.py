"""Protocol values no run could train with, broken YAML and incomplete protocol files are refused where the
spec is resolved (one message naming the file / key, what was expected), and ``--protocol PATH``."""

from __future__ import annotations

from pathlib import Path

import pytest

from reidbench.errors import UserError
from reidbench.protocol import REQUIRED_SECTIONS, build_protocol, protocol_file
from reidbench.spec import make_spec
from tests.test_cli import run_cli

SYNTHETIC = Path(__file__).parents[1] / "benchmarks" / "protocols" / "synthetic.yaml"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.epochs=0", "train.epochs must be an integer >= 1, got 0"),
        ("train.epochs=-1", "train.epochs must be an integer >= 1, got -1"),
        ("sampler.k=0", "sampler.k must be an integer >= 1, got 0"),
        ("sampler.p=0", "sampler.p must be an integer >= 1, got 0"),
        ("optim.lr=-1", "optim.lr must be a finite number > 0, got -1.0"),
        ("optim.lr=nan", "optim.lr must be a finite number > 0, got nan"),
        ("optim.lr=0", "optim.lr must be a finite number > 0, got 0.0"),
        ("loss.center_lr=.inf", "loss.center_lr must be a finite number > 0, got inf"),
        ("train.stages=[{epochs: 0}]", "train.stages.0.epochs must be null or an integer >= 1, got 0"),
        ("train.stages=[{lr: -1.0e-3}]", "train.stages.0.lr must be null or a finite number > 0"),
        ("train.stages=[{lr_scale: 0}]", "train.stages.0.lr_scale must be a finite number > 0"),
        ("data.modalities=[rgb,xyz]", "'xyz' unknown, expected among rgb, nir, tir"),
        ("data.modalities=[]", "data.modalities must name at least one of rgb, nir, tir"),
        ("data.modalities=[rgb,rgb]", "lists a modality twice"),
        ("data.image_size=[0, 64]", "data.image_size.0 must be an integer >= 1"),
        ("seeds=[]", "seeds must list at least one seed"),
        ("train.epochs=99999999999999999999", "train.epochs must be at most 2147483647"),
        ("sampler.k=4294967296", "sampler.k must be at most 2147483647, got 4294967296"),
    ],
)
def test_values_no_run_could_use_are_refused(override, message):
    with pytest.raises(UserError) as err:
        make_spec("late_fusion", "synthetic", 0, [override])
    assert message in str(err.value)
    assert "synthetic.yaml or in the --set overrides" in str(err.value)


def test_every_problem_is_listed_at_once():
    with pytest.raises(UserError) as err:
        build_protocol("synthetic", ["train.epochs=0", "sampler.k=0"])
    assert "train.epochs" in str(err.value) and "sampler.k" in str(err.value)


def test_modalities_must_be_the_datasets():
    with pytest.raises(UserError, match="the dataset has no tir images \\(it has rgb, nir\\)"):
        make_spec("late_fusion", "rgbn300", 0, ["data.modalities=[rgb,tir]"])
    assert make_spec("late_fusion", "rgbn300", 0).protocol.data.modalities == ["rgb", "nir"]


def test_an_unclosed_list_in_an_override_reads_plainly():
    with pytest.raises(UserError) as err:
        build_protocol("synthetic", ["data.modalities=[rgb,nir"])
    text = str(err.value)
    assert "<stream end>" not in text
    assert "expected ',' or ']', but got the end of the text" in text
    assert "in the [...] list that starts at column 1" in text


def _protocol(tmp_path: Path, text: str, name: str = "mine.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_protocol_file_with_a_syntax_error_names_file_and_line(tmp_path):
    broken = SYNTHETIC.read_text().replace("sampler: {p: 8, k: 4}", "sampler: {p: 8, k: 4")
    path = _protocol(tmp_path, broken)
    with pytest.raises(UserError) as err:
        build_protocol("synthetic", path=path)
    line = broken.splitlines().index("sampler: {p: 8, k: 4") + 1
    assert f"{path}: not valid YAML, line {line + 1}" in str(err.value)
    assert f"the {{...}} mapping that starts at line {line}, column 10" in str(err.value)


@pytest.mark.parametrize("sections", [["optim"], ["train", "eval"]])
def test_a_protocol_file_missing_a_section_is_refused(tmp_path, sections):
    kept = [
        line
        for line in SYNTHETIC.read_text().split("\n")
        if not any(line.startswith(f"{s}:") for s in sections)
    ]
    path = _protocol(tmp_path, "\n".join(kept))
    with pytest.raises(UserError) as err:
        build_protocol("synthetic", path=path)
    assert f"missing section(s) {', '.join(sections)}" in str(err.value)
    assert str(path) in str(err.value)


def test_builtin_protocols_have_every_section():
    for path in SYNTHETIC.parent.glob("*.yaml"):
        assert build_protocol(path.stem).dataset == path.stem
    assert "optim" in REQUIRED_SECTIONS


def test_protocol_path_gives_the_config_its_content_and_records_the_path(tmp_path):
    same = make_spec("late_fusion", "synthetic", 0, protocol_path=_protocol(tmp_path, SYNTHETIC.read_text()))
    builtin = make_spec("late_fusion", "synthetic", 0)
    assert same.config_hash == builtin.config_hash  # the content, not the path
    assert same.tags["protocol_file"] == str((tmp_path / "mine.yaml").resolve())
    assert "protocol_file" not in builtin.tags
    other = _protocol(
        tmp_path, SYNTHETIC.read_text().replace("train: {epochs: 12}", "train: {epochs: 3}"), "b.yaml"
    )
    with protocol_file(other):
        spec = make_spec("late_fusion", "synthetic", 0)
    assert spec.protocol.train.epochs == 3 and spec.config_hash != builtin.config_hash
    assert make_spec("late_fusion", "synthetic", 0).protocol.train.epochs == 12  # only inside the block


def test_a_protocol_file_is_validated_like_the_builtin_ones(tmp_path):
    bad = _protocol(tmp_path, SYNTHETIC.read_text().replace("train: {epochs: 12}", "train: {epochs: 0}"))
    with pytest.raises(
        UserError, match=f"train.epochs must be an integer >= 1, got 0. Fix the value\\(s\\) in {bad}"
    ):
        make_spec("late_fusion", "synthetic", 0, protocol_path=bad)
    other = _protocol(
        tmp_path, SYNTHETIC.read_text().replace("dataset: synthetic", "dataset: rgbnt201"), "o.yaml"
    )
    with pytest.raises(UserError, match="protocol of dataset 'rgbnt201'"):
        make_spec("late_fusion", "synthetic", 0, protocol_path=other)
    with pytest.raises(UserError, match="no such file"):
        make_spec("late_fusion", "synthetic", 0, protocol_path=tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    "args",
    [
        ["run", "-m", "late_fusion", "-d", "synthetic", "--set", "train.epochs=0"],
        ["run", "-m", "late_fusion", "-d", "synthetic", "--set", "sampler.k=0"],
        ["run", "-m", "late_fusion", "-d", "synthetic", "--set", "data.modalities=[rgb,xyz]"],
        ["run", "-m", "late_fusion", "-d", "synthetic", "--protocol", "PROTOCOL"],
        ["ablate", "fusion_tokens", "-d", "synthetic", "--protocol", "PROTOCOL"],
        ["tune", "-m", "late_fusion", "-d", "synthetic", "--trials", "1", "--protocol", "PROTOCOL"],
    ],
)
def test_the_cli_refuses_before_creating_anything(monkeypatch, capsys, tmp_path, args):
    bad = _protocol(tmp_path, SYNTHETIC.read_text().replace("optim: {", "optimizer: {"))
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    args = [str(bad) if a == "PROTOCOL" else a for a in args]
    code, out = run_cli(monkeypatch, capsys, *args, "--tracking-uri", uri, "--results-dir", str(tmp_path))
    assert code == 2, out
    assert "error:" in out and "Traceback" not in out
    assert not (tmp_path / "store").exists()
