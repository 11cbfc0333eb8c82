"""Weights files and the zoo catalogue without training: round trip, aliases, strict loading except the
classifier, the config hash guard, catalogue errors and the recipe default."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from reidbench.errors import UserError
from reidbench.spec import hash_config, make_spec
from reidbench.train import weights
from reidbench.zoo import catalog, evaluate

CONFIG = make_spec("late_fusion", "synthetic", 0).config()


class Toy(nn.Module):
    def __init__(self, classes: int, width: int = 4) -> None:
        super().__init__()
        self.backbone = nn.Linear(3, width)
        self.shared = self.backbone  # the same module under a second name (a shared backbone)
        self.head = nn.Module()
        self.head.bn = nn.BatchNorm1d(width)
        self.head.classifier = nn.Linear(width, classes, bias=False)


def test_round_trip_keeps_every_tensor_config_and_aliases(tmp_path):
    torch.manual_seed(0)
    model = Toy(5)
    model.head.bn.running_mean += 1.5  # buffers travel too
    saved = weights.save_weights(tmp_path / "m.safetensors", model.state_dict(), CONFIG, {"extra": "x"})
    assert saved.sha256 == weights.sha256_file(saved.path) and saved.nbytes == saved.path.stat().st_size
    loaded = weights.read_weights(saved.path)
    state = model.state_dict()
    assert set(loaded.state) == set(state)
    assert all(torch.equal(loaded.state[k], v) for k, v in state.items())
    assert loaded.config == CONFIG and loaded.config_hash == hash_config(CONFIG)
    assert loaded.meta["extra"] == "x" and loaded.method == "late_fusion"
    lone = Toy(5)
    lone.shared = nn.Linear(3, 4)  # same names, separate tensors: twice the backbone bytes
    bigger = weights.save_weights(tmp_path / "lone.safetensors", lone.state_dict(), CONFIG)
    assert bigger.nbytes - saved.nbytes >= (3 * 4 + 4) * 4


def test_hash_config_is_the_run_specs_hash():
    spec = make_spec("graft", "synthetic", 1, ["train.epochs=2"])
    assert hash_config(spec.config()) == spec.config_hash


def test_loading_is_strict_except_a_classifier_of_another_size(tmp_path):
    source = Toy(5).state_dict()
    same = Toy(5)
    assert weights.load_weights_into(same, source, "f").dropped == ()
    assert torch.equal(same.head.classifier.weight, source["head.classifier.weight"])
    other = Toy(3)
    before = other.head.classifier.weight.clone()
    report = weights.load_weights_into(other, source, "f")
    assert report.dropped == ("head.classifier.weight",) and "ID classifier dropped" in report.message
    assert torch.equal(other.head.classifier.weight, before)
    assert torch.equal(other.backbone.weight, source["backbone.weight"])
    with pytest.raises(UserError, match=r"shape \(file vs model\): backbone.weight"):
        weights.load_weights_into(Toy(5, width=6), Toy(5).state_dict(), "f")
    missing = {k: v for k, v in source.items() if k != "head.bn.running_var"}
    with pytest.raises(UserError, match="missing: head.bn.running_var"):
        weights.load_weights_into(Toy(5), missing, "f")
    with pytest.raises(UserError, match="unexpected: extra.weight"):
        weights.load_weights_into(Toy(5), {**source, "extra.weight": torch.zeros(1)}, "f")


def test_a_file_without_a_reidbench_header_or_not_safetensors_is_refused(tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(UserError, match="without a reidbench config"):
        weights.read_weights(tmp_path / "plain.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 32)
    with pytest.raises(UserError, match="not a readable safetensors file"):
        weights.read_weights(tmp_path / "junk.safetensors")


def test_weights_and_a_config_of_another_method_are_refused(tmp_path):
    saved = weights.save_weights(tmp_path / "m.safetensors", Toy(5).state_dict(), CONFIG)
    other = make_spec("graft", "synthetic", 0).config()
    with pytest.raises(UserError, match="different method or config"):
        weights.check_config(weights.read_weights(saved.path), other, "config.yaml")
    weights.check_config(weights.read_weights(saved.path), CONFIG, "config.yaml")  # the same: fine


def test_zoo_file_errors_and_suggestions(tmp_path):
    entry = catalog.ZooEntry("graft@synthetic", "graft", "synthetic", "shared", "abc", "0" * 64, "zoo/g")
    path = tmp_path / "zoo.yaml"
    catalog.write_zoo(path, [entry])
    assert catalog.read_zoo(path) == [entry]
    with pytest.raises(UserError, match="did you mean graft@synthetic"):
        catalog.find_entry([entry], "graft@synth", path)
    with pytest.raises(UserError, match="known: graft@synthetic"):
        catalog.find_entry([entry], "zzz", path)
    path.write_text("models:\n  - {name: x, method: graft, colour: red}\n")
    with pytest.raises(
        UserError, match="'x' lacks dataset, config_hash, sha256, source; has unknown keys colour"
    ):
        catalog.read_zoo(path)
    assert catalog.zoo_name("graft", "rgbnt201", "official") == "graft@rgbnt201.official"


def test_the_zoo_table_shows_mean_and_std_over_seeds():
    entry = catalog.ZooEntry(
        "graft@synthetic",
        "graft",
        "synthetic",
        "shared",
        "abc",
        "0" * 64,
        "zoo/g",
        metrics={"rank1": {"mean": 0.5, "std": 0.02, "n": 3}, "mAP": {"mean": 0.25, "std": None, "n": 1}},
        params=1.5e6,
        gflops=0.0123,
    )
    assert catalog.table_rows([entry]) == [
        [
            "graft@synthetic",
            "graft",
            "synthetic",
            "shared",
            "50.0 ± 2.0",
            "25.0",
            "–",
            "1.50",
            "0.0123",
            "zoo/g",
        ]
    ]


def test_recipe_comes_from_tags_or_config_else_shared():
    assert evaluate.recipe_of(CONFIG) == "shared"
    assert evaluate.recipe_of({**CONFIG, "recipe": "official"}) == "official"
    assert evaluate.recipe_of(CONFIG, {"recipe": "official"}) == "official"
