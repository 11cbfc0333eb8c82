"""Pruning the backbones: exact counts for unstructured rounds, zeros kept through fine-tuning, structured
rounds that keep output shapes and cut the counted FLOPs by what the removed heads / channels cost."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from reidbench.errors import UserError
from reidbench.evaluation.cost import count_nonzero, count_params
from reidbench.nn.backbones import build_image_backbone
from reidbench.protocol import BackboneCfg
from reidbench.prune.blocks import backbone_blocks
from reidbench.prune.structured import apply_structure, prune_structured, structure
from reidbench.prune.unstructured import prunable_weights, prune_l1_unstructured, zeros_kept

SIZE, PATCH, DIM, HEADS, DEPTH = 32, 8, 32, 4, 3
PATCHES = (SIZE // PATCH) ** 2


class TwoBackbones(nn.Module):
    """A model holding a shared backbone (used twice) and a second one, plus a head that is never pruned."""

    def __init__(self, source: str = "timm") -> None:
        super().__init__()
        cfg = BackboneCfg(
            name="vit_tiny_patch16_224" if source == "timm" else "deit_tiny",
            source=source,
            pretrained=False,
            patch_size=PATCH,
            embed_dim=DIM,
            depth=DEPTH,
            num_heads=HEADS,
            drop_path=0.0,
        )
        self.rgb = build_image_backbone(cfg, (SIZE, SIZE))
        self.nir = self.rgb  # shared: pruned once
        self.tir = build_image_backbone(cfg, (SIZE, SIZE))
        self.head = nn.Linear(DIM, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.rgb(x)[:, 0] + self.nir(x)[:, 0] + self.tir(x)[:, 0])


def _model(source: str = "timm") -> TwoBackbones:
    torch.manual_seed(0)
    return TwoBackbones(source).eval()


def _flops(model: nn.Module) -> int:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.randn(1, 3, SIZE, SIZE))
    return counter.get_total_flops()


@pytest.mark.parametrize("source", ["timm", "hf"])
def test_blocks_found_once_per_backbone(source):
    views = backbone_blocks(_model(source))
    assert len(views) == 2 * DEPTH  # the shared backbone's blocks once
    assert all(v.num_heads == HEADS and v.hidden == 4 * DIM for v in views)


def test_each_unstructured_round_removes_the_stated_fraction_of_the_remaining_weights():
    model = _model()
    total = sum(p.numel() for p in prunable_weights(model))
    assert total == 2 * DEPTH * (4 * DIM * DIM + 2 * DIM * 4 * DIM)  # q, k, v, out + fc1, fc2
    remaining = total
    head_before = model.head.weight.clone()
    for _ in range(4):
        removed = prune_l1_unstructured(model, 0.2)
        assert removed == round(0.2 * remaining)
        remaining -= removed
        assert count_nonzero(prunable_weights(model)) == remaining
    assert torch.equal(model.head.weight, head_before)  # only backbone matrices are pruned
    assert count_params(model) == count_params(_model())  # masks remove no parameter


def test_unstructured_pruning_removes_the_smallest_magnitudes_globally():
    model = _model()
    before = torch.cat([p.detach().abs().flatten() for p in prunable_weights(model)])
    prune_l1_unstructured(model, 0.5)
    after = torch.cat([p.detach().abs().flatten() for p in prunable_weights(model)])
    zeroed = after == 0
    assert before[zeroed].max() <= before[~zeroed].min()


def test_pruned_weights_stay_zero_while_fine_tuning_with_adamw_and_weight_decay():
    model = _model().train()
    prune_l1_unstructured(model, 0.3)
    zeros = [p.detach() == 0 for p in prunable_weights(model)]
    start = [p.detach().clone() for p in prunable_weights(model)]

    def step() -> None:
        opt.zero_grad()
        model(torch.randn(4, 3, SIZE, SIZE)).square().mean().backward()
        opt.step()

    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.05)
    with zeros_kept(model):
        for _ in range(3):
            step()
    after = list(prunable_weights(model))
    assert all(bool((p.detach()[z] == 0).all()) for p, z in zip(after, zeros, strict=True))
    assert all(bool((p.detach()[~z] != s[~z]).any()) for p, z, s in zip(after, zeros, start, strict=True))
    step()  # outside the context the pruned weights move again: the context is what keeps them at zero
    assert any(bool((p.detach()[z] != 0).any()) for p, z in zip(prunable_weights(model), zeros, strict=True))


@pytest.mark.parametrize("source", ["timm", "hf"])
def test_structured_round_keeps_output_shapes_and_lowers_flops_by_the_removed_parts(source):
    model = _model(source)
    x = torch.randn(2, 3, SIZE, SIZE)
    out_before, flops_before, params_before = model(x).shape, _flops(model), count_params(model)
    step = prune_structured(model, 0.25)
    total_heads, total_channels = 2 * DEPTH * HEADS, 2 * DEPTH * 4 * DIM
    assert step.heads == round(0.25 * total_heads) and step.channels == round(0.25 * total_channels)
    assert model(x).shape == out_before
    head_dim, n, d = DIM // HEADS, PATCHES + model.tir.num_prefix_tokens, DIM  # DeiT: CLS + distillation
    # the shared backbone runs twice per forward: its removed parts count twice
    shared = {v.name for v in backbone_blocks(model) if v.name.startswith("rgb.")}
    runs = [2 if v.name in shared else 1 for v in backbone_blocks(model)]
    removed_heads = [HEADS - v.num_heads for v in backbone_blocks(model)]
    removed_channels = [4 * DIM - v.hidden for v in backbone_blocks(model)]
    per_head = head_dim * (2 * n * d * 3 + 2 * n * n * 2 + 2 * n * d)  # q, k, v; scores and mixing; output
    per_channel = 2 * n * d * 2  # fc1 row and fc2 column
    expected = sum(
        r * (h * per_head + c * per_channel)
        for r, h, c in zip(runs, removed_heads, removed_channels, strict=True)
    )
    assert flops_before - _flops(model) == expected
    assert count_params(model) < params_before
    assert all(v.num_heads >= 1 and v.hidden >= 1 for v in backbone_blocks(model))


def test_structured_rounds_keep_at_least_one_head_and_channel_per_block():
    model = _model()
    for _ in range(6):
        prune_structured(model, 0.9)
    assert all(v.num_heads == 1 and v.hidden == 1 for v in backbone_blocks(model))
    assert model(torch.randn(1, 3, SIZE, SIZE)).shape == (1, 5)


@pytest.mark.parametrize("source", ["timm", "hf"])
def test_a_pruned_structure_rebuilds_and_its_weights_load_strictly(source):
    pruned = _model(source)
    prune_structured(pruned, 0.4)
    fresh = _model(source)
    with pytest.raises(RuntimeError):
        fresh.load_state_dict(pruned.state_dict())
    apply_structure(fresh, structure(pruned))
    fresh.load_state_dict(pruned.state_dict())  # strict
    x = torch.randn(2, 3, SIZE, SIZE)
    assert torch.equal(fresh(x), pruned(x))


def test_a_structure_from_another_architecture_is_refused():
    model = _model()
    with pytest.raises(UserError, match="blocks"):
        apply_structure(model, {"heads": [1], "hidden": [4]})


def test_a_model_without_a_vit_backbone_is_refused():
    with pytest.raises(UserError, match="no ViT image backbone"):
        backbone_blocks(nn.Linear(3, 3))
