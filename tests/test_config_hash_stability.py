"""Config hashes of representative points (tests/data/config_hashes.json): a stored run is recognised by its
hash, so a change that moves one of them would retrain every finished point of every store.

Recorded by the code at commit ec80a08 (before the run-path refactor). The recipe tracks (issue 13) moved
GraFT's and MMET's entries on purpose, and only theirs: their default is now the shared recipe (GraFT: one
stage, CE + batch-hard triplet; MMET: unmasked fine-tuning), a different training, re-recorded then. Every
baseline entry is the 2026 original. The recipe machinery (issue 23) added optimiser / schedule / stage /
MMET keys that stay out of the hash at their defaults, so no entry moved; the official tracks' configs
(not recorded here) changed with their corrected recipes."""

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
    out["graft@synthetic:s1:lr"] = make_spec(
        "graft", "synthetic", 1, ["optim.lr=1e-4", "train.epochs=3"]
    ).config_hash
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


@pytest.mark.slow
def test_a_store_written_before_the_refactor_keeps_its_finished_points_skipped(
    monkeypatch, capsys, mlflow_uri
):
    """A FINISHED run as the pre-refactor code stored it (tagged with the recorded hash) is skipped by
    today's ``reidbench run``, and the run path is never entered."""
    from reidbench import runner, tracking
    from tests.test_cli import run_cli

    exp_id = tracking.prepare(mlflow_uri, "reidbench")
    tags = {"run_kind": "run", "method": "late_fusion", "dataset": "synthetic", "seed": "0"}
    run = tracking.Run(
        mlflow_uri,
        exp_id,
        "late_fusion@synthetic#s0",
        {**tags, "config_hash": RECORDED["late_fusion@synthetic"]},
    )
    run.log_metrics({"mAP": 0.646, "rank1": 0.615})
    run.finish()

    def must_not_train(*args, **kwargs):
        raise AssertionError("a finished point was trained again")

    monkeypatch.setattr(runner, "_fit_and_evaluate", must_not_train)
    args = ["run", "-m", "late_fusion", "-d", "synthetic", "--seeds", "0", "--tracking-uri", mlflow_uri, "-q"]
    code, out = run_cli(monkeypatch, capsys, *args)
    assert code == 0, out
    assert "1 point(s): 1 finished (skipped), 0 reused from other sweeps, 0 to train" in out
    assert "64.6" in out  # the stored run's metrics are the result
