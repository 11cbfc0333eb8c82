import os
import subprocess
import sys
from pathlib import Path

import pytest

from reidbench.errors import UserError
from reidbench.registry import DATASETS, METHODS, Registry, load_plugins


def test_register_get_and_list():
    reg = Registry("thing")

    @reg.register("b", "the b thing", knob=1)
    def build_b():
        return "b"

    @reg.register("a", "the a thing")
    def build_a():
        return "a"

    assert reg.names() == ["a", "b"]
    assert reg.get("b").builder() == "b"
    assert reg.get("b").meta == {"knob": 1}
    assert "a" in reg and len(reg) == 2
    assert [e.name for e in reg] == ["a", "b"]


def test_unknown_name_lists_valid_names_and_suggests():
    reg = Registry("thing")
    reg.register("late_fusion", "x")(lambda: None)
    reg.register("graft", "y")(lambda: None)
    with pytest.raises(UserError) as err:
        reg.get("late_fusoin")
    assert "late_fusion" in str(err.value) and "graft" in str(err.value) and "Did you mean" in str(err.value)


def test_duplicate_registration_fails():
    reg = Registry("thing")
    reg.register("a", "x")(lambda: None)
    with pytest.raises(ValueError):
        reg.register("a", "y")(lambda: None)


def test_plugins_fill_the_registries():
    load_plugins()
    assert "late_fusion" in METHODS
    assert "synthetic" in DATASETS and "rgbnt100" in DATASETS
    assert all(e.description for e in METHODS) and all(e.description for e in DATASETS)


def test_a_builder_given_by_reference_is_imported_on_first_use():
    reg = Registry("thing")
    reg.add("join", "os.path:join", "joins paths", kind="lazy")
    entry = reg.get("join")
    assert entry.builder == "os.path:join" and entry.meta == {"kind": "lazy"}
    assert entry.load()("a", "b") == os.path.join("a", "b")


STARTUP = """
import sys
from click.testing import CliRunner
from cli import cli
from reidbench.errors import UserError
from reidbench.registry import METHODS, load_plugins
from reidbench.spec import make_spec

load_plugins()
for method in METHODS.names():
    make_spec(method, "synthetic", 0)
for what in ("methods", "datasets", "ablations"):
    assert CliRunner().invoke(cli, ["list", what]).exit_code == 0, what
bad = CliRunner().invoke(cli, ["run", "-m", "graft", "-d", "synthetic", "--set", "no_such.key=1"])
assert isinstance(bad.exception, UserError), bad.output
print(sorted(m for m in ("torch", "timm", "transformers", "mlflow") if m in sys.modules))
"""


def test_listing_and_checking_configs_import_no_torch():
    """What ``reidbench list`` and a config check need is importable without torch (fast start-up)."""
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, "-c", STARTUP], cwd=root, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[-2] == "[]", done.stdout
