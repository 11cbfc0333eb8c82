"""The pieces the methods are made of: augmented triplet, center-loss option, stage shares, masking,
FLOP counting and the gflops metric of a run."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from reidbench.evaluation.cost import forward_gflops, train_step_flops
from reidbench.nn.masking import block_mask, block_masks, normalised_patches, patchify, whole_word_mask
from reidbench.nn.output import ModelOutput
from reidbench.protocol import build_protocol
from reidbench.train.engine import build_optimizer
from reidbench.train.losses import Criterion, augmented_triplet
from tests.conftest import TINY


def test_augmented_triplet_by_hand():
    anchor = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 3.0], [0.0, 5.0]])  # fusion embeddings
    data = torch.tensor([[0.0, 1.0], [4.0, 0.0], [2.0, 0.0], [0.0, 0.0]])  # data-token embeddings
    labels = torch.tensor([0, 0, 1, 1])
    # hard: the farthest same-id fusion row; the nearest other-id data row
    d_ap = torch.tensor([1.0, 1.0, 2.0, 2.0])
    d_an = torch.tensor([0.0, 1.0, 2.0, 4.0])
    assert torch.allclose(
        augmented_triplet(anchor, data, labels, "hard"), F.softplus(d_ap - d_an).mean(), atol=1e-5
    )
    assert torch.allclose(
        augmented_triplet(anchor, data, labels, "hard", margin=0.5),
        F.relu(d_ap - d_an + 0.5).mean(),
        atol=1e-5,
    )
    # random, with a single choice each: anchors 0, 1 have one positive and one negative (data row 2);
    # anchor 2 has no positive and is skipped
    for seed in range(10):
        torch.manual_seed(seed)
        got = augmented_triplet(anchor[:3], data[:3], torch.tensor([0, 0, 1]), "random")
        assert torch.allclose(got, F.softplus(torch.tensor([1.0 - 2.0, 1.0 - 1.0])).mean(), atol=1e-5)
    # a batch with one identity has no negative: no term
    assert augmented_triplet(anchor[:2], data[:2], torch.tensor([0, 0]), "random").item() == 0.0


def test_augmented_triplet_random_draws_vary_over_negatives():
    anchor = torch.tensor([[0.0, 0.0], [0.0, 0.0], [9.0, 9.0], [9.0, 9.0], [-9.0, 9.0], [-9.0, 9.0]])
    data = torch.tensor([[0.0, 0.0], [0.0, 0.0], [1.0, 0.0], [1.0, 0.0], [5.0, 0.0], [5.0, 0.0]])
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    values = set()
    for seed in range(20):
        torch.manual_seed(seed)
        values.add(round(augmented_triplet(anchor, data, labels, "random").item(), 4))
    hard = augmented_triplet(anchor, data, labels, "hard").item()
    assert len(values) > 1 and all(v <= hard + 1e-4 for v in values)


def test_center_loss_centers_optimised_or_fixed(synthetic_dataset):
    for learnable in (True, False):
        protocol = build_protocol("synthetic", [*TINY, f"loss.center_learnable={str(learnable).lower()}"])
        criterion = Criterion(protocol.loss, 4, 3)
        model = nn.Linear(3, 3)
        stage = protocol.resolved_stages()[0]
        opt = build_optimizer(model, criterion, protocol, stage)
        in_optimizer = any(p is criterion.center.centers for g in opt.param_groups for p in g["params"])
        assert in_optimizer == learnable
        before = criterion.center.centers.detach().clone()
        out = ModelOutput(embedding=model(torch.randn(4, 3)), logits=torch.randn(4, 4))
        loss = criterion(out, torch.tensor([0, 1, 2, 3]), "center", 0.0)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        assert torch.equal(criterion.center.centers, before) != learnable


def test_stage_epoch_share_and_lr_scale():
    protocol = build_protocol(
        "synthetic",
        [
            "train.epochs=5",
            "optim.lr=0.01",
            "train.stages=[{name: a, epoch_share: 0.4}, {name: b, epoch_share: 0.6, lr_scale: 0.5}, "
            "{name: c, epochs: 2, lr: 0.1, lr_scale: 0.1}, {name: d, epoch_share: 0.01}]",
        ],
    )
    stages = protocol.resolved_stages()
    assert [s.epochs for s in stages] == [2, 3, 2, 1]
    assert [s.lr for s in stages] == pytest.approx([0.01, 0.005, 0.01, 0.01])


def test_block_mask_covers_the_requested_patches_in_blocks():
    rng = random.Random(0)
    for _ in range(20):
        mask = block_mask((14, 14), 75, 16, rng)
        assert mask.shape == (196,) and 60 <= int(mask.sum()) <= 75  # BEiT stops when no block fits
    counts = [int(block_mask((14, 14), 75, 16, random.Random(s)).sum()) for s in range(50)]
    assert sum(c == 75 for c in counts) > 25
    grid = block_mask((4, 8), 12, 16, random.Random(1)).view(4, 8)
    assert int(grid.sum()) >= 1 and not grid.all(0).any() and not grid.all(1).any()  # blocks stay inside
    torch.manual_seed(0)
    masks = block_masks(5, (4, 8), 0.38)
    assert masks.shape == (5, 32) and masks.any(1).all()
    assert not block_masks(2, (4, 8), 0.0).any()


def test_whole_word_mask_masks_whole_words_within_the_budget():
    ids = torch.tensor([[2, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 3, 0]])
    words = torch.tensor([[-1, 0, 0, 0, 1, 2, 3, 3, 4, 5, 6, 7, -1, -1]])  # word 0: 3 pieces, word 3: 2
    torch.manual_seed(0)
    seen_words = set()
    for _ in range(30):
        masked, labels = whole_word_mask(ids, words, 0.3, mask_id=4, vocab_size=30, special_ids={0, 2, 3})
        chosen = (labels[0] != -100).nonzero().flatten().tolist()
        assert 1 <= len(chosen) <= round(0.3 * 11) and torch.equal(labels[0, chosen], ids[0, chosen])
        picked = {int(words[0, p]) for p in chosen}
        for w in picked:  # whole words only
            assert {p for p, x in enumerate(words[0].tolist()) if x == w} <= set(chosen)
        seen_words |= picked
        unchanged = [p for p in range(14) if p not in chosen]
        assert torch.equal(masked[0, unchanged], ids[0, unchanged])  # specials and others untouched
    assert len(seen_words) > 4
    many = torch.randint(5, 30, (200, 12))
    masked, labels = whole_word_mask(many, torch.arange(12).expand(200, -1), 0.5, 4, 30, set())
    picked = labels != -100
    share = (masked[picked] == 4).float().mean().item()
    assert 0.7 < share < 0.9  # 80% [MASK]


def test_patchify_matches_the_vit_patch_order():
    images = torch.arange(2 * 3 * 4 * 8, dtype=torch.float).view(2, 3, 4, 8)
    patches = patchify(images, 4)
    assert patches.shape == (2, 2, 48)
    assert torch.equal(patches[1, 1].view(4, 4, 3).permute(2, 0, 1), images[1, :, 0:4, 4:8])
    conv = nn.Conv2d(3, 5, 4, 4, bias=False)
    expected = conv(images).flatten(2).transpose(1, 2)  # what a ViT patch embedding sees per patch
    assert torch.allclose(patches @ conv.weight.permute(0, 2, 3, 1).reshape(5, 48).t(), expected, atol=1e-3)
    norm = normalised_patches(images, 4)
    assert torch.allclose(norm.mean(-1), torch.zeros(2, 2), atol=1e-5)


class _Linear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(10, 7)

    def forward(self, batch: dict) -> ModelOutput:
        return ModelOutput(embedding=self.fc(batch["x"]))


def test_flop_counts_by_hand():
    model = _Linear()
    batch = {"x": torch.randn(4, 10), "pid": torch.zeros(4)}
    assert forward_gflops(model, batch) == pytest.approx(2 * 10 * 7 / 1e9)
    assert model.training  # mode restored
    # training: forward 2*B*10*7 plus the weight gradient as much (the input needs no gradient)
    assert train_step_flops(lambda: model(batch).embedding.sum()) == 2 * 2 * 4 * 10 * 7
    batch["x"].requires_grad_(True)  # now the input gradient too
    assert train_step_flops(lambda: model(batch).embedding.sum()) == 3 * 2 * 4 * 10 * 7
    layer = nn.TransformerEncoderLayer(16, 2, 32, batch_first=True)

    class Wrap(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layer = layer

        def forward(self, batch: dict) -> ModelOutput:
            return ModelOutput(embedding=self.layer(batch["x"]).mean(1))

    seq = {"x": torch.randn(2, 5, 16), "pid": torch.zeros(2)}
    linear = 2 * 5 * (16 * 48 + 16 * 16 + 16 * 32 * 2)  # qkv, out proj, FFN per sample
    attention = 2 * 2 * 5 * 5 * 16  # QK^T and AV per sample
    assert forward_gflops(Wrap(), seq) * 1e9 == pytest.approx(linear + attention)  # fused fast path excluded


@pytest.mark.slow
def test_a_run_logs_gflops(synthetic_dataset, mlflow_uri):
    from reidbench import tracking
    from reidbench.context import RunContext
    from reidbench.runner import run_one
    from reidbench.spec import make_spec

    spec = make_spec("single_modality", "synthetic", 0, [*TINY, "train.max_steps_per_epoch=1"])
    result = run_one(spec, RunContext(Path("unused"), mlflow_uri, "t"), torch.device("cpu"))
    # single ViT (patch 8, dim 64, depth 2) on 32 patches + CLS: per-sample GFLOPs by hand
    tokens, dim, hidden = 33, 64, 256
    per_block = 2 * tokens * (dim * 3 * dim + dim * dim + 2 * dim * hidden) + 2 * 2 * tokens * tokens * dim
    patch_embed, classifier = 2 * 32 * (3 * 8 * 8) * dim, 2 * dim * 48  # 48 training identities
    assert result.metrics["gflops"] == pytest.approx((2 * per_block + patch_embed + classifier) / 1e9)
    runs = tracking.search_runs(mlflow_uri, "t")
    assert runs["metrics.gflops"].iloc[0] == pytest.approx(result.metrics["gflops"])
    assert runs["metrics.params"].iloc[0] > 0
