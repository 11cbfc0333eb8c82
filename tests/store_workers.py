"""Worker processes for the store tests: each logs runs through reidbench.tracking like a sweep worker.

The metrics are a deterministic function of the run's name, so the same runs logged to two stores can be
compared value for value.
"""

from __future__ import annotations

import multiprocessing
import time
import zlib
from typing import Any

EPOCHS = 3


def fake_metrics(name: str) -> dict[str, float]:
    """Final metrics of run ``name`` (deterministic, distinct per name)."""
    x = zlib.crc32(name.encode()) / 2**32
    return {"mAP": x, "rank1": 1 - x / 2, "mAP@no_tir": x / 3}


def log_run(uri: str, experiment: str, name: str) -> None:
    """What a training worker does to the store: prepare, create a run, params, curves, metrics, finish."""
    from reidbench import tracking

    exp_id = tracking.prepare(uri, experiment)
    run = tracking.Run(uri, exp_id, name, {"run_kind": "run", "worker_test": "1"})
    run.log_params({"name": name, "optim.lr": "0.001"})
    final = fake_metrics(name)
    for epoch in range(EPOCHS):
        run.log_metrics({"loss": final["mAP"] + EPOCHS - epoch}, step=epoch)
    run.log_metrics(final)
    run.finish()


def open_study(storage: str) -> None:
    """What a ``reidbench tune`` worker does to its Optuna storage first: open the shared study, add a
    trial."""
    from reidbench.sweeps.storage import open_study

    open_study(storage, "shared").enqueue_trial({"x": 1.0})


def worker(uris: list[str], experiment: str, name: str, barrier: Any) -> None:
    """Log run ``name`` into each store of ``uris`` in turn (an ``optuna+sqlite:///`` one: open the study),
    starting each together with the other workers."""
    for uri in uris:
        barrier.wait(timeout=120)
        if uri.startswith("optuna+"):
            open_study(uri.removeprefix("optuna+"))
        else:
            log_run(uri, experiment, name)


def run_workers(uris: list[str], experiment: str, names: list[str], timeout: float = 180) -> list[int | None]:
    """One spawned process per name, all logging into every store of ``uris``; their exit codes."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(len(names))
    procs = [ctx.Process(target=worker, args=(uris, experiment, n, barrier)) for n in names]
    for p in procs:
        p.start()
    deadline = time.monotonic() + timeout
    for p in procs:
        p.join(max(0.0, deadline - time.monotonic()))
        if p.is_alive():
            p.kill()
            p.join()
    return [p.exitcode for p in procs]


def logged(uri: str, experiment: str) -> dict[str, tuple[str, dict[str, float], dict[str, list[float]]]]:
    """Run name -> (status, final metrics, loss curve) of every run in ``experiment``."""
    from reidbench import tracking

    runs = tracking.find_runs(uri, experiment, "tags.worker_test = '1'")
    curves = tracking.metric_histories(uri, [r.run_id for r in runs], ["loss"])
    out = {}
    for r in runs:
        curve = curves[curves.run_id == r.run_id].sort_values("step")["value"].tolist()
        out[r.name] = (r.status, r.metrics, {"loss": curve})
    return out
