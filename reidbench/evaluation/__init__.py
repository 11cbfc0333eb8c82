"""Evaluation: ranking metrics (mAP, CMC, mINP), re-ranking, settings and feature extraction."""

from reidbench.evaluation.features import EvalSet, evaluate, extract
from reidbench.evaluation.metrics import RankMetrics, rank_metrics, rank_metrics_from_features
from reidbench.evaluation.rerank import k_reciprocal_rerank

__all__ = [
    "EvalSet",
    "RankMetrics",
    "evaluate",
    "extract",
    "k_reciprocal_rerank",
    "rank_metrics",
    "rank_metrics_from_features",
]
