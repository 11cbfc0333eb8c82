"""``reidbench queue ...`` (add, ls, show, cancel, retry, logs) and ``reidbench serve``."""

from __future__ import annotations

import functools
import os
import socket
import sqlite3
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from reidbench.cli.common import console
from reidbench.cli.types import COUNT, HOST, JOB_ID, NON_NEGATIVE, NON_NEGATIVE_FLOAT, PORT, PRIORITY
from reidbench.errors import UserError
from reidbench.queue.store import STATUSES, Store, default_queue_path

__all__ = ["queue", "serve"]

QUEUE_OPTION = click.option(
    "--queue",
    "queue_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Queue file (default: $REIDBENCH_QUEUE, else results/queue.db).",
)


def open_store(path: Path | None) -> Store:
    """The queue at ``path`` (default: :func:`default_queue_path`); a folder, a file that is no SQLite
    database or a place that cannot be written is a one-line error."""
    path = path or default_queue_path()
    try:
        return Store(path)
    except (sqlite3.DatabaseError, OSError) as exc:
        raise UserError(
            f"--queue {path}: cannot open it as a queue ({exc}); point it at a queue file or a new file name"
        ) from None


def pass_store(create: bool = False) -> Callable:
    """Hands a queue subcommand its queue, opened after the subcommand's own arguments are checked. Only
    ``create`` commands (add) make a new queue file; the others find none at a new path, write nothing."""

    def decorate(command: Callable) -> Callable:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            path = click.get_current_context().obj
            if not create and not path.exists() and path.parent.is_dir():
                raise UserError(
                    f"--queue {path}: no queue there yet (no job was ever added); "
                    "`reidbench queue add ...` creates it"
                )
            return command(open_store(path), *args, **kwargs)

        return functools.update_wrapper(wrapper, command)

    return decorate


@click.group()
@QUEUE_OPTION
@click.pass_context
def queue(ctx: click.Context, queue_path: Path | None) -> None:
    """A durable job queue: add runs, ablations and studies; `reidbench serve` runs them."""
    ctx.obj = queue_path or default_queue_path()


@queue.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.argument("kind", type=click.Choice(["run", "ablate", "tune"]))
@click.option("--priority", type=PRIORITY, default=0, show_default=True, help="Higher starts first.")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@pass_store(create=True)
def add(store: Store, kind: str, priority: int, args: tuple[str, ...]) -> None:
    """Queue `reidbench KIND ARGS...` (checked now, with the command's own errors).

    Options of the queue itself (--priority) go before KIND.
    """
    from reidbench.cli.submit import check

    sub = check(kind, list(args))
    job_id = store.add_checked(sub, priority)
    console.print(
        f"queued job {job_id}: {sub.summary} ({len(sub.points) or 'a study of'} run(s))", markup=False
    )


def _fmt_time(t: float | None) -> str:
    return time.strftime("%m-%d %H:%M:%S", time.localtime(t)) if t else ""


def _fmt_duration(s: float | None) -> str:
    if s is None:
        return ""
    s = int(s)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


@queue.command("ls")
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice(STATUSES),
    help="Only jobs with this status (repeatable).",
)
@click.option("--limit", type=COUNT, default=None, help="At most this many (newest first).")
@pass_store()
def ls(store: Store, statuses: tuple[str, ...], limit: int | None) -> None:
    """List the jobs, newest first."""
    from rich.table import Table

    table = Table(title=f"queue {store.path}")
    for col in ("id", "status", "prio", "what", "devices", "start", "duration", "mAP", "error"):
        table.add_column(col)
    for job in store.jobs(tuple(statuses), limit):
        table.add_row(
            str(job.id),
            job.status,
            str(job.priority),
            job.summary,
            job.slurm or job.devices or "",
            _fmt_time(job.started),
            _fmt_duration(job.duration),
            "" if job.map is None else f"{100 * job.map:.1f}",
            (job.error or "")[:80],
        )
    console.print(table)


@queue.command()
@click.argument("job_id", type=JOB_ID)
@pass_store()
def show(store: Store, job_id: int) -> None:
    """Everything about one job, with its progress read from MLflow."""
    from reidbench.queue.progress import job_runs

    job = store.get(job_id)
    runs = job_runs(job) if job.status == "running" else None
    lines = [
        f"job {job.id}: {job.summary}",
        f"status     {job.status}" + (" (stop requested)" if job.cancel_requested else ""),
        f"priority   {job.priority}",
        f"needs      {job.units} device(s); on {job.devices or '-'} of {job.host or '-'}"
        f" (pid {job.pid or '-'})",
        f"created    {_fmt_time(job.created)}",
        f"started    {_fmt_time(job.started)}  duration {_fmt_duration(job.duration)}",
        f"attempts   {job.attempts}  (OOM retries {job.oom_retries})",
        f"slurm      {job.slurm or '-'}",
        f"runs       {', '.join(p['name'] for p in job.points) or 'a tuning study'}",
        f"tracking   {job.tracking_uri} (experiment {job.experiment}); runs {', '.join(job.run_ids) or '-'}",
        f"argv       reidbench {' '.join(job.args)}",
        f"log        {store.log_path(job.id)}",
    ]
    if runs is not None:
        lines.append(f"progress   epoch {runs.epochs_done}/{runs.epochs_total}")
    if job.map is not None:
        lines.append(f"mAP        {100 * job.map:.2f}")
    if job.error:
        lines.append(f"error      {job.error}")
    for line in lines:
        console.print(line, highlight=False, markup=False)


@queue.command()
@click.argument("job_id", type=JOB_ID)
@pass_store()
def cancel(store: Store, job_id: int) -> None:
    """Cancel a job: a queued one at once, a running one is stopped (its whole process group)."""
    import signal
    import socket

    what = store.cancel(job_id)
    job = store.get(job_id)
    if what == "stopping" and job.pid and job.host == socket.gethostname():
        try:
            os.killpg(job.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    console.print(f"job {job_id}: {'cancelled' if what == 'cancelled' else 'stopping'}")


@queue.command()
@click.argument("job_id", type=JOB_ID)
@pass_store()
def retry(store: Store, job_id: int) -> None:
    """Queue a failed or cancelled job again (same id, same command line)."""
    store.retry(job_id)
    console.print(f"job {job_id}: queued again")


@queue.command()
@click.argument("job_id", type=JOB_ID)
@click.option("--follow", "-f", is_flag=True, help="Keep printing new output until the job ends.")
@pass_store()
def logs(store: Store, job_id: int, follow: bool) -> None:
    """Print a job's log."""
    store.get(job_id)
    path = store.log_path(job_id)
    offset = 0
    while True:
        if path.is_file():
            with path.open("rb") as f:
                f.seek(offset)
                chunk = f.read()
            offset += len(chunk)
            sys.stdout.write(chunk.decode(errors="replace"))
            sys.stdout.flush()
        if not follow or store.get(job_id).status not in ("queued", "running"):
            if follow and path.is_file() and path.stat().st_size > offset:
                continue
            return
        time.sleep(0.5)


def bind_port(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host``:``port``; a UserError naming both when the address cannot be
    bound (in use, not an address of this machine, no permission)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
    except (OSError, UnicodeError) as exc:
        raise UserError(f"--host {host}: not an address this machine can bind ({exc})") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise UserError(
            f"--host {host} --port {port}: cannot listen there ({exc.strerror}); stop what uses the port "
            "or pick another --port"
        ) from None
    return sock


@click.command()
@QUEUE_OPTION
@click.option("--gpus", default=None, metavar="IDS", help="GPUs to place jobs on, e.g. 0-7 or 0,2,4-5.")
@click.option("--slots", type=COUNT, default=1, show_default=True, help="CPU slots when no --gpus are given.")
@click.option(
    "--host", type=HOST, default="127.0.0.1", show_default=True, help="Address to bind the page to."
)
@click.option("--port", type=PORT, default=8765, show_default=True)
@click.option(
    "--token",
    default=None,
    help="Required by every request that changes state (default: $REIDBENCH_SERVE_TOKEN); "
    "mandatory when --host is not a loopback address.",
)
@click.option("--launcher", type=click.Choice(["local", "slurm"]), default="local", show_default=True)
@click.option("--max-running", type=COUNT, default=64, show_default=True, help="With --launcher slurm.")
@click.option(
    "--oom-retries", type=NON_NEGATIVE, default=2, show_default=True, help="Requeues after CUDA OOM."
)
@click.option(
    "--min-free-mb", type=NON_NEGATIVE_FLOAT, default=0, show_default=True, help="Skip GPUs with less free."
)
@click.option(
    "--mlflow-url", default="http://127.0.0.1:5000", show_default=True, help="MLflow UI for run links."
)
def serve(
    queue_path: Path | None,
    gpus: str | None,
    slots: int,
    host: str,
    port: int,
    token: str | None,
    launcher: str,
    max_running: int,
    oom_retries: int,
    min_free_mb: float,
    mlflow_url: str,
) -> None:
    """Run the queue's jobs on this machine and serve its page at http://HOST:PORT/."""
    import threading

    import uvicorn

    from reidbench.queue.scheduler import Scheduler
    from reidbench.sweeps.executors import parse_gpus
    from reidbench.web.app import create_app, is_loopback

    token = token or os.environ.get("REIDBENCH_SERVE_TOKEN") or None
    if not is_loopback(host) and not token:
        raise UserError(
            f"--host {host} is reachable from other machines: give --token SECRET (or set "
            "REIDBENCH_SERVE_TOKEN); every request that changes state must carry it"
        )
    units = parse_gpus(gpus) if gpus else [f"cpu{i}" for i in range(slots)]
    store = open_store(queue_path)
    sock = bind_port(host, port)  # before any job starts: a busy port ends here, nothing started
    scheduler = Scheduler(
        store,
        units,
        gpus=bool(gpus),
        launcher=launcher,
        max_running=max_running,
        max_oom_retries=oom_retries,
        min_free_mb=min_free_mb,
    )
    stop = threading.Event()
    thread = threading.Thread(target=scheduler.run_forever, args=(stop,), daemon=True, name="scheduler")
    thread.start()
    from reidbench.cli.submit import check

    app = create_app(
        store, scheduler, token=token, mlflow_url=mlflow_url, loopback=is_loopback(host), check=check
    )
    console.print(f"queue {store.path}: serving http://{host}:{port}/ on {', '.join(units)}", markup=False)
    try:
        uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])
    finally:
        sock.close()
        stop.set()
        scheduler.wake.set()
        thread.join(timeout=10)
