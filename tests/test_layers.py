"""The layer rule of pyproject.toml ([tool.importlinter], README "Layout") holds on this tree, and would
catch a shortcut: the same contracts on a copy of the package with one upward import added fail, naming
it. No import cycles between the modules of reidbench/ (imports inside functions included). At most 10
top-level modules in reidbench/ (issue 25)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")
MAX_TOP_LEVEL_MODULES = 10


def lint(config: Path, cwd: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` with ``config`` in ``cwd`` (whose reidbench/ is the one analysed)."""
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(cwd), "HOME": str(cwd)}
    return subprocess.run(
        [str(LINT), "--config", str(config), "--no-cache"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _copy_with(tmp_path: Path, module: str, line: str) -> Path:
    """A copy of reidbench/ and pyproject.toml under ``tmp_path`` with ``line`` appended to ``module``."""
    shutil.copytree(ROOT / "reidbench", tmp_path / "reidbench", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    path = tmp_path / module
    path.write_text(path.read_text() + line)
    return tmp_path / "pyproject.toml"


def test_the_tree_keeps_the_contracts():
    result = lint(ROOT / "pyproject.toml", ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


def test_an_upward_import_inside_a_function_breaks_the_layers(tmp_path):
    # the runner reaching up into pruning (what the warm-start hook replaced), hidden in a function
    config = _copy_with(
        tmp_path,
        "reidbench/runner.py",
        "\n\ndef _shortcut():\n    from reidbench.prune import rounds  # noqa\n",
    )
    result = lint(config, tmp_path)
    assert result.returncode != 0
    assert "BROKEN" in result.stdout and "reidbench.runner -> reidbench.prune.rounds" in result.stdout


def test_the_queue_importing_the_command_line_breaks_both_contracts(tmp_path):
    config = _copy_with(tmp_path, "reidbench/queue/store.py", "\nimport reidbench.cli.submit  # noqa\n")
    result = lint(config, tmp_path)
    assert result.returncode != 0
    assert "0 kept, 2 broken" in result.stdout
    assert "reidbench.queue.store -> reidbench.cli.submit" in result.stdout


def test_at_most_ten_top_level_modules():
    modules = sorted(p.name for p in (ROOT / "reidbench").glob("*.py") if p.name != "__init__.py")
    assert len(modules) <= MAX_TOP_LEVEL_MODULES, modules


def import_cycles(package: str) -> list[list[str]]:
    """Every set of modules of ``package`` that import each other in a circle (strongly connected
    components of more than one module; imports inside functions and under TYPE_CHECKING count)."""
    graph = grimp.build_graph(package, cache_dir=None)
    edges = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in sorted(graph.modules)}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(module: str) -> None:  # Tarjan's algorithm
        index[module] = low[module] = len(index)
        stack.append(module)
        for other in edges[module]:
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            component = []
            while not component or component[-1] != module:
                component.append(stack.pop())
            if len(component) > 1:
                found.append(sorted(component))

    for module in edges:
        if module not in index:
            visit(module)
    return found


def test_no_import_cycles_in_the_package():
    assert import_cycles("reidbench") == []


def test_a_cycle_hidden_in_a_function_is_found(tmp_path, monkeypatch):
    package = tmp_path / "cyclic_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "low.py").write_text("def f():\n    from cyclic_pkg import high\n\n    return high\n")
    (package / "high.py").write_text("from cyclic_pkg import low\n")
    (package / "alone.py").write_text("import cyclic_pkg.high\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert import_cycles("cyclic_pkg") == [["cyclic_pkg.high", "cyclic_pkg.low"]]
