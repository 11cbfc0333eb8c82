"""The HTML pages: the queue (with the token cookie set from ``/?token=``), its fragments, a job's page."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from reidbench.web.edge import JobId, Limit, same_secret
from reidbench.web.security import TOKEN_COOKIE
from reidbench.web.state import State, WebState, find_job

__all__ = ["render_index", "router"]

router = APIRouter()
DEFAULT_FORM = {"method": "late_fusion", "dataset": "synthetic", "gpus_per_run": "1"}


def render_index(
    request: Request,
    state: WebState,
    form_error: str | None = None,
    form: dict | None = None,
    status=200,
    limit: int | None = None,
) -> Response:
    """The queue's page: jobs, devices and the submit form (with ``form_error`` above it)."""
    context = {
        "jobs": [state.job_view(j) for j in state.store.jobs(limit=limit)],
        "devices": state.devices(),
        "gpus": state.gpus,
        "csrf": state.csrf,
        "form_error": form_error,
        "form": form or DEFAULT_FORM,
        "queue": state.store.path,
    }
    return state.templates.TemplateResponse(request, "index.html", context, status_code=status)


@router.get("/", response_class=HTMLResponse)
def index(request: Request, state: State, limit: Limit = None):
    given = request.query_params.get("token")
    if given is not None and state.token is not None:
        if not same_secret(given, state.token):
            raise HTTPException(403, "wrong token")
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(TOKEN_COOKIE, given, httponly=True, samesite="strict")
        return response
    return render_index(request, state, limit=limit)


@router.get("/fragment/jobs", response_class=HTMLResponse)
def fragment_jobs(request: Request, state: State, limit: Limit = None):
    context = {
        "jobs": [state.job_view(j) for j in state.store.jobs(limit=limit)],
        "csrf": state.csrf,
    }
    return state.templates.TemplateResponse(request, "_jobs.html", context)


@router.get("/fragment/devices", response_class=HTMLResponse)
def fragment_devices(request: Request, state: State):
    context = {"devices": state.devices(), "gpus": state.gpus}
    return state.templates.TemplateResponse(request, "_devices.html", context)


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(request: Request, job_id: JobId, state: State):
    job = find_job(state.store, job_id)
    context = {"v": state.job_view(job), "csrf": state.csrf, "log_url": f"/jobs/{job.id}/log"}
    return state.templates.TemplateResponse(request, "job.html", context)
