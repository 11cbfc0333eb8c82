"""Every registered method: builds tiny, runs forward + backward with 2 and 3 modalities (every trainable
parameter gets a gradient), shows up in ``reidbench list methods``; paper-size parameter counts."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from click.testing import CliRunner

from reidbench.data.module import DataModule
from reidbench.data.types import DatasetInfo
from reidbench.errors import UserError
from reidbench.methods.graft import graft_model
from reidbench.methods.mmet_config import MMETConfig
from reidbench.nn import build_image_backbone
from reidbench.nn.factory import BuildInfo, create_method
from reidbench.protocol import build_protocol
from reidbench.registry import METHODS, load_plugins
from reidbench.spec import make_spec
from reidbench.train.losses import Criterion
from tests.presets import (
    build_criterion,
    build_model,
    caption_tokenizer,
    evaluate_data,
    make_datamodule,
    tiny_method,
    write_vocab,
)

ALL = ["early_fusion", "graft", "late_fusion", "mmet", "multi_stream_vit", "single_modality"]
SMALL = ["sampler.p=3", "sampler.k=2"]


@pytest.fixture(scope="module")
def vocab(tmp_path_factory):
    return write_vocab(tmp_path_factory.mktemp("vocab") / "vocab.txt")


@pytest.fixture(scope="module")
def datamodules(synthetic_dataset, vocab):
    """Tiny DataModules with 2 and 3 modalities (captions attached, tokenized)."""
    out = {}
    for mods in (["rgb", "nir"], ["rgb", "nir", "tir"]):
        protocol = build_protocol("synthetic", [*SMALL, f"data.modalities={mods}", "data.text=true"])
        out[len(mods)] = DataModule(
            synthetic_dataset,
            protocol,
            torch.device("cpu"),
            show_progress=False,
            tokenizer=caption_tokenizer(vocab),
        )
    return out


def build(method, synthetic_dataset, data, vocab, *overrides):
    """(spec, model) of ``method`` (tiny) for the DataModule ``data``."""
    mods = f"data.modalities=[{','.join(data.modalities)}]"
    spec = make_spec(method, "synthetic", 0, [*SMALL, mods, *tiny_method(method, vocab), *overrides])
    return spec, build_model(spec, synthetic_dataset, data)


def tiny_backbone(protocol):
    """The synthetic protocol's tiny ViT."""
    return build_image_backbone(protocol.backbone, protocol.data.image_size)


def test_all_methods_are_registered():
    load_plugins()
    assert set(ALL) <= set(METHODS.names())


@pytest.mark.slow
@pytest.mark.parametrize("num_modalities", [2, 3])
@pytest.mark.parametrize("method", ALL)
def test_forward_backward_reaches_every_parameter(
    method, num_modalities, datamodules, synthetic_dataset, vocab
):
    data = datamodules[num_modalities]
    # MMET's reconstruction heads get gradients only with masking on (the defaults pass inputs unmasked)
    masking = ["method.image_mask_ratio=0.3827", "method.text_mask_prob=0.15"]
    extra = ["loss.variant=ce+triplet+mlm+mpr", *masking] if method == "mmet" else []
    spec, model = build(method, synthetic_dataset, data, vocab, *extra)
    batch = next(data.train_batches(0))
    out = model(batch)
    n = len(batch["pid"])
    assert out.logits.shape == (n, data.num_classes) and out.embedding.shape == (n, model.embed_dim)
    criterion = build_criterion(spec, data, model)
    total = 0.0
    for (
        stage
    ) in spec.protocol.resolved_stages():  # every stage's variant, e.g. GraFT's ce+aug_triplet(+center)
        losses = criterion(out, batch["pid"], stage.loss, stage.label_smoothing)
        assert torch.isfinite(losses["loss"]) and losses["loss"] > 0
        total = total + losses["loss"]
    total.backward()
    missing = [
        name
        for name, p in model.named_parameters()
        if p.requires_grad and (p.grad is None or not p.grad.any())
    ]
    assert not missing, f"{method}: parameters without gradient: {missing}"
    model.eval()
    with torch.no_grad():
        evaluated = model(next(data.eval_batches("query", 4)))
    assert evaluated.embedding.shape == (4, out.embedding.shape[1])


def test_list_methods_shows_descriptions_and_knobs():
    from cli import cli

    result = CliRunner().invoke(cli, ["list", "methods"], terminal_width=250)
    assert result.exit_code == 0, result.output
    for name in ALL:
        assert name in result.output
    for knob in (
        "fusion_tokens=1",
        "depth=1",
        "fusion='concat'",
        "modality='rgb'",
        "readout='mean'",
        "image_mask_ratio=",
        "text_mask_prob=0.15",
        "triplet_mining='random'",
    ):
        assert knob in result.output, knob


def _count(model: torch.nn.Module) -> float:
    return sum(p.numel() for p in model.parameters()) / 1e6


@pytest.mark.parametrize(
    "modalities,classes,expected", [(["rgb", "nir", "tir"], 50, 103.0), (["rgb", "nir"], 150, 97.5)]
)
def test_graft_parameter_count_at_deit_base(modalities, classes, expected):
    # 224x224 DeiT-B/16 distilled, one fusion layer per modality (README: 101M / 97M; code: 103.0M / 97.5M)
    protocol = build_protocol(
        "rgbnt100",
        [
            "backbone.name=deit_base_distilled_patch16_224",
            "backbone.pretrained=false",
            "data.image_size=[224,224]",
        ],
    )
    with torch.device("meta"):
        model = graft_model(tiny_backbone(protocol), modalities, classes)
    assert abs(_count(model) - expected) / expected < 0.02, _count(model)


def test_mmet_parameter_count_at_base_size(tmp_path):
    vocab = write_vocab(tmp_path / "vocab.txt", size=30522)  # bert-base-uncased's 30522 tokens
    protocol = build_protocol(
        "rgbnt100",
        ["backbone.pretrained=false", "data.image_size=[224,224]", "data.modalities=[rgb]", "data.text=true"],
    )
    cfg = MMETConfig(text_pretrained=False, tokenizer=str(vocab))
    info = BuildInfo.from_protocol(
        protocol, DatasetInfo("rgbnt100", ["rgb"], 1039, has_text=True), 1039, caption_tokenizer(vocab)
    )
    with torch.device("meta"):
        model = create_method("mmet", cfg, info)
    assert model.text_encoder.bert.config.vocab_size == 30522
    assert abs(_count(model) - 241.0) / 241.0 < 0.03, _count(model)


def test_graft_official_recipe_makes_two_stages_within_the_epoch_budget():
    overrides = ["train.epochs=10", "optim.lr=1e-3", "train.allow_random_frozen=true"]
    spec = make_spec("graft", "synthetic", 0, overrides, recipe="official")
    first, second = spec.protocol.resolved_stages()
    assert (first.name, first.epochs, first.freeze, first.label_smoothing, first.loss) == (
        "frozen",
        4,
        ["backbone"],
        0.0,
        "ce+aug_triplet",
    )
    assert (second.epochs, second.freeze, second.label_smoothing, second.loss, second.schedule) == (
        6,
        [],
        0.1,
        "ce+aug_triplet+center",
        "constant",
    )
    assert second.lr == 5.7433e-6 and first.lr == 1e-3  # the official stage-2 lr is absolute
    assert (first.warmup_steps, second.warmup_steps, second.weight_decay) == (500, 0, 1.303446e-3)
    assert spec.protocol.loss.triplet_margin is None and spec.protocol.loss.id_weight == 0.5
    single = make_spec(
        "graft", "synthetic", 0, ["train.stages=[]"], recipe="official"
    ).protocol.resolved_stages()
    assert len(single) == 1 and single[0].loss == "ce+aug_triplet+center"
    shared = make_spec("graft", "synthetic", 0).protocol.resolved_stages()
    assert len(shared) == 1 and shared[0].loss == "ce+triplet" and shared[0].freeze == []


def test_graft_knob_validation():
    protocol = build_protocol("synthetic", [])
    with pytest.raises(UserError, match="data_token"):
        graft_model(tiny_backbone(protocol), ["rgb"], 5, data_token=40, heads=2)
    with pytest.raises(UserError, match="heads"):
        graft_model(tiny_backbone(protocol), ["rgb"], 5, heads=3)
    with pytest.raises(UserError, match="fusion_tokens"):
        graft_model(tiny_backbone(protocol), ["rgb"], 5, fusion_tokens=0, heads=2)


def test_graft_fusion_weights_fixed_or_learnable(synthetic_dataset):
    protocol = build_protocol("synthetic", [])
    fixed = graft_model(tiny_backbone(protocol), ["rgb", "nir"], 5, heads=2, dim_feedforward=32)
    assert "fusion_weights" not in dict(fixed.named_parameters())
    assert torch.equal(fixed.fusion_weights, torch.tensor([0.5, 0.5]))
    learn = graft_model(
        tiny_backbone(protocol), ["rgb", "nir"], 5, heads=2, dim_feedforward=32, learnable_fusion_weights=True
    )
    assert dict(learn.named_parameters())["fusion_weights"].requires_grad


@pytest.mark.slow
def test_graft_embedding_is_the_weighted_mean_of_per_modality_fusion_outputs():
    protocol = build_protocol("synthetic", [])
    model = graft_model(
        tiny_backbone(protocol), ["rgb", "nir"], 5, fusion_tokens=2, heads=2, dim_feedforward=32, data_token=1
    ).eval()
    batch = {"rgb": torch.randn(3, 3, 32, 64), "nir": torch.randn(3, 3, 32, 64)}
    out = model(batch)
    with torch.no_grad():
        per = []
        for m in ("rgb", "nir"):
            tokens = model.backbone(batch[m])
            seq = torch.cat([model.fusion_tokens.expand(3, -1, -1), tokens], 1)
            per.append(model.encoders[m](seq))
        # data tokens first (the official order for the negative) gives the same data-token outputs
        flipped = [
            model.encoders[m](torch.cat([model.backbone(batch[m]), model.fusion_tokens.expand(3, -1, -1)], 1))
            for m in ("rgb", "nir")
        ]
    expected = (per[0][:, :2].flatten(1) + per[1][:, :2].flatten(1)) / 2
    negative = (flipped[0][:, 1:3].flatten(1) + flipped[1][:, 1:3].flatten(1)) / 2
    assert out.embedding.shape == (3, 128) and model.embed_dim == 128
    assert torch.allclose(out.embedding, expected, atol=1e-5)
    assert torch.allclose(out.extras["data_embedding"], negative, atol=1e-5)


@pytest.mark.slow
def test_mmet_modes_and_text_errors(synthetic_dataset, datamodules, vocab):
    data = datamodules[2]
    batch = next(data.eval_batches("query", 3))
    base = build_protocol("synthetic", ["data.modalities=[rgb,nir]", "data.text=true"])
    info = BuildInfo.from_protocol(base, synthetic_dataset.info, 5, data.tokenizer)
    tiny = dict(
        tokenizer=str(vocab),
        text_pretrained=False,
        text_hidden=64,
        text_layers=1,
        text_heads=2,
        mm_layers=1,
        mm_heads=2,
    )
    model = create_method("mmet", MMETConfig(**tiny), info).eval()
    full = model(batch).embedding
    model.eval_mode = "image"
    image = model(batch).embedding
    model.eval_mode = "text"
    text = model(batch).embedding
    assert not torch.allclose(full, image) and not torch.allclose(full, text)
    shuffled = {k: v.flip(0) if k.startswith("text_") else v for k, v in batch.items()}
    model.eval_mode = "image"
    assert torch.allclose(model(shuffled).embedding, image)  # image mode ignores captions
    image_only = create_method(
        "mmet", MMETConfig(mode="image"), replace(info, modalities=("rgb",), text=None)
    )
    assert image_only.text_encoder is None and image_only.mm_encoder is None
    with pytest.raises(UserError, match="data.text=true"):
        create_method("mmet", MMETConfig(**tiny), replace(info, text=None))
    no_captions = replace(synthetic_dataset.info, has_text=False)
    with pytest.raises(UserError, match="has none"):
        create_method("mmet", MMETConfig(**tiny), replace(info, text=None, dataset=no_captions))
    with pytest.raises(UserError, match="needs captions"):
        create_method("mmet", MMETConfig(**tiny), info).eval()(
            {k: v for k, v in batch.items() if not k.startswith("text_")}
        )
    with pytest.raises(UserError, match="text_hidden=64"):
        create_method("mmet", MMETConfig(**{**tiny, "text_hidden": 32, "eval_mode": "text"}), info)
    with pytest.raises(UserError, match="no trained text path"):
        create_method("mmet", MMETConfig(mode="image", eval_mode="multimodal"), info)


def test_mmet_reads_tokenized_captions_and_masks_whole_words_in_training(synthetic_dataset, datamodules):
    data = datamodules[2]
    batch = next(data.train_batches(0))
    captions = [synthetic_dataset.splits.train[i].caption or "" for i in batch["index"].tolist()]
    tokenizer = data.tokenizer.tokenizer
    enc = tokenizer(captions, padding="longest", truncation=True, max_length=77, return_tensors="pt")
    assert torch.equal(batch["text_ids"], enc["input_ids"])  # per batch as tokenizing it would give
    assert torch.equal(batch["text_mask"], enc["attention_mask"])
    words = torch.tensor([[-1 if w is None else w for w in enc.word_ids(i)] for i in range(len(captions))])
    assert torch.equal(batch["text_words"], words)
    masked = ["method.text_mask_prob=0.15", "loss.variant=ce+mlm"]  # masked modeling: an ablation point
    spec = make_spec("mmet", "synthetic", 0, [*SMALL, "data.modalities=[rgb,nir]", *masked])
    model = build_model(spec, synthetic_dataset, data)
    torch.manual_seed(0)
    ids, mask, labels = model._text(batch)
    chosen = labels != -100
    assert (
        chosen.any() and torch.equal(labels[chosen], batch["text_ids"][chosen]) and mask is batch["text_mask"]
    )
    assert (ids[chosen] == data.tokenizer.vocab().mask_id).any() and torch.equal(
        ids[~chosen], enc["input_ids"][~chosen]
    )


def test_mmet_reconstruction_terms_need_masking(synthetic_dataset, datamodules, vocab):
    data = datamodules[2]
    spec, model = build(
        "mmet", synthetic_dataset, data, vocab, "loss.variant=ce+triplet+mpr", "method.image_mask_ratio=0"
    )
    assert model.mpr_head is not None and model.mlm_head is None  # heads follow the loss variant
    batch = next(data.train_batches(0))
    criterion = build_criterion(spec, data, model)
    with pytest.raises(UserError, match="image_mask_ratio"):
        criterion(model(batch), batch["pid"], "ce+triplet+mpr", 0.0)


def test_single_modality_rejects_an_absent_modality(synthetic_dataset, datamodules, vocab):
    with pytest.raises(UserError, match="method.modality='tir'"):
        build("single_modality", synthetic_dataset, datamodules[2], vocab, "method.modality=tir")
    _, model = build("single_modality", synthetic_dataset, datamodules[3], vocab, "method.modality=tir")
    assert model.modalities == ["tir"]


def test_late_fusion_shared_and_separate_backbones(synthetic_dataset, datamodules, vocab):
    data = datamodules[3]
    _, shared = build("late_fusion", synthetic_dataset, data, vocab, "method.fusion=attention")
    _, separate = build("multi_stream_vit", synthetic_dataset, data, vocab)
    backbone = sum(p.numel() for p in shared.encoders["rgb"].parameters())
    assert sum(p.numel() for p in separate.encoders.parameters()) == 3 * backbone
    assert sum(p.numel() for p in shared.encoders.parameters()) == backbone
    batch = next(data.eval_batches("query", 2))
    shared.eval()
    with torch.no_grad():  # the batched shared pass equals one pass per modality
        feats = torch.stack([shared.encoders[m](batch[m]) for m in data.modalities], 1)
        assert torch.allclose(shared(batch).embedding, shared.fusion(feats), atol=1e-5)


@pytest.mark.slow
def test_graft_stage_one_freezes_the_backbone_and_stage_two_trains_it(synthetic_dataset, vocab):
    from reidbench.train.engine import fit

    spec = make_spec(
        "graft",
        "synthetic",
        0,
        [
            *SMALL,
            *tiny_method("graft", vocab),
            "train.epochs=2",
            "train.max_steps_per_epoch=2",
            "train.allow_random_frozen=true",  # the tiny backbone is random; the stages are under test
        ],
        recipe="official",  # GraFT's two stages
    )
    data = make_datamodule(spec, synthetic_dataset)
    model = build_model(spec, synthetic_dataset, data)
    criterion = build_criterion(spec, data, model)

    def snapshot(module):
        return [p.detach().clone() for p in module.parameters()]

    start = {"backbone": snapshot(model.backbone), "encoders": snapshot(model.encoders)}
    after_stage: list[dict] = []
    fit(
        model,
        criterion,
        data,
        spec.protocol,
        torch.device("cpu"),
        show_progress=False,
        on_epoch=lambda state: after_stage.append(
            {
                "backbone": snapshot(model.backbone),
                "encoders": snapshot(model.encoders),
                "lr": state.history[-1]["lr"],
            }
        ),
    )

    def same(a, b):
        return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))

    assert same(after_stage[0]["backbone"], start["backbone"])  # stage 1: frozen
    assert not same(after_stage[0]["encoders"], start["encoders"])  # ... while the fusion layers learn
    assert not same(after_stage[1]["backbone"], start["backbone"])  # stage 2: trained
    assert after_stage[1]["lr"] == pytest.approx(spec.protocol.resolved_stages()[1].lr)  # constant schedule


def test_train_compile_wraps_the_model_in_torch_compile(synthetic_dataset, vocab, monkeypatch):
    from reidbench.train.engine import fit

    compiled = []

    def fake_compile(model):
        compiled.append(model)
        return model

    monkeypatch.setattr(torch, "compile", fake_compile)
    spec = make_spec(
        "single_modality",
        "synthetic",
        0,
        [*SMALL, "train.epochs=1", "train.max_steps_per_epoch=1", "train.compile=true"],
    )
    data = make_datamodule(spec, synthetic_dataset)
    model = build_model(spec, synthetic_dataset, data)
    fit(
        model,
        Criterion(spec.protocol.loss, data.num_classes, model.embed_dim),
        data,
        spec.protocol,
        torch.device("cpu"),
        show_progress=False,
    )
    assert compiled == [model]


def test_graft_drop_missing_averages_the_present_modalities():
    protocol = build_protocol("synthetic", [])
    model = graft_model(
        tiny_backbone(protocol),
        ["rgb", "nir"],
        5,
        heads=2,
        dim_feedforward=32,
        learnable_fusion_weights=True,
        drop_missing=True,
    ).eval()
    assert model.drops_missing_modalities
    with torch.no_grad():
        model.fusion_weights.copy_(torch.tensor([0.2, 0.6]))
        x = torch.randn(2, 3, 32, 64)
        out = model({"rgb": x})
        seq = torch.cat([model.fusion_tokens.expand(2, -1, -1), model.backbone(x)], 1)
        rgb_only = model.encoders["rgb"](seq)[:, 0]
    assert torch.allclose(out.embedding, 0.8 * rgb_only, atol=1e-5)  # weight 0.2 rescaled to the total 0.8


@pytest.mark.slow
@pytest.mark.parametrize("method", ["graft", "mmet"])
def test_drop_missing_evaluation_runs_every_setting(method, synthetic_dataset, vocab):

    spec = make_spec(
        method,
        "synthetic",
        0,
        [
            *SMALL,
            *tiny_method(method, vocab),
            "data.modalities=[rgb,nir]",
            "eval.missing_modality=true",
            "eval.cross_modal=[all]",
        ],
    )
    data = make_datamodule(spec, synthetic_dataset)
    results = {}
    for drop in (False, True):
        torch.manual_seed(0)
        model = build_model(spec, synthetic_dataset, data, drop_missing=drop)
        results[drop] = evaluate_data(model, data)
    for key in ("mAP", "mAP@no_nir", "mAP@no_rgb", "mAP@rgb->nir", "mAP@nir->rgb"):
        assert 0 <= results[True][key] <= 1
    assert results[True]["mAP"] == pytest.approx(results[False]["mAP"])  # all modalities: the same model
    assert results[True]["mAP@no_nir"] != pytest.approx(
        results[False]["mAP@no_nir"]
    )  # dropping != zero-filling
