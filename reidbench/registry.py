"""Name -> builder registries for methods, datasets and ablations, filled by decorators or :meth:`add`.

A builder (or a callable in an entry's metadata) may be given as a ``"module:function"`` reference,
imported on first use (:func:`resolve`): registering a method then imports neither the method's module nor
torch, so ``reidbench list`` and config checks start fast.
"""

from __future__ import annotations

import difflib
import importlib
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

    def add(self, name: str, builder: Callable | str, description: str, **meta: Any) -> None:
        """Register ``builder`` (a callable or a ``"module:function"`` reference) under ``name``."""
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = Entry(name, builder, description, dict(meta))

    def get(self, name: str) -> Entry:
        """The entry called ``name``; a UserError listing the valid names otherwise."""
        if name not in self._entries:
            close = difflib.get_close_matches(name, self.names(), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise UserError(
                f"unknown {self.kind} {name!r}.{hint} Valid {self.kind}s: {', '.join(self.names())}."
            )
        return self._entries[name]

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry]:
        return (self._entries[n] for n in self.names())

    def __len__(self) -> int:
        return len(self._entries)


METHODS = Registry("method")
DATASETS = Registry("dataset")
ABLATIONS = Registry("ablation")


def load_plugins() -> None:
    """Import the modules whose decorators fill the registries (idempotent)."""
    import methods  # noqa: F401
    import reidbench.data  # noqa: F401
