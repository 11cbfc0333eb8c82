"""The local GPU pool (fake device ids, a cheap worker) and the real worker's failure report."""

import json
import sys
from pathlib import Path

import pytest

from reidbench.context import RunContext
from reidbench.spec import make_spec
from reidbench.sweeps.executors import Job, LocalPool, worker_command
from tests.conftest import TINY

pytestmark = pytest.mark.slow  # trains models or starts processes: `make test-fast` skips it

# A stand-in for reidbench.sweeps.worker: records its devices and lifetime; jobs 0 and 1 wait for each other
# (so the test fails unless two runs really run at once), job 2 fails.
CHEAP_WORKER = r"""
import json, os, sys, time
from pathlib import Path
from reidbench.sweeps.jobs import write_error, write_result

job_dir = Path(sys.argv[1])
index = int(job_dir.name[:4])
start = time.time()
(job_dir / "started").touch()
if index in (0, 1):
    other = next(job_dir.parent.glob(f"{1 - index:04d}-*/started"), None)
    while other is None and time.time() - start < 120:
        time.sleep(0.05)
        other = next(job_dir.parent.glob(f"{1 - index:04d}-*/started"), None)
    if other is None:
        sys.exit(4)
time.sleep(0.3)
(job_dir / "env.json").write_text(json.dumps({"devices": os.environ["CUDA_VISIBLE_DEVICES"], "start": start,
                                               "end": time.time()}))
if index == 2:
    try:
        raise RuntimeError("boom")
    except RuntimeError as exc:
        write_error(job_dir, 0, exc)
        sys.exit(3)
write_result(job_dir, {"mAP": index / 10}, f"run-{index}")
"""


def command(job_dir: Path) -> list[str]:
    if job_dir.name.startswith("0004"):
        return worker_command(job_dir)  # the real worker
    return [sys.executable, "-c", CHEAP_WORKER, str(job_dir)]


def test_pool_runs_each_job_on_its_own_devices_and_reports_failures(tmp_path):
    spec = make_spec("late_fusion", "synthetic", 0, TINY)
    broken = make_spec("late_fusion", "rgbnt100", 0, TINY)  # no data under the data root: fails in the worker
    jobs = [Job(spec, RunContext(tmp_path, device="cpu")) for _ in range(4)]
    jobs.append(Job(broken, RunContext(tmp_path / "empty", device="cpu")))
    pool = LocalPool([["0", "1"], ["2", "3"]], tmp_path / "jobs", command=command, poll_s=0.05)
    done = []
    outcomes = pool.run(jobs, done.append)

    assert len(done) == 5 and [o.spec for o in outcomes] == [job.spec for job in jobs]
    assert [o.ok for o in outcomes] == [True, True, False, True, False]
    assert [o.metrics["mAP"] for o in outcomes if o.ok] == [0.0, 0.1, 0.3]
    assert outcomes[2].error == "RuntimeError: boom"
    assert outcomes[4].error.startswith("UserError: dataset 'rgbnt100': expected folder")
    assert "Traceback" in outcomes[4].log.read_text()  # the worker's log keeps the traceback
    records = [json.loads(p.read_text()) for p in sorted((tmp_path / "jobs").glob("000[0-3]-*/env.json"))]
    assert {r["devices"] for r in records} == {"0,1", "2,3"}
    assert (
        records[0]["devices"] != records[1]["devices"]
    )  # 0 and 1 ran at the same time (they wait for each other)
    for a in records:
        running = [b for b in records if b["start"] <= a["start"] < b["end"]]
        assert len(running) <= 2  # never more runs than slots
        assert len({b["devices"] for b in running}) == len(running)  # and never two on the same devices


ENV_WORKER = r"""
import json, os, sys
from pathlib import Path
from reidbench.sweeps.jobs import write_result

job_dir = Path(sys.argv[1])
(job_dir / "env.json").write_text(json.dumps({"threads": os.environ.get("OMP_NUM_THREADS")}))
write_result(job_dir, {"mAP": 0.5}, "run")
"""


def test_cpu_workers_share_the_cores_out_between_them(tmp_path, monkeypatch):
    from reidbench.errors import UserError
    from reidbench.sweeps import executors

    monkeypatch.setattr(executors.os, "sched_getaffinity", lambda _: set(range(8)), raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # a cap (make demo: one thread per run on any machine)
    assert executors.build("cpu", tmp_path, workers=2).threads == 1
    monkeypatch.delenv("OMP_NUM_THREADS")
    pool = executors.build("cpu", tmp_path, workers=4)
    assert isinstance(pool, LocalPool) and pool.slots == [None] * 4 and pool.threads == 2
    assert executors.build("cpu", tmp_path, workers=16).threads == 1  # never 0
    assert executors.build("cpu", tmp_path, workers=2, gpus_per_run=2).threads == 2  # 2 runs x 2 ranks
    assert isinstance(executors.build("cpu", tmp_path), executors.InProcess)
    with pytest.raises(UserError, match="--workers runs points side by side"):
        executors.build("cuda", tmp_path, gpus="0,1", workers=2)

    spec = make_spec("late_fusion", "synthetic", 0, TINY)
    jobs = [Job(spec, RunContext(tmp_path, device="cpu")) for _ in range(3)]
    pool.command = lambda job_dir: [sys.executable, "-c", ENV_WORKER, str(job_dir)]
    pool.poll_s = 0.05
    assert [o.ok for o in pool.run(jobs)] == [True] * 3
    records = [json.loads(p.read_text()) for p in sorted(pool.work_dir.glob("*/env.json"))]
    assert [r["threads"] for r in records] == ["2"] * 3  # each worker's torch sees its share
