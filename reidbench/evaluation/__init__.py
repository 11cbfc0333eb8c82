"""Evaluation: ranking metrics and re-ranking."""

from reidbench.evaluation.metrics import RankMetrics, rank_metrics
from reidbench.evaluation.rerank import k_reciprocal_rerank

__all__ = ["RankMetrics", "k_reciprocal_rerank", "rank_metrics"]
