"""Evaluation: rank metrics (mAP, CMC, mINP) and feature extraction."""

from reidbench.evaluation.features import evaluate, extract
from reidbench.evaluation.metrics import RankMetrics, rank_metrics

__all__ = ["RankMetrics", "evaluate", "extract", "rank_metrics"]
