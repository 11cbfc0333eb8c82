"""A real one-node Slurm cluster for the tests marked ``slurm_cluster`` (Debian's slurm-wlm 22.05, munge,
slurmdbd on a throw-away MariaDB so that ``sacct`` works; ``.ci/run`` installs them).

Everything lives in a fresh folder under /tmp (munged's socket needs world-executable parents, which
pytest's 0700 folders are not): its own munge key and socket, its own ports, its own slurm.conf reached
through ``SLURM_CONF``, so it touches neither /etc/slurm nor a system munged. The cluster is started once
per session and stopped at its end; only the processes started here (found by a marker in their
environment) are stopped, and a cluster left behind by a session that was killed is stopped at the next
start. Where Slurm cannot start the tests are skipped with the reason, except under ``CI=true``, where
they fail (CI installs Slurm, so a Slurm that cannot start there is a bug).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

PROGRAMS = ("munged", "mungekey", "mariadbd", "slurmdbd", "slurmctld", "slurmd", "sbatch", "srun", "sacct",
            "squeue", "scontrol", "scancel", "sinfo")  # fmt: skip
MARKER = "REIDBENCH_SLURM_DIR"  # in every daemon's environment: what the teardown may stop
PREFIX = "reidbench-slurm-"
START_TIMEOUT_S = 60.0

SLURM_CONF = """\
ClusterName=reidbenchci
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={munge_socket}
AccountingStoragePass={munge_socket}
CredType=cred/munge
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
SwitchType=switch/none
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort={dbd_port}
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
SlurmdParameters=config_overrides
MinJobAge=300
KillWait=2
MailProg=/bin/true
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN
PartitionName=ci Nodes={host} Default=YES MaxTime=60 State=UP
"""

SLURMDBD_CONF = """\
AuthType=auth/munge
AuthInfo=socket={munge_socket}
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort={dbd_port}
SlurmUser=root
PidFile={root}/slurmdbd.pid
LogFile={root}/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort={db_port}
StorageUser=root
StorageLoc=slurm_acct_db
"""

# 22.05's slurmd always initialises a cgroup plugin; v1 needs neither systemd nor dbus, and with
# proctrack/linuxproc + task/none nothing creates a cgroup (24.05+: CgroupPlugin=disabled)
CGROUP_CONF = "CgroupPlugin=cgroup/v1\n"


class SlurmUnavailable(RuntimeError):
    """Slurm cannot run here; the message says why."""


def search_path() -> str:
    """PATH with the sbin folders added (the daemons live there; a non-root PATH may lack them)."""
    parts = os.environ.get("PATH", "").split(os.pathsep)
    return os.pathsep.join(parts + [d for d in ("/usr/sbin", "/sbin") if d not in parts])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _memory_mb() -> int:
    with open("/proc/meminfo") as fh:
        kb = next(int(line.split()[1]) for line in fh if line.startswith("MemTotal:"))
    return max(512, kb // 1024 - 1024)


def _marked(root: Path) -> list[int]:
    """The processes whose environment carries this cluster's marker (the daemons and what they spawned)."""
    wanted = f"{MARKER}={root}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if wanted in (entry / "environ").read_bytes().split(b"\0"):
                pids.append(int(entry.name))
        except OSError:  # gone, or not ours to read
            continue
    return pids


def _kill_marked(root: Path, grace_s: float = 10.0) -> None:
    """SIGTERM the marked processes of ``root``, SIGKILL those still there after ``grace_s``."""
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        pids = _marked(root)
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait_s
        while pids and time.monotonic() < deadline:
            time.sleep(0.1)
            pids = _marked(root)
        if not pids:
            return


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_abandoned() -> None:
    """Stop the clusters of earlier sessions that died without stopping theirs (their owner is gone)."""
    for root in Path(tempfile.gettempdir()).glob(f"{PREFIX}*"):
        owner = root / "owner"
        try:
            pid = int(owner.read_text())
        except (OSError, ValueError):
            continue
        if not _pid_alive(pid):
            _kill_marked(root)
            shutil.rmtree(root, ignore_errors=True)


@dataclass
class SlurmCluster:
    """A running one-node cluster: ``env`` points the Slurm commands at it (``SLURM_CONF``)."""

    root: Path
    host: str = field(default_factory=lambda: socket.gethostname().split(".")[0])
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)

    @property
    def conf(self) -> Path:
        return self.root / "slurm.conf"

    @property
    def env(self) -> dict[str, str]:
        """This process's environment with ``SLURM_CONF`` pointing at the cluster."""
        return {**os.environ, "PATH": search_path(), "SLURM_CONF": str(self.conf)}

    def cmd(self, *argv: str, check: bool = True, timeout: float = 30.0) -> str:
        """Run a Slurm command against this cluster; its stdout."""
        done = subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and done.returncode:
            raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.strip()}")
        return done.stdout

    def version(self) -> str:
        """``sinfo --version``, e.g. ``slurm-wlm 22.05.8``."""
        return self.cmd("sinfo", "--version").strip()

    def state(self, job_id: str) -> str:
        """A job's state from the controller (``scontrol show job``), e.g. RUNNING, COMPLETED."""
        out = self.cmd("scontrol", "show", "job", "-o", job_id, check=False)
        fields = dict(f.split("=", 1) for f in out.split() if "=" in f)
        return fields.get("JobState", "")

    def write_config(self) -> None:
        for sub in ("state", "spool", "log", "munge", "db"):
            (self.root / sub).mkdir(mode=0o755)
        self.ports = {name: _free_port() for name in ("ctld_port", "slurmd_port", "dbd_port", "db_port")}
        values = dict(
            root=self.root,
            host=self.host,
            cpus=os.cpu_count() or 1,
            memory_mb=_memory_mb(),
            munge_socket=self.root / "munge" / "munge.sock",
            **self.ports,
        )
        self.conf.write_text(SLURM_CONF.format(**values))
        (self.root / "cgroup.conf").write_text(CGROUP_CONF)
        dbd = self.root / "slurmdbd.conf"  # slurmdbd reads it next to SLURM_CONF and wants it private
        dbd.write_text(SLURMDBD_CONF.format(**values))
        dbd.chmod(0o600)

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = (self.root / "log" / f"{name}.out").open("ab")
        env = {**self.env, MARKER: str(self.root)}
        self.procs[name] = subprocess.Popen(
            argv, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=self.root, start_new_session=True
        )
        log.close()

    def _wait(self, name: str, ready, what: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not ready():
            if self.procs[name].poll() is not None:
                raise SlurmUnavailable(f"{name} exited with code {self.procs[name].returncode}{self._tail()}")
            if time.monotonic() > deadline:
                raise SlurmUnavailable(f"{what} not ready after {START_TIMEOUT_S:.0f} s{self._tail()}")
            time.sleep(0.2)

    def _tail(self, lines: int = 15) -> str:
        text = []
        for log in sorted((self.root / "log").glob("*")):
            tail = log.read_text(errors="replace").strip().splitlines()[-lines:]
            if tail:
                text.append(f"--- {log.name}\n" + "\n".join(tail))
        return ("\n" + "\n".join(text)) if text else ""

    def start(self) -> None:
        """Write the config, start munged, MariaDB, slurmdbd, slurmctld and slurmd; wait for an idle node."""
        self.write_config()
        root, key, sock = self.root, self.root / "munge.key", self.root / "munge" / "munge.sock"
        subprocess.run(["mungekey", "-c", "-k", str(key)], env=self.env, check=True, capture_output=True)
        files = [f"--socket={sock}", f"--key-file={key}", f"--pid-file={root}/munged.pid"]
        files += [f"--seed-file={root}/munged.seed", f"--log-file={root}/log/munged.log"]
        self._spawn("munged", ["munged", "-F", *files])
        self._wait("munged", sock.exists, "munged")
        db = self.ports["db_port"]
        where = [f"--datadir={root}/db", f"--port={db}", f"--socket={root}/mysql.sock", "--user=root"]
        small = ["--innodb-buffer-pool-size=16M", "--innodb-log-file-size=4M", "--skip-log-bin"]
        # no grant tables: only slurmdbd on loopback talks to it, and it creates its own database
        self._spawn("mariadbd", ["mariadbd", "--no-defaults", *where, "--bind-address=127.0.0.1",
                                 "--skip-grant-tables", *small])  # fmt: skip
        self._wait("mariadbd", lambda: _port_open(db), "MariaDB")
        self._spawn("slurmdbd", ["slurmdbd", "-D"])
        self._wait("slurmdbd", lambda: _port_open(self.ports["dbd_port"]), "slurmdbd")
        self._spawn("slurmctld", ["slurmctld", "-D", "-i"])
        self._wait("slurmctld", lambda: "UP" in self.cmd("scontrol", "ping", check=False), "slurmctld")
        self._spawn("slurmd", ["slurmd", "-D"])
        idle = ("idle", "mixed", "allocated")
        self._wait("slurmd", lambda: self.cmd("sinfo", "-h", "-N", "-o", "%T", check=False).strip() in idle,
                   "the node (sinfo: idle)")  # fmt: skip

    def stop(self) -> None:
        """Cancel the jobs left, stop exactly the processes started here, remove the folder."""
        if "slurmctld" in self.procs and self.procs["slurmctld"].poll() is None:
            jobs = self.cmd("squeue", "-h", "-o", "%A", check=False).split()
            if jobs:
                self.cmd("scancel", *jobs, check=False)
                deadline = time.monotonic() + 20
                while self.cmd("squeue", "-h", "-o", "%A", check=False).split():
                    if time.monotonic() > deadline:
                        break
                    time.sleep(0.5)
        for name in ("slurmd", "slurmctld", "slurmdbd", "mariadbd", "munged"):
            proc = self.procs.get(name)
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)
        _kill_marked(self.root)  # step daemons and helpers the daemons left behind
        shutil.rmtree(self.root, ignore_errors=True)


def missing_programs() -> list[str]:
    return [name for name in PROGRAMS if shutil.which(name, path=search_path()) is None]


@pytest.fixture(scope="session")
def slurm_cluster_session() -> Iterator[SlurmCluster]:
    """The session's cluster (see the module docstring); skipped (failed under CI=true) when it cannot run."""
    reason = None
    missing = missing_programs()
    if missing:
        reason = f"Slurm programs not found: {', '.join(missing)} (.ci/run installs them with apt)"
    elif os.geteuid() != 0:
        reason = "a one-node Slurm cluster needs root (slurmd runs jobs as their user)"
    if reason is None:
        stop_abandoned()
        root = Path(tempfile.mkdtemp(prefix=PREFIX))
        root.chmod(0o755)
        (root / "owner").write_text(str(os.getpid()))
        cluster = SlurmCluster(root)
        try:
            cluster.start()
        except (SlurmUnavailable, OSError, subprocess.SubprocessError, RuntimeError) as exc:
            reason = f"the Slurm cluster did not start: {exc}"
            cluster.stop()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and {reason}")
        pytest.skip(reason)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def slurm_cluster(slurm_cluster_session: SlurmCluster, monkeypatch: pytest.MonkeyPatch) -> SlurmCluster:
    """The session's cluster, with ``SLURM_CONF`` set for this test (submitit and reidbench read it)."""
    monkeypatch.setenv("SLURM_CONF", str(slurm_cluster_session.conf))
    return slurm_cluster_session
