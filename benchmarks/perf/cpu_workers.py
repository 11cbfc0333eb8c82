"""CPU runs side by side (``--workers N``, one core each) against one run at a time on every core.

The same small grid (four methods on the synthetic dataset, a few epochs) is trained twice in fresh
stores, each time as a fresh ``reidbench run`` process: once in process (torch on every core, the default),
once with ``--workers N``. With ``--busy`` a CPU-bound Python process runs alongside both, as on a shared
machine. It prints wall seconds, the ratio (in process over workers) and whether both gave the same mAP
per run (they need not: one thread sums in another order than two).

    python benchmarks/perf/cpu_workers.py                 # N = number of cores
    python benchmarks/perf/cpu_workers.py --busy --epochs 2
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
METHODS = ["late_fusion", "graft", "early_fusion", "single_modality"]
BUSY_LOOP = "while True: pass"


def train_grid(store: Path, epochs: int, extra: list[str]) -> tuple[float, dict[str, float]]:
    """Wall seconds of one ``reidbench run`` over METHODS, and each run's mAP read back from its store."""
    uri = f"sqlite:///{store / 'mlflow.db'}"
    args = [*(a for m in METHODS for a in ("-m", m)), "-d", "synthetic", "--seeds", "0", "-q"]
    args += ["--set", f"train.epochs={epochs}", "--no-save-weights", "--tracking-uri", uri]
    args += ["--results-dir", str(store / "results"), *extra]
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import cli; cli.main()", "run", *args], cwd=ROOT, check=True)
    wall = time.perf_counter() - start
    query = (
        "select r.name, m.value from runs r join metrics m on m.run_uuid = r.run_uuid "
        "where m.key = 'mAP' and r.name like '%#s0'"
    )
    with sqlite3.connect(store / "mlflow.db") as db:
        return wall, dict(db.execute(query).fetchall())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--busy", action="store_true", help="a CPU-bound process runs alongside")
    args = parser.parse_args()
    busy = subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) if args.busy else None
    try:
        with tempfile.TemporaryDirectory() as tmp:
            inline, inline_map = train_grid(Path(tmp) / "inline", args.epochs, [])
            pooled, pooled_map = train_grid(
                Path(tmp) / "workers", args.epochs, ["--workers", str(args.workers)]
            )
    finally:
        if busy:
            busy.kill()
    load = os.getloadavg()[0]
    print(
        f"{len(METHODS)} runs x {args.epochs} epochs, {len(os.sched_getaffinity(0))} cores, busy process: "
        f"{'yes' if busy else 'no'}, load average at the end {load:.1f}"
    )
    print(f"in process (torch on every core): {inline:7.1f} s")
    print(f"--workers {args.workers} (one share each):  {pooled:7.1f} s")
    print(f"speed-up: {inline / pooled:.2f}x")
    for name in sorted(inline_map):
        print(f"  {name}: mAP {inline_map[name]:.4f} in process, {pooled_map.get(name, -1):.4f} workers")


if __name__ == "__main__":
    main()
