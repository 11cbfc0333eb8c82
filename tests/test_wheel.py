"""The wheel works on its own: built from the checkout, installed into a fresh virtual environment and
used from a directory outside the checkout; ``reidbench`` is its only top-level import name."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import TINY

ROOT = Path(__file__).resolve().parents[1]


def uv(*args: str) -> None:
    found = shutil.which("uv")
    subprocess.run([*([found] if found else ["python3", "-m", "uv"]), *args], check=True)


def checkout_copy(dst: Path) -> Path:
    """The checkout's tracked and untracked-but-not-ignored files, copied (the build writes nothing here)."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    for name in listed.stdout.splitlines():
        if (ROOT / name).is_file():
            (dst / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dst / name)
    return dst


@pytest.mark.slow
def test_the_wheel_trains_and_lists_ablations_outside_the_checkout(tmp_path):
    src = checkout_copy(tmp_path / "src")
    uv("build", "--wheel", "--quiet", "--out-dir", str(tmp_path / "dist"), str(src))
    (wheel,) = (tmp_path / "dist").glob("reidbench-*.whl")
    tops = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert tops == {"reidbench", wheel.name.split("-py3")[0] + ".dist-info"}, tops  # no cli, no methods
    venv = tmp_path / "venv"
    uv("venv", "--quiet", "--python", sys.executable, str(venv))
    python = str(venv / "bin" / "python")
    uv("pip", "sync", "--quiet", "--python", python, str(ROOT / "requirements.lock"))  # from uv's cache
    uv("pip", "install", "--quiet", "--no-deps", "--python", python, str(wheel))
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "REIDBENCH_PLUGINS")}
    env["REIDBENCH_CACHE"] = str(tmp_path / "cache")

    def reidbench(*args: str) -> str:
        done = subprocess.run(
            [str(venv / "bin" / "reidbench"), *args], cwd=outside, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return " ".join(done.stdout.split())

    shipped = len(list((ROOT / "benchmarks" / "ablations").glob("*.yaml")))
    assert shipped and f"ablations ({shipped})" in reidbench("list", "ablations")
    uri = f"sqlite:///{outside / 'mlflow.db'}"
    out = reidbench("run", "-m", "late_fusion", "-d", "synthetic", "-q", *[f"--set={s}" for s in TINY],
                    "--tracking-uri", uri, "--results-dir", str(outside / "results"))  # fmt: skip
    assert "late_fusion" in out and "logged to" in out
    probe = "import importlib.util as u; print([m for m in ('cli', 'methods') if u.find_spec(m)])"
    found = subprocess.run([python, "-c", probe], cwd=outside, env=env, capture_output=True, text=True)
    assert found.stdout.strip() == "[]", found.stdout + found.stderr
