"""Layout checks: what a loader found wrong with a download, the published counts, and the verdict.

Loaders never stop at the first oddity: they collect :class:`Problems` (each naming a path), drop the
samples they cannot use and go on, so ``reidbench datasets check`` can list everything at once.
:func:`finish` then turns the problems into one error, or, with ``allow_partial``, into a warning.
"""

from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

from reidbench.data.types import Dataset, Sample
from reidbench.errors import UserError

SHOWN = 12  # problems quoted in an error message


class PartialDataWarning(UserWarning):
    """A dataset is used although its layout check found problems (``--allow-partial``).

    Shown as plain ``warning: ...`` text (no source line), once per process per message.
    """


_shown_partial: set[str] = set()


def show_warning(
    message: Warning | str, category: type[Warning], filename: str, lineno: int, file=None, line=None
) -> None:
    """``warnings.showwarning`` that prints a PartialDataWarning as plain text once; others as before."""
    if not issubclass(category, PartialDataWarning):
        _default_showwarning(message, category, filename, lineno, file, line)
        return
    text = str(message)
    if text not in _shown_partial:
        _shown_partial.add(text)
        print(f"warning: {text}", file=file or sys.stderr, flush=True)


_default_showwarning = getattr(warnings.showwarning, "previous", warnings.showwarning)  # re-import safe
show_warning.previous = _default_showwarning  # type: ignore[attr-defined]
warnings.showwarning = show_warning


@dataclass(frozen=True)
class Expected:
    """Published size of one split (None: not published / not verified)."""

    samples: int | None = None
    ids: int | None = None


# Published counts (see docs: RGBNT201 from the IDEA annotation files; RGBNT100 and MSVR310 likewise,
# MSVR310's query from CCNet's rank list). Splits not listed here are not checked. Tests patch this table.
EXPECTED_COUNTS: dict[str, dict[str, Expected]] = {
    "rgbnt201": {"train": Expected(3951, 171), "query": Expected(836, 30)},  # query is also the gallery
    "rgbnt100": {"train": Expected(8675, 50), "gallery": Expected(8575, 50)},
    "msvr310": {"train": Expected(1032, 155), "gallery": Expected(1055, 155), "query": Expected(591, 52)},
}


class Problems:
    """Problems found while reading a dataset, each ``"<path>: <what is wrong>"``."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, path: Path | str, message: str) -> None:
        self.items.append(f"{path}: {message}")

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self):
        return iter(self.items)


def check_counts(name: str, split: str, folder: Path, samples: list[Sample], problems: Problems) -> None:
    """Compare a split with the published figures in ``EXPECTED_COUNTS[name][split]``."""
    expected = EXPECTED_COUNTS.get(name, {}).get(split)
    if expected is None:
        return
    if expected.samples is not None and len(samples) != expected.samples:
        problems.add(folder, f"expected {expected.samples} samples ({split}), found {len(samples)}")
    ids = len({s.pid for s in samples})
    if expected.ids is not None and ids != expected.ids:
        problems.add(folder, f"expected {expected.ids} identities ({split}), found {ids}")


def summary(lines: list[str], shown: int = SHOWN) -> str:
    """The first ``shown`` lines, then how many more there are."""
    more = f"\n  ... and {len(lines) - shown} more" if len(lines) > shown else ""
    return "\n  " + "\n  ".join(lines[:shown]) + more


def finish(dataset: Dataset, allow_partial: bool = False) -> Dataset:
    """``dataset`` if its check found nothing; otherwise an error, or a warning with ``allow_partial``.

    An empty split is always an error: there is nothing to train or evaluate on.
    """
    name = dataset.info.name
    empty = [split for split in ("train", "query", "gallery") if not getattr(dataset.splits, split)]
    if empty:
        raise UserError(
            f"dataset {name!r}: no usable samples in split(s) {', '.join(empty)}. Problems found:"
            f"{summary(dataset.problems or ['(none)'])}\nRun `reidbench datasets check {name}` "
            f"for the full layout report. {dataset.info.source}"
        )
    if not dataset.problems:
        return dataset
    if not allow_partial:
        raise UserError(
            f"dataset {name!r}: the download under {dataset.info.root} does not match the official "
            f"layout ({len(dataset.problems)} problem(s)):{summary(dataset.problems)}\n"
            f"Fix the files (`reidbench datasets check {name}` lists them all) or pass "
            f"--allow-partial to use what was read."
        )
    warnings.warn(
        f"dataset {name!r}: proceeding despite {len(dataset.problems)} problem(s) (--allow-partial):"
        f"{summary(dataset.problems)}",
        PartialDataWarning,
        stacklevel=2,
    )
    return dataset


@dataclass(frozen=True)
class SplitSummary:
    """One row of the layout report."""

    split: str
    folder: str
    samples: int
    ids: int
    cameras: list[int]
    scenes: int
    modalities: list[str]
    captions: int


def summarise(dataset: Dataset) -> list[SplitSummary]:
    """Per split: folder, samples, identities, cameras (1-based as in the file names), scenes, captions."""
    rows = []
    for split in ("train", "query", "gallery"):
        samples = getattr(dataset.splits, split)
        folder = _relative(dataset.folders.get(split, ""), dataset.info.root)
        if split == "gallery" and dataset.splits.gallery is dataset.splits.query:
            folder = f"{folder} (= query)"
        rows.append(
            SplitSummary(
                split=split,
                folder=str(folder),
                samples=len(samples),
                ids=len({s.pid for s in samples}),
                cameras=sorted({s.camid + dataset.info.extra.get("cam_base", 1) for s in samples}),
                scenes=len({s.sceneid for s in samples if s.sceneid >= 0}),
                modalities=sorted({m for s in samples for m in s.images}, key=dataset.info.modalities.index),
                captions=sum(1 for s in samples if s.caption),
            )
        )
    return rows


def _relative(folder: Path | str, root: Path | None) -> str:
    """``folder`` relative to the dataset root when inside it."""
    try:
        return Path(folder).relative_to(root).as_posix() if root is not None and folder else str(folder)
    except ValueError:
        return str(folder)
