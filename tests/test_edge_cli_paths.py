"""More values a user types, refused at the edge with one line (exit 2), nothing stored, nothing started:
a device name torch cannot parse, and a --queue that is a folder, a binary file or another kind of file."""

from __future__ import annotations

import pytest

from tests.test_cli import run_cli

RUN = ["run", "-m", "late_fusion", "-d", "synthetic"]


@pytest.mark.parametrize("device", ["bogus", "", "cuda:", "cuda:x", "gpu", "cpu cuda", "cuda:-1"])
@pytest.mark.parametrize("command", ["run", "eval"])
def test_a_device_torch_cannot_parse_is_refused_before_anything_runs(
    monkeypatch, capsys, tmp_path, device, command
):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = (
        [*RUN, "--tracking-uri", uri] if command == "run" else ["eval", "--run", "x", "--tracking-uri", uri]
    )
    code, out = run_cli(monkeypatch, capsys, *args, "--device", device)
    flat = " ".join(out.split())
    assert code == 2 and "Invalid value for '--device'" in flat and "cuda:N" in flat, flat
    assert "Traceback" not in out and not (tmp_path / "mlflow.db").exists()


def _not_a_queue(tmp_path, kind):
    path = tmp_path / kind
    if kind == "folder":
        path.mkdir()
    elif kind == "binary":
        path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe" * 20)
    elif kind == "text":
        path.write_text("this is not a queue\n" * 20)
    else:  # below a file: its folder is a file
        (tmp_path / "a-file").write_text("x")
        path = tmp_path / "a-file" / "queue.db"
    return path


@pytest.mark.parametrize("kind", ["folder", "binary", "text", "under-a-file"])
@pytest.mark.parametrize(
    "command", [["ls"], ["show", "1"], ["add", "run", "-m", "late_fusion", "-d", "synthetic"], ["serve"]]
)
def test_a_queue_path_that_is_no_queue_is_one_line(monkeypatch, capsys, tmp_path, kind, command):
    path = _not_a_queue(tmp_path, kind)
    before = path.read_bytes() if path.is_file() else None
    args = (
        ["serve", "--queue", str(path)] if command == ["serve"] else ["queue", "--queue", str(path), *command]
    )
    code, out = run_cli(monkeypatch, capsys, *args)
    flat = " ".join(out.split())
    assert code == 2 and f"--queue {path}: cannot open it as a queue" in flat, flat
    assert "Traceback" not in out and "serving" not in flat
    assert (path.read_bytes() if path.is_file() else None) == before  # left as it was


@pytest.mark.parametrize("command", [["ls"], ["show", "1"], ["cancel", "1"], ["retry", "1"], ["logs", "1"]])
def test_reading_a_queue_that_does_not_exist_creates_nothing(monkeypatch, capsys, tmp_path, command):
    path = tmp_path / "new" / "queue.db"
    path.parent.mkdir()
    code, out = run_cli(monkeypatch, capsys, "queue", "--queue", str(path), *command)
    flat = " ".join(out.split())
    assert code != 0 and f"--queue {path}: no queue there yet" in flat and "Traceback" not in out
    assert list(path.parent.iterdir()) == []  # no queue.db, no logs folder
