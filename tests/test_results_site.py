"""The results site (``report --format html``), results.json (``--format json``) and serve's /results pages,
checked against the MLflow runs they come from; a real-browser test (Debian's chromium) opens the site from
file://, sorts a leaderboard and follows a method link. The store is logged directly (no training)."""

from __future__ import annotations

import json
import os
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from mlflow.tracking import MlflowClient

from reidbench import tracking
from reidbench.errors import UserError
from reidbench.report import load_report, write_report
from reidbench.report.formatting import fmt_number
from reidbench.report.site import SiteLinks
from reidbench.web.routes.results import SiteCache, router
from tests.report_store import (
    DEMO_EXPERIMENT,
    DEMO_PARAMS,
    GRAFT_STAGES,
    PUBLISHED,
    demo_history,
    demo_metrics,
    log_run,
    make_demo_store,
)
from tests.test_report import run_cli

MLFLOW = "http://mlflow.test:5000"
METRICS = ["mAP", "rank1", "mINP"]
ROOT = Path(__file__).resolve().parent.parent


def make_site_store(directory: Path) -> tuple[str, Path]:
    """The demo-shaped store plus GraFT on the official recipe track (two seeds, recording a
    missing-modality convention), and published rows (one on Synthetic); the URI and the CSV."""
    uri = make_demo_store(directory)
    exp = tracking.prepare(uri, DEMO_EXPERIMENT)
    for seed in (0, 1):
        log_run(
            uri,
            exp,
            "graft",
            "synthetic",
            seed,
            demo_metrics(0.52, 9.61e5, seed),
            tags={"recipe": "official", "missing_convention": "zero"},
            params={**DEMO_PARAMS, "protocol.train.stages": GRAFT_STAGES},
            history=demo_history(["ce", "aug_triplet", "center"], 12),
        )
    published = directory / "published.csv"
    published.write_text(PUBLISHED)
    return uri, published


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> tuple[str, Path]:
    return make_site_store(tmp_path_factory.mktemp("site_store"))


@pytest.fixture(scope="module")
def report(store):
    uri, published = store
    return load_report(uri, DEMO_EXPERIMENT, METRICS, published)


@pytest.fixture(scope="module")
def site(report, tmp_path_factory) -> Path:
    """The site without figures (fast); the browser test makes one with them."""
    out = tmp_path_factory.mktemp("site")
    write_report(report, out, ["html"], METRICS, plots=False, mlflow_url=MLFLOW)
    return out


class Page(HTMLParser):
    """Every element's attributes, and table rows (``tr.row``) as lists of cells (attributes, text)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.rows: list[tuple[str, dict[str, str], list[tuple[dict[str, str], str]]]] = []
        self.table = ""
        self.row: list | None = None
        self.cell: list | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = {k: v or "" for k, v in attrs}
        self.elements.append((tag, attrs))
        if tag == "table":
            self.table = attrs.get("id", "")
        if tag == "tr" and "row" in attrs.get("class", "").split():
            self.row = []
            self.rows.append((self.table, attrs, self.row))
        if tag == "td" and self.row is not None:
            self.cell = [attrs, ""]
            self.row.append(self.cell)

    def handle_endtag(self, tag):
        if tag == "td":
            self.cell = None
        if tag == "tr":
            self.row = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell[1] += data

    def table_rows(self, table: str) -> list[tuple[dict[str, str], list[tuple[dict[str, str], str]]]]:
        return [(attrs, cells) for t, attrs, cells in self.rows if t == table]


def page(path: Path) -> Page:
    return Page(path.read_text(encoding="utf-8"))


def mlflow_runs(uri: str) -> dict[str, object]:
    """The store's finished training runs by id."""
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(DEMO_EXPERIMENT)
    runs = client.search_runs([exp.experiment_id], "tags.run_kind = 'run' and attributes.status = 'FINISHED'")
    return {r.info.run_id: r for r in runs}


def runs_of(uri: str, method: str, recipe: str = "demo-tiny", dataset: str = "synthetic") -> list:
    """Leaderboard runs of ``method`` (no ablation point, not partial), by seed."""
    found = [
        r
        for r in mlflow_runs(uri).values()
        if r.data.tags["method"] == method
        and r.data.tags.get("recipe") == recipe
        and r.data.tags["dataset"] == dataset
        and "ablation" not in r.data.tags
    ]
    return sorted(found, key=lambda r: int(r.data.tags["seed"]))


def test_index_shows_a_leaderboard_per_dataset_with_the_runs_numbers(site, store):
    uri, _ = store
    index = page(site / "index.html")
    rows = index.table_rows("lb-synthetic")
    ours = [(attrs, cells) for attrs, cells in rows if "published" not in attrs["class"]]
    published = [(attrs, cells) for attrs, cells in rows if "published" in attrs["class"]]
    labels = [cells[0][1].strip() for _, cells in ours]
    assert sorted(labels) == sorted(
        ["single_modality", "graft", "graft", "late_fusion", "mmet", "early_fusion"]
    )
    assert {a["data-recipe"] for a, _ in ours} == {"demo-tiny", "official"}  # both recipe tracks
    headers = [a for tag, a in index.elements if tag == "th" and a.get("data-metric")]
    mAP = next(i for i, a in enumerate(headers) if a["data-metric"] == "mAP")
    first_metric = 5  # Method, Recipe, Backbone, Seeds, Missing-modality convention
    for attrs, cells in ours:
        method = cells[0][1].strip()
        runs = runs_of(uri, method, attrs["data-recipe"])
        values = [r.data.metrics["mAP"] for r in runs]
        shown = cells[first_metric + mAP]
        assert float(shown[0]["data-sort"]) == pytest.approx(100 * np.mean(values), abs=1e-9)
        std = 100 * np.std(values, ddof=1)
        assert f"{fmt_number(100 * np.mean(values))} ± {fmt_number(std)}" in shown[1]
        assert shown[0]["title"] == f"n = {len(values)} seed(s)"
        assert cells[4][1] == ("zero" if attrs["data-recipe"] == "official" else "")
    # the 95 % interval of the mean over seeds is printed under each number
    assert re.search(r"\[\d+\.\d, \d+\.\d\]", ours[0][1][first_metric][1])
    # the published row: marked, with its source, in its own block
    ((attrs, cells),) = published
    assert cells[0][1].strip().startswith("graft†") and "published" in cells[0][1]
    assert cells[-1][1] == "Paper A Table 1 (best-epoch-on-test)"
    assert float(cells[first_metric + mAP][0]["data-sort"]) == pytest.approx(80.0)
    # the best mAP is bold; the other rows are not all bold
    best = max(ours, key=lambda r: float(r[1][first_metric + mAP][0]["data-sort"]))
    text = (site / "index.html").read_text()
    assert text.count('<strong class="best">') >= 1
    assert best[1][0][1].strip() == "early_fusion"


def test_method_pages_show_each_seed_run_with_its_hash_and_link(site, store):
    uri, _ = store
    runs = runs_of(uri, "late_fusion")
    method = page(site / "runs" / "late_fusion@synthetic.demo-tiny.html")
    seeds = method.table_rows("seeds-1")
    assert [int(cells[0][1]) for _, cells in seeds] == [0, 1, 2]
    for (attrs, cells), run in zip(seeds, runs, strict=True):
        assert attrs["data-run"] == run.info.run_id
        assert cells[2][1] == run.data.tags["config_hash"]
        assert run.data.tags["git_commit"].startswith(cells[3][1])
        shown = [c[1] for c in cells[4:]]
        assert shown == [
            fmt_number(100 * run.data.metrics[m]) for m in ("mAP", "rank1", "rank5", "rank10", "mINP")
        ]
    links = [a["href"] for tag, a in method.elements if tag == "a" and "mlflow" in a.get("class", "")]
    exp = runs[0].info.experiment_id
    assert links == [f"{MLFLOW}/#/experiments/{exp}/runs/{r.info.run_id}" for r in runs]
    text = (site / "runs" / "late_fusion@synthetic.demo-tiny.html").read_text()
    for what in ("Missing modalities at test time", "w/o RGB+NIR", "Cross-modal retrieval", "Cost", "<svg"):
        assert what in text, what
    assert "protocol.backbone.embed_dim" in text  # the resolved config
    official = (site / "runs" / "graft@synthetic.official.html").read_text()
    assert "Missing-modality convention: zero." in official


def test_site_loads_nothing_from_outside(site):
    check_links(site)


def check_links(site: Path) -> None:
    """Every src / href / CSS url() of every page is relative and resolves to a file of the site, or is a
    run page of the given MLflow UI; no script fetches anything."""
    pages = list(site.rglob("*.html"))
    assert len(pages) >= 7
    for path in pages:
        parsed = page(path)
        for tag, attrs in parsed.elements:
            for name in ("src", "href", "action", "srcset", "data", "poster"):
                if name not in attrs:
                    continue
                link = attrs[name]
                if link.startswith(MLFLOW + "/#/experiments/"):
                    continue
                parts = urlsplit(link)
                assert not parts.scheme and not parts.netloc and not link.startswith("/"), (path, tag, link)
                if parts.path:
                    assert (path.parent / unquote(parts.path)).resolve().is_file(), (path, link)
        assert "@import" not in path.read_text()
    for css in site.rglob("*.css"):
        assert not re.search(r"url\(|@import", css.read_text()), css
    for js in site.rglob("*.js"):
        assert not re.search(r"fetch\(|XMLHttpRequest|import\(|\.src\s*=", js.read_text()), js


def test_results_json_entries_are_the_runs_metrics(site, store):
    uri, _ = store
    data = json.loads((site / "results.json").read_text())
    assert data["schema"] == "reidbench-results" and data["version"] == 1
    assert data["experiment"] == DEMO_EXPERIMENT
    runs = mlflow_runs(uri)
    entries = data["entries"]
    keys = [
        (
            e["task"],
            e["dataset"],
            e["test_dataset"],
            e["setting"],
            e["metric"],
            e["method"],
            e["recipe"],
            e["variant"],
            e["published"],
            json.dumps(e.get("ablation")),
        )
        for e in entries
    ]
    assert len(keys) == len(set(keys))  # one entry per (task, dataset, metric, method, ...)
    ours = [e for e in entries if not e["published"]]
    for e in ours:
        key = e["metric"] + (f"@{e['setting']}" if e["setting"] else "")
        if e["task"] == "cross_domain":
            key += f"@to_{e['test_dataset']}"
        values = [runs[r].data.metrics[tracking.mlflow_key(key)] for r in e["run_ids"]]
        assert e["values"] == values
        assert e["config_hashes"] == [runs[r].data.tags["config_hash"] for r in e["run_ids"]]
        assert e["seeds"] == [int(runs[r].data.tags["seed"]) for r in e["run_ids"]]
        assert e["mean"] == pytest.approx(np.mean(values))
        assert e["n"] == len(values)
        if len(values) > 1:
            assert e["std"] == pytest.approx(np.std(values, ddof=1))
            lo, hi = e["ci95"]
            assert lo < e["mean"] < hi or lo == hi == e["mean"]
    lf = [e for e in ours if e["method"] == "late_fusion" and e["task"] == "reid" and e["metric"] == "mAP"]
    assert len(lf) == 1 and len(lf[0]["run_ids"]) == 3 and lf[0]["unit"] == "fraction"
    tasks = {e["task"] for e in ours}
    assert {"reid", "missing_modality", "cross_modal", "ablation"} <= tasks
    missing = next(e for e in ours if e["task"] == "missing_modality" and e["setting"] == "no_tir")
    assert missing["metric"] == "mAP"
    ablation = next(e for e in ours if e["task"] == "ablation")
    assert ablation["ablation"]["name"] == "fusion_tokens"
    (pub,) = [e for e in entries if e["published"] and e["metric"] == "mAP" and e["task"] == "reid"]
    assert pub["source"] == "Paper A Table 1" and pub["mean"] == pytest.approx(0.8) and "run_ids" not in pub


def test_report_format_json_writes_only_the_export(store, tmp_path, monkeypatch, capsys):
    uri, published = store
    out = tmp_path / "json"
    code, text = run_cli(
        monkeypatch,
        capsys,
        "report",
        "--tracking-uri",
        uri,
        "--experiment",
        DEMO_EXPERIMENT,
        "--published",
        str(published),
        "--format",
        "json",
        "--out",
        str(out),
    )
    assert code == 0, text
    assert sorted(p.name for p in out.iterdir()) == ["results.json"]
    assert json.loads((out / "results.json").read_text())["entries"]


def test_a_bad_mlflow_url_is_a_one_line_error(store, tmp_path, monkeypatch, capsys):
    uri, published = store
    code, text = run_cli(
        monkeypatch,
        capsys,
        "report",
        "--tracking-uri",
        uri,
        "--experiment",
        DEMO_EXPERIMENT,
        "--format",
        "html",
        "--no-plots",
        "--out",
        str(tmp_path),
        "--mlflow-url",
        "javascript:alert(1)",
    )
    assert code == 2 and "--mlflow-url" in text and "Traceback" not in text
    assert not (tmp_path / "index.html").exists()
    with pytest.raises(UserError, match="http"):
        SiteLinks(mlflow_url="mlflow.test:5000")


# --- serve's /results ---------------------------------------------------------------------------------------
BASE = "http://127.0.0.1"


@pytest.fixture
def served(store, monkeypatch):
    """A queue app (as `serve` makes it) reading the site store through $MLFLOW_TRACKING_URI."""
    from reidbench.queue.store import Store
    from reidbench.web.app import create_app

    uri, _ = store
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)

    def make(tmp: Path, base: str = BASE, **options) -> TestClient:
        return TestClient(create_app(Store(tmp / "queue.db"), **options), base_url=base)

    return make


def test_results_route_serves_the_site_next_to_the_queue(served, store, tmp_path):
    uri, _ = store
    client = served(tmp_path)
    assert 'href="/results/"' in client.get("/").text  # the queue page links to the results
    home = client.get("/results", follow_redirects=False)
    assert home.status_code == 307 and home.headers["location"] == "/results/demo/"
    index = client.get("/results/demo/")
    assert index.status_code == 200 and index.headers["content-type"].startswith("text/html")
    parsed = Page(index.text)
    assert any(a.get("href") == "../../" for tag, a in parsed.elements if tag == "a")  # back to the queue
    rows = parsed.table_rows("lb-synthetic")
    lf = next(cells for _, cells in rows if cells[0][1].strip() == "late_fusion")
    values = [r.data.metrics["mAP"] for r in runs_of(uri, "late_fusion")]
    assert float(lf[5][0]["data-sort"]) == pytest.approx(100 * np.mean(values), abs=1e-9)
    href = next(a["href"] for tag, a in parsed.elements if tag == "a" and a.get("class") == "method")
    method = client.get("/results/demo/" + href)
    assert method.status_code == 200 and "Runs, one per seed" in method.text
    assert client.get("/results/demo/assets/site.js").headers["content-type"].startswith("text/javascript")
    assert client.get("/results/demo/results.json").json()["schema"] == "reidbench-results"
    assert client.get("/results/demo/figures/results_synthetic.png").status_code == 200
    for bad in ("../../../etc/passwd", "..%2F..%2Fqueue.db", "runs/../../x", "nope.html"):
        assert client.get("/results/demo/" + bad).status_code == 404, bad
    missing = client.get("/results/nope/")
    assert (
        missing.status_code == 404
        and "no experiment &#x27;nope&#x27; here; experiments: demo" in missing.text
    )


def test_results_route_keeps_the_token_and_loopback_rules(served, tmp_path):
    local = served(tmp_path, base="http://evil.example")
    assert local.get("/results/demo/").status_code == 400  # a DNS-rebinding Host is refused
    guarded = served(tmp_path, token="s3cret", loopback=False, base="http://10.1.2.3")
    assert guarded.get("/results/demo/").status_code == 403
    assert guarded.get("/results/demo/results.json").status_code == 403
    assert guarded.get("/results", follow_redirects=False).status_code == 403
    token = {"X-Reidbench-Token": "s3cret"}
    assert guarded.get("/results", headers=token, follow_redirects=False).status_code == 307
    assert guarded.get("/?token=s3cret", follow_redirects=False).status_code == 303  # sets the cookie
    assert guarded.get("/results", follow_redirects=False).status_code == 307  # the cookie is enough


def test_results_route_rebuilds_when_a_run_finishes(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    exp = tracking.prepare(uri, DEMO_EXPERIMENT)
    log_run(uri, exp, "late_fusion", "synthetic", 0, {"mAP": 0.5, "rank1": 0.6})
    app = FastAPI()
    app.include_router(router)
    app.state.results_site = SiteCache(uri, MLFLOW, ttl_s=0.0)
    client = TestClient(app, base_url=BASE)
    before = client.get("/results/demo/").text
    assert "demo_new" not in before
    log_run(
        uri, tracking.prepare(uri, DEMO_EXPERIMENT), "demo_new", "synthetic", 0, {"mAP": 0.9, "rank1": 0.9}
    )
    after = client.get("/results/demo/").text
    assert "demo_new" in after and "runs/demo_new@synthetic.html" in after
    assert client.get("/results/demo/runs/demo_new@synthetic.html").status_code == 200


# --- the real browser ---------------------------------------------------------------------------------------
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


@pytest.mark.slow
@pytest.mark.skipif(
    not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()),
    reason="needs Debian's chromium and chromium-driver (/usr/bin/chromium, /usr/bin/chromedriver); "
    "`apt-get install chromium chromium-driver` (.ci/run does)",
)
def test_site_from_file_url_sorts_and_links_to_the_runs_values(report, store, tmp_path):
    from selenium.webdriver.common.by import By

    from tests.test_queue_browser import _browser

    uri, _ = store
    site = tmp_path / "site"
    write_report(report, site, ["html"], METRICS, plots=True, mlflow_url=MLFLOW)
    check_links(site)  # figures included
    csvs = sorted(p.name for p in (site / "figures").glob("*.csv"))
    assert "ablation_fusion_tokens_mAP.csv" in csvs and "results_synthetic.csv" in csvs
    driver = _browser()
    try:
        driver.set_window_size(1400, 1000)
        driver.get((site / "index.html").as_uri())
        table = driver.find_element(By.ID, "lb-synthetic")
        header = table.find_element(By.CSS_SELECTOR, "th[data-metric='mAP']")
        column = 1 + [h.text for h in table.find_elements(By.CSS_SELECTOR, "thead th")].index(header.text)

        def shown() -> list[tuple[str, float]]:
            rows = table.find_elements(By.CSS_SELECTOR, "tbody.ours tr.row")
            cells = [r.find_element(By.CSS_SELECTOR, f"td:nth-child({column})") for r in rows]
            names = [r.find_element(By.CSS_SELECTOR, "td a.method").text for r in rows]
            return [(n, float(c.get_attribute("data-sort"))) for n, c in zip(names, cells, strict=True)]

        header.click()
        ranked = shown()
        assert [v for _, v in ranked] == sorted((v for _, v in ranked), reverse=True)
        assert header.get_attribute("aria-sort") == "descending"
        assert ranked[0][0] == "early_fusion"
        header.click()  # again: ascending
        assert [v for _, v in shown()] == sorted(v for _, v in ranked)
        header.click()
        update = os.environ.get("REIDBENCH_UPDATE_FIGURES") == "1"
        out = ROOT / "results" / "site_page.png" if update else tmp_path / "site_page.png"
        driver.save_screenshot(str(out))

        table.find_element(By.LINK_TEXT, "late_fusion").click()
        assert driver.current_url.endswith("/runs/late_fusion@synthetic.demo-tiny.html")
        runs = runs_of(uri, "late_fusion")
        rows = driver.find_elements(By.CSS_SELECTOR, "#seeds-1 tbody tr")
        assert len(rows) == len(runs)
        for row, run in zip(rows, runs, strict=True):
            cells = [c.text for c in row.find_elements(By.TAG_NAME, "td")]
            assert cells[0] == run.data.tags["seed"] and cells[2] == run.data.tags["config_hash"]
            assert cells[4] == fmt_number(100 * run.data.metrics["mAP"])
            assert cells[5] == fmt_number(100 * run.data.metrics["rank1"])
            link = row.find_element(By.CSS_SELECTOR, "a.mlflow").get_attribute("href")
            assert link.endswith(f"/runs/{run.info.run_id}") and link.startswith(MLFLOW)
        values = [r.data.metrics["mAP"] for r in runs]
        summary = driver.find_element(By.CSS_SELECTOR, "#summary-1 td[data-metric='mAP']").text
        assert summary.startswith(
            f"{fmt_number(100 * np.mean(values))} ± {fmt_number(100 * np.std(values, ddof=1))}"
        )
        assert driver.find_element(By.CSS_SELECTOR, "svg.curves")
        driver.find_element(By.ID, "nav-figures").click()
        images = driver.find_elements(By.CSS_SELECTOR, "figure img")
        loaded = "return arguments[0].complete && arguments[0].naturalWidth > 0"
        assert images and all(driver.execute_script(loaded, i) for i in images)
    finally:
        driver.quit()
