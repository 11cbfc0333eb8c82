"""Feature extraction and the end-to-end evaluation of a model on a DataModule's query / gallery."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from reidbench.data.module import DataModule
from reidbench.evaluation.metrics import rank_metrics
from reidbench.evaluation.settings import Setting, cross_modal_settings, missing_modality_settings


@torch.no_grad()
def extract(model: nn.Module, data: DataModule, split: str, batch_size: int,
            keep: tuple[str, ...] | None = None) -> torch.Tensor:
    """L2-normalised embeddings of ``split`` (float32), batched, no grad, bf16 on GPU.

    ``keep``: the modalities the model sees (default all); the others are zero-filled, or left out
    of the batch for a model with ``drops_missing_modalities``.
    """
    model.eval()
    dropped = tuple(m for m in data.modalities if keep is not None and m not in keep)
    omit = getattr(model, "drops_missing_modalities", False)
    feats = []
    use_amp = data.device.type == "cuda"
    for batch in data.eval_batches(split, batch_size, () if omit else dropped):
        for m in dropped if omit else ():
            del batch[m]
        with torch.autocast(data.device.type, dtype=torch.bfloat16, enabled=use_amp):
            feats.append(model(batch).embedding.float())
    return F.normalize(torch.cat(feats), dim=1)


def euclidean(q: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Euclidean distances between L2-normalised rows: ``sqrt(2 - 2 q.g)``."""
    return (2 - 2 * q @ g.t()).clamp_min(0).sqrt()


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

    metrics: dict[str, float] = {}
    for setting in settings_of(data):
        result = rank_metrics(euclidean(feats("query", setting.query), feats("gallery", setting.gallery)),
                              data.query.pids, data.gallery.pids, data.query.camids, data.gallery.camids,
                              q_sceneids=data.query.sceneids, g_sceneids=data.gallery.sceneids,
                              junk=cfg.junk, max_rank=cfg.max_rank, same_set=cfg.same_set).as_dict()
        suffix = "" if setting.name == "all" else f"@{setting.name}"
        metrics.update({f"{k}{suffix}": v for k, v in result.items()})
    return metrics
