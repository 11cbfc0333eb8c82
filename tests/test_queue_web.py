"""The queue's page: security (path traversal, token, CSRF, Host), submit checks, log tail, rendering."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from reidbench.queue.scheduler import Scheduler
from reidbench.queue.store import Store
from reidbench.web.app import create_app, is_loopback

BASE = "http://127.0.0.1"


@pytest.fixture
def store(tmp_path):
    return Store(tmp_path / "queue.db")


def _csrf(client: TestClient) -> str:
    return re.search(r'name="csrf" value="([0-9a-f]+)"', client.get("/").text)[1]


def test_logs_are_served_only_from_the_queue_log_dir(store, tmp_path):
    job = store.add("run", ["run"], "x", cwd="/")
    store.log_path(job).parent.mkdir(parents=True, exist_ok=True)
    store.log_path(job).write_text("hello log\n")
    (tmp_path / "secret.log").write_text("not yours")
    client = TestClient(create_app(store), base_url=BASE)
    assert client.get(f"/logs/{job}.log").text == "hello log\n"
    for bad in [
        "../secret.log",
        "..%2Fsecret.log",
        "..%2F..%2Fetc%2Fpasswd",
        "%2Fetc%2Fpasswd",
        "../queue.db",
    ]:
        assert client.get(f"/logs/{bad}").status_code == 404, bad
    assert client.get(f"/logs/{job}.result.json").status_code == 404
    assert client.get("/jobs/999/log").status_code == 404


def test_log_tail_returns_new_bytes_from_an_offset(store):
    job = store.add("run", ["run"], "x", cwd="/")
    store.log_path(job).parent.mkdir(parents=True, exist_ok=True)
    store.log_path(job).write_text("one\n")
    client = TestClient(create_app(store), base_url=BASE)
    first = client.get(f"/jobs/{job}/log")
    assert first.text == "one\n" and first.headers["x-log-offset"] == "4"
    with store.log_path(job).open("a") as f:
        f.write("two\n")
    assert client.get(f"/jobs/{job}/log", params={"offset": 4}).text == "two\n"


def test_state_changes_need_the_token_and_the_csrf_token(store):
    job = store.add("run", ["run"], "x", cwd="/")
    app = create_app(store, token="s3cret", loopback=False)
    stranger = TestClient(app, base_url="http://10.1.2.3")
    assert stranger.get("/").status_code == 403  # reads need it too
    assert stranger.get(f"/jobs/{job}/log").status_code == 403
    assert stranger.get("/?token=wrong").status_code == 403
    user = TestClient(app, base_url="http://10.1.2.3")
    assert user.get("/?token=s3cret", follow_redirects=False).status_code == 303  # sets the cookie
    csrf = _csrf(user)
    assert stranger.post(f"/jobs/{job}/cancel", data={"csrf": csrf}).status_code == 403  # no token
    assert stranger.post(f"/jobs/{job}/cancel", data={"csrf": csrf, "token": "wrong"}).status_code == 403
    assert store.get(job).status == "queued"
    ok = stranger.post(f"/jobs/{job}/cancel", data={"csrf": csrf, "token": "s3cret"}, follow_redirects=False)
    assert ok.status_code == 303 and store.get(job).status == "cancelled"
    # the cookie is enough as the token; the CSRF token is still required
    assert user.post(f"/jobs/{job}/retry", data={}).status_code == 403
    assert user.post(f"/jobs/{job}/retry", data={"csrf": csrf}, follow_redirects=False).status_code == 303
    assert store.get(job).status == "queued"
    headers = {"X-Reidbench-Token": "s3cret", "X-CSRF-Token": csrf}
    assert stranger.post(f"/jobs/{job}/cancel", headers=headers, follow_redirects=False).status_code == 303


def test_loopback_server_refuses_other_host_names_and_posts_without_csrf(store):
    job = store.add("run", ["run"], "x", cwd="/")
    app = create_app(store)
    assert TestClient(app, base_url="http://evil.example").get("/").status_code == 400
    client = TestClient(app, base_url=BASE)
    assert client.post(f"/jobs/{job}/cancel", data={}).status_code == 403
    assert store.get(job).status == "queued"
    assert is_loopback("127.0.0.1") and is_loopback("::1") and not is_loopback("0.0.0.0")


def test_serve_on_a_public_address_needs_a_token(monkeypatch):
    import cli
    from reidbench.errors import UserError

    monkeypatch.delenv("REIDBENCH_SERVE_TOKEN", raising=False)
    with pytest.raises(UserError, match="--token"):
        cli.cli.main(["serve", "--host", "0.0.0.0"], standalone_mode=False)


def test_submit_form_shows_the_cli_message_and_stores_nothing(store, mlflow_uri, monkeypatch):
    from reidbench.cli.submit import check

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
    client = TestClient(create_app(store, check=check), base_url=BASE)
    csrf = _csrf(client)
    bad = {"csrf": csrf, "method": "late_fusion", "dataset": "synthetic", "overrides": "optim.lrr=1"}
    page = client.post("/submit", data=bad)
    assert page.status_code == 400 and "Valid keys under optim" in page.text
    assert 'value="late_fusion"' in page.text  # the form keeps what was typed
    page = client.post("/submit", data={**bad, "overrides": "", "seeds": "a,b"})
    assert page.status_code == 400 and "comma-separated integers" in page.text
    assert store.jobs() == []
    good = {**bad, "overrides": "train.epochs=1\nsampler.p=4 sampler.k=4", "seeds": "3", "priority": "2"}
    assert client.post("/submit", data=good, follow_redirects=False).status_code == 303
    (job,) = store.jobs()
    assert job.priority == 2 and [p["name"] for p in job.points] == ["late_fusion@synthetic#s3"]
    assert job.args[job.args.index("--seeds") + 1] == "3" and job.tracking_uri == mlflow_uri


def test_page_lists_jobs_with_their_state_and_the_cpu_slots(store):
    a = store.add(
        "run", ["run"], "run -m a", cwd="/", points=[{"name": "a", "config_hash": "h", "epochs": 4}]
    )
    b = store.add("run", ["run"], "run -m b", cwd="/")
    store.update(a, status="finished", map=0.4321, started=1.0, ended=61.0, run_ids=["abcdef123"],
                 experiment_id="7")  # fmt: skip
    store.update(b, status="failed", error="RuntimeError: boom")
    scheduler = Scheduler(store, ["cpu0", "cpu1"])
    html = TestClient(create_app(store, scheduler), base_url=BASE).get("/").text
    assert "43.2" in html and "0:01:00" in html and "4/4" in html and "RuntimeError: boom" in html
    assert "/#/experiments/7/runs/abcdef123" in html
    assert 'id="device-cpu0"' in html and 'id="device-cpu1"' in html and "CPU slots" in html
    assert f'action="/jobs/{b}/retry"' in html and f'action="/jobs/{a}/cancel"' not in html
    assert "http" not in re.sub(r'href="http://127\.0\.0\.1:5000[^"]*"', "", html).replace(
        "http-equiv", ""
    )  # no outside assets


def test_gpu_panel_shows_memory_and_utilisation_per_device(store):
    from reidbench.queue.placement import DeviceStat

    stats = {"0": DeviceStat("0", "NVIDIA H200", 143_771, 71_885, 37.0), "1": DeviceStat("1", "NVIDIA H200")}
    scheduler = Scheduler(store, ["0", "1"], gpus=True, read_stats=lambda ids: stats)
    job = store.add("run", ["run"], "x", cwd="/")
    store.update(job, status="running", devices="1")
    html = TestClient(create_app(store, scheduler), base_url=BASE).get("/fragment/devices").text
    gpu0 = html[html.index('id="device-0"') : html.index('id="device-1"')]
    assert "70.2 / 140.4 GiB" in gpu0 and "37 %" in gpu0 and 'value="50"' in gpu0 and "free" in gpu0
    assert f'href="/jobs/{job}"' in html[html.index('id="device-1"') :]
