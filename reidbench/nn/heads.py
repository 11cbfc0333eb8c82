"""BNNeck (Luo et al. 2019): BatchNorm with a frozen bias, then a bias-free linear ID classifier."""

from __future__ import annotations

import torch
from torch import nn


class BNNeckHead(nn.Module):
    """``feat -> (bn_feat, logits)``; BN bias frozen at 0, Kaiming init, classifier std 0.001."""

    def __init__(self, dim: int, num_classes: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(dim)
        self.bn.bias.requires_grad_(False)
        nn.init.constant_(self.bn.weight, 1.0)
        nn.init.constant_(self.bn.bias, 0.0)
        self.classifier = nn.Linear(dim, num_classes, bias=False)
        nn.init.normal_(self.classifier.weight, std=0.001)

    def forward(self, feat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        bn_feat = self.bn(feat)
        return bn_feat, self.classifier(bn_feat)
