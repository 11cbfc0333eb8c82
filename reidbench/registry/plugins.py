"""Methods and datasets from outside reidbench, loaded in every process that builds a model.

Two ways in, both ending in ordinary ``METHODS.add`` / ``DATASETS.add`` calls in the plugin's module:

* an installed package declares an entry point in the group ``reidbench.methods`` or
  ``reidbench.datasets``; its name is the method's (dataset's) name, its value the module that registers
  it, e.g. ``my_method = "my_pkg.my_method"`` in ``[project.entry-points."reidbench.methods"]``;
* ``reidbench --plugins MODULE[,MODULE]`` or ``$REIDBENCH_PLUGINS`` names modules (dotted names on the
  Python path, or paths to ``.py`` files). ``--plugins`` adds to the variable, so worker subprocesses,
  Slurm tasks and queue jobs, which inherit it, load the same modules.

An entry point that fails to import does not stop anything at start-up: its name is registered as
broken, and using it is a one-line error saying why. A module named with ``--plugins`` that fails to
import is a one-line error when the registries are first used. A name registered twice is an error
naming both sources (:class:`reidbench.registry.RegistrationError`). Every loaded plugin is recorded
(:func:`loaded`, :func:`plugin_tags`): module, version and the sha256 of its file, logged with each run.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from types import ModuleType

from reidbench.errors import UserError
from reidbench.registry.entries import DATASETS, METHODS, RegistrationError

__all__ = ["ENV", "GROUPS", "Plugin", "add_requested", "load", "loaded", "plugin_tags", "requested"]

ENV = "REIDBENCH_PLUGINS"
GROUPS = ("reidbench.methods", "reidbench.datasets")


@dataclass(frozen=True)
class Plugin:
    """One loaded plugin module: where it came from, its version and the hash of its file."""

    module: str
    version: str
    sha256: str
    origin: str  # "entry point reidbench.methods:NAME (dist DIST)" or "--plugins / $REIDBENCH_PLUGINS"


_loaded: dict[str, Plugin] = {}
_entry_points_done = False
_requested_done: set[str] = set()


def load() -> None:
    """Load the entry-point plugins (once per process) and every module of ``$REIDBENCH_PLUGINS`` not
    loaded yet."""
    global _entry_points_done
    if not _entry_points_done:
        _entry_points_done = True
        for group in GROUPS:
            for entry_point in metadata.entry_points(group=group):
                _load_entry_point(group, entry_point)
    for item in requested():
        if item not in _requested_done:
            _requested_done.add(item)
            _load_requested(item)


def requested() -> list[str]:
    """The modules ``$REIDBENCH_PLUGINS`` names (comma-separated), in order."""
    return [item.strip() for item in os.environ.get(ENV, "").split(",") if item.strip()]


def add_requested(items: str) -> None:
    """``--plugins A,B``: add to ``$REIDBENCH_PLUGINS`` (file paths made absolute), so this process and
    every process it starts load them."""
    new = []
    for item in (i.strip() for i in items.split(",")):
        if not item:
            continue
        if _is_path(item):
            path = Path(item).expanduser()
            if not path.is_file():
                raise UserError(f"--plugins {item!r}: no such file; give a .py file or a module name")
            item = str(path.resolve())
        new.append(item)
    merged = requested() + [i for i in new if i not in requested()]
    os.environ[ENV] = ",".join(merged)


def loaded() -> list[Plugin]:
    """The plugins loaded in this process, in load order."""
    return list(_loaded.values())


def plugin_tags() -> dict[str, str]:
    """MLflow tags tracing a run to its plugins' code: ``plugin.MODULE.version`` / ``.sha256``."""
    tags = {}
    for plugin in _loaded.values():
        tags[f"plugin.{plugin.module}.version"] = plugin.version
        tags[f"plugin.{plugin.module}.sha256"] = plugin.sha256
    if _loaded:
        tags["plugins"] = ",".join(_loaded)
    return tags


def _load_entry_point(group: str, entry_point: metadata.EntryPoint) -> None:
    registry = METHODS if group == "reidbench.methods" else DATASETS
    dist = entry_point.dist
    origin = f"entry point {group}:{entry_point.name} (package {dist.name if dist else '?'})"
    try:
        module = importlib.import_module(entry_point.module)
    except RegistrationError:
        raise
    except Exception as exc:
        error = (
            f"{registry.kind} {entry_point.name!r} from the {origin} failed to import "
            f"{entry_point.module}: {type(exc).__name__}: {exc}"
        )
        registry.add(entry_point.name, entry_point.value, error, source=origin, load_error=error)
        return
    if entry_point.name not in registry:
        error = f"the {origin} imported {entry_point.module}, which registered no {registry.kind} so named"
        registry.add(entry_point.name, entry_point.value, error, source=origin, load_error=error)
    _record(module, dist.version if dist else _version(module), origin)


def _load_requested(item: str) -> None:
    origin = f"--plugins / ${ENV}"
    try:
        module = _import_file(Path(item)) if _is_path(item) else _import_module(item)
    except (RegistrationError, UserError):
        raise
    except Exception as exc:
        raise UserError(
            f"plugin {item!r} ({origin}) failed to import: {type(exc).__name__}: {exc}. Give a module on "
            "the Python path (PYTHONPATH) or the path of a .py file"
        ) from None
    _record(module, _version(module), origin)


def _is_path(item: str) -> bool:
    return item.endswith(".py") or os.sep in item


def _import_module(name: str) -> ModuleType:
    """Import ``name``; the working directory is searched last (as ``python -m`` would)."""
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    return importlib.import_module(name)


def _import_file(path: Path) -> ModuleType:
    """Import the ``.py`` file ``path`` as the module named by its stem."""
    name = path.stem
    if name in sys.modules and getattr(sys.modules[name], "__file__", None) == str(path):
        return sys.modules[name]
    if not path.is_file():
        raise FileNotFoundError(f"no such file {path}")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _version(module: ModuleType) -> str:
    """The version of the distribution holding ``module``, else its ``__version__``, else ``unversioned``."""
    top = module.__name__.partition(".")[0]
    for dist in metadata.packages_distributions().get(top, []):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return str(getattr(module, "__version__", "unversioned"))


def _record(module: ModuleType, version: str, origin: str) -> None:
    path = getattr(module, "__file__", None)
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest() if path else "no file"
    _loaded[module.__name__] = Plugin(module.__name__, version, digest, origin)
