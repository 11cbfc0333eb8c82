"""ReID losses and the criterion that combines them by variant name (e.g. ``ce+triplet``)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from reidbench.errors import UserError
from reidbench.nn.output import ModelOutput
from reidbench.protocol import LossCfg


def pairwise_euclidean(x: torch.Tensor) -> torch.Tensor:
    """``(B, B)`` Euclidean distances (clamped for a finite gradient at 0)."""
    sq = x.pow(2).sum(1)
    d2 = sq[:, None] + sq[None, :] - 2 * x @ x.t()
    return d2.clamp_min(1e-12).sqrt()


def batch_hard_triplet(feat: torch.Tensor, labels: torch.Tensor, margin: float | None) -> torch.Tensor:
    """Batch-hard triplet loss (Hermans et al. 2017): hardest positive and negative per anchor.

    ``margin=None`` uses the soft margin ``log(1 + exp(d_ap - d_an))``.
    """
    dist = pairwise_euclidean(feat.float())
    same = labels[:, None] == labels[None, :]
    d_ap = dist.masked_fill(~same, float("-inf")).amax(1)
    d_an = dist.masked_fill(same, float("inf")).amin(1)
    if margin is None:
        return F.softplus(d_ap - d_an).mean()
    return F.relu(d_ap - d_an + margin).mean()


def cross_euclidean(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``(B, B')`` Euclidean distances between the rows of ``x`` and ``y`` (clamped like above)."""
    d2 = x.pow(2).sum(1)[:, None] + y.pow(2).sum(1)[None, :] - 2 * x @ y.t()
    return d2.clamp_min(1e-12).sqrt()


def _pick(dist: torch.Tensor, valid: torch.Tensor, mining: str, hardest: str) -> torch.Tensor:
    """Per row, the hardest (``max`` / ``min``) or a uniformly sampled valid entry of ``dist``."""
    if mining == "hard":
        if hardest == "max":
            return dist.masked_fill(~valid, float("-inf")).amax(1)
        return dist.masked_fill(~valid, float("inf")).amin(1)
    if mining != "random":
        raise ValueError(f"unknown triplet mining {mining!r}")
    scores = torch.rand(dist.shape, device=dist.device).masked_fill(~valid, -1.0)
    return dist.gather(1, scores.argmax(1, keepdim=True)).squeeze(1)


def augmented_triplet(
    anchor: torch.Tensor,
    negative: torch.Tensor,
    labels: torch.Tensor,
    mining: str = "random",
    margin: float | None = None,
) -> torch.Tensor:
    """GraFT's augmented triplet loss on a PK batch.

    Anchor and positive are rows of ``anchor`` (fusion-token embeddings); the negative is a row of
    ``negative`` (the data-token embedding of another identity). Per anchor, the positive and the
    negative are the hardest ones in the batch (``mining="hard"``) or drawn uniformly (``"random"``, the
    closest match to the official random triplets). ``margin=None``: soft margin
    ``log(1 + exp(d_ap - d_an))`` as in the official code. Anchors without a positive are skipped.
    """
    anchor, negative = anchor.float(), negative.float()
    same = labels[:, None] == labels[None, :]
    positive = same & ~torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    has = positive.any(1) & (~same).any(1)
    if not has.any():
        return anchor.sum() * 0.0
    d_ap = _pick(pairwise_euclidean(anchor), positive, mining, "max")[has]
    d_an = _pick(cross_euclidean(anchor, negative), ~same, mining, "min")[has]
    if margin is None:
        return F.softplus(d_ap - d_an).mean()
    return F.relu(d_ap - d_an + margin).mean()


class CenterLoss(nn.Module):
    """Center loss (Wen et al. 2016): ``sum_i ||z_i - c_{y_i}||^2 / B``.

    The centers are optimised (by the engine, at ``loss.center_lr``) unless ``learnable=False``, which
    keeps them at their random initialisation as the official GraFT code does (its optimizer never sees
    them): ``loss.center_learnable=false``.
    """

    def __init__(self, num_classes: int, dim: int, learnable: bool = True) -> None:
        super().__init__()
        self.centers = nn.Parameter(torch.randn(num_classes, dim), requires_grad=learnable)

    def forward(self, feat: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        diff = feat.float() - self.centers[labels]
        return diff.pow(2).sum(1).clamp(1e-12, 1e12).mean()


Term = Callable[[ModelOutput, torch.Tensor, float], torch.Tensor]


class Criterion(nn.Module):
    """Weighted sum of named loss terms, chosen per stage by a variant such as ``ce+triplet+center``.

    Built-in terms: ``ce`` (ID cross-entropy with label smoothing on ``logits``), ``triplet``
    (batch-hard on the embedding) and ``center`` (on the embedding, ``dim`` wide: the model's
    ``embed_dim``). Methods add their own with ``extra_terms`` (name -> fn(output, labels,
    label_smoothing) -> loss, weight).
    """

    def __init__(
        self,
        cfg: LossCfg,
        num_classes: int,
        dim: int,
        extra_terms: dict[str, tuple[Term, float]] | None = None,
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.center = CenterLoss(num_classes, dim, cfg.center_learnable)
        self.terms: dict[str, tuple[Term, float]] = {
            "ce": (self._ce, cfg.id_weight),
            "triplet": (self._triplet, cfg.triplet_weight),
            "center": (lambda out, y, _: self.center(out.embedding, y), cfg.center_weight),
            **(extra_terms or {}),
        }

    def parse(self, variant: str) -> list[str]:
        """The term names of ``variant``; a UserError lists the known ones."""
        names = [n.strip() for n in variant.split("+") if n.strip()]
        unknown = [n for n in names if n not in self.terms]
        if unknown or not names:
            raise UserError(
                f"loss variant {variant!r}: unknown term(s) {unknown}. Known terms: "
                f"{', '.join(self.terms)} (join them with '+', e.g. ce+triplet)"
            )
        return names

    def forward(
        self, out: ModelOutput, labels: torch.Tensor, variant: str, label_smoothing: float
    ) -> dict[str, torch.Tensor]:
        """Each term's raw (unweighted) value by name, and the weighted sum that is optimised under ``loss``
        (the engine logs every one per epoch: a term too small to matter shows as such)."""
        losses, weighted = {}, []
        for name in self.parse(variant):
            fn, weight = self.terms[name]
            losses[name] = fn(out, labels, label_smoothing)
            weighted.append(weight * losses[name])
        losses["loss"] = torch.stack(weighted).sum()
        return losses

    def _ce(self, out: ModelOutput, labels: torch.Tensor, smoothing: float) -> torch.Tensor:
        return F.cross_entropy(out.logits.float(), labels, label_smoothing=smoothing)

    def _triplet(self, out: ModelOutput, labels: torch.Tensor, _: float) -> torch.Tensor:
        return batch_hard_triplet(out.embedding, labels, self.cfg.triplet_margin)
