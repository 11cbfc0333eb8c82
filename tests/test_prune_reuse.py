"""Pruning on a base that a plain ``run`` trained: every study's round 0 is a copy of that run (a copy of a
copy for the second study), and every round still finds the trained weights."""

from __future__ import annotations

from pathlib import Path

import pytest

from reidbench import tracking
from reidbench.context import RunContext
from reidbench.prune.study import run_study
from reidbench.spec import make_spec
from reidbench.sweeps.sweep import run_sweep
from reidbench.zoo import evaluate
from tests.conftest import TINY

pytestmark = pytest.mark.slow  # trains 3 tiny runs


def test_structured_after_unstructured_on_a_base_from_a_plain_run(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ctx = RunContext(Path("unused"), tracking_uri=uri, experiment="prune", device="cpu")
    base = make_spec("late_fusion", "synthetic", 0, TINY)
    plain = run_sweep([base], ctx)  # `reidbench run`: the trained run with the weights
    assert plain.trained == 1
    first = run_study([base], "unstructured-l1", 0.3, 1, 1, 1e-4, ctx)
    second = run_study([base], "structured", 0.3, 1, 1, 1e-4, ctx)
    assert not first.failures and not second.failures, (first.failures, second.failures)
    assert (first.reused, second.reused) == (1, 1) and first.trained == second.trained == 1

    trained = plain.results[0].run_id
    copies = tracking.find_runs(uri, "prune", "tags.run_kind = 'run' and tags.value = '0'")
    assert len(copies) == 2 and {c.tags["reused_from"] for c in copies} == {trained}  # never a copy's id
    for copy in copies:  # `eval --run COPY` finds the weights of the run it copies
        source = evaluate.from_run(uri, copy.run_id, tmp_path / copy.run_id)
        assert source.run_id == copy.run_id and source.weights.config_hash == base.config_hash
