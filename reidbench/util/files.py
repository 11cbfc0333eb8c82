"""Reading the files a user names (protocols, search spaces, suites, ablations, configs, zoo files): one
UserError naming the file when it is missing, unreadable or not UTF-8 text (a binary file given by mistake),
never a traceback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from reidbench.errors import UserError

__all__ = ["read_text", "read_yaml"]


def read_text(path: str | Path) -> str:
    """The UTF-8 text of ``path``; a UserError saying why it cannot be read."""
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except IsADirectoryError:
        raise UserError(f"{path}: a folder, expected a text file") from None
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise UserError(
            f"{path}: not a UTF-8 text file (byte {exc.start} is {exc.object[exc.start : exc.start + 1]!r}); "
            "expected YAML text"
        ) from None


def read_yaml(path: str | Path) -> Any:
    """The YAML document of ``path`` (:func:`read_text`, then ``yaml.safe_load``: a ``yaml.YAMLError`` is
    left to the caller, which knows what the file should hold)."""
    return yaml.safe_load(read_text(path))
