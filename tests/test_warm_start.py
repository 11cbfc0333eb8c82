"""The runner's one warm-start hook (reidbench.train.warm_start): a transform registered by kind receives the
source run's saved weights; a step whose transform is missing is a one-line error; pruning rounds keep the
config hashes they had before the hook existed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch
from torch import nn

from reidbench import tracking
from reidbench.errors import UserError
from reidbench.prune.schedule import PruneStep, round_specs
from reidbench.spec import make_spec
from reidbench.train import warm_start
from reidbench.train.weights import log_run_weights, read_weights


@dataclass(frozen=True)
class CopyStep:
    kind: ClassVar[str] = "test-copy"
    source: str
    scale: float

    @property
    def label(self) -> str:
        return ":copy"

    @property
    def hint(self) -> str:
        return "train the source run first"


@dataclass(frozen=True)
class UnknownStep(CopyStep):
    kind: ClassVar[str] = "test-unknown"


def _scaled_copy(model: nn.Module, step: CopyStep, weights) -> warm_start.Started:
    model.load_state_dict(weights.state)
    with torch.no_grad():
        model.weight.mul_(step.scale)
    return warm_start.Started(weights_meta=lambda m: {"test.rows": str(m.weight.shape[0])})


warm_start.register(CopyStep.kind, _scaled_copy, "test: the source weights, scaled")


def test_pruning_rounds_keep_their_config_hashes():
    """The hashes (and run names) of pruning rounds computed on main before the hook (commit d495b87)."""
    base = make_spec("late_fusion", "synthetic", 0)
    expected = {
        "unstructured-l1": ["6e4533bfcf51", "cac3e60f7829", "909210679dc2"],
        "structured": ["6e4533bfcf51", "1c26611ac61f", "5002101c8eb9"],
    }
    for schedule, hashes in expected.items():
        specs = round_specs(base, schedule, 0.2, 2, 2)
        assert [s.config_hash for s in specs] == hashes
        assert specs[2].name == f"late_fusion@synthetic:{schedule}-r2#s0"
        assert isinstance(specs[2].warm_start, PruneStep) and specs[2].config()["prune"]["round"] == 2
    assert "prune" in warm_start.TRANSFORMS  # registered where pruning steps are defined


def test_missing_transform_is_one_line():
    with pytest.raises(UserError) as err:
        warm_start.start(nn.Linear(2, 2), UnknownStep("abc123", 1.0), "sqlite:///unused.db", "x")
    message = str(err.value)
    assert "\n" not in message and "'test-unknown'" in message and "UnknownStep" in message
    assert "prune" in message and "test-copy" in message  # what is registered


def test_no_step_is_a_plain_start():
    started = warm_start.start(nn.Linear(2, 2), None, None, "x")
    assert started.meta(nn.Linear(2, 2)) == {}
    with started.during:
        pass


def test_a_registered_transform_gets_the_source_runs_weights(tmp_path):
    uri, experiment = f"sqlite:///{tmp_path / 'mlflow.db'}", "warm"
    spec = make_spec("late_fusion", "synthetic", 0)
    torch.manual_seed(0)
    source = nn.Linear(3, 2)
    run = tracking.Run(
        uri, tracking.prepare(uri, experiment), "source", {"run_kind": "run", "config_hash": spec.config_hash}
    )
    log_run_weights(run, source, spec.config())
    run.finish()

    step = CopyStep(spec.config_hash, 2.0)
    model = nn.Linear(3, 2)
    started = warm_start.start(model, step, uri, experiment)
    assert torch.allclose(model.weight, 2 * source.weight) and torch.equal(model.bias, source.bias)
    assert started.meta(model) == {"test.rows": "2"}

    with pytest.raises(UserError, match="a tracking URI"):
        warm_start.start(model, step, None, experiment)
    with pytest.raises(UserError) as err:  # no finished run with that config in the experiment
        warm_start.start(model, CopyStep("0" * 12, 1.0), uri, experiment)
    assert "train the source run first" in str(err.value) and "\n" not in str(err.value)


def test_log_run_weights_writes_the_extra_header_pairs(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    spec = make_spec("late_fusion", "synthetic", 0)
    tags = {"run_kind": "run", "config_hash": spec.config_hash}
    run = tracking.Run(uri, tracking.prepare(uri, "w"), "r", tags)
    log_run_weights(run, nn.Linear(3, 2), spec.config(), {"reidbench.backbone_shapes": '{"heads": [1]}'})
    run.finish()
    path = tracking.download_artifact(uri, run.run_id, "model/model.safetensors", tmp_path / "dl")
    weights = read_weights(path)
    assert weights.shapes == {"heads": [1]} and weights.run_id == run.run_id


@pytest.mark.slow
def test_a_process_that_unpickles_a_pruning_spec_has_the_transform(tmp_path):
    """A worker or Slurm task gets its spec pickled: unpickling the step imports the module that defines it,
    which registers its transform (nothing else imported first)."""
    import pickle
    import subprocess
    import sys

    spec = round_specs(make_spec("late_fusion", "synthetic", 0), "structured", 0.2, 1, 1)[1]
    (tmp_path / "spec.pkl").write_bytes(pickle.dumps(spec))
    code = (
        "import pickle, sys; spec = pickle.loads(open(sys.argv[1], 'rb').read()); "
        "from reidbench.train import warm_start; "
        "transform = warm_start.TRANSFORMS.get('prune').load(); "
        "print(spec.warm_start.kind in warm_start.TRANSFORMS, transform.__module__)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "spec.pkl")], capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["True", "reidbench.prune.rounds"]
