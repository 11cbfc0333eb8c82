"""Recipe tracks: shared (the protocol's recipe, the method's architecture) and official (the published
recipe); their hashes, the refusal of a frozen random backbone, frozen modules in eval mode."""

from __future__ import annotations

import pytest
import torch

from reidbench.errors import UserError
from reidbench.fidelity import method_deviations as deviations
from reidbench.recipes import recipe_choice
from reidbench.spec import make_spec
from tests.conftest import TINY

OK_FROZEN = "train.allow_random_frozen=true"


def test_the_two_tracks_give_different_configs_and_hashes():
    shared = make_spec("graft", "rgbnt100", 0)
    official = make_spec("graft", "rgbnt100", 0, recipe="official")
    assert shared.config_hash != official.config_hash
    assert shared.recipe == "shared" and official.recipe == "official"
    assert "recipe" not in shared.config() and official.config()["recipe"] == "official"
    # shared: the protocol's recipe; official: GraFT's two stages and augmented triplet
    assert shared.protocol.train.stages == [] and shared.protocol.loss.variant == "ce+triplet"
    assert [s.name for s in official.protocol.train.stages] == ["frozen", "unfrozen"]
    assert official.protocol.loss.variant == "ce+aug_triplet+center"
    assert official.protocol.data.augment.flip == 0.0


def test_the_recipe_chosen_for_a_command_reaches_every_spec():
    with recipe_choice("official"):
        assert make_spec("mmet", "rgbnt201", 0).recipe == "official"
    assert make_spec("mmet", "rgbnt201", 0).recipe == "shared"


def test_mmet_official_uses_its_fine_tuning_optimizer_and_both_tracks_train_unmasked():
    shared = make_spec("mmet", "rgbnt201", 0)
    official = make_spec("mmet", "rgbnt201", 0, recipe="official")
    opt = official.protocol.optim
    assert (opt.lr, opt.weight_decay, opt.betas, opt.eps) == (1e-5, 0.1, [0.9, 0.98], 1e-6)
    assert shared.protocol.optim.lr == make_spec("late_fusion", "rgbnt201", 0).protocol.optim.lr
    for spec in (shared, official):
        knobs = spec.protocol.method
        assert knobs["image_mask_ratio"] == knobs["text_mask_prob"] == 0.0
        assert "mlm" not in spec.protocol.loss.variant and "mpr" not in spec.protocol.loss.variant


def test_a_baseline_has_no_official_track():
    with pytest.raises(UserError, match="no published recipe.*graft, mmet"):
        make_spec("late_fusion", "synthetic", 0, recipe="official")
    with pytest.raises(UserError, match="expected one of shared, official"):
        make_spec("graft", "synthetic", 0, recipe="paper")


def test_official_deviations_are_listed():
    assert any("224x224" in line for line in deviations("graft"))
    assert any("pretraining" in line for line in deviations("mmet"))


def test_freezing_a_random_backbone_is_refused_unless_allowed():
    with pytest.raises(UserError, match="freezes 'backbone'.*randomly initialised.*allow_random_frozen"):
        make_spec("graft", "synthetic", 0, recipe="official")
    spec = make_spec("graft", "synthetic", 0, [OK_FROZEN], recipe="official")
    assert spec.protocol.train.allow_random_frozen
    # a pretrained backbone may be frozen
    make_spec("graft", "rgbnt100", 0, recipe="official")


def test_the_permission_flag_at_its_default_keeps_old_hashes():
    from reidbench.spec import hash_config

    config = make_spec("late_fusion", "synthetic", 0).config()
    without = {**config, "protocol": {**config["protocol"], "train": dict(config["protocol"]["train"])}}
    del without["protocol"]["train"]["allow_random_frozen"]
    assert hash_config(without) == hash_config(config)


def test_frozen_modules_run_in_eval_mode_during_training(synthetic_dataset):
    from reidbench.train import engine
    from reidbench.train.state import TrainState
    from tests.presets import build_criterion, build_model, make_datamodule, tiny_method

    overrides = [
        *TINY,
        "backbone.drop_path=0.1",
        OK_FROZEN,
        "train.stages=[{name: frozen, freeze: [backbone]}]",
    ]
    spec = make_spec("graft", "synthetic", 0, [*overrides, *tiny_method("graft", None)])
    data = make_datamodule(spec, synthetic_dataset)
    model = build_model(spec, synthetic_dataset, data)
    criterion = build_criterion(spec, data, model)
    seen = {"backbone": set(), "encoders": set()}
    model.backbone.register_forward_pre_hook(lambda m, _: seen["backbone"].add(m.training))
    model.encoders.register_forward_pre_hook(lambda m, _: seen["encoders"].add(m.training))
    for name in ("rgb", "nir", "tir"):
        model.encoders[name].register_forward_pre_hook(lambda m, _: seen["encoders"].add(m.training))
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    engine.fit(model, criterion, data, spec.protocol, torch.device("cpu"), TrainState(spec.config_hash))
    assert seen["backbone"] == {False}  # no drop path, no dropout in the frozen backbone
    assert seen["encoders"] == {True}
    assert all(torch.equal(before[k], v) for k, v in model.backbone.state_dict().items())


def test_loss_terms_are_logged_raw_and_the_optimised_loss_is_their_weighted_sum(synthetic_dataset):
    import torch.nn.functional as F

    from reidbench.train.losses import batch_hard_triplet
    from tests.presets import build_criterion, build_model, make_datamodule

    spec = make_spec("late_fusion", "synthetic", 0, [*TINY, "loss.id_weight=0.25", "loss.triplet_weight=2.0"])
    data = make_datamodule(spec, synthetic_dataset)
    model = build_model(spec, synthetic_dataset, data)
    batch = next(data.train_batches(0))
    out = model(batch)
    losses = build_criterion(spec, data, model)(out, batch["pid"], "ce+triplet", 0.1)
    ce = F.cross_entropy(out.logits, batch["pid"], label_smoothing=0.1)
    triplet = batch_hard_triplet(out.embedding, batch["pid"], spec.protocol.loss.triplet_margin)
    assert torch.allclose(losses["ce"], ce) and torch.allclose(losses["triplet"], triplet)
    assert torch.allclose(losses["loss"], 0.25 * ce + 2.0 * triplet)
