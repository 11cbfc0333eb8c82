"""``reidbench info``: parameters (total, trainable, used at test), descriptor width and GFLOPs, built on the
meta device with random weights; TOP-ReID at paper size against the official model's counts."""

from __future__ import annotations

import sys

import torch
from torch import nn

from reidbench.evaluation.model_info import count, dataset_facts, model_info, modules_called

# Counted by building the official TOP-ReID (@921dd7c) on CPU at RGBNT201 size (171 ids, 4 cameras, 256x128;
# reference notes sota-methods.md section 7): 324,526,008 as built, of which 3 x 769,000 in the unused
# 1000-way fc of each ViT; 278,509,824 used at test (3 ViTs without fc + TPM).
OFFICIAL_TRAINING = 324_526_008 - 3 * 769_000
OFFICIAL_TEST = 278_509_824
BNNECK_BIASES = 3 * 768 + 2 * 2304  # frozen BatchNorm biases: 3 per-modality heads, concat and TPM heads


def test_dataset_facts_come_from_published_counts_and_name_rules():
    assert dataset_facts("rgbnt201") == (171, 4)
    assert dataset_facts("rgbnt100") == (50, 8)
    assert dataset_facts("nope") == (None, None)


def test_top_reid_at_paper_size_matches_the_official_counts():
    found = model_info("top_reid", "rgbnt201")
    assert (found.num_classes, found.num_cameras, found.image_size) == (171, 4, (256, 128))
    assert found.params == OFFICIAL_TRAINING  # 322.2 M (within 1 % of the "about 322 M")
    assert found.trainable == OFFICIAL_TRAINING - BNNECK_BIASES
    assert found.used_at_test == OFFICIAL_TEST  # no CRM, no training heads
    assert found.descriptor_dim == 2304
    assert 60 < found.gflops < 80  # 3 ViT-B/16 at 129 tokens (~22.7 each) + TPM


class TwoBranches(nn.Module):
    """A hand-countable model: ``used`` runs at test, ``training_only`` does not."""

    def __init__(self) -> None:
        super().__init__()
        self.used = nn.Linear(4, 3)  # 15 parameters
        self.scale = nn.Parameter(torch.ones(3))  # 3, the top module's own
        self.training_only = nn.Linear(3, 7)  # 28
        self.training_only.bias.requires_grad_(False)

    def forward(self, batch):
        return self.used(batch["x"]) * self.scale


def test_used_at_test_counts_the_modules_an_inference_forward_calls():
    model = TwoBranches()
    used = modules_called(model, {"x": torch.zeros(1, 4)})
    assert count(model.parameters()) == 15 + 3 + 28
    assert count(p for p in model.parameters() if p.requires_grad) == 15 + 3 + 21
    assert count(p for m in used for p in m.parameters(recurse=False)) == 15 + 3
    shared = nn.Linear(2, 2)
    assert count([*shared.parameters(), *shared.parameters()]) == 6  # a shared tensor once


def run_cli(monkeypatch, capsys, *args) -> tuple[int, str]:
    import cli

    monkeypatch.setattr(sys, "argv", ["reidbench", *args])
    try:
        cli.main()
        code = 0
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out + out.err


def test_info_command_prints_the_figures(monkeypatch, capsys):
    args = ["info", "top_reid", "--dataset", "synthetic", "--classes", "10", "--cameras", "3"]
    code, out = run_cli(monkeypatch, capsys, *args)
    assert code == 0, out
    assert "10 / 3" in out and "192-d" in out  # 3 x the tiny ViT's 64
    assert "parameters (used at test)" in out
    code, out = run_cli(monkeypatch, capsys, "info", "nope", "--dataset", "synthetic", "--classes", "2")
    assert code == 2 and "unknown method 'nope'" in out
