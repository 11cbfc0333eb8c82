"""What changes the queue: submitting a run from the form, cancelling or retrying a job."""

from __future__ import annotations

from typing import Any

import click
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import RedirectResponse

from reidbench.errors import UserError
from reidbench.web.edge import JobId, check_priority
from reidbench.web.routes.pages import render_index
from reidbench.web.security import check_state_change
from reidbench.web.state import State

__all__ = ["router"]

router = APIRouter()


@router.post("/submit")
async def submit(request: Request, state: State):
    form = dict(await request.form())
    check_state_change(request, form, state.token, state.csrf)
    if state.check is None:
        return render_index(request, state, "this server takes no submissions (no submit check)", form, 400)
    try:
        args = _form_args(form)
        sub = state.check("run", args)
        priority = check_priority(form.get("priority"))
    except UserError as exc:
        return render_index(request, state, str(exc), form, status=400)
    except ValueError as exc:
        return render_index(request, state, f"priority: {exc}", form, status=400)
    except click.ClickException as exc:  # the command's own usage errors
        return render_index(request, state, exc.format_message(), form, status=400)
    state.store.add_checked(sub, priority)
    state.wake()
    return RedirectResponse("/", status_code=303)


@router.post("/jobs/{job_id}/{action}")
async def act(request: Request, job_id: JobId, action: str, state: State):
    form = dict(await request.form())
    check_state_change(request, form, state.token, state.csrf)
    try:
        if action == "cancel":
            state.store.cancel(job_id)
        elif action == "retry":
            state.store.retry(job_id)
        else:
            raise HTTPException(404)
    except UserError as exc:
        raise HTTPException(409, str(exc)) from None
    state.wake()
    return RedirectResponse(request.headers.get("referer") or "/", status_code=303)


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
