"""The registries themselves: :class:`Registry` (name -> :class:`Entry`), the ``"module:function"``
references they may hold (:func:`resolve`), and the three of reidbench: METHODS, DATASETS, ABLATIONS.

A module that registers builders imports them from here (or from :mod:`reidbench.registry`, which re-exports
them with :func:`reidbench.registry.load_plugins`, the function that fills them).
"""

from __future__ import annotations

import difflib
import importlib
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from reidbench.errors import UserError


@dataclass(frozen=True)
class Entry:
    """One registered item: its name, builder (a callable or a ``"module:function"`` reference), a one-line
    description and free-form metadata."""

    name: str
    builder: Callable[..., Any] | str
    description: str
    meta: dict[str, Any] = field(default_factory=dict)
    source: str = ""  # the module that registered it (and its file), for errors naming both sides

    def load(self) -> Callable[..., Any]:
        """The builder itself (its module imported if it is a reference)."""
        return resolve(self.builder)


def resolve(ref: Callable[..., Any] | str) -> Callable[..., Any]:
    """``ref`` itself when callable, else the object a ``"module:attribute"`` reference names."""
    if callable(ref):
        return ref
    module, _, attribute = ref.partition(":")
    return getattr(importlib.import_module(module), attribute)


class Registry:
    """A named collection of builders, filled with the ``register`` decorator."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, description: str, **meta: Any) -> Callable[[Callable], Callable]:
        """Decorator: register ``builder`` under ``name`` with a one-line description."""

        def decorate(builder: Callable) -> Callable:
            self.add(name, builder, description, **meta)
            return builder

        return decorate

    def add(
        self, name: str, builder: Callable | str, description: str, *, source: str | None = None, **meta: Any
    ) -> None:
        """Register ``builder`` (a callable or a ``"module:function"`` reference) under ``name``; a
        :class:`RegistrationError` naming both sources when ``name`` is taken."""
        source = source or _caller()
        if name in self._entries:
            if _same_file_other_module(self._entries[name].source, source):
                return  # one file imported under a second module name: the same code, kept once
            raise RegistrationError(
                f"{self.kind} {name!r} is registered twice: by {self._entries[name].source} and by {source}; "
                "rename one of them (or uninstall / drop the plugin that should not be there)"
            )
        self._entries[name] = Entry(name, builder, description, dict(meta), source)

    def get(self, name: str) -> Entry:
        """The entry called ``name``; a UserError listing the valid names otherwise, or the error of a
        plugin that failed to load when ``name`` is that plugin's."""
        if name not in self._entries:
            close = difflib.get_close_matches(name, self.names(), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise UserError(
                f"unknown {self.kind} {name!r}.{hint} Valid {self.kind}s: {', '.join(self.names())}."
            )
        entry = self._entries[name]
        if "load_error" in entry.meta:
            raise UserError(entry.meta["load_error"])
        return entry

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry]:
        return (self._entries[n] for n in self.names())

    def __len__(self) -> int:
        return len(self._entries)


class RegistrationError(UserError, ValueError):
    """A name registered twice (the message names both sources)."""


def _same_file_other_module(first: str, second: str) -> bool:
    """Whether two sources (``module (file)``) are one file under two module names."""
    (module_a, _, file_a), (module_b, _, file_b) = first.partition(" ("), second.partition(" (")
    return bool(file_a) and file_a == file_b and module_a != module_b


def _caller() -> str:
    """The module (and file) that called into this registry: an entry's default source."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_globals.get("__name__") == __name__:
        frame = frame.f_back
    if frame is None:
        return "an unknown module"
    module, path = frame.f_globals.get("__name__", "?"), frame.f_globals.get("__file__")
    return f"{module} ({path})" if path else module


METHODS = Registry("method")
DATASETS = Registry("dataset")
ABLATIONS = Registry("ablation")
