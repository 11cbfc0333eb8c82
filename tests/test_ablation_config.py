"""Ablation files, grids, search spaces, GPU lists and the validation split: loading and validation,
no training."""

from pathlib import Path

import pytest

from reidbench.data.validation import validation_split
from reidbench.errors import UserError
from reidbench.registry import ABLATIONS
from reidbench.spec import grid
from reidbench.sweeps import executors
from reidbench.sweeps.ablation import ablations_dir, find_ablation, load_ablation, register_ablations
from reidbench.sweeps.tune import DEFAULT_SPACE, load_space, parse_space
from tests.conftest import TINY
from tests.test_cli import run_cli

SHIPPED = {
    "fusion_tokens": ("graft", "method.fusion_tokens", ["1", "2", "4", "8", "16", "32"]),
    "depth": ("graft", "method.depth", ["1", "2", "3", "4", "6"]),
    "loss": (
        "graft",
        "loss.variant",
        ["ce", "ce+triplet", "ce+aug_triplet", "ce+aug_triplet+center"],
    ),
    "modalities": (
        "graft",
        "data.modalities",
        ["rgb", "nir", "tir", "rgb+nir", "rgb+tir", "nir+tir", "rgb+nir+tir"],
    ),
    "stages": ("graft", "train.stages", ["one", "two"]),
    "mmet_masking": ("mmet", "method.image_mask_ratio", ["0.0", "0.15", "0.25", "0.38", "0.5", "0.75"]),
    "late_fusion_fusion": ("late_fusion", "method.fusion", ["concat", "mean", "max", "attention"]),
}


def test_shipped_ablations_load_and_register():
    register_ablations()
    for name, (method, axis, labels) in SHIPPED.items():
        ab = ABLATIONS.get(name).builder()
        assert (ab.method, ab.axis, [p.label for p in ab.points]) == (method, axis, labels)
        assert ab.default in labels
    loss = find_ablation("loss")
    assert loss.points[-1].overrides == {"loss.variant": "ce+aug_triplet+center"}
    # the shared recipe has one stage, which trains with the point's loss
    for i, point in enumerate(loss.points):
        spec = loss.specs(["synthetic"], [0])[i]
        assert [s.loss for s in spec.protocol.resolved_stages()] == [point.label]
    stages = find_ablation("stages")
    two = stages.specs(["rgbnt100"], [0])[1]
    assert [(s.name, s.freeze) for s in two.protocol.resolved_stages()] == [
        ("frozen", ["backbone"]),
        ("unfrozen", []),
    ]
    assert find_ablation("modalities").points[3].overrides == {"data.modalities": ["rgb", "nir"]}


def test_list_ablations(monkeypatch, capsys):
    code, out = run_cli(monkeypatch, capsys, "list", "ablations")
    assert code == 0
    assert "late_fusion_fusion" in out and "fusion_tokens" in out and "method.fusion" in out


GOOD = (
    "method: late_fusion\naxis: method.fusion\nvalues: [concat, mean]\ndefault: concat\n"
    "datasets: [synthetic]\n"
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (GOOD + "colour: red\n", "unknown key 'colour'. Valid keys: description, method"),
        (GOOD.replace("axis: method.fusion\n", ""), "missing key 'axis' (the dotted protocol key"),
        (GOOD.replace("values: [concat, mean]", "values: concat"), "key 'values': expected a non-empty list"),
        (
            GOOD.replace("values: [concat, mean]", "values: [concat, {set: {a.b: 1}}]"),
            "key 'values[1]': expected a plain value or a mapping {value: LABEL",
        ),
        (
            GOOD.replace("values: [concat, mean]", "values: [concat, {value: x, set: 3}]"),
            "key 'values[1].set': expected a mapping of dotted protocol keys",
        ),
        (GOOD.replace("values: [concat, mean]", "values: [concat, concat]"), "expected distinct values"),
        (GOOD + "seeds: [0, a]\n", "key 'seeds': expected a non-empty list of integers"),
        (GOOD + "name: other\n", "key 'name': expected the file name 'abl'"),
        (
            GOOD.replace("axis: method.fusion", "axis: 'method fusion'"),
            "key 'axis': expected a dotted protocol key",
        ),
        (
            GOOD.replace("datasets: [synthetic]", "datasets: synthetic"),
            "key 'datasets': expected a non-empty list",
        ),
        ("method: [unclosed\n", "not valid YAML (line"),
        ("- a\n- b\n", "expected a mapping with keys method, axis, values, default, datasets"),
    ],
)
def test_invalid_ablation_files_say_which_file_and_key(tmp_path, text, expected):
    path = tmp_path / "abl.yaml"
    path.write_text(text)
    with pytest.raises(UserError) as info:
        load_ablation(path)
    assert str(path) in str(info.value)
    assert expected in str(info.value)


def test_ablation_points_to_specs(tmp_path):
    path = tmp_path / "fuse.yaml"
    path.write_text(GOOD + "set: {train.epochs: 2}\n")
    ab = load_ablation(path)
    specs = ab.specs(overrides=TINY[1:])  # TINY without train.epochs: the ablation's base sets it
    assert [(s.protocol.method["fusion"], s.protocol.train.epochs, s.seed) for s in specs] == [
        ("concat", 2, 0),
        ("mean", 2, 0),
    ]  # synthetic's protocol has seeds [0]
    assert specs[1].tags == {
        "ablation": "fuse",
        "axis": "method.fusion",
        "value": "mean",
        "axis_default": "concat",
    }
    # --values: existing labels and new plain values; --seeds and --set pass through
    specs = ab.specs(values=["max", "attention"], seeds=[3, 4], overrides=["optim.lr=0.01"])
    assert [(s.tags["value"], s.seed, s.protocol.optim.lr) for s in specs] == [
        ("max", 3, 0.01),
        ("max", 4, 0.01),
        ("attention", 3, 0.01),
        ("attention", 4, 0.01),
    ]
    with pytest.raises(UserError, match="--set method.fusion=... conflicts with ablation 'fuse'"):
        ab.specs(overrides=["method.fusion=max"])
    with pytest.raises(
        UserError,
        match=r"ablation 'fuse' \(.*fuse.yaml\), value 'sum' on 'synthetic': "
        r"method.fusion: expected one of",
    ):
        ab.specs(values=["sum"])
    with pytest.raises(UserError, match="unknown dataset 'nope'"):
        ab.specs(datasets=["nope"])


def test_list_valued_and_multi_key_points(tmp_path):
    mods = find_ablation("late_fusion_modalities")
    chosen = mods.select(["rgb+nir", "tir+rgb"])  # a label, and a new subset
    assert [(p.label, p.overrides) for p in chosen] == [
        ("rgb+nir", {"data.modalities": ["rgb", "nir"]}),
        ("tir+rgb", {"data.modalities": ["tir", "rgb"]}),
    ]
    spec = mods.specs(values=["nir+tir"], overrides=TINY)[0]
    assert spec.protocol.data.modalities == ["nir", "tir"] and spec.tags["axis_default"] == "rgb+nir+tir"
    loss = find_ablation("loss")
    assert [p.label for p in loss.select(["ce", "ce+aug_triplet+center"])] == ["ce", "ce+aug_triplet+center"]
    with pytest.raises(UserError, match=r"'three' is not one of its points"):
        find_ablation("stages").select(["three"])  # points defined by their settings: no new ones
    with pytest.raises(UserError, match="unknown ablation 'fusion_token'. Did you mean 'fusion_tokens'"):
        find_ablation("fusion_token")


def test_grid_is_methods_x_datasets_x_seeds():
    specs = grid(["late_fusion"], ["synthetic"], None, TINY)
    assert [s.name for s in specs] == ["late_fusion@synthetic#s0"]  # the synthetic protocol's seeds
    specs = grid(["late_fusion"], ["synthetic", "rgbnt100"], [0, 1], TINY)
    assert [s.name for s in specs] == [
        "late_fusion@synthetic#s0",
        "late_fusion@synthetic#s1",
        "late_fusion@rgbnt100#s0",
        "late_fusion@rgbnt100#s1",
    ]


def test_gpu_lists_and_executor_choice(tmp_path):
    assert executors.parse_gpus("0-3,6") == ["0", "1", "2", "3", "6"]
    for bad in ("0-", "3-1", "a", "0,0"):
        with pytest.raises(UserError, match="--gpus"):
            executors.parse_gpus(bad)
    assert isinstance(executors.build("cpu", tmp_path), executors.InProcess)
    pool = executors.build("cuda", tmp_path, gpus="0-7", gpus_per_run=2)
    assert pool.slots == [["0", "1"], ["2", "3"], ["4", "5"], ["6", "7"]]
    assert executors.build("cpu", tmp_path, gpus_per_run=2).slots == [None]  # one DDP run at a time
    with pytest.raises(UserError, match="not a multiple of --gpus-per-run 2"):
        executors.build("cuda", tmp_path, gpus="0-2", gpus_per_run=2)
    slurm = executors.build(
        "cuda",
        tmp_path,
        launcher="slurm",
        partition="gpu",
        timeout_min=90,
        gpus_per_run=4,
        slurm_set=["slurm_account=abc", "mem_gb=64"],
    )
    assert (slurm.partition, slurm.timeout_min, slurm.gpus_per_run, slurm.params) == (
        "gpu",
        90,
        4,
        {"slurm_account": "abc", "mem_gb": 64},
    )
    with pytest.raises(UserError, match="on Slurm use --gpus-per-run"):
        executors.build("cuda", tmp_path, gpus="0", launcher="slurm")
    with pytest.raises(UserError, match="only apply with --launcher slurm"):
        executors.build("cuda", tmp_path, partition="gpu")


def test_search_space_files(tmp_path):
    assert [p.key for p in load_space(None)] == list(DEFAULT_SPACE)
    path = tmp_path / "space.yaml"
    path.write_text(
        "optim.lr: {type: loguniform, low: 1.0e-5, high: 1.0e-3}\n"
        "sampler.k: {type: int, low: 2, high: 8, step: 2}\n"
        "loss.variant: {type: categorical, choices: [ce, ce+triplet]}\n"
    )
    lr, k, variant = load_space(path)
    assert (lr.kind, lr.low, lr.high, k.step, variant.choices) == (
        "loguniform",
        1e-5,
        1e-3,
        2,
        ("ce", "ce+triplet"),
    )
    cases = [
        ({"optim.lr": {"type": "normal"}}, "key 'optim.lr': expected a mapping with type one of loguniform"),
        ({"optim.lr": {"type": "loguniform", "low": 0, "high": 1}}, "expected 0 < low < high"),
        ({"optim.lr": {"type": "uniform", "low": 1}}, "(missing high)"),
        ({"optim.lr": {"type": "uniform", "low": 1, "high": 2, "lo": 3}}, "(unknown lo)"),
        ({"a.b": {"type": "categorical", "choices": []}}, "choices must be a non-empty list"),
        ([1, 2], "expected a mapping of dotted protocol keys"),
    ]
    for data, expected in cases:
        with pytest.raises(UserError) as info:
            parse_space(data, "space.yaml")
        assert "space.yaml" in str(info.value) and expected in str(info.value)


def test_validation_split_is_deterministic_and_never_uses_the_test_set(synthetic_dataset):
    ds = synthetic_dataset
    val = validation_split(ds, 0.2)
    again = validation_split(ds, 0.2)
    assert [s.name for s in val.splits.query] == [s.name for s in again.splits.query]
    train_ids = {s.pid for s in ds.splits.train}
    val_ids = {s.pid for s in val.splits.query}
    assert len(val_ids) == round(0.2 * len(train_ids))
    assert {s.pid for s in val.splits.gallery} == val_ids
    assert not val_ids & {s.pid for s in val.splits.train}
    assert {s.pid for s in val.splits.train} | val_ids == train_ids
    assert val.info.num_train_ids == len(train_ids) - len(val_ids) and val.info.name == "synthetic:val"
    # every validation image comes from the training split, each exactly once
    names = [s.name for s in val.splits.train + val.splits.query + val.splits.gallery]
    assert sorted(names) == sorted(s.name for s in ds.splits.train)
    # one query per identity and camera, each with a gallery positive from another camera
    pairs = [(s.pid, s.camid) for s in val.splits.query]
    assert (
        len(pairs)
        == len(set(pairs))
        == len({(s.pid, s.camid) for s in val.splits.query + val.splits.gallery})
    )
    for pid, cam in pairs:
        assert any(g.pid == pid and g.camid != cam for g in val.splits.gallery)
    assert {s.pid for s in validation_split(ds, 0.2, seed=1).splits.query} != val_ids
    with pytest.raises(UserError, match=r"validation fraction must be a number strictly between 0 and 1"):
        validation_split(ds, 1.5)


def test_validation_split_rejects_identities_without_a_second_camera(synthetic_dataset):
    from dataclasses import replace

    one_cam = [replace(s, camid=0) for s in synthetic_dataset.splits.train]
    ds = replace(synthetic_dataset, splits=replace(synthetic_dataset.splits, train=one_cam))
    with pytest.raises(UserError, match="needs 10 training identities seen by two or more cameras"):
        validation_split(ds, 0.2)


def test_ablations_dir_is_the_repo_folder():
    assert ablations_dir() == Path(__file__).resolve().parents[1] / "benchmarks" / "ablations"


def test_every_shipped_ablation_resolves_its_points():
    """Each file in benchmarks/ablations names keys the protocol and the method know (a typo there would
    only show when someone runs that ablation)."""
    from reidbench.registry import ABLATIONS
    from reidbench.sweeps.ablation import register_ablations

    register_ablations()
    for entry in ABLATIONS:
        ablation = entry.builder()
        specs = ablation.specs(None, [0], [], None, None)
        assert len(specs) == len(ablation.points) * len(ablation.datasets), ablation.name
