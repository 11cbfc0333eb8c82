"""The job queue's speed: submit-to-start latency, and `queue ls` / the page with 1,000 jobs.

    python benchmarks/perf/queue_speed.py              # 20 submits each way, 1,000 jobs listed
    python benchmarks/perf/queue_speed.py --jobs 5000

Submit-to-start: a job is added to the store and the seconds until the scheduler has started its process
(status ``running`` with a pid) and until that process runs its first statement are measured, once with
the scheduler woken by the submit (what the web form does) and once left to its 0.5 s poll (what
``queue add`` from another process gets). A bare ``python -c pass`` start, measured in the same run, is
the floor the second figure cannot go below.

Listing: 1,000 finished jobs in a fresh queue; ``queue ls`` in a fresh interpreter against ``reidbench
--help`` (start-up alone), and one render of the page (GET /) in process, per call and per job.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from reidbench.queue.scheduler import Scheduler  # noqa: E402
from reidbench.queue.store import Store  # noqa: E402

# a job that records when its first statement ran, then exits like the real child
STAMP = (
    "import json, sys, time, pathlib; t = time.time(); r = pathlib.Path(sys.argv[1]);"
    " r.with_suffix('.t').write_text(repr(t)); r.write_text(json.dumps({'exit': 0}))"
)
ENTRY = "import cli; cli.main()"


def python_start(repeats: int) -> float:
    """Median seconds of ``python -c pass``."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def submit_to_start(store: Store, repeats: int, wake: bool) -> tuple[float, float]:
    """Median seconds from add to ``running`` and from add to the job's first statement."""
    scheduler = Scheduler(store, ["cpu0"], child=[sys.executable, "-c", STAMP], poll_s=0.5)
    stop = threading.Event()
    thread = threading.Thread(target=scheduler.run_forever, args=(stop,), daemon=True)
    thread.start()
    claimed, first = [], []
    try:
        for _ in range(repeats):
            time.sleep(0.13)  # submits land at random points of the poll interval
            t0 = time.time()
            job_id = store.add("run", [], "bench", cwd=str(ROOT))
            if wake:
                scheduler.wake.set()
            while (job := store.get(job_id)).pid is None:
                time.sleep(0.002)
            claimed.append(job.started - t0)
            stamp = store.result_path(job_id).with_suffix(".t")
            while not stamp.is_file() or not stamp.read_text():
                time.sleep(0.002)
            first.append(float(stamp.read_text()) - t0)
            while store.get(job_id).status != "finished":
                time.sleep(0.002)
    finally:
        stop.set()
        scheduler.wake.set()
        thread.join()
    return statistics.median(claimed), statistics.median(first)


def fill(store: Store, n: int) -> None:
    """``n`` finished jobs with a point, an mAP and a run id each."""
    for i in range(n):
        point = {"name": f"late_fusion@synthetic#s{i}", "config_hash": f"{i:016x}", "epochs": 60}
        job_id = store.add(
            "run", ["run", "-m", "late_fusion"], f"run -m late_fusion --seeds {i}", points=[point]
        )
        store.update(job_id, status="finished", started=1e9, ended=1e9 + 3600, map=0.5, run_ids=[f"{i:032x}"],
                     experiment_id="1", devices="0")  # fmt: skip


def cli_time(args: list[str], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", ENTRY, *args], cwd=ROOT, capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        floor = python_start(5)
        print(f"python -c pass (floor for a job's first statement): {1000 * floor:.0f} ms")
        for wake in (True, False):
            store = Store(Path(tmp) / f"latency-{wake}.db")
            claimed, first = submit_to_start(store, args.repeats, wake)
            how = "woken by the submit (web form)" if wake else "0.5 s poll (queue add)"
            print(f"submit -> running, {how}: {1000 * claimed:.1f} ms; -> job's first statement "
                  f"{1000 * first:.0f} ms ({first / floor:.2f}x python start)")  # fmt: skip

        path = Path(tmp) / "big.db"
        store = Store(path)
        start = time.perf_counter()
        fill(store, args.jobs)
        print(f"adding {args.jobs} jobs: {1e3 * (time.perf_counter() - start) / args.jobs:.2f} ms per add")
        base = cli_time(["--help"], 3)
        ls = cli_time(["queue", "--queue", str(path), "ls"], 3)
        print(
            f"queue ls with {args.jobs} jobs: {ls:.2f} s in a fresh interpreter; "
            f"reidbench --help {base:.2f} s; ratio {ls / base:.2f}x"
        )

        from fastapi.testclient import TestClient

        from reidbench.web.app import create_app

        client = TestClient(create_app(store, Scheduler(store, ["cpu0"])), base_url="http://127.0.0.1")
        client.get("/")  # templates compiled once
        times = []
        for _ in range(5):
            start = time.perf_counter()
            page = client.get("/")
            times.append(time.perf_counter() - start)
        assert page.status_code == 200 and page.text.count('class="status-finished"') == args.jobs
        one = Store(Path(tmp) / "one.db")
        fill(one, 1)
        small = TestClient(create_app(one, Scheduler(one, ["cpu0"])), base_url="http://127.0.0.1")
        small.get("/")
        t_small = []
        for _ in range(5):
            start = time.perf_counter()
            small.get("/")
            t_small.append(time.perf_counter() - start)
        big, tiny = statistics.median(times), statistics.median(t_small)
        per_job = 1e6 * (big - tiny) / (args.jobs - 1)
        print(
            f"page GET / with {args.jobs} jobs: {1000 * big:.0f} ms ({len(page.content) / 1e6:.2f} MB), "
            f"{per_job:.0f} us per extra job; with 1 job {1000 * tiny:.1f} ms; ratio {big / tiny:.1f}x"
        )


if __name__ == "__main__":
    main()
