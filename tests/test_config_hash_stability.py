"""Config hashes of representative points, recorded before the run-path refactor (tests/data/
config_hashes.json, written by the code at commit ec80a08): a stored run is recognised by its hash, so a
change that moves one of them would retrain every finished point of every store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reidbench.spec import make_spec
from reidbench.sweeps.ablation import find_ablation

RECORDED: dict[str, str] = json.loads((Path(__file__).parent / "data" / "config_hashes.json").read_text())
METHODS = ["late_fusion", "graft", "early_fusion", "single_modality", "mmet", "multi_stream_vit"]
DATASETS = ["synthetic", "rgbnt100", "rgbnt201", "msvr310", "rgbn300", "market1501_mm"]


def current_hashes() -> dict[str, str]:
    """The same points as the recording script, hashed by today's code."""
    out = {f"{m}@{d}": make_spec(m, d, 0).config_hash for m in METHODS for d in DATASETS}
    out["graft@synthetic:s1:lr"] = make_spec("graft", "synthetic", 1, ["optim.lr=1e-4", "train.epochs=3"]).config_hash
    out["late_fusion@synthetic:val"] = make_spec(
        "late_fusion", "synthetic", 0, ["train.epochs=2"], validation=0.2
    ).config_hash
    for name in ["fusion_tokens", "loss", "modalities"]:
        for spec in find_ablation(name).specs(["synthetic"], [0], [], None, None):
            out[f"ablate:{name}:{spec.tags.get('value')}"] = spec.config_hash
    return out


def test_every_recorded_hash_is_unchanged():
    current = current_hashes()
    assert set(current) == set(RECORDED)
    changed = {k: (RECORDED[k], current[k]) for k in RECORDED if RECORDED[k] != current[k]}
    assert not changed


def test_the_hash_still_sees_every_setting():
    base = make_spec("graft", "synthetic", 0)
    assert base.config_hash != make_spec("graft", "synthetic", 0, ["train.epochs=13"]).config_hash
    assert base.config_hash != make_spec("graft", "synthetic", 1).config_hash


@pytest.mark.parametrize("retired", ["train.eval_every=0"])
def test_a_retired_setting_is_an_unknown_key(retired):
    from reidbench.errors import UserError

    with pytest.raises(UserError, match="unknown key"):
        make_spec("graft", "synthetic", 0, [retired])
