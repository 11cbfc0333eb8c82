"""Every integer, string and path a user types on the command line is checked at the edge: a clear error
and a non-zero exit, never a traceback, nothing stored, no job started."""

from __future__ import annotations

import socket

from reidbench.queue.store import Store
from tests.test_cli import run_cli

HUGE = "99999999999999999999"
RUN = ["run", "-m", "late_fusion", "-d", "synthetic"]
TUNE = ["tune", "-m", "late_fusion", "-d", "synthetic"]


def _cases(tmp):
    binary = tmp / "binary.yaml"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe")
    afile = tmp / "a-file"
    afile.write_text("x")
    queue = ["queue", "--queue", str(tmp / "q.db")]
    return [
        ([*queue, "show", HUGE], "Invalid value"),
        ([*queue, "show", "0"], "Invalid value"),
        ([*queue, "cancel", "-1"], "No such option"),
        ([*queue, "retry", HUGE], "Invalid value"),
        ([*queue, "logs", HUGE], "Invalid value"),
        ([*queue, "ls", "--status", "bogus"], "'bogus' is not one of"),
        ([*queue, "ls", "--limit", "0"], "Invalid value"),
        ([*queue, "ls", "--limit", "abc"], "Invalid value"),
        ([*queue, "add", "--priority", HUGE, "run", "-m", "late_fusion", "-d", "synthetic"], "Invalid value"),
        ([*queue, "add", "run", "-m", "late_fusion", "-d", "rgbnt100", "--data-root", str(tmp)], "rgbnt100"),
        (["serve", "--queue", str(tmp / "q.db"), "--port", "99999"], "Invalid value for '--port'"),
        (["serve", "--queue", str(tmp / "q.db"), "--port", "0"], "Invalid value for '--port'"),
        (["serve", "--queue", str(tmp / "q.db"), "--slots", "0"], "Invalid value for '--slots'"),
        (["serve", "--queue", str(tmp / "q.db"), "--host", ""], "expected a name"),
        (["serve", "--queue", str(tmp / "q.db"), "--host", "bad host!"], "expected a host name or an IP"),
        (["report", "--out", str(afile)], "is a file"),
        (["report", "--published", str(tmp / "missing.csv")], "does not exist"),
        (["eval", "--weights", str(tmp / "missing.safetensors")], "does not exist"),
        (["eval", "--weights", str(afile), "--config", str(tmp / "missing.yaml")], "does not exist"),
        (["eval", "--weights", str(binary), "--config", str(binary)], "error"),
        (["eval", "--run", "x", "--validation", "0"], "Invalid value for '--validation'"),
        (["eval", "--run", "x", "--validation", "1"], "Invalid value for '--validation'"),
        ([*TUNE, "--trials", "1", "--storage", "foo://x"], "expected a database URL"),
        ([*TUNE, "--trials", "1", "--storage", ""], "expected a database URL"),
        ([*TUNE, "--trials", "0"], "Invalid value for '--trials'"),
        ([*TUNE, "--trials", HUGE], "Invalid value for '--trials'"),
        ([*TUNE, "--trials", "1", "--study", ""], "expected a name"),
        ([*TUNE, "--trials", "1", "--study", "   "], "expected a name"),
        ([*TUNE, "--trials", "1", "--val-fraction", "0"], "Invalid value for '--val-fraction'"),
        ([*TUNE, "--trials", "1", "--val-fraction", "1"], "Invalid value for '--val-fraction'"),
        ([*TUNE, "--trials", "1", "--val-fraction", "-0.1"], "Invalid value for '--val-fraction'"),
        ([*TUNE, "--trials", "1", "--val-fraction", "nan"], "strictly between 0 and 1"),
        ([*TUNE, "--trials", "1", "--seed", "-1"], "Invalid value for '--seed'"),
        ([*TUNE, "--trials", "1", "--space", str(binary)], "not a UTF-8 text file"),
        ([*TUNE, "--trials", "1", "--space", str(tmp / "missing.yaml")], "does not exist"),
        ([*RUN, "--seeds", HUGE], "--seeds"),
        ([*RUN, "--seeds", "-1"], "--seeds"),
        ([*RUN, "--seeds", "0,,1"], "--seeds '0,,1': expected comma-separated integers"),
        ([*RUN, "--seeds", "0,1,"], "--seeds '0,1,': expected comma-separated integers"),
        ([*RUN, "--set", "train.epochs=99999999999999999999"], "train.epochs must be at most"),
        (["run", "-m", "late_fusion", "-d", "synthetic+synthetic"], "merged with itself"),
        (["run", "-m", "late_fusion", "-d", "synthetic+"], "empty source name"),
        ([*RUN, "--protocol", str(binary)], "not a UTF-8 text file"),
        ([*RUN, "--protocol", str(tmp / "missing.yaml")], "does not exist"),
        ([*RUN, "--results-dir", str(afile)], "is a file"),
        ([*RUN, "--gpus-per-run", "0"], "Invalid value for '--gpus-per-run'"),
        ([*RUN, "--stale-after", "-5"], "Invalid value for '--stale-after'"),
        ([*RUN, "--experiment", ""], "expected a name"),
        (
            ["prune", "-m", "late_fusion", "-d", "synthetic", "--fraction", "0"],
            "Invalid value for '--fraction'",
        ),
        (["prune", "-m", "late_fusion", "-d", "synthetic", "--rounds", "0"], "Invalid value for '--rounds'"),
        (["ablate", "fusion_tokens", "--set", "optim.lrr=1"], "optim.lrr"),
        (["suite", "generalisation", "--set", "optim.lrr=1"], "optim.lrr"),
        (["run", "-m", "late_fusion", "-d", "synthetic", "--set", "data.modalities=[rgb"], "data.modalities"),
    ]


def test_every_bad_value_is_refused_cleanly(monkeypatch, capsys, tmp_path):
    cases = _cases(tmp_path)
    wrong = []
    for args, expected in cases:
        code, out = run_cli(monkeypatch, capsys, *args)
        if code in (0, None) or "Traceback" in out or expected not in out:
            wrong.append((args, code, out[-600:]))
    assert not wrong, "\n".join(map(str, wrong))
    assert not Store(tmp_path / "q.db").jobs()  # nothing queued
    print(f"refused cleanly: {len(cases)} of {len(cases)}")


def test_error_messages_keep_their_brackets(monkeypatch, capsys):
    code, out = run_cli(monkeypatch, capsys, *RUN, "--set", "optim.lrr=[1]")
    assert code == 2 and "optim.lrr" in out and "error:" in out


def test_list_methods_verbose_prints_the_stages(monkeypatch, capsys):
    code, out = run_cli(monkeypatch, capsys, "list", "methods", "--verbose")
    assert code == 0 and "train.stages=[" in out and "train.stages=\n" not in out


def test_serve_on_a_busy_port_fails_before_starting_a_job(monkeypatch, capsys, tmp_path):
    store = Store(tmp_path / "q.db")
    job = store.add("run", ["run", "-m", "late_fusion", "-d", "synthetic"], "x", cwd=str(tmp_path))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        code, out = run_cli(monkeypatch, capsys, "serve", "--queue", str(store.path), "--port", str(port))
    assert code == 2 and f"--port {port}: cannot listen there" in out and "serving" not in out
    assert store.get(job).status == "queued"  # no job started


BAD_SETS = """
import sys
from click.testing import CliRunner
from cli import cli
from reidbench.errors import UserError

for args in (
    ["ablate", "fusion_tokens", "--set", "no_such.key=1"],
    ["tune", "-m", "graft", "-d", "synthetic", "--trials", "1", "--set", "no_such.key=1"],
    ["suite", "generalisation", "--set", "no_such.key=1"],
    ["eval", "--run", "0123abc", "--set", "eval.no_such=1"],
):
    bad = CliRunner().invoke(cli, args)
    assert isinstance(bad.exception, UserError) and "no_such" in str(bad.exception), (args, bad.output)
print(sorted(m for m in ("torch", "timm", "transformers") if m in sys.modules))
"""


def test_ablate_tune_suite_eval_refuse_a_bad_set_before_importing_torch():
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", BAD_SETS], cwd=root, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[-2] == "[]", done.stdout
