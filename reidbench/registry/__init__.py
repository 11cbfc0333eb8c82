"""Name -> builder registries for methods, datasets and ablations, filled by decorators or :meth:`add`.

A builder (or a callable in an entry's metadata) may be given as a ``"module:function"`` reference,
imported on first use (:func:`resolve`): registering a method then imports neither the method's module nor
torch, so ``reidbench list`` and config checks start fast.

Every entry remembers its *source* (the module that registered it), so a name registered twice is an error
naming both. :func:`load_plugins` fills the registries: the built-in methods and datasets, then the
plugins (:mod:`reidbench.registry.plugins`: entry points and ``--plugins`` / ``$REIDBENCH_PLUGINS``).
"""

from __future__ import annotations

from reidbench.registry import plugins
from reidbench.registry.entries import (
    ABLATIONS,
    DATASETS,
    METHODS,
    Entry,
    RegistrationError,
    Registry,
    resolve,
)

__all__ = [
    "ABLATIONS",
    "DATASETS",
    "METHODS",
    "Entry",
    "RegistrationError",
    "Registry",
    "load_plugins",
    "plugins",
    "resolve",
]


def load_plugins() -> None:
    """Import the modules whose registrations fill the registries: the built-in methods and datasets, then
    the plugins (entry points, ``$REIDBENCH_PLUGINS``). Idempotent; cheap when nothing is new."""
    import reidbench.data  # noqa: F401
    import reidbench.methods  # noqa: F401

    plugins.load()
