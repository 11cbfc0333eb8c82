"""The run path's plumbing without training: one RunContext handed whole to every job, executors that say
how many processes a run gets and whether its progress shows, the typed training state and its
checkpoint layout, and a dataset scanned once per process."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from reidbench.context import RunContext, RunResult
from reidbench.data import loading
from reidbench.registry import DATASETS, load_plugins
from reidbench.spec import make_spec
from reidbench.sweeps import executors
from reidbench.sweeps.jobs import Job
from reidbench.sweeps.sweep import run_sweep
from reidbench.train.checkpoint import Checkpointer, checkpoint_root
from reidbench.train.state import TrainState
from tests.conftest import TINY


@dataclass
class RecordingExecutor:
    """Stands in for a pool: records the jobs it gets and 'trains' them instantly."""

    nprocs: int = 2
    shows_run_progress: bool = False
    jobs: list[Job] = field(default_factory=list)

    def run(self, jobs, on_done=None):
        self.jobs += jobs
        results = [RunResult(job.spec, {"mAP": 0.5}, f"run-{i}") for i, job in enumerate(jobs)]
        for result in results:
            if on_done:
                on_done(result)
        return results


def test_every_job_gets_the_commands_context_under_the_sweeps_parent(mlflow_uri, tmp_path):
    specs = [make_spec("late_fusion", "synthetic", seed, TINY) for seed in (0, 1)]
    ctx = RunContext(tmp_path, mlflow_uri, "e", "cpu", tmp_path / "ckpt", True, True, True)
    pool = RecordingExecutor()
    result = run_sweep(specs, ctx, pool)
    assert [job.spec for job in pool.jobs] == specs and {job.nprocs for job in pool.jobs} == {2}
    (context,) = {job.context for job in pool.jobs}
    assert context.parent_run_id == result.parent_run_id is not None
    assert not context.show_progress  # nobody watches a pool's runs: the sweep shows one bar instead
    assert (context.data_root, context.checkpoint_dir, context.keep_checkpoints, context.allow_partial) == (
        tmp_path,
        tmp_path / "ckpt",
        True,
        True,
    )
    assert [r.run_id for r in result.results] == ["run-0", "run-1"] and result.trained == 2


def test_executors_say_processes_per_run_and_whether_runs_show_progress(tmp_path):
    here = executors.build("cpu", tmp_path)
    pool = executors.build("cuda", tmp_path, gpus="0-3", gpus_per_run=2)
    ddp_on_cpu = executors.build("cpu", tmp_path, gpus_per_run=2)
    slurm = executors.build("cuda", tmp_path, launcher="slurm", gpus_per_run=4)
    assert [(e.nprocs, e.shows_run_progress) for e in (here, pool, ddp_on_cpu, slurm)] == [
        (1, True),
        (2, False),
        (2, False),
        (4, False),
    ]
    assert pool.slots == [["0", "1"], ["2", "3"]]


def test_train_state_round_trips_and_reads_the_first_checkpoint_layout(tmp_path):
    state = TrainState("abc123", "run-1", epoch=2, stage=1, step=7, history=[{"train_loss": 1.0}] * 2)
    state.train_time_s, state.samples_seen = 4.0, 128
    state.model, state.criterion = {"w": torch.ones(2)}, {"c": torch.zeros(1)}
    state.optimizer, state.rng = {"state": {}}, [{"python": 1}]
    ckpt = Checkpointer(tmp_path / "abc123")
    ckpt.save(state)
    back = ckpt.load()
    assert (back.config_hash, back.run_id, back.epoch, back.stage, back.step) == ("abc123", "run-1", 2, 1, 7)
    assert back.history == state.history and back.samples_per_s == 32.0 and back.started
    assert torch.equal(back.model["w"], torch.ones(2)) and back.rng == [{"python": 1}]
    # the layout the first checkpoints were written in (a dict built by hand in engine.fit / runner.save)
    first = {
        "epoch": 1,
        "stage": 0,
        "step": 2,
        "model": {},
        "criterion": {},
        "optimizer": {},
        "result": {"history": [{"train_loss": 2.0}], "train_time_s": 1.0, "samples_seen": 16},
        "rng": [],
        "config_hash": "abc123",
        "run_id": "old-run",
    }
    assert TrainState.from_dict(first).to_dict() == first


def test_checkpoint_root_honours_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("REIDBENCH_CHECKPOINTS", raising=False)
    assert checkpoint_root(tmp_path) == tmp_path / "checkpoints"
    monkeypatch.setenv("REIDBENCH_CHECKPOINTS", str(tmp_path / "elsewhere"))
    assert checkpoint_root(tmp_path) == tmp_path / "elsewhere"


def test_a_dataset_is_scanned_once_per_process(monkeypatch, tmp_path):
    load_plugins()
    entry = DATASETS.get("synthetic")
    calls = []

    def counting(data_root, **kwargs):
        calls.append(data_root)
        return entry.builder(data_root, **kwargs)

    monkeypatch.setitem(DATASETS._entries, "synthetic", type(entry)("synthetic", counting, entry.description))
    loading._scan.cache_clear()
    first = loading.load_dataset("synthetic", Path("unused"))
    assert loading.load_dataset("synthetic", Path("unused")) is first
    assert len(calls) == 1
    loading.load_dataset("synthetic", Path("unused"), allow_partial=True)  # another request: scanned again
    assert len(calls) == 2
    loading._scan.cache_clear()
