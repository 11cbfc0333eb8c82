"""What a request may carry, checked before a route reads it: one validated type per kind of number (a
422 names the field), secrets compared as bytes, and a middleware that answers a request the server cannot
decode (bad UTF-8, NUL bytes, numbers SQLite cannot hold) with a 400 instead of a 500."""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import FastAPI, Path, Query, Request
from fastapi.responses import PlainTextResponse, Response

__all__ = ["JobId", "Limit", "Offset", "add_edge_errors", "same_secret"]

INT64_MAX = 2**63 - 1  # SQLite INTEGER; also the largest file offset

JobId = Annotated[int, Path(ge=1, le=INT64_MAX, description="a job id")]
Offset = Annotated[int, Query(ge=0, le=INT64_MAX, description="bytes of the log already read")]
Limit = Annotated[int | None, Query(ge=1, le=100_000, description="at most this many jobs")]
PRIORITY_RANGE = (-INT64_MAX, INT64_MAX)


def same_secret(given: Any, expected: str) -> bool:
    """Whether ``given`` (a header, cookie, form or query value: any text) equals ``expected``, in constant
    time; non-ASCII input is compared as UTF-8 bytes instead of raising."""
    return hmac.compare_digest(str(given or "").encode("utf-8", "surrogateescape"), expected.encode("utf-8"))


def check_priority(text: Any) -> int:
    """The form's priority as an integer SQLite can store; ValueError saying what is expected."""
    value = int(str(text or 0).strip())
    low, high = PRIORITY_RANGE
    if not low <= value <= high:
        raise ValueError(f"expected an integer between {low} and {high}, got {text}")
    return value


def add_edge_errors(app: FastAPI) -> None:
    """Turn the errors a malformed request raises deep in a route (undecodable bytes, embedded NULs,
    integers past 64 bits) into a 400 with a one-line reason."""

    @app.middleware("http")
    async def edge_errors(request: Request, call_next: Any) -> Response:
        try:
            return await call_next(request)
        except UnicodeError:
            return PlainTextResponse("bad request: the request is not valid UTF-8", status_code=400)
        except OverflowError:
            return PlainTextResponse("bad request: a number is too large", status_code=400)
        except ValueError as exc:
            if "null" in str(exc).lower():
                return PlainTextResponse("bad request: a NUL byte in the request", status_code=400)
            raise
