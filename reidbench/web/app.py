"""The queue's page on FastAPI: the jobs, a submit form, cancel / retry, a following log tail, the GPUs.

The routes live in :mod:`reidbench.web.routes`, one APIRouter per concern; :data:`ROUTERS` lists them
(adding a page is one line there). They reach the queue through :class:`~reidbench.web.state.WebState`.

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
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.middleware.trustedhost import TrustedHostMiddleware

from reidbench.queue.store import Store
from reidbench.web.edge import add_edge_errors
from reidbench.web.routes import api, jobs, logs, pages, results
from reidbench.web.security import LOOPBACK_NAMES, add_token_check, is_loopback
from reidbench.web.state import WebState

__all__ = ["ROUTERS", "create_app", "is_loopback"]

HERE = Path(__file__).parent
ROUTERS: tuple[APIRouter, ...] = (pages.router, jobs.router, logs.router, api.router, results.router)


def create_app(
    store: Store,
    scheduler: Any = None,
    *,
    token: str | None = None,
    mlflow_url: str = "http://127.0.0.1:5000",
    loopback: bool = True,
    check: Callable[[str, list[str]], Any] | None = None,
) -> FastAPI:
    """The app over ``store``; ``scheduler`` (optional) is woken on submit and describes the devices;
    ``check(kind, args)`` turns a submitted command line into a checked submission (``serve`` hands in the
    command line's own check; without one the page takes no submissions)."""
    app = FastAPI(title="reidbench queue", docs_url=None, redoc_url=None, openapi_url=None)
    add_edge_errors(app)  # added first: the outermost layers (host, token) answer before it
    if loopback and not token:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=LOOPBACK_NAMES)
    if token is not None:
        add_token_check(app, token)
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    app.state.web = WebState(
        store=store,
        scheduler=scheduler,
        token=token,
        csrf=hmac.new(secrets.token_bytes(32), b"csrf", hashlib.sha256).hexdigest(),
        mlflow_url=mlflow_url.rstrip("/"),
        templates=Jinja2Templates(directory=str(HERE / "templates")),
        check=check,
    )
    for router in ROUTERS:
        app.include_router(router)
    return app
