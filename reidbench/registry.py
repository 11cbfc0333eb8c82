"""Name -> builder registries for methods, datasets and ablations, filled by decorators."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from reidbench.errors import UserError


@dataclass(frozen=True)
class Entry:
    """One registered item: its name, builder, a one-line description and free-form metadata."""

    name: str
    builder: Callable[..., Any]
    description: str
    meta: dict[str, Any] = field(default_factory=dict)


class Registry:
    """A named collection of builders, filled with the ``register`` decorator."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, description: str, **meta: Any) -> Callable[[Callable], Callable]:
        """Decorator: register ``builder`` under ``name`` with a one-line description."""

        def decorate(builder: Callable) -> Callable:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = Entry(name, builder, description, dict(meta))
            return builder

        return decorate

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
