"""Readers for layouts with one file per modality, paired by file name across sibling folders.

* RGBNT201 / Market1501-MM: ``<split>/{RGB,NI,TI}/<name>.jpg``.
* MSVR310: ``<split>/<VVVV>/{vis,ni,th}/<name>.jpg`` (one folder per vehicle).

Every sample needs its file in every modality folder; a file missing in one of them (or present in only
some) is a problem naming the missing path, and the sample is dropped.
"""

from __future__ import annotations

from pathlib import Path

from reidbench.data.checks import Problems
from reidbench.data.names import NameRule, Parsed
from reidbench.data.strips import find_folder
from reidbench.data.types import ImageRef, Sample


def read_paired(
    dirs: dict[str, Path], rule: NameRule, problems: Problems, pid: int | None = None
) -> list[Sample]:
    """Samples whose file name exists in every folder of ``dirs`` (modality -> folder), sorted by name.

    ``pid``: the identity every file must carry (MSVR310's per-vehicle folders).
    """
    names = {m: {p.name for p in d.glob("*.jpg")} for m, d in dirs.items()}
    samples = []
    for name in sorted(set().union(*names.values())):
        missing = [m for m in dirs if name not in names[m]]
        parsed = rule.parse(name)
        if missing:
            _unpaired(dirs, name, missing, parsed, problems)
            continue
        anchor = dirs[next(iter(dirs))] / name
        if isinstance(parsed, str):
            problems.add(anchor, parsed)
        elif parsed is not None:
            if pid is not None and parsed.pid != pid:
                problems.add(anchor, f"identity {parsed.pid} in the folder of identity {pid}")
                continue
            samples.append(
                Sample(
                    {m: ImageRef(d / name) for m, d in dirs.items()}, parsed.pid, parsed.camid, parsed.sceneid
                )
            )
    return samples


def _unpaired(
    dirs: dict[str, Path], name: str, missing: list[str], parsed: Parsed | str | None, problems: Problems
) -> None:
    """A file present in only some modality folders: a badly named one is named itself (its counterparts
    were never expected); a well-named one has its missing counterparts named."""
    have = [m for m in dirs if m not in missing]
    if isinstance(parsed, str):
        for m in have:
            problems.add(
                dirs[m] / name,
                f"{parsed}; it has no counterpart in {', '.join(dirs[x].name + '/' for x in missing)} either "
                f"(renamed by mistake?)",
            )
        return
    for m in missing:
        problems.add(dirs[m] / name, f"missing (its {dirs[have[0]].name}/ counterpart exists)")


def modality_dirs(parent: Path, folders: dict[str, str], problems: Problems) -> dict[str, Path] | None:
    """The modality folders under ``parent`` (names matched ignoring case); None (and problems) if any is
    missing."""
    dirs = {m: find_folder(parent, name) for m, name in folders.items()}
    missing = [folders[m] for m, d in dirs.items() if d is None]
    if missing:
        problems.add(parent, f"missing folder(s) {', '.join(f + '/' for f in missing)}")
        return None
    return dirs  # type: ignore[return-value]


def read_modality_folders(
    split_dir: Path, folders: dict[str, str], rule: NameRule, problems: Problems
) -> list[Sample]:
    """``split_dir/{RGB,NI,TI}/<name>.jpg`` (``folders``: modality -> folder name)."""
    if not split_dir.is_dir():
        problems.add(split_dir, "missing folder")
        return []
    dirs = modality_dirs(split_dir, folders, problems)
    if dirs is None:
        return []
    samples = read_paired(dirs, rule, problems)
    if not samples:
        problems.add(split_dir, "holds no usable samples")
    return samples


def read_identity_folders(
    split_dir: Path, folders: dict[str, str], rule: NameRule, problems: Problems
) -> list[Sample]:
    """``split_dir/<VVVV>/{vis,ni,th}/<name>.jpg``: one folder per identity, numbered like the file names."""
    if not split_dir.is_dir():
        problems.add(split_dir, "missing folder")
        return []
    samples = []
    for id_dir in sorted(d for d in split_dir.iterdir() if d.is_dir()):
        if not id_dir.name.isdigit():
            problems.add(id_dir, "not an identity folder (expected a number such as 0002)")
            continue
        dirs = modality_dirs(id_dir, folders, problems)
        if dirs is not None:
            samples += read_paired(dirs, rule, problems, pid=int(id_dir.name))
    if not samples:
        problems.add(split_dir, "holds no usable samples")
    return samples
