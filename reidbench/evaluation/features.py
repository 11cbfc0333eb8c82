"""Feature extraction and the end-to-end evaluation of a model on a DataModule's query / gallery."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from reidbench.data.module import DataModule
from reidbench.evaluation.metrics import rank_metrics


@torch.no_grad()
def extract(model: nn.Module, data: DataModule, split: str, batch_size: int, drop: tuple[str, ...] = ()) -> torch.Tensor:
    """L2-normalised embeddings of every item of ``split`` (float32), batched, no grad, bf16 on GPU."""
    model.eval()
    feats = []
    use_amp = data.device.type == "cuda"
    for batch in data.eval_batches(split, batch_size, drop):
        with torch.autocast(data.device.type, dtype=torch.bfloat16, enabled=use_amp):
            feats.append(model(batch).embedding.float())
    return F.normalize(torch.cat(feats), dim=1)


def euclidean(q: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Euclidean distances between L2-normalised rows: ``sqrt(2 - 2 q.g)``."""
    return (2 - 2 * q @ g.t()).clamp_min(0).sqrt()


def evaluate(model: nn.Module, data: DataModule) -> dict[str, float]:
    """mAP, Rank-1/5/10 and mINP of ``model`` under the protocol's evaluation settings."""
    cfg = data.protocol.eval
    qf = extract(model, data, "query", cfg.batch_size)
    gf = qf if data.gallery is data.query else extract(model, data, "gallery", cfg.batch_size)
    result = rank_metrics(euclidean(qf, gf), data.query.pids, data.gallery.pids, data.query.camids,
                          data.gallery.camids, q_sceneids=data.query.sceneids, g_sceneids=data.gallery.sceneids,
                          junk=cfg.junk, max_rank=cfg.max_rank, same_set=cfg.same_set)
    return result.as_dict()
