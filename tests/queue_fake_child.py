"""A stand-in for ``python -m reidbench.cli.child`` in scheduler tests: no training, same contract.

``queue_fake_child.py RESULT MODE [SECONDS]``: appends its pid to RESULT.starts, then
``ok`` sleeps SECONDS and exits 0; ``fail`` exits 1 with a RuntimeError whose text mentions CUDA;
``oom`` exits 1 with an OutOfMemoryError; ``once`` sleeps 120 s on its first start and exits 0 on a
later one; ``spawn`` starts a grandchild (``sleep``), writes its pid to
RESULT.grandchild and sleeps. The result file is written like the real child writes it.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

result, mode = Path(sys.argv[1]), sys.argv[2]
seconds = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
with open(f"{result}.starts", "a") as f:
    f.write(f"{os.getpid()}\n")
print(f"fake job {mode} starting", flush=True)
error, code = None, 0
if mode == "ok":
    for i in range(int(seconds * 10)):
        time.sleep(0.1)
        if i % 5 == 0:
            print(f"tick {i}", flush=True)
elif mode == "fail":
    error, code = "RuntimeError: CUDA error: device-side assert triggered", 1
elif mode == "oom":
    error, code = "OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB", 1
elif mode == "once":  # the first start waits to be killed, a later one finishes at once
    if len(Path(f"{result}.starts").read_text().split()) == 1:
        time.sleep(120)
elif mode == "spawn":
    grandchild = subprocess.Popen(["sleep", "60"])
    Path(f"{result}.grandchild").write_text(str(grandchild.pid))
    time.sleep(60)
print(f"fake job {mode} done", flush=True)
result.write_text(json.dumps({"exit": code, "error": error}))
sys.exit(code)
