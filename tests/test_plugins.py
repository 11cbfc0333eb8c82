"""Plugins: an installed package's entry point and ``--plugins`` modules register methods that train in
this process and in worker subprocesses; collisions and broken plugins are one-line errors."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from reidbench.registry import RegistrationError, Registry
from tests.conftest import TINY

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "reidbench-tiny-cnn"
EXAMPLE_FILE = EXAMPLE / "reidbench_tiny_cnn.py"


def uv() -> list[str]:
    found = shutil.which("uv")
    return [found] if found else ["python3", "-m", "uv"]


def reidbench(*args: str, cwd: Path, site: Path | None = None) -> subprocess.CompletedProcess:
    """``reidbench ARGS`` in a fresh process started in ``cwd`` (``site``: an extra installation dir)."""
    env = {k: v for k, v in os.environ.items() if k != "REIDBENCH_PLUGINS"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *([str(site)] if site else [])])  # workers too
    return subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), *args], cwd=cwd, env=env, capture_output=True, text=True
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The example plugin package installed (with its entry point) into a directory of its own."""
    work = tmp_path_factory.mktemp("plugin")
    shutil.copytree(EXAMPLE, work / "src")  # builds in a copy: nothing written into the checkout
    cmd = [*uv(), "pip", "install", "--quiet", "--no-deps", "--python", sys.executable]
    subprocess.run([*cmd, "--target", str(work / "site"), str(work / "src")], check=True)
    return work / "site"


def test_registering_a_taken_name_names_both_sources():
    reg = Registry("thing")
    reg.add("a", "os.path:join", "x")
    with pytest.raises(RegistrationError) as err:
        reg.add("a", "os.path:join", "y", source="plugin my_pkg (entry point)")
    message = str(err.value)
    assert "test_plugins.py" in message and "plugin my_pkg (entry point)" in message


def test_a_plugin_module_taking_a_builtin_name_is_a_one_line_error(tmp_path):
    (tmp_path / "clash.py").write_text(
        "from reidbench.registry import METHODS\nMETHODS.add('late_fusion', 'os.path:join', 'mine')\n"
    )
    done = reidbench("--plugins", "clash.py", "list", "methods", cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    out = " ".join((done.stdout + done.stderr).split())
    assert "reidbench.methods.late_fusion_config" in out and str(tmp_path / "clash.py") in out
    assert "Traceback" not in out


def test_plugins_fail_when_used_not_at_start_up(tmp_path):
    """A broken entry point leaves other commands alone; using its name says why it failed."""
    dist = tmp_path / "broken_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[reidbench.methods]\nbroken = broken_plugin_module\n")
    (tmp_path / "broken_plugin_module.py").write_text("import no_such_dependency_xyz\n")
    listed = reidbench("list", "datasets", cwd=tmp_path, site=tmp_path)
    assert listed.returncode == 0, listed.stderr
    used = reidbench("run", "-m", "broken", "-d", "synthetic", cwd=tmp_path, site=tmp_path)
    assert used.returncode == 2, used.stdout + used.stderr
    out = " ".join(used.stdout.split())
    assert "broken-plugin" in out and "No module named 'no_such_dependency_xyz'" in out
    assert "Traceback" not in used.stdout + used.stderr
    missing = reidbench("--plugins", "no_such_plugin_xyz", "list", "methods", cwd=tmp_path)
    assert missing.returncode == 2 and "no_such_plugin_xyz" in missing.stdout
    assert "Traceback" not in missing.stdout + missing.stderr


def _runs(uri: str) -> list:
    from reidbench import tracking

    return tracking.search_runs(uri, "reidbench").to_dict("records")


def _train(
    cwd: Path, method: str, seed: int, *extra: str, site: Path | None = None, plugins: str = ""
) -> None:
    args = (["--plugins", plugins] if plugins else []) + [
        "run",
        "-m",
        method,
        "-d",
        "synthetic",
        "--seeds",
        str(seed),
        "-q",
        "--device",
        "cpu",
    ]
    args += [f"--set={s}" for s in TINY] + ["--tracking-uri", f"sqlite:///{cwd / 'mlflow.db'}"]
    done = reidbench(*args, *extra, "--results-dir", str(cwd / "results"), cwd=cwd, site=site)
    assert done.returncode == 0, done.stdout + done.stderr


def _check_run(cwd: Path, method: str, module: str, digest: str, version: str) -> None:
    (run,) = _runs(f"sqlite:///{cwd / 'mlflow.db'}")
    assert run["status"] == "FINISHED" and run["tags.method"] == method and run["metrics.mAP"] >= 0
    assert run[f"tags.plugin.{module}.version"] == version
    assert run[f"tags.plugin.{module}.sha256"] == digest


@pytest.mark.slow
def test_installed_plugin_trains_in_process(site, tmp_path):
    listed = reidbench("list", "methods", cwd=tmp_path, site=site)
    assert "tiny_cnn" in listed.stdout, listed.stdout + listed.stderr
    _train(tmp_path, "tiny_cnn", 0, site=site)
    assert not (tmp_path / "results" / "jobs").exists()  # no worker: trained in the command's process
    digest = hashlib.sha256(EXAMPLE_FILE.read_bytes()).hexdigest()
    _check_run(tmp_path, "tiny_cnn", "reidbench_tiny_cnn", digest, "0.1.0")


@pytest.mark.slow
def test_installed_plugin_trains_in_a_worker_subprocess(site, tmp_path):
    _train(tmp_path, "tiny_cnn", 0, "--gpus", "0", site=site)  # LocalPool: python -m reidbench.sweeps.worker
    assert list((tmp_path / "results" / "jobs").rglob("log.txt")), "no worker ran"
    digest = hashlib.sha256(EXAMPLE_FILE.read_bytes()).hexdigest()
    _check_run(tmp_path, "tiny_cnn", "reidbench_tiny_cnn", digest, "0.1.0")


@pytest.mark.slow
def test_plugins_option_reaches_the_worker_subprocess(tmp_path):
    """``--plugins FILE`` goes to workers through $REIDBENCH_PLUGINS (a module nothing else can find)."""
    source = EXAMPLE_FILE.read_text().replace('"tiny_cnn"', '"my_cnn"')
    (tmp_path / "my_local_cnn.py").write_text(source)
    _train(tmp_path, "my_cnn", 0, "--gpus", "0", plugins="my_local_cnn.py")
    digest = hashlib.sha256(source.encode()).hexdigest()
    _check_run(tmp_path, "my_cnn", "my_local_cnn", digest, "0.1.0")


def _readme_block(after: str) -> str:
    """The first ```python block of README.md after the heading ``after``."""
    text = (ROOT / "README.md").read_text()
    rest = text[text.index(after) :]
    start = rest.index("```python\n") + len("```python\n")
    return rest[start : rest.index("```", start)]


def test_the_readme_dataset_plugin_loads_checks_and_builds_a_run(tmp_path, tmp_path_factory):
    from tests.layouts import data_root, official, small

    plugin = tmp_path / "my_vehicles.py"
    plugin.write_text(_readme_block("## Add your dataset"))
    protocol = (ROOT / "benchmarks" / "protocols" / "market1501_mm.yaml").read_text()
    (tmp_path / "my_vehicles.yaml").write_text(
        protocol.replace("dataset: market1501_mm", "dataset: my_vehicles")
    )
    config = small("market1501_mm")
    root = data_root(tmp_path, config, tmp_path_factory.getbasetemp() / "layouts")
    official(root, config).rename(root / "MyVehicles")
    check = reidbench(
        "--plugins",
        "my_vehicles.py",
        "datasets",
        "check",
        "my_vehicles",
        "--data-root",
        str(root),
        cwd=tmp_path,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "MyVehicles" in " ".join(check.stdout.split())
    code = (
        "from reidbench.spec import make_spec; print(make_spec('late_fusion', 'my_vehicles', 0).config_hash)"
    )
    env = {**os.environ, "REIDBENCH_PLUGINS": str(plugin)}
    spec = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert spec.returncode == 0 and len(spec.stdout.strip()) > 8, spec.stderr


def test_the_same_file_registering_again_under_another_module_name_is_kept_once():
    reg = Registry("thing")
    reg.add("a", "os.path:join", "x", source="pkg.mod (/src/pkg/mod.py)")
    reg.add("a", "os.path:join", "x", source="mod (/src/pkg/mod.py)")
    assert reg.get("a").source == "pkg.mod (/src/pkg/mod.py)" and len(reg) == 1
    with pytest.raises(RegistrationError):
        reg.add("a", "os.path:join", "x", source="other (/src/other.py)")
