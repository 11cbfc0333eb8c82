"""TOP-ReID: its parts against plainly written references, its loss pairs, its official recipe (optimiser
groups and the timm cosine schedule as the official code steps it), and learning on synthetic data."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from reidbench.methods.top_reid import CLSCrossAttention, TokenPermutation, top_reid_loss_terms
from reidbench.methods.top_reid_config import TopReIDConfig
from reidbench.protocol import LossCfg
from reidbench.spec import make_spec
from reidbench.train.losses import batch_hard_triplet
from reidbench.train.optim import resolve_groups
from reidbench.train.schedule import resolve_schedule
from tests.presets import assert_method_learns, build_criterion, build_model, make_datamodule

SMALL = ["sampler.p=2", "sampler.k=2"]


def test_cls_cross_attention_is_one_query_over_normalised_keys():
    torch.manual_seed(0)
    attn = CLSCrossAttention(8, 2).eval()
    cls, tokens = torch.randn(3, 8), torch.randn(3, 5, 8)
    q = attn.q(cls).view(3, 2, 1, 4)
    k = attn.k(F.layer_norm(tokens, (8,))).view(3, 5, 2, 4).transpose(1, 2)  # LN on the keys only
    v = attn.v(tokens).view(3, 5, 2, 4).transpose(1, 2)
    weights = (q @ k.transpose(-2, -1) / math.sqrt(4)).softmax(-1)
    expected = attn.proj((weights @ v).reshape(3, 8))
    torch.testing.assert_close(attn(cls, tokens), expected)


def test_tpm_rotates_which_patches_each_cls_reads():
    """Block 1: RGB<-NIR, NIR<-TIR, TIR<-RGB; block 2: RGB<-TIR, NIR<-RGB, TIR<-NIR; block 3: own."""
    torch.manual_seed(0)
    tpm = TokenPermutation(8, 2).eval()
    x, y, z = (torch.randn(2, 5, 8) for _ in range(3))
    b1, b2, b3 = tpm.blocks
    r, n, t = x[:, 0], y[:, 0], z[:, 0]
    r, n, t = b1(r, y[:, 1:]), b1(n, z[:, 1:]), b1(t, x[:, 1:])
    r, n, t = b2(r, z[:, 1:]), b2(n, x[:, 1:]), b2(t, y[:, 1:])
    r, n, t = b3(r, x[:, 1:]), b3(n, y[:, 1:]), b3(t, z[:, 1:])
    torch.testing.assert_close(tpm([x, y, z]), torch.cat([r, n, t], dim=-1))


@pytest.mark.parametrize("direct", [False, True])
def test_loss_sums_the_tpm_pair_the_side_pairs_and_the_crm(direct, synthetic_dataset):
    spec = make_spec("top_reid", "synthetic", 0, [*SMALL, f"method.direct={str(direct).lower()}"])
    data = make_datamodule(spec, synthetic_dataset)
    torch.manual_seed(0)
    model = build_model(spec, synthetic_dataset, data)
    batch = next(data.train_batches(0))
    out = model(batch)
    pids, eps = batch["pid"], spec.protocol.loss.label_smoothing
    sides = ["concat"] if direct else ["rgb", "nir", "tir"]
    assert sorted(k.split(".", 1)[1] for k in out.extras if k.startswith("side_feat.")) == sorted(sides)
    losses = build_criterion(spec, data, model)(out, pids, spec.protocol.loss.variant, eps)
    margin = spec.protocol.loss.triplet_margin
    expected = F.cross_entropy(out.logits, pids, label_smoothing=eps) + batch_hard_triplet(
        out.embedding, pids, margin
    )
    for side in sides:
        expected = expected + F.cross_entropy(out.extras[f"side_logits.{side}"], pids, label_smoothing=eps)
        expected = expected + batch_hard_triplet(out.extras[f"side_feat.{side}"], pids, margin)
    expected = expected + out.extras["crm_loss"]
    torch.testing.assert_close(losses["loss"], expected)
    losses["loss"].backward()
    unused = "modality_heads" if direct else "concat_head"  # built as the official model builds both
    missing = [
        n
        for n, p in model.named_parameters()
        if p.requires_grad and p.grad is None and not n.startswith(unused)
    ]
    assert not missing
    model.eval()
    assert model(next(data.eval_batches("query", 2))).embedding.shape == (2, 3 * 64)


def test_crm_loss_is_the_six_reconstruction_mses():
    from reidbench.methods.top_reid import ComplementaryReconstruction

    torch.manual_seed(0)
    crm = ComplementaryReconstruction(["rgb", "nir", "tir"], 8, 2, 1)
    tokens = {m: torch.randn(2, 4, 8) for m in ("rgb", "nir", "tir")}
    expected = sum(F.mse_loss(crm.maps[s][t](tokens[s]), tokens[t]) for s in tokens for t in tokens if s != t)
    torch.testing.assert_close(crm.loss(tokens), expected)
    assert len([1 for s in crm.maps.values() for _ in s.values()]) == 6
    terms = top_reid_loss_terms(TopReIDConfig(crm_weight=0.5), LossCfg())
    assert terms["crm"][1] == 0.5


def test_official_recipe_as_the_shipped_logs_ran_it():
    spec = make_spec("top_reid", "rgbnt201", 0, recipe="official")
    p = spec.protocol
    assert p.method["direct"] is False and p.backbone.source == "transreid" and p.backbone.camera_coef == 3.0
    assert p.backbone.name == "vit_base_patch16_224.orig_in21k_ft_in1k"
    assert (p.optim.name, p.optim.lr, p.optim.momentum, p.optim.weight_decay) == ("sgd", 0.009, 0.9, 1e-4)
    assert (p.sampler.p, p.sampler.k, p.train.epochs, p.data.image_size) == (8, 16, 120, [256, 128])
    assert p.loss.triplet_margin is None and p.loss.label_smoothing == 0.1
    msvr = make_spec("top_reid", "msvr310", 0, recipe="official").protocol
    assert (msvr.optim.lr, msvr.train.epochs, msvr.schedule.warmup_epochs) == (0.001, 1000, 100)
    shared = make_spec("top_reid", "rgbnt201", 0).protocol
    assert shared.backbone.source == "transreid" and shared.optim.name == "adamw"  # the protocol's recipe


def timm_cosine(t: int, base: float, b0: float) -> float:
    """timm's CosineLRScheduler as TOP-ReID configures it (solver/scheduler_factory.py), written out:
    warmup_lr_init 0.01 x b0 and lr_min 0.001 x b0 shared by every group, warmup_t 10, t_initial 120."""
    start, floor = 0.01 * b0, 0.001 * b0
    if t < 10:
        return start + t * (base - start) / 10
    return floor + 0.5 * (base - floor) * (1 + math.cos(math.pi * t / 120))


def test_official_optimiser_groups_and_schedule_match_the_official_code(synthetic_dataset):
    spec = make_spec("top_reid", "rgbnt201", 0, ["backbone.pretrained=false"], recipe="official")
    tiny = make_spec("top_reid", "synthetic", 0, [*SMALL], recipe="official")
    data = make_datamodule(tiny, synthetic_dataset)
    model = build_model(tiny, synthetic_dataset, data)
    stage = spec.protocol.resolved_stages()[0]
    groups = resolve_groups(model, spec.protocol.optim, stage)
    by_lr = {g.lr: g for g in groups}
    assert set(by_lr) == {0.009, 0.018}  # bias x 2 (make_optimizer: "bias" in key)
    assert all(g.weight_decay == 1e-4 for g in groups)  # every tensor decays (WEIGHT_DECAY_BIAS = 1e-4)
    assert all("bias" in n for n in by_lr[0.018].names)
    assert not any("bias" in n for n in by_lr[0.009].names)
    assert "tpm_head.bn.bias" not in by_lr[0.018].names  # frozen BNNeck biases are not optimised
    schedule = resolve_schedule(spec.protocol.schedule, stage, steps_per_epoch=23)
    for epoch in range(120):  # scheduler.step(epoch) with epoch = 1 .. 120 before each epoch
        t = schedule.t(step=epoch * 23 + 5, epoch=epoch)
        assert t == epoch + 1
        for base in (0.009, 0.018):
            assert schedule.lr(t, base, 0.009) == pytest.approx(timm_cosine(t, base, 0.009), rel=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["shared", "official"])
def test_top_reid_learns_on_synthetic(recipe, synthetic_dataset, tmp_path):
    from tests.presets import write_vocab

    # the official SGD recipe needs the synthetic protocol's full 12 epochs (6 reach ~3x chance only)
    epochs = 12 if recipe == "official" else 6
    assert_method_learns("top_reid", synthetic_dataset, write_vocab(tmp_path / "v.txt"), epochs, recipe)
