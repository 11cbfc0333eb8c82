"""The queue's page on FastAPI: the jobs, a submit form, cancel / retry, a following log tail, the GPUs.

Security model: the server binds 127.0.0.1 unless told otherwise, and then only answers requests whose
Host header is a loopback name (a DNS-rebinding page cannot reach it). With a token (mandatory for other
binds) every request must carry it (header ``X-Reidbench-Token``, the cookie set by opening
``/?token=...``, or for a POST the form field ``token``), those that change state included. Every form
carries a CSRF token derived from a per-server secret, checked on every POST. Logs are looked up by job
id; the only path-taking route serves files of the queue's own log dir and answers 404 for anything that
resolves outside it. A submitted job is checked by the same code as ``queue add`` before it is stored.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import time
from pathlib import Path
from typing import Any

import click
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.middleware.trustedhost import TrustedHostMiddleware

from reidbench.errors import UserError
from reidbench.queue import progress
from reidbench.queue.placement import DeviceStat
from reidbench.queue.store import JobRow, Store
from reidbench.web.results import results_router

__all__ = ["create_app", "is_loopback"]

HERE = Path(__file__).parent
TOKEN_COOKIE = "reidbench_token"
LOOPBACK_NAMES = ["127.0.0.1", "localhost", "::1", "[::1]"]


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the server on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _fmt_duration(s: float | None) -> str:
    if s is None:
        return ""
    s = int(s)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class _ProgressCache:
    """Each running job's MLflow progress, read at most every ``ttl_s`` (the page polls)."""

    def __init__(self, ttl_s: float = 2.0) -> None:
        self.ttl_s = ttl_s
        self.items: dict[tuple[int, float | None], tuple[float, progress.JobRuns]] = {}

    def get(self, job: JobRow) -> progress.JobRuns:
        key = (job.id, job.started)
        hit = self.items.get(key)
        if hit is not None and time.time() - hit[0] < self.ttl_s:
            return hit[1]
        try:
            runs = progress.job_runs(job)
        except Exception:  # the store may be busy or not created yet
            runs = progress.JobRuns(epochs_total=sum(int(p.get("epochs", 0)) for p in job.points))
        self.items[key] = (time.time(), runs)
        return runs


def create_app(
    store: Store,
    scheduler: Any = None,
    *,
    token: str | None = None,
    mlflow_url: str = "http://127.0.0.1:5000",
    loopback: bool = True,
) -> FastAPI:
    """The app over ``store``; ``scheduler`` (optional) is woken on submit and describes the devices."""
    app = FastAPI(title="reidbench queue", docs_url=None, redoc_url=None, openapi_url=None)
    if loopback and not token:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=LOOPBACK_NAMES)
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    secret = secrets.token_bytes(32)
    csrf = hmac.new(secret, b"csrf", hashlib.sha256).hexdigest()
    cache = _ProgressCache()
    mlflow_url = mlflow_url.rstrip("/")
    app.include_router(results_router(mlflow_url=mlflow_url))  # /results: the results site, live

    if token is not None:  # reads need the token too: logs and command lines are not for everyone

        @app.middleware("http")
        async def require_token(request: Request, call_next: Any) -> Response:
            if request.method not in ("GET", "HEAD"):
                return await call_next(request)  # checked by the handler (form field, header or cookie)
            given = (
                request.headers.get("x-reidbench-token")
                or request.cookies.get(TOKEN_COOKIE)
                or request.query_params.get("token")
                or ""
            )
            if not hmac.compare_digest(given, token):
                return PlainTextResponse("missing or wrong token: open /?token=SECRET once", status_code=403)
            return await call_next(request)

    def check_state_change(request: Request, form: dict[str, Any]) -> None:
        if token is not None:
            given = (
                request.headers.get("x-reidbench-token")
                or form.get("token")
                or request.cookies.get(TOKEN_COOKIE)
                or ""
            )
            if not hmac.compare_digest(str(given), token):
                raise HTTPException(403, "missing or wrong token")
        given_csrf = form.get("csrf") or request.headers.get("x-csrf-token") or ""
        if not hmac.compare_digest(str(given_csrf), csrf):
            raise HTTPException(403, "missing or wrong CSRF token; reload the page")

    def job_view(job: JobRow) -> dict[str, Any]:
        runs = cache.get(job) if job.status == "running" else None
        done, total = (runs.epochs_done, runs.epochs_total) if runs else (0, 0)
        if job.status == "finished":
            total = sum(int(p.get("epochs", 0)) for p in job.points)
            done = total
        value = job.map if job.map is not None else (runs.map if runs else None)
        run_ids = job.run_ids or (runs.run_ids if runs else [])
        exp = job.experiment_id or (runs.experiment_id if runs else None)
        return {
            "job": job,
            "start": time.strftime("%m-%d %H:%M:%S", time.localtime(job.started)) if job.started else "",
            "duration": _fmt_duration(job.duration),
            "done": done,
            "total": total,
            "percent": int(100 * done / total) if total else 0,
            "map": "" if value is None else f"{100 * value:.1f}",
            "links": [(r[:8], f"{mlflow_url}/#/experiments/{exp}/runs/{r}") for r in run_ids if exp],
        }

    def devices() -> list[dict[str, Any]]:
        if scheduler is None:
            return []
        held = scheduler.held()
        stats = scheduler.read_stats(scheduler.units) if scheduler.gpus else None
        out = []
        for unit in scheduler.units:
            stat = (stats or {}).get(unit) or DeviceStat(
                unit, "GPU " + unit if scheduler.gpus else "CPU slot"
            )
            out.append(
                {
                    "stat": stat,
                    "job": held.get(unit),
                    "mem_percent": round(100 * stat.used_mb / stat.total_mb) if stat.total_mb else 0,
                }
            )
        return out

    def page(request: Request, form_error: str | None = None, form: dict | None = None, status=200):
        jobs = store.jobs(limit=int(request.query_params.get("limit", 0) or 0) or None)
        context = {
            "jobs": [job_view(j) for j in jobs],
            "devices": devices(),
            "gpus": bool(scheduler and scheduler.gpus),
            "csrf": csrf,
            "form_error": form_error,
            "form": form or {"method": "late_fusion", "dataset": "synthetic", "gpus_per_run": "1"},
            "queue": store.path,
        }
        return templates.TemplateResponse(request, "index.html", context, status_code=status)

    @app.get("/", response_class=HTMLResponse)
    def index(request: Request):
        given = request.query_params.get("token")
        if given is not None and token is not None:
            if not hmac.compare_digest(given, token):
                raise HTTPException(403, "wrong token")
            response = RedirectResponse("/", status_code=303)
            response.set_cookie(TOKEN_COOKIE, given, httponly=True, samesite="strict")
            return response
        return page(request)

    @app.get("/fragment/jobs", response_class=HTMLResponse)
    def fragment_jobs(request: Request):
        jobs = store.jobs(limit=int(request.query_params.get("limit", 0) or 0) or None)
        context = {"jobs": [job_view(j) for j in jobs], "csrf": csrf}
        return templates.TemplateResponse(request, "_jobs.html", context)

    @app.get("/fragment/devices", response_class=HTMLResponse)
    def fragment_devices(request: Request):
        context = {"devices": devices(), "gpus": bool(scheduler and scheduler.gpus)}
        return templates.TemplateResponse(request, "_devices.html", context)

    @app.post("/submit")
    async def submit(request: Request):
        form = dict(await request.form())
        check_state_change(request, form)
        from reidbench.queue.submit import check

        try:
            args = _form_args(form)
            sub = check("run", args)
            priority = int(form.get("priority") or 0)
        except UserError as exc:
            return page(request, str(exc), form, status=400)
        except ValueError as exc:
            return page(request, f"priority: {exc}", form, status=400)
        except click.ClickException as exc:  # the command's own usage errors
            return page(request, exc.format_message(), form, status=400)
        store.add(
            sub.kind,
            sub.args,
            sub.summary,
            units=sub.units,
            priority=priority,
            env=sub.env,
            points=sub.points,
            tracking_uri=sub.tracking_uri,
            experiment=sub.experiment,
        )
        if scheduler is not None:
            scheduler.wake.set()
        return RedirectResponse("/", status_code=303)

    @app.post("/jobs/{job_id}/{action}")
    async def act(request: Request, job_id: int, action: str):
        form = dict(await request.form())
        check_state_change(request, form)
        try:
            if action == "cancel":
                store.cancel(job_id)
            elif action == "retry":
                store.retry(job_id)
            else:
                raise HTTPException(404)
        except UserError as exc:
            raise HTTPException(409, str(exc)) from None
        if scheduler is not None:
            scheduler.wake.set()
        return RedirectResponse(request.headers.get("referer") or "/", status_code=303)

    @app.get("/jobs/{job_id}", response_class=HTMLResponse)
    def job_page(request: Request, job_id: int):
        job = _job(store, job_id)
        context = {"v": job_view(job), "csrf": csrf, "log_url": f"/jobs/{job.id}/log"}
        return templates.TemplateResponse(request, "job.html", context)

    @app.get("/jobs/{job_id}/log")
    def job_log(job_id: int, offset: int = 0):
        job = _job(store, job_id)
        return _tail(store.log_path(job.id), offset, job.status)

    @app.get("/logs/{name:path}")
    def log_file(name: str, offset: int = 0):
        base = store.log_dir.resolve()
        path = (base / name).resolve()
        if path.parent != base or path.suffix != ".log" or not path.is_file():
            raise HTTPException(404, "no such log")
        return _tail(path, offset, "")

    @app.get("/api/jobs")
    def api_jobs():
        return [
            {k: getattr(j, k) for k in ("id", "status", "summary", "devices", "map", "error", "run_ids")}
            for j in store.jobs()
        ]

    return app


def _job(store: Store, job_id: int) -> JobRow:
    try:
        return store.get(job_id)
    except UserError:
        raise HTTPException(404, f"no job {job_id}") from None


def _tail(path: Path, offset: int, status: str, limit: int = 1 << 20) -> Response:
    """The bytes of ``path`` from ``offset`` (at most ``limit``), with the new offset in a header."""
    data = b""
    if path.is_file():
        with path.open("rb") as f:
            f.seek(max(0, offset))
            data = f.read(limit)
    headers = {"X-Log-Offset": str(max(0, offset) + len(data)), "X-Job-Status": status}
    return PlainTextResponse(data.decode(errors="replace"), headers=headers)


def _form_args(form: dict[str, Any]) -> list[str]:
    """The ``run`` command line the submit form describes."""
    args = []
    for method in str(form.get("method", "")).replace(",", " ").split():
        args += ["--method", method]
    for dataset in str(form.get("dataset", "")).replace(",", " ").split():
        args += ["--dataset", dataset]
    if str(form.get("seeds", "")).strip():
        args += ["--seeds", str(form["seeds"]).strip()]
    for line in str(form.get("overrides", "")).splitlines():
        for item in line.split():
            args += ["--set", item]
    gpus = str(form.get("gpus_per_run", "")).strip()
    if gpus:
        args += ["--gpus-per-run", gpus]
    if not any(a == "--method" for a in args):
        raise UserError("method: give at least one method name (see `reidbench list methods`)")
    if not any(a == "--dataset" for a in args):
        raise UserError("dataset: give at least one dataset name (see `reidbench list datasets`)")
    return [*args, "--quiet"]
