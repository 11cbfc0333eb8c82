"""Start-up time of the commands that should answer at once (no torch import): wall seconds per command,
each a fresh subprocess of this interpreter running the ``reidbench`` CLI from this checkout.

    python benchmarks/perf/startup.py              # best and median of 5 runs each
    python benchmarks/perf/startup.py --repeats 10

It also prints whether the command imported torch (``-X importtime`` on the first run). The goal is under
1.5 s each on the 2-core development machine.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = {
    "--help": ["--help"],
    "list methods": ["list", "methods"],
    "list datasets": ["list", "datasets"],
    "list ablations": ["list", "ablations"],
    "run --set unknown key": ["run", "-m", "graft", "-d", "synthetic", "--set", "no_such.key=1"],
    "ablate --set unknown key": ["ablate", "fusion_tokens", "--set", "no_such.key=1"],
    "tune --set unknown key": [
        "tune",
        "-m",
        "graft",
        "-d",
        "synthetic",
        "--trials",
        "1",
        "--set",
        "no_such.key=1",
    ],
    "suite --set unknown key": ["suite", "generalisation", "--set", "no_such.key=1"],
    "eval --set unknown key": ["eval", "--run", "0123abc", "--set", "eval.no_such=1"],
}
BASELINE = "--help"  # the ratio column: each command's median over this one's, measured in the same run
ENTRY = "import cli; cli.main()"


def wall_time(args: list[str]) -> float:
    """Seconds one ``reidbench ARGS`` takes in a fresh interpreter."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", ENTRY, *args], cwd=ROOT, capture_output=True, check=False)
    return time.perf_counter() - start


def imports_torch(args: list[str]) -> bool:
    """Whether ``reidbench ARGS`` imports torch (from ``-X importtime``'s report)."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", ENTRY, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    return any(line.split("|")[-1].strip() == "torch" for line in done.stderr.splitlines())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"{'command':26s} {'best s':>7s} {'median s':>9s} {'x --help':>9s}  torch imported")
    baseline = None
    for name, argv in COMMANDS.items():
        times = [wall_time(argv) for _ in range(args.repeats)]
        median = statistics.median(times)
        baseline = baseline or median  # --help comes first
        print(f"{name:26s} {min(times):7.2f} {median:9.2f} {median / baseline:9.2f}  {imports_torch(argv)}")


if __name__ == "__main__":
    main()
