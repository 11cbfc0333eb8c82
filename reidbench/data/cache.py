"""The decoded-image cache: each (dataset, split, image size) decoded and resized once, memory-mapped after.

Layout: ``$REIDBENCH_CACHE/decoded/<dataset>/<split>-<H>x<W>-<source tag>/{<modality>.npy, manifest.json}``,
one uint8 array ``(N, 3, H, W)`` per modality, rows in the split's sample order. The manifest holds a digest
of every source file's path, tile, size and modification time (plus the decoder version and image size); a
cache whose digest differs from the files on disk is rebuilt, so changing, adding or removing a file
invalidates it. Builds are atomic (written aside, then renamed) and serialised by a file lock, so several
processes (DDP ranks, parallel runs) can ask for the same split at once.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from reidbench.data.images import SHOWN, UnreadableImages, decode_into
from reidbench.data.types import Dataset, Sample
from reidbench.errors import UserError

CACHE_VERSION = 1  # bump when decoding changes (resize filter, tile cropping, ...)


def cache_dir() -> Path:
    """Where generated and decoded data live: ``REIDBENCH_CACHE`` or ``~/.cache/reidbench``."""
    return Path(os.environ.get("REIDBENCH_CACHE", Path.home() / ".cache" / "reidbench"))


def split_dir(dataset: Dataset, split: str, size: tuple[int, int]) -> Path:
    """The cache folder of one split of ``dataset`` at ``size`` = (height, width)."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", dataset.info.name)
    tag = hashlib.sha1(f"{dataset.info.root}|{dataset.info.modalities}".encode()).hexdigest()[:10]
    return cache_dir() / "decoded" / name / f"{split}-{size[0]}x{size[1]}-{tag}"


def manifest(samples: list[Sample], modalities: list[str], size: tuple[int, int]) -> dict:
    """What the cache of ``samples`` depends on, summarised by a digest of every file's path, size and
    mtime."""
    digest = hashlib.sha256(f"v{CACHE_VERSION}|{size}|{modalities}".encode())
    stats: dict[Path, str] = {}
    for sample in samples:
        for m in modalities:
            ref = sample.images[m]
            if ref.path not in stats:
                try:
                    st = os.stat(ref.path)
                except OSError as exc:
                    raise UserError(
                        f"cannot read image {ref.path}: {exc.strerror}. Re-download it or run "
                        f"`reidbench datasets check`."
                    ) from None
                stats[ref.path] = f"{st.st_size}|{st.st_mtime_ns}"
            digest.update(f"{ref.path}|{ref.tile}|{ref.num_tiles}|{stats[ref.path]}\n".encode())
    return {
        "version": CACHE_VERSION,
        "size": list(size),
        "modalities": list(modalities),
        "samples": len(samples),
        "files": len(stats),
        "digest": digest.hexdigest(),
    }


def open_cached(folder: Path, wanted: dict) -> dict[str, np.ndarray] | None:
    """The memory-mapped arrays in ``folder`` if its manifest equals ``wanted``, else None."""
    try:
        found = json.loads((folder / "manifest.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if found != wanted:
        return None
    shape = (wanted["samples"], 3, *wanted["size"])
    arrays = {}
    for m in wanted["modalities"]:
        try:
            # copy-on-write mapping: writable for torch.from_numpy, never written back
            arrays[m] = np.load(folder / f"{m}.npy", mmap_mode="c") if shape[0] else np.empty(shape, np.uint8)
        except (OSError, ValueError):
            return None
        if arrays[m].shape != shape or arrays[m].dtype != np.uint8:
            return None
    return arrays


@contextmanager
def _locked(folder: Path):
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f".{folder.name}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def build(
    folder: Path,
    wanted: dict,
    samples: list[Sample],
    show_progress: bool,
    description: str,
    workers: int | None = None,
) -> None:
    """Decode ``samples`` into ``folder`` (written aside, then renamed into place)."""
    tmp = folder.parent / f".{folder.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        size, modalities = tuple(wanted["size"]), wanted["modalities"]
        shape = (len(samples), 3, *size)
        outs = (
            [
                np.lib.format.open_memmap(tmp / f"{m}.npy", mode="w+", dtype=np.uint8, shape=shape)
                for m in modalities
            ]
            if samples
            else []
        )
        decode_into(
            samples,
            modalities,
            size,
            outs,
            workers or len(os.sched_getaffinity(0)),
            show_progress,
            description,
        )
        for out in outs:
            out.flush()
        del outs
        (tmp / "manifest.json").write_text(json.dumps(wanted))
        shutil.rmtree(folder, ignore_errors=True)
        tmp.rename(folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_split(
    dataset: Dataset,
    split: str,
    size: tuple[int, int],
    show_progress: bool = True,
    workers: int | None = None,
) -> dict[str, np.ndarray]:
    """Modality -> uint8 ``(N, 3, H, W)`` memory-mapped array of ``split``, decoding it first if needed."""
    samples = getattr(dataset.splits, split)
    modalities = list(dataset.info.modalities)
    folder = split_dir(dataset, split, size)
    wanted = manifest(samples, modalities, size)
    arrays = open_cached(folder, wanted)
    if arrays is None:
        with _locked(folder):
            arrays = open_cached(folder, wanted)  # another process may have built it meanwhile
            if arrays is None:
                try:
                    build(
                        folder,
                        wanted,
                        samples,
                        show_progress,
                        f"decoding {dataset.info.name} {split} at {size[0]}x{size[1]}",
                        workers,
                    )
                except UnreadableImages as exc:
                    raise UnreadableImages(exc.files, _fix_hint(dataset.info.name), SHOWN) from None
                arrays = open_cached(folder, wanted)
    if arrays is None:
        raise UserError(
            f"the decoded cache in {folder} could not be read back after building it; remove the "
            f"folder and retry (is the disk full?)"
        )
    return arrays


def _fix_hint(name: str, listed_all: bool = False) -> str:
    what = (
        ""
        if listed_all
        else (f"`reidbench datasets prepare {name}` decodes every image and lists all of them. ")
    )
    return f"{what}Re-download these files, or delete them and pass --allow-partial to go on without them."


def prepare(
    dataset: Dataset, size: tuple[int, int], show_progress: bool = True
) -> list[tuple[str, Path, int, int]]:
    """Build (or validate) the cache of every split; (split, folder, samples, bytes) per split.

    Every split is decoded even when one holds unreadable images; then one error lists every such file.
    """
    splits = ["train", "query"] + ([] if dataset.splits.gallery is dataset.splits.query else ["gallery"])
    out, failed = [], {}
    for split in splits:
        try:
            arrays = load_split(dataset, split, size, show_progress)
        except UnreadableImages as exc:
            failed.update(exc.files)
            continue
        out.append(
            (
                split,
                split_dir(dataset, split, size),
                len(getattr(dataset.splits, split)),
                sum(a.nbytes for a in arrays.values()),
            )
        )
    if failed:
        raise UnreadableImages(failed, _fix_hint(dataset.info.name, listed_all=True))
    return out
