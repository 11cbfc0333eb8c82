"""Feature extraction and the end-to-end evaluation of a model on a query and a gallery set.

The sets are :class:`EvalSet` s: labels plus a source of un-augmented, normalised batches. Evaluation
does not know where they came from (the training dataset's test split, another dataset, a validation
split), so the same code scores a model in-domain, cross-domain or from saved weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from reidbench.data.evalset import EvalSet
from reidbench.evaluation.metrics import RankMetrics, rank_metrics, rank_metrics_from_features
from reidbench.evaluation.missing import OMITTED
from reidbench.evaluation.rerank import k_reciprocal_rerank
from reidbench.evaluation.settings import Setting, cross_modal_settings, missing_modality_settings
from reidbench.parallel import distributed
from reidbench.protocol import EvalCfg


@torch.no_grad()
def extract(
    model: nn.Module,
    data: EvalSet,
    batch_size: int,
    keep: tuple[str, ...] | None = None,
    convention: str | None = None,
) -> torch.Tensor:
    """L2-normalised embeddings of ``data`` (float32), batched, no grad, bf16 on GPU.

    ``keep``: the modalities the model sees (default all); the others are zero-filled (``convention``
    ``zero``) or left out of the batch (``drop`` / ``reconstruct``; None: left out for a model with
    ``drops_missing_modalities``, else zero-filled). Under torch.distributed each rank embeds every
    world-size-th batch and the rows are gathered.
    """
    model.eval()
    dropped = tuple(m for m in data.modalities if keep is not None and m not in keep)
    if convention is None:
        omit = getattr(model, "drops_missing_modalities", False)
    else:
        omit = convention in OMITTED
    feats, index = [], []
    use_amp = data.device.type == "cuda"
    rank, world = distributed.rank(), distributed.world_size()
    for i, batch in enumerate(data.batches(batch_size, () if omit else dropped)):
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


def eval_settings(
    modalities: tuple[str, ...], cfg: EvalCfg, conventions: list[str] | None = None
) -> list[Setting]:
    """The evaluation settings ``cfg`` asks for: all modalities first, then missing / cross-modal ones
    (missing ones under each of ``conventions``, the model's own first; None: its own way, unnamed)."""
    mods = list(modalities)
    out = [Setting("all", tuple(mods), tuple(mods))]
    if cfg.missing_modality and len(mods) > 1:
        out += missing_modality_settings(mods, conventions)
    if cfg.cross_modal:
        out += cross_modal_settings(mods, cfg.cross_modal)
    return out


def evaluate(
    model: nn.Module,
    query: EvalSet,
    gallery: EvalSet,
    cfg: EvalCfg,
    conventions: list[str] | None = None,
) -> dict[str, float]:
    """Metrics of ``model`` in every setting of ``cfg``: ``mAP``, ``rank1``.. for all modalities,
    ``mAP@<setting>`` for the others. ``gallery is query`` (RGBNT201) embeds the set once.
    ``conventions``: the missing-modality conventions to evaluate, the model's own first
    (:func:`reidbench.evaluation.missing.resolve_conventions`); None: the model's own way, unnamed."""
    cache: dict[tuple[str, tuple[str, ...], str | None], torch.Tensor] = {}

    def feats(side: str, keep: tuple[str, ...], convention: str | None = None) -> torch.Tensor:
        data = query if side == "query" or gallery is query else gallery
        key = ("query" if data is query else "gallery", keep, convention)
        if key not in cache:
            cache[key] = extract(model, data, cfg.batch_size, keep, convention)
        return cache[key]

    labels = {
        "q_pids": query.pids,
        "g_pids": gallery.pids,
        "q_camids": query.camids,
        "g_camids": gallery.camids,
        "q_sceneids": query.sceneids,
        "g_sceneids": gallery.sceneids,
        "junk": cfg.junk,
        "max_rank": cfg.max_rank,
        "same_set": cfg.same_set,
    }

    def suffixed(result: RankMetrics, name: str) -> dict[str, float]:
        suffix = "" if name == "all" else f"@{name}"
        return {f"{k}{suffix}": v for k, v in result.as_dict().items()}

    metrics: dict[str, float] = {}
    for setting in eval_settings(query.modalities, cfg, conventions):
        qf = feats("query", setting.query, setting.convention)
        gf = feats("gallery", setting.gallery, setting.convention)
        metrics.update(suffixed(rank_metrics_from_features(qf, gf, **labels), setting.name))
    if cfg.rerank:
        qf, gf = feats("query", query.modalities), feats("gallery", query.modalities)
        dist = k_reciprocal_rerank(qf, gf, k1=cfg.rerank_k1, k2=cfg.rerank_k2, lambda_value=cfg.rerank_lambda)
        metrics.update(suffixed(rank_metrics(dist, **labels), "rerank"))
    return metrics
