"""Starting processes: the N ranks of one run (torchrun-style environment), and stopping them cleanly.

Imports nothing heavy, so a launcher process starts fast.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from reidbench.errors import UserError


@dataclass(frozen=True)
class DistEnv:
    """The torchrun environment of one process."""

    rank: int
    local_rank: int
    world_size: int
    master_addr: str
    master_port: int


def env_from_os(environ: dict[str, str] | None = None) -> DistEnv | None:
    """The torchrun-style environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT) when WORLD_SIZE > 1."""
    env = os.environ if environ is None else environ
    world = int(env.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None
    try:
        return DistEnv(
            int(env["RANK"]),
            int(env.get("LOCAL_RANK", env["RANK"])),
            world,
            env.get("MASTER_ADDR", "127.0.0.1"),
            int(env["MASTER_PORT"]),
        )
    except KeyError as exc:
        raise UserError(
            f"WORLD_SIZE={world} is set but {exc.args[0]} is not: launch with torchrun or --gpus-per-run"
        ) from None


def rank_env(rank: int, world_size: int, port: int, addr: str = "127.0.0.1") -> dict[str, str]:
    """The environment variables torchrun would give process ``rank`` (single node)."""
    return {
        "RANK": str(rank),
        "LOCAL_RANK": str(rank),
        "WORLD_SIZE": str(world_size),
        "LOCAL_WORLD_SIZE": str(world_size),
        "MASTER_ADDR": addr,
        "MASTER_PORT": str(port),
    }


def free_port() -> int:
    """A TCP port that is free right now on this host."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(
    cmd: list[str],
    nprocs: int,
    env: dict[str, str] | None = None,
    log: Path | None = None,
    poll_s: float = 0.2,
) -> int:
    """Run ``cmd`` as ``nprocs`` ranks (torchrun environment) and wait; the first failure ends the others.

    Returns 0 when every rank succeeded, else the failing rank's exit code.
    """
    port = free_port()
    base = dict(os.environ if env is None else env)
    base.setdefault(
        "OMP_NUM_THREADS", "1"
    )  # as torchrun: N ranks on one host must not oversubscribe the CPUs
    out = open(log, "ab") if log else None  # closed below
    procs = [
        subprocess.Popen(
            cmd,
            env={**base, **rank_env(r, nprocs, port)},
            stdout=out or None,
            stderr=subprocess.STDOUT if out else None,
        )
        for r in range(nprocs)
    ]
    try:
        while True:
            codes = [p.poll() for p in procs]
            failed = [c for c in codes if c not in (None, 0)]
            if failed:
                terminate(procs)
                return failed[0]
            if all(c == 0 for c in codes):
                return 0
            time.sleep(poll_s)
    except BaseException:
        terminate(procs)
        raise
    finally:
        if out:
            out.close()


def terminate(procs: list[subprocess.Popen], grace_s: float = 10.0) -> None:
    """SIGTERM the processes still running, SIGKILL them after ``grace_s``."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for p in procs:
        try:
            p.wait(timeout=max(deadline - time.monotonic(), 0.01))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit so ``finally`` blocks run (the run is then marked KILLED)."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
