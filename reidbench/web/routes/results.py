"""``serve``'s results pages at ``/results/<experiment>/``: the static results site (``reidbench report
--format html``), built from the MLflow store when its finished runs change, next to the queue.

The pages are the same files the static site has, so their relative links work here unchanged; this
module only decides when to rebuild and serves files of the built folder (nothing outside it: a path that
resolves elsewhere is a 404). The app's token and loopback rules apply to these routes like to every
other (they are middleware of the app). The store is ``$MLFLOW_TRACKING_URI``, else ./results/mlflow.db
(what ``run`` and ``queue add`` default to); the app's SiteCache (``app.state.results_site``) can name
another.
"""

from __future__ import annotations

import hashlib
import mimetypes
import shutil
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from reidbench.errors import UserError

PREFIX = "/results"
DEFAULT_EXPERIMENT = "reidbench"
MLFLOW_DEFAULT = "Default"  # the experiment MLflow creates in every store; reidbench logs elsewhere
QUEUE_FROM_SITE = "../../"  # the queue page, relative to /results/<experiment>/
router = APIRouter()
_MAKING = threading.Lock()


@dataclass
class _Built:
    folder: Path
    fingerprint: str
    checked: float


class SiteCache:
    """Per experiment, the site built from the store's finished runs; rebuilt when they change (checked
    at most every ``ttl_s``)."""

    def __init__(self, tracking_uri: str | None, mlflow_url: str | None, ttl_s: float = 3.0) -> None:
        from reidbench.report.site.render import check_url

        if mlflow_url:
            check_url(mlflow_url, "--mlflow-url")
        self.uri, self.mlflow_url, self.ttl_s = tracking_uri, mlflow_url, ttl_s
        self.root = Path(tempfile.mkdtemp(prefix="reidbench-site-"))
        weakref.finalize(self, shutil.rmtree, self.root, True)
        self.built: dict[str, _Built] = {}
        self.lock = threading.Lock()

    def tracking_uri(self) -> str:
        from reidbench import tracking

        return self.uri or tracking.default_uri()

    def experiments(self) -> list[str]:
        """The store's experiments but MLflow's own empty ``Default`` (a UserError when there is no
        store)."""
        from reidbench import tracking

        names = tracking.experiment_names(self.tracking_uri())
        return [n for n in names if n != MLFLOW_DEFAULT] or names

    def folder(self, experiment: str) -> Path:
        """The built site of ``experiment``, (re)built first when its finished runs changed."""
        with self.lock:
            hit = self.built.get(experiment)
            if hit is not None and time.time() - hit.checked < self.ttl_s:
                return hit.folder
            fingerprint = self._fingerprint(experiment)
            if hit is not None and hit.fingerprint == fingerprint:
                hit.checked = time.time()
                return hit.folder
            folder = self._build(experiment, fingerprint)
            if hit is not None:
                shutil.rmtree(hit.folder, ignore_errors=True)
            self.built[experiment] = _Built(folder, fingerprint, time.time())
            return folder

    def _fingerprint(self, experiment: str) -> str:
        """The finished runs' ids and end times: any new, re-run or deleted run changes it."""
        from reidbench import tracking

        frame = tracking.finished_runs(self.tracking_uri(), experiment)
        ends = frame["end_time"].astype(str) if "end_time" in frame else ""
        keys = sorted(frame["run_id"].astype(str) + "/" + ends) if not frame.empty else []
        return hashlib.sha256("\n".join(keys).encode()).hexdigest()

    def _build(self, experiment: str, fingerprint: str) -> Path:
        from reidbench.report import DEFAULT_METRICS, load_report
        from reidbench.report.site import SiteLinks, write_site

        report = load_report(self.tracking_uri(), experiment, list(DEFAULT_METRICS))
        others = [(name, f"../{quote(name, safe='')}/index.html") for name in self.experiments()]
        links = SiteLinks(self.mlflow_url, QUEUE_FROM_SITE, others)
        folder = self.root / f"{hashlib.sha256(experiment.encode()).hexdigest()[:12]}-{fingerprint[:12]}"
        write_site(report, folder, list(DEFAULT_METRICS), links=links)
        return folder


def _message(text: str, status: int) -> HTMLResponse:
    """A one-line problem as a small page with the way back to the queue."""
    body = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>reidbench results</title>'
        f'<link rel="stylesheet" href="/static/style.css"></head><body><header><h1>reidbench results</h1>'
        f'<a href="/">Job queue</a></header><main><p class="error" id="results-error">{escape(text)}</p>'
        "</main></body></html>"
    )
    return HTMLResponse(body, status_code=status)


def site_cache(request: Request) -> SiteCache:
    """The app's SiteCache (made on first use, linking runs to the page's MLflow UI)."""
    with _MAKING:
        cache = getattr(request.app.state, "results_site", None)
        if cache is None:
            web = getattr(request.app.state, "web", None)
            cache = request.app.state.results_site = SiteCache(None, web.mlflow_url if web else None)
    return cache


Cache = Annotated[SiteCache, Depends(site_cache)]


@router.get(PREFIX)
@router.get(PREFIX + "/")
def results_home(cache: Cache) -> Response:
    """To the default experiment's site (``reidbench``, else the first experiment of the store)."""
    try:
        names = cache.experiments()
    except UserError as exc:
        return _message(str(exc), 404)
    if not names:
        return _message(f"no experiments in {cache.tracking_uri()}: train something first", 404)
    chosen = DEFAULT_EXPERIMENT if DEFAULT_EXPERIMENT in names else names[0]
    return RedirectResponse(f"{PREFIX}/{quote(chosen, safe='')}/", status_code=307)


@router.get(PREFIX + "/{experiment}")
def results_experiment(experiment: str) -> Response:
    return RedirectResponse(f"{PREFIX}/{quote(experiment, safe='')}/", status_code=307)


@router.get(PREFIX + "/{experiment}/{path:path}")
def results_file(experiment: str, path: str, cache: Cache) -> Response:
    """A file of ``experiment``'s site (index.html for the folder), built or rebuilt first if need be."""
    try:
        names = cache.experiments()
        if experiment not in names:
            return _message(f"no experiment {experiment!r} here; experiments: {', '.join(names)}", 404)
        folder = cache.folder(experiment).resolve()
    except UserError as exc:
        return _message(str(exc), 404)
    target = (folder / (path or "index.html")).resolve()
    if not target.is_relative_to(folder) or not target.is_file():
        raise HTTPException(404, "no such page")
    media = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
    return FileResponse(target, media_type=media)
