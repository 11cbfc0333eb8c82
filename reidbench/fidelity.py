"""Fidelity tables: for each method with an official recipe, every setting of the official code, our value
under each recipe track, and "same" or the deviation with its reason. Torch-free.

A method registers its rows as registration metadata (``METHODS.add(..., fidelity=[Fidelity(...), ...])``);
``reidbench list methods --verbose``, the method's docstring (:func:`docstring_table`) and the README's
recipe section read the same rows. A row:

* ``setting``: what is compared, in words ("optimiser", "weight decay", "warmup");
* ``official``: the official code's value, with where it is set (file / config key);
* ``ours``: our value under ``--recipe official``; :data:`SAME` (the default) when it is the official one;
* ``why``: the reason, required when ``ours`` differs;
* ``shared``: our value under ``--recipe shared``; :data:`AS_OFFICIAL` (the default) when the shared track
  keeps the official track's value; ``shared_why``: the reason when that differs from the official code;
* ``keys``: the dotted protocol keys the row covers (``optim.no_decay``, ``method.mm_attend_padding``):
  every key an official recipe sets, and every key whose resolved value differs between the two tracks, must
  be covered by a row (prefix match; tests/test_fidelity.py checks each registered method).
"""

from __future__ import annotations

from dataclasses import dataclass

SAME = "same"
AS_OFFICIAL = "as official track"
TRACKS = ("official", "shared")


@dataclass(frozen=True)
class Fidelity:
    """One row: a setting of the official code against ours under each recipe track."""

    setting: str
    official: str
    ours: str = SAME
    why: str = ""
    shared: str = AS_OFFICIAL
    shared_why: str = ""
    keys: tuple[str, ...] = ()

    def value(self, recipe: str) -> str:
        """Our value under ``recipe`` (the official value when it is the same)."""
        ours = self.official if self.ours == SAME else self.ours
        if recipe == "shared" and self.shared != AS_OFFICIAL:
            return self.official if self.shared == SAME else self.shared
        return ours

    def status(self, recipe: str) -> str:
        """``same``, or ``differs: <reason>`` under ``recipe``."""
        if recipe == "shared" and self.shared != AS_OFFICIAL:
            return SAME if self.shared == SAME else f"differs: {self.shared_why}"
        return SAME if self.ours == SAME else f"differs: {self.why}"

    def problems(self) -> list[str]:
        """What makes the row incomplete (a deviation without a reason)."""
        out = []
        if self.ours != SAME and not self.why:
            out.append(f"{self.setting!r}: ours differs under official but has no reason (why=...)")
        if self.shared not in (SAME, AS_OFFICIAL) and not self.shared_why:
            out.append(f"{self.setting!r}: the shared value differs but has no reason (shared_why=...)")
        return out


def rows(method: str) -> list[Fidelity]:
    """The fidelity rows ``method`` registered (empty for a baseline)."""
    from reidbench.registry import METHODS

    return list(METHODS.get(method).meta.get("fidelity") or [])


def table(method: str, recipe: str) -> list[tuple[str, str, str, str]]:
    """``(setting, official, ours, status)`` per row of ``method`` under ``recipe``."""
    return [(r.setting, r.official, r.value(recipe), r.status(recipe)) for r in rows(method)]


def cell(row: Fidelity, recipe: str) -> str:
    """``same``, or ``<our value> (<reason>)``: one track's column of a table."""
    status = row.status(recipe)
    return SAME if status == SAME else f"{row.value(recipe)} ({status[9:]})"


def deviations(method: str, recipe: str = "official") -> list[str]:
    """``setting: official X; ours Y (reason)`` for every row that differs under ``recipe``."""
    out = []
    for r in rows(method):
        status = r.status(recipe)
        if status != SAME:
            out.append(f"{r.setting}: official {r.official}; ours {r.value(recipe)} ({status[9:]})")
    return out


def method_deviations(method: str) -> list[str]:
    """What ``method``'s official track still does differently from the official code (its fidelity rows
    that differ, :func:`deviations`, then any plain ``deviations`` lines it registered)."""
    from reidbench.registry import METHODS

    return deviations(method) + list(METHODS.get(method).meta.get("deviations") or [])


def uncovered(method: str, dataset: str) -> list[str]:
    """Dotted keys that no row of ``method`` covers: keys its official recipe sets, and keys whose resolved
    value on ``dataset`` differs between the two tracks ("nothing differs without a row")."""
    from reidbench.config import to_dict
    from reidbench.recipes import recipe_settings
    from reidbench.spec import make_spec

    configs = [to_dict(make_spec(method, dataset, 0, recipe=r).protocol) for r in TRACKS]
    official, shared = (_flatten(c) for c in configs)
    keys = set(recipe_settings(method, "official")) - set(recipe_settings(method, "shared"))
    keys |= {k for k in official.keys() | shared.keys() if official.get(k) != shared.get(k)}
    covered = [k for r in rows(method) for k in r.keys]
    return sorted(k for k in keys if not any(k == c or k.startswith(c + ".") for c in covered))


def _flatten(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(_flatten(value, path + "."))
        else:
            out[path] = value
    return out


def docstring_table(fidelity: list[Fidelity]) -> str:
    """The rows as a plain-text section for a method's docstring (both tracks)."""
    head = "Fidelity to the official code (registration metadata; `reidbench list methods --verbose`):"
    lines = ["", head, ""]
    for r in fidelity:
        lines.append(f"* {r.setting}: official {r.official}")
        for recipe in TRACKS:
            lines.append(f"    - {recipe}: {cell(r, recipe)}")
    return "\n".join(lines) + "\n"


def markdown_table(method: str, recipe: str) -> str:
    """A Markdown table of ``method`` under ``recipe`` (README / reports)."""
    out = ["| setting | official code | ours | |", "|---|---|---|---|"]
    out += [f"| {' | '.join(cell.replace('|', '/') for cell in row)} |" for row in table(method, recipe)]
    return "\n".join(out)
