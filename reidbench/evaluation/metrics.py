"""Rank metrics (temporary plain implementation; replaced by the fast exact evaluator)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class RankMetrics:
    mAP: float
    cmc: torch.Tensor
    mINP: float
    num_valid_queries: int
    ap: torch.Tensor

    def as_dict(self) -> dict[str, float]:
        return {"mAP": self.mAP, "rank1": float(self.cmc[0]), "rank5": float(self.cmc[4]),
                "rank10": float(self.cmc[9]), "mINP": self.mINP, "num_valid_queries": self.num_valid_queries}


def rank_metrics(dist, q_pids, g_pids, q_camids, g_camids, *, q_sceneids=None, g_sceneids=None,
                 junk="market", max_rank=50, same_set=False) -> RankMetrics:
    dist = np.asarray(torch.as_tensor(dist).cpu())
    q_pids, g_pids, q_camids, g_camids = (np.asarray(torch.as_tensor(a).cpu()) for a in (q_pids, g_pids, q_camids, g_camids))
    aps, inps, cmcs = [], [], []
    all_ap = np.full(len(dist), np.nan)
    for i in range(len(dist)):
        order = np.argsort(dist[i], kind="stable")
        keep = np.ones(len(order), bool)
        if junk == "market":
            keep &= ~((g_pids[order] == q_pids[i]) & (g_camids[order] == q_camids[i]))
        if same_set:
            keep &= order != i
        hits = (g_pids[order] == q_pids[i])[keep]
        if not hits.any():
            continue
        pos = np.flatnonzero(hits)
        ap = np.mean((np.arange(len(pos)) + 1) / (pos + 1))
        cmc = np.zeros(max_rank)
        cmc[pos[0]:] = 1
        aps.append(ap)
        all_ap[i] = ap
        inps.append(len(pos) / (pos[-1] + 1))
        cmcs.append(cmc)
    return RankMetrics(float(np.mean(aps)), torch.tensor(np.mean(cmcs, 0)), float(np.mean(inps)), len(aps),
                       torch.tensor(all_ap))
