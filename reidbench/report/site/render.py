"""Site views -> HTML files (jinja2 templates shipped with the package) plus its CSS / JS and results.json.

Every link is relative to the page (``runs/x.html``, ``../assets/site.css``), so the folder works from
``file://``, on any static host and under ``serve``'s ``/results/<experiment>/``; nothing is loaded from
elsewhere. The only absolute links are the ones given: MLflow run pages and, under ``serve``, the queue.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit

import jinja2

from reidbench.errors import UserError
from reidbench.report.formatting import dataset_name
from reidbench.report.model import Report
from reidbench.report.plots import Plot
from reidbench.report.site.boards import boards
from reidbench.report.site.export import results_json
from reidbench.report.site.figures import FigureEntry, figure_entries
from reidbench.report.site.pages import method_pages

HERE = Path(__file__).parent
ASSETS = ("site.css", "site.js")


@dataclass(frozen=True)
class SiteLinks:
    """Links the site cannot know by itself: the MLflow UI, the queue page, sibling experiments."""

    mlflow_url: str | None = None
    queue_url: str | None = None  # relative to the site root, like experiments' hrefs
    experiments: list[tuple[str, str]] = field(default_factory=list)  # (name, href from the site root)

    def __post_init__(self) -> None:
        if self.mlflow_url is not None:
            check_url(self.mlflow_url, "--mlflow-url")


def check_url(url: str, option: str) -> None:
    """A UserError unless ``url`` is an http(s) address with a host (the site links to it as given)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or any(c in url for c in "\"'<> "):
        raise UserError(
            f"{option} {url!r}: expected the http(s) address of an MLflow UI, e.g. http://127.0.0.1:5000"
        )


@cache
def environment() -> jinja2.Environment:
    """The templates, HTML-escaped."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(HERE / "templates")),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_site(
    report: Report, metrics: list[str], figures: list[FigureEntry], links: SiteLinks
) -> dict[str, str]:
    """Every page of the site: relative path -> HTML."""
    env = environment()
    common = {"links": links, "experiment": report.experiment, "intro": report.intro}
    sections: dict[str, list[FigureEntry]] = {}
    for entry in figures:
        sections.setdefault(entry.section, []).append(entry)
    curves = {e.stem: e.png for e in figures if e.section == "Training curves"}
    pages = {
        "index.html": env.get_template("index.html").render(
            title="Leaderboards", root="", boards=boards(report, metrics), **common
        ),
        "figures.html": env.get_template("figures.html").render(
            title="Figures", root="", figure_sections=list(sections.items()), **common
        ),
    }
    for page in method_pages(report, links.mlflow_url):
        page.curves_figure = curves.get(f"curves_{page.dataset}")
        pages[f"runs/{page.slug}.html"] = env.get_template("method.html").render(
            title=page.title, root="../", page=page, dataset_title=dataset_name(page.dataset), **common
        )
    return pages


def write_json(report: Report, out: Path) -> Path:
    """``out``/results.json."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "results.json"
    path.write_text(json.dumps(results_json(report), indent=1, allow_nan=False) + "\n", encoding="utf-8")
    return path


def write_site(
    report: Report,
    out: Path,
    metrics: list[str],
    figures: list[tuple[Plot, list[Path]]] | None = None,
    links: SiteLinks | None = None,
) -> list[Path]:
    """The static site under ``out``: index.html, figures.html, runs/*.html, assets/, results.json.

    ``figures``: the report's figures already written under ``out``/figures (``write_report`` passes
    them); None renders them here. The paths written here."""
    from reidbench.report.figures import write_figures

    written: list[Path] = []
    if figures is None:
        figures = write_figures(report, out / "figures", metrics)
        written += [p for _, paths in figures for p in paths]
    entries = figure_entries(figures, out)
    for name, html in render_site(report, metrics, entries, links or SiteLinks()).items():
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(html, encoding="utf-8")
        written.append(path)
    (out / "assets").mkdir(parents=True, exist_ok=True)
    for name in ASSETS:
        written.append(Path(shutil.copyfile(HERE / "static" / name, out / "assets" / name)))
    written.append(write_json(report, out))
    return list(dict.fromkeys(written))
