"""Hand-computed cases for the rank metrics (the exhaustive tests live in test_metrics.py)."""

import numpy as np
import pytest

from reidbench.evaluation import rank_metrics


def test_hand_computed_market_rule():
    # one query (pid 1, cam 0); gallery ordered by distance:
    # g0 pid1 cam0 (junk: same id and camera), g1 pid2, g2 pid1 cam1, g3 pid3, g4 pid1 cam2
    dist = np.array([[0.1, 0.2, 0.3, 0.4, 0.5]])
    r = rank_metrics(
        dist, np.array([1]), np.array([1, 2, 1, 3, 1]), np.array([0]), np.array([0, 1, 1, 1, 2]), max_rank=4
    )
    # after junk removal: [neg, pos, neg, pos]; AP = (1/2 + 2/4) / 2; INP = 2 / 4
    assert r.mAP == pytest.approx(0.5)
    assert r.mINP == pytest.approx(0.5)
    assert r.cmc.tolist() == [0.0, 1.0, 1.0, 1.0]
    assert r.num_valid_queries == 1


def test_query_without_positive_is_skipped():
    dist = np.array([[0.1, 0.2], [0.1, 0.2]])
    r = rank_metrics(dist, np.array([1, 5]), np.array([1, 2]), np.array([0, 0]), np.array([1, 1]), max_rank=2)
    assert r.num_valid_queries == 1 and r.mAP == pytest.approx(1.0)
