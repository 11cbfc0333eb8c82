"""The queue's page in a real browser (Debian's chromium, driven by selenium through chromedriver).

It submits a tiny synthetic late_fusion run from the form, sees it queued (the one slot is busy with a
longer run), cancels the longer run with its button (its MLflow run ends KILLED), follows the tiny run's
log without reloading, and sees the run finish with its mAP. The page is saved as results/queue_page.png
when REIDBENCH_UPDATE_FIGURES=1.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import TINY

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
ROOT = Path(__file__).resolve().parent.parent

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()),
        reason="needs Debian's chromium and chromium-driver (/usr/bin/chromium, /usr/bin/chromedriver); "
        "`apt-get install chromium chromium-driver` (.ci/run does)",
    ),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _browser():
    pytest.importorskip("selenium")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1500,900"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)


def _wait(driver, predicate, timeout: float, what: str):
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(
        driver,
        timeout,
        poll_frequency=0.1,
        ignored_exceptions=(NoSuchElementException, StaleElementReferenceException),
    ).until(lambda d: predicate(d), message=what)


def _read(driver, read):
    """``read(driver)``, re-run while the page's refresh replaces the element under it."""
    return _wait(driver, lambda d: (read(d),), 10, "a stable element")[0]


def _status(driver, job_id: int) -> str:
    from selenium.webdriver.common.by import By

    row = f"#job-{job_id}"
    return _read(driver, lambda d: d.find_element(By.CSS_SELECTOR, row).get_attribute("data-status"))


def _submit(driver, base: str, overrides: list[str], seeds: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(base + "/")
    driver.find_element(By.ID, "f-seeds").send_keys(seeds)
    driver.find_element(By.ID, "f-overrides").send_keys("\n".join(overrides))
    driver.find_element(By.ID, "f-submit").click()
    _wait(driver, lambda d: d.current_url.rstrip("/") == base, 30, "redirect after submit")


def test_submit_watch_cancel_and_follow_in_a_real_browser(tmp_path, synthetic_dataset, mlflow_uri):
    from mlflow.tracking import MlflowClient
    from selenium.webdriver.common.by import By

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "REIDBENCH_QUEUE": str(tmp_path / "queue.db"),
        "MLFLOW_TRACKING_URI": mlflow_uri,
        "PYTHONPATH": str(ROOT),
    }
    server = subprocess.Popen(
        [sys.executable, "-c", "import cli; cli.main()", "serve", "--port", str(port), "--slots", "1"],
        env=env,
        cwd=tmp_path,
        stdout=(tmp_path / "serve.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    driver = None
    try:
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        driver = _browser()
        long_run = [o for o in TINY if not o.startswith("train.epochs")] + ["train.epochs=200"]
        _submit(driver, base, long_run, "0")  # job 1 takes the only slot
        _wait(driver, lambda d: _status(d, 1) == "running", 30, "job 1 running")
        _submit(driver, base, TINY, "1")  # job 2 waits for it
        assert _status(driver, 2) == "queued"

        client = MlflowClient(mlflow_uri)

        def job1_run():
            exp = client.get_experiment_by_name("reidbench")
            runs = client.search_runs([exp.experiment_id], "attributes.run_name = 'late_fusion@synthetic#s0'")
            return runs[0] if runs else None

        deadline = time.time() + 120
        while (job1_run() is None or job1_run().info.status != "RUNNING") and time.time() < deadline:
            time.sleep(0.5)
        _read(driver, lambda d: d.find_element(By.CSS_SELECTOR, "#job-1 button.cancel").click())
        _wait(driver, lambda d: _status(d, 1) == "cancelled", 60, "job 1 cancelled")
        assert job1_run().info.status == "KILLED"

        driver.get(base + "/jobs/2")  # follow job 2's log: it grows while the page stays open
        log = lambda d: d.find_element(By.ID, "log").text  # noqa: E731
        _wait(driver, lambda d: "== attempt 1" in log(d), 60, "job 2 started, its log header shown")
        _wait(driver, lambda d: "mAP" in log(d), 300, "job 2's result table in the followed log")
        assert "== attempt 1" in log(driver)  # the same page, appended to, not reloaded
        _wait(driver, lambda d: d.find_element(By.ID, "job-status").text == "finished", 30, "finished")

        driver.get(base + "/")
        _wait(driver, lambda d: _status(d, 2) == "finished", 30, "job 2 finished on the main page")
        shown = _read(driver, lambda d: d.find_element(By.CSS_SELECTOR, "#job-2 td.map").text)
        (run,) = client.search_runs(
            [client.get_experiment_by_name("reidbench").experiment_id],
            "attributes.run_name = 'late_fusion@synthetic#s1'",
        )
        assert run.info.status == "FINISHED"
        assert shown == f"{100 * run.data.metrics['mAP']:.1f}"
        assert "1/1" in _read(driver, lambda d: d.find_element(By.CSS_SELECTOR, "#job-2 td.epoch").text)
        assert _read(driver, lambda d: d.find_element(By.CSS_SELECTOR, "#job-1 button.retry"))  # retryable
        update = os.environ.get("REIDBENCH_UPDATE_FIGURES") == "1"
        out = ROOT / "results" / "queue_page.png" if update else tmp_path / "queue_page.png"
        out.parent.mkdir(exist_ok=True)
        driver.save_screenshot(str(out))
    finally:
        if driver is not None:
            driver.quit()
        server.terminate()
        server.wait(30)
        if server.returncode not in (0, -15):
            shutil.copy(tmp_path / "serve.log", tmp_path / "serve.failed.log")
