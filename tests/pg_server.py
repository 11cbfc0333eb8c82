"""A throw-away PostgreSQL cluster on loopback and an MLflow tracking server on it, for the multi-machine
test: what a shared store looks like when sweeps run on several machines (.ci/run installs Debian's
postgresql; without its binaries the test is skipped)."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

START_TIMEOUT_S = 90


def postgres_bin() -> Path | None:
    """The folder of initdb / pg_ctl: on PATH, else Debian's /usr/lib/postgresql/<version>/bin."""
    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(versions[-1]).parent if versions else None


def cluster_user() -> str | None:
    """Who runs the cluster: this user, or ``postgres`` when running as root (initdb refuses root)."""
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid()).pw_name
    try:
        return pwd.getpwnam("postgres").pw_name
    except KeyError:
        return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run(cmd: list[str], user: str, cwd: Path) -> None:
    as_user = user if os.geteuid() == 0 else None
    out = subprocess.run(cmd, user=as_user, cwd=cwd, capture_output=True, text=True, timeout=START_TIMEOUT_S)
    if out.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stdout}\n{out.stderr}")


@contextmanager
def postgres(bin_dir: Path, user: str) -> Iterator[str]:
    """A fresh cluster (trust auth, loopback only) with database ``mlflow``; its SQLAlchemy URL."""
    work = Path(tempfile.mkdtemp(prefix="reidbench-pg-"))  # not under pytest's 0700 folders
    shutil.chown(work, user)
    data, port = work / "data", free_port()

    def pg(tool: str, *args: str) -> None:
        _run([str(bin_dir / tool), *args], user, work)

    try:
        pg("initdb", "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync")
        options = f"-c listen_addresses=127.0.0.1 -p {port} -k {work} -c fsync=off"
        pg("pg_ctl", "-D", str(data), "-l", str(work / "log"), "-o", options, "-w", "start")
        try:
            pg("createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "mlflow")
            yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/mlflow"
        finally:
            pg("pg_ctl", "-D", str(data), "-m", "immediate", "-w", "stop")
    finally:
        shutil.rmtree(work, ignore_errors=True)


@contextmanager
def mlflow_server(backend: str, artifacts: Path) -> Iterator[str]:
    """``mlflow server`` on ``backend`` at a free loopback port; its http:// URI once it answers."""
    port = free_port()
    log = (artifacts.parent / "mlflow-server.log").open("w")
    cmd = [
        *(sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend),
        *("--default-artifact-root", artifacts.as_uri(), "--host", "127.0.0.1", "--port", str(port)),
        *("--workers", "1"),
    ]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(uri, proc, artifacts.parent / "mlflow-server.log")
        yield uri
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def _wait_healthy(uri: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"mlflow server did not answer within {START_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")
