"""Every value a request carries is checked at the edge: a 4xx with a reason, never a 500 (the server is
built with raise_server_exceptions=False, so a 500 shows as a 500 instead of a raised exception)."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from reidbench.queue.store import Store
from reidbench.web.app import create_app

BASE = "http://127.0.0.1"
HUGE = "99999999999999999999"


@pytest.fixture
def client(tmp_path):
    store = Store(tmp_path / "queue.db")
    job = store.add("run", ["run"], "x", cwd="/")
    store.log_path(job).parent.mkdir(parents=True, exist_ok=True)
    store.log_path(job).write_text("hello log\n")
    return TestClient(create_app(store), base_url=BASE, raise_server_exceptions=False)


@pytest.mark.parametrize(
    "url",
    [
        f"/jobs/{HUGE}",
        f"/jobs/{HUGE}/log",
        "/jobs/-1",
        "/jobs/0/log",
        "/jobs/abc",
        f"/jobs/1/log?offset={HUGE}",
        "/jobs/1/log?offset=-5",
        "/jobs/1/log?offset=abc",
        f"/logs/1.log?offset={HUGE}",
        "/?limit=abc",
        "/?limit=-1",
        f"/?limit={HUGE}",
        "/fragment/jobs?limit=abc",
        "/logs/1.log%00.txt",
        "/logs/%00",
        "/logs/%ff%fe.log",
    ],
)
def test_bad_ids_offsets_limits_and_paths_are_4xx(client, url):
    response = client.get(url)
    assert 400 <= response.status_code < 500, (url, response.status_code, response.text[:200])


def test_good_values_still_work(client):
    assert client.get("/jobs/1/log?offset=6").text == "log\n"
    assert client.get("/?limit=5").status_code == 200
    assert client.get("/fragment/jobs?limit=1").status_code == 200


def _csrf(client: TestClient) -> str:
    return re.search(r'name="csrf" value="([0-9a-f]+)"', client.get("/").text)[1]


@pytest.mark.parametrize("priority", [HUGE, "-" + HUGE, "1e400", "abc", "1.5"])
def test_form_priority_out_of_range_is_a_400_and_stores_nothing(client, priority):
    form = {"csrf": _csrf(client), "method": "late_fusion", "dataset": "synthetic", "priority": priority}
    response = client.post("/submit", data=form)
    assert response.status_code == 400 and "priority" in response.text
    assert len(client.get("/api/jobs").json()) == 1  # only the fixture's job


@pytest.mark.parametrize("action", ["cancel", "retry"])
def test_actions_on_huge_job_ids_are_4xx(client, action):
    response = client.post(f"/jobs/{HUGE}/{action}", data={"csrf": _csrf(client)})
    assert 400 <= response.status_code < 500


def test_a_non_ascii_token_is_a_403_not_a_500(tmp_path):
    app = create_app(Store(tmp_path / "q.db"), token="s3cret", loopback=False)
    client = TestClient(app, base_url="http://10.1.2.3", raise_server_exceptions=False)
    assert client.get("/?token=s3crét").status_code == 403
    assert client.get("/", headers={"X-Reidbench-Token": "s3crét".encode()}).status_code == 403
    assert client.get("/", headers={"Cookie": "reidbench_token=ünïcode".encode()}).status_code == 403
    response = client.post("/submit", data={"token": "tökén", "csrf": "x"})
    assert response.status_code == 403
    assert client.get("/?token=s3cret").status_code in (200, 303)  # the right one still works


def test_a_form_that_is_not_utf8_is_a_400(client):
    response = client.post(
        "/submit",
        content=b"csrf=%ff%fe&method=late\xff",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert 400 <= response.status_code < 500
