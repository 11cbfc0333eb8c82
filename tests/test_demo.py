"""DeMo: paper-size parameter count and descriptor (the official code's figures), the HDM's modality
subsets, the ATMoE's gating, the loss over every supervised pair, per-dataset settings; learning on the
synthetic data (slow)."""

from __future__ import annotations

import pytest
import torch

from reidbench.methods.demo import ATMoE, DeMo, demo_loss_terms, modality_subsets, supervised_pairs
from reidbench.methods.demo_config import DemoConfig
from reidbench.nn.backbones import build_image_backbone
from reidbench.protocol import BackboneCfg, LossCfg
from reidbench.spec import make_spec

MODS = ["rgb", "nir", "tir"]
TINY_CLIP = BackboneCfg(
    name="ViT-B-16",
    source="clip",
    pretrained=False,
    embed_dim=32,
    depth=1,
    num_heads=2,
    patch_size=8,
    proj_dim=32,
)


def tiny_demo(**knobs) -> DeMo:
    torch.manual_seed(0)
    return DeMo(build_image_backbone(TINY_CLIP, (32, 16), num_cameras=2), MODS, 5, DemoConfig(**knobs))


def batch(size: int = 4) -> dict:
    g = torch.Generator().manual_seed(1)
    out = {m: torch.randn(size, 3, 32, 16, generator=g) for m in MODS}
    out["camid"] = torch.arange(size) % 2
    return out


def test_paper_size_matches_the_official_count_and_descriptor():
    """RGBNT201 config (171 ids, 4 cameras, HEAD 4, DIRECT 1): the official model as built has 98,798,080
    parameters (sota-methods.md section 7) and a 5120-d test descriptor."""
    cfg = BackboneCfg(name="ViT-B-16", source="clip", pretrained=False)
    model = DeMo(
        build_image_backbone(cfg, (256, 128), num_cameras=4), MODS, 171, DemoConfig(heads=4, direct=True)
    )
    assert sum(p.numel() for p in model.parameters()) == 98_798_080
    assert model.embed_dim == 5120
    parts = {n: sum(p.numel() for p in m.parameters()) for n, m in model.named_children()}
    assert parts["hdm"] == 7_354_368 + 7 * 512 and parts["moe"] == 2_360_832 + 469_504


def test_reidbench_info_gives_the_official_counts():
    """`reidbench info demo --dataset rgbnt201`: total and test-time counts of the official model as built
    (98,798,080 / 97,912,320 with return pattern 3), the 5120-d descriptor. The test-time count includes the
    out_proj of every nn.MultiheadAttention (read by the attention, never called as a module)."""
    from reidbench.evaluation.model_info import model_info

    found = model_info("demo", "rgbnt201")
    assert (found.params, found.used_at_test, found.descriptor_dim) == (98_798_080, 97_912_320, 5120)


def test_modality_subsets_in_the_official_order():
    assert modality_subsets(3) == [(0,), (1,), (2,), (0, 1), (0, 2), (1, 2), (0, 1, 2)]
    assert modality_subsets(2) == [(0,), (1,), (0, 1)]


def test_each_hdm_query_reads_only_its_subsets_modalities():
    model = tiny_demo().eval()
    a, b = batch(), batch()
    b["tir"] = torch.randn_like(b["tir"])
    with torch.no_grad():
        feats = [model.hdm(model.encode(inputs)[1]) for inputs in (a, b)]
    unchanged = [i for i, s in enumerate(modality_subsets(3)) if 2 not in s]  # r, n, rn
    torch.testing.assert_close(feats[0][:, unchanged], feats[1][:, unchanged])
    assert not torch.allclose(feats[0][:, 2], feats[1][:, 2])


def test_atmoe_gates_are_a_softmax_per_head_and_weigh_expert_major_outputs():
    moe = ATMoE(16, 7, 4).eval()
    feats = torch.randn(3, 7, 16)
    with torch.no_grad():
        gates, out = moe.gates(feats), moe(feats)
    assert gates.shape == (3, 4, 7)
    torch.testing.assert_close(gates.sum(-1), torch.ones(3, 4))
    # expert e of head h: gate[h, e] * expert(chunk h of feature e), at columns e*16 + h*4 .. +4
    e, h = 5, 2
    with torch.no_grad():
        plain = gates[:, h, e, None] * moe.experts[h][e](feats[:, e, h * 4 : (h + 1) * 4])
    torch.testing.assert_close(out[:, e * 16 + h * 4 : e * 16 + (h + 1) * 4], plain)


@pytest.mark.parametrize(("direct", "pairs"), [(True, ["moe", "concat"]), (False, ["moe", *MODS])])
def test_the_loss_sums_every_supervised_pair(direct, pairs):
    from reidbench.train.losses import batch_hard_triplet

    model = tiny_demo(direct=direct).train()
    out = model(batch())
    assert supervised_pairs(out) == pairs and out.embedding.shape == (4, 3 * 32 + 7 * 32)
    labels = torch.tensor([0, 0, 1, 1])
    terms = demo_loss_terms(DemoConfig(), LossCfg(id_weight=0.25, triplet_margin=None))
    ce_fn, ce_weight = terms["ce"]
    tri_fn, _ = terms["triplet"]
    plain_ce = sum(torch.nn.functional.cross_entropy(out.extras[f"logits:{p}"], labels) for p in pairs)
    plain_tri = sum(batch_hard_triplet(out.extras[f"feat:{p}"], labels, None) for p in pairs)
    torch.testing.assert_close(ce_fn(out, labels, 0.0), plain_ce)
    torch.testing.assert_close(tri_fn(out, labels, 0.0), plain_tri)
    assert ce_weight == 0.25


def test_descriptor_choices_and_ablation_switches():
    assert tiny_demo(descriptor="moe").embed_dim == 7 * 32
    assert tiny_demo(descriptor="concat", hdm=False, atm=False).embed_dim == 3 * 32
    with pytest.raises(Exception, match="atm=true needs method.hdm=true"):
        tiny_demo(hdm=False)


def test_per_dataset_settings_and_clip_backbone_reach_the_spec():
    p201, p100 = make_spec("demo", "rgbnt201", 0).protocol, make_spec("demo", "rgbnt100", 0).protocol
    assert (p201.method["heads"], p201.method["direct"]) == (4, True)
    assert (p100.method["heads"], p100.method["direct"]) == (8, False)
    assert (p201.backbone.source, p201.backbone.name) == ("clip", "ViT-B-16")
    tiny = make_spec("demo", "synthetic", 0).protocol
    assert (tiny.backbone.embed_dim, tiny.backbone.proj_dim) == (64, 64)


@pytest.mark.slow
def test_demo_learns_on_synthetic_shared_track(synthetic_dataset, tmp_path):
    from tests.presets import assert_method_learns, write_vocab

    assert_method_learns("demo", synthetic_dataset, write_vocab(tmp_path / "vocab.txt"))


# Official learning rates at epochs t (RGBNT201 config: 50 epochs, warmup 10), computed by running the
# official solver/cosine_lr.py (CosineLRScheduler as solver/scheduler_factory.py builds it) on three groups:
# the CLIP tower (5e-6), a head weight (3.5e-4), a head bias (7e-4).
OFFICIAL_LRS = {
    1: (1.1251165390e-05, 2.3381328076e-05, 3.5687290221e-05),
    2: (3.0709405761e-05, 1.0377661257e-04, 1.7790276441e-04),
    5: (3.1513578892e-05, 3.0331819683e-04, 5.7906201214e-04),
    9: (1.0486001968e-05, 4.1747395337e-04, 8.3036028087e-04),
    10: (3.8928749131e-06, 2.7053076415e-04, 5.4103297062e-04),
    11: (3.6900883625e-06, 2.5601679575e-04, 5.1200041194e-04),
    25: (2.3547173586e-06, 1.5420097693e-04, 3.0824790693e-04),
    49: (3.7797334781e-07, 7.4081177667e-07, 1.1089087335e-06),
    50: (3.5e-07, 3.5e-07, 3.5e-07),
}


def test_official_recipe_groups_and_per_epoch_schedule_match_the_official_solver():
    from reidbench.train.engine import set_frozen
    from reidbench.train.optim import resolve_groups
    from reidbench.train.schedule import resolve_schedule

    spec = make_spec("demo", "rgbnt201", 0, recipe="official")
    stage = spec.protocol.resolved_stages()[0]
    model = tiny_demo(heads=4, direct=True)
    set_frozen(model, [])
    groups = {g.lr: g for g in resolve_groups(model, spec.protocol.optim, stage)}
    assert sorted(groups) == [5e-6, 3.5e-4, 7e-4] and {g.weight_decay for g in groups.values()} == {1e-4}
    assert all(n.startswith("backbone.visual.") for n in groups[5e-6].names)  # tower biases included
    assert "backbone.camera_embed" in groups[3.5e-4].names
    assert all("bias" in n for n in groups[7e-4].names) and "moe.gate_in.0.bias" in groups[7e-4].names
    assert not any(n.endswith("bn.bias") and "head" in n for g in groups.values() for n in g.names)
    schedule = resolve_schedule(spec.protocol.schedule, stage, steps_per_epoch=54)
    assert schedule.t(step=0, epoch=0) == 1 and schedule.t(step=53, epoch=0) == 1
    for t, want in OFFICIAL_LRS.items():
        got = tuple(schedule.lr(t, base, stage.lr) for base in (5e-6, 3.5e-4, 7e-4))
        assert got == pytest.approx(want, rel=1e-9), t


@pytest.mark.slow
def test_demo_learns_on_synthetic_official_track(synthetic_dataset, tmp_path):
    from reidbench.recipes import recipe_choice
    from tests.presets import assert_method_learns, write_vocab

    with recipe_choice("official"):
        assert_method_learns("demo", synthetic_dataset, write_vocab(tmp_path / "vocab.txt"))


def test_published_counterparts_are_in_results_published_csv():
    from reidbench.report.published import default_path, load_published

    by = {(g.method, g.dataset, g.backbone): g for g in load_published(default_path())}
    for dataset, (mAP, rank1) in {
        "rgbnt201": (79.0, 82.3),
        "rgbnt100": (86.2, 97.6),
        "msvr310": (49.2, 59.8),
    }.items():
        demo = by[("demo", dataset, "CLIP ViT-B/16")]
        assert (demo.cells["mAP"].mean, demo.cells["rank1"].mean) == pytest.approx((mAP / 100, rank1 / 100))
        assert demo.cells["params"].mean == pytest.approx(98.8e6)
    assert by[("PromptSG", "msvr310", "CLIP ViT-B/16")].cells["mAP"].mean == pytest.approx(0.602)
    assert by[("CLIP-ReID (ICPL repro)", "rgbnt100", "CLIP ViT-B/16")].cells["mAP"].mean == pytest.approx(
        0.870
    )


def test_demo_declares_the_zero_convention_for_a_missing_modality():
    from reidbench.evaluation.missing import declared_conventions

    assert declared_conventions("demo") == ("zero",)
