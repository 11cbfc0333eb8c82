"""Who may reach the page and change state: loopback Host names, the token, the CSRF check."""

from __future__ import annotations

import ipaddress
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import PlainTextResponse, Response

from reidbench.web.edge import same_secret

__all__ = ["LOOPBACK_NAMES", "TOKEN_COOKIE", "add_token_check", "check_state_change", "is_loopback"]

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


def add_token_check(app: FastAPI, token: str) -> None:
    """Reads need the token too (logs and command lines are not for everyone): a 403 for a GET or HEAD
    without it; other methods are checked by their handler (:func:`check_state_change`)."""

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
        if not same_secret(given, token):
            return PlainTextResponse("missing or wrong token: open /?token=SECRET once", status_code=403)
        return await call_next(request)


def check_state_change(request: Request, form: dict[str, Any], token: str | None, csrf: str) -> None:
    """A 403 unless a state-changing request carries the token (when there is one) and the CSRF token."""
    if token is not None:
        given = (
            request.headers.get("x-reidbench-token")
            or form.get("token")
            or request.cookies.get(TOKEN_COOKIE)
            or ""
        )
        if not same_secret(given, token):
            raise HTTPException(403, "missing or wrong token")
    given_csrf = form.get("csrf") or request.headers.get("x-csrf-token") or ""
    if not same_secret(given_csrf, csrf):
        raise HTTPException(403, "missing or wrong CSRF token; reload the page")
