"""Feature extraction and the end-to-end evaluation of a model on a DataModule's query / gallery."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from reidbench.data.module import DataModule
from reidbench.evaluation.metrics import RankMetrics, rank_metrics, rank_metrics_from_features
from reidbench.evaluation.rerank import k_reciprocal_rerank
from reidbench.evaluation.settings import Setting, cross_modal_settings, missing_modality_settings
from reidbench.parallel import distributed


@torch.no_grad()
def extract(
    model: nn.Module, data: DataModule, split: str, batch_size: int, keep: tuple[str, ...] | None = None
) -> torch.Tensor:
    """L2-normalised embeddings of ``split`` (float32), batched, no grad, bf16 on GPU.

    ``keep``: the modalities the model sees (default all); the others are zero-filled, or left out
    of the batch for a model with ``drops_missing_modalities``. Under torch.distributed each rank
    embeds every world-size-th batch and the rows are gathered.
    """
    model.eval()
    dropped = tuple(m for m in data.modalities if keep is not None and m not in keep)
    omit = getattr(model, "drops_missing_modalities", False)
    feats, index = [], []
    use_amp = data.device.type == "cuda"
    rank, world = distributed.rank(), distributed.world_size()
    for i, batch in enumerate(data.eval_batches(split, batch_size, () if omit else dropped)):
        if i % world != rank:
            continue
        for m in dropped if omit else ():
            del batch[m]
        with torch.autocast(data.device.type, dtype=torch.bfloat16, enabled=use_amp):
            feats.append(model(batch).embedding.float())
        index.append(batch["index"])
    if world > 1:
        local = torch.cat(feats) if feats else torch.zeros(0, 0, device=data.device)
        rows = torch.cat(index) if index else torch.zeros(0, dtype=torch.long)
        return F.normalize(distributed.gather_by_index(local, rows), dim=1)
    return F.normalize(torch.cat(feats), dim=1)


def settings_of(data: DataModule) -> list[Setting]:
    """The protocol's evaluation settings: all modalities first, then missing / cross-modal ones."""
    cfg, mods = data.protocol.eval, data.modalities
    out = [Setting("all", tuple(mods), tuple(mods))]
    if cfg.missing_modality and len(mods) > 1:
        out += missing_modality_settings(mods)
    if cfg.cross_modal:
        out += cross_modal_settings(mods, cfg.cross_modal)
    return out


def evaluate(model: nn.Module, data: DataModule) -> dict[str, float]:
    """Metrics of ``model`` in every setting: ``mAP``, ``rank1``.. for all modalities, ``mAP@<setting>`` else."""
    cfg = data.protocol.eval
    cache: dict[tuple[str, tuple[str, ...]], torch.Tensor] = {}

    def feats(split: str, keep: tuple[str, ...]) -> torch.Tensor:
        if split == "gallery" and data.gallery is data.query:
            split = "query"
        if (split, keep) not in cache:
            cache[(split, keep)] = extract(model, data, split, cfg.batch_size, keep)
        return cache[(split, keep)]

    labels = {
        "q_pids": data.query.pids,
        "g_pids": data.gallery.pids,
        "q_camids": data.query.camids,
        "g_camids": data.gallery.camids,
        "q_sceneids": data.query.sceneids,
        "g_sceneids": data.gallery.sceneids,
        "junk": cfg.junk,
        "max_rank": cfg.max_rank,
        "same_set": cfg.same_set,
    }

    def suffixed(result: RankMetrics, name: str) -> dict[str, float]:
        suffix = "" if name == "all" else f"@{name}"
        return {f"{k}{suffix}": v for k, v in result.as_dict().items()}

    metrics: dict[str, float] = {}
    for setting in settings_of(data):
        qf, gf = feats("query", setting.query), feats("gallery", setting.gallery)
        metrics.update(suffixed(rank_metrics_from_features(qf, gf, **labels), setting.name))
    if cfg.rerank:
        qf, gf = feats("query", tuple(data.modalities)), feats("gallery", tuple(data.modalities))
        dist = k_reciprocal_rerank(qf, gf, k1=cfg.rerank_k1, k2=cfg.rerank_k2, lambda_value=cfg.rerank_lambda)
        metrics.update(suffixed(rank_metrics(dist, **labels), "rerank"))
    return metrics
