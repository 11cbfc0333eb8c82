"""Decoding: image files -> resized uint8 arrays. A file that cannot be read is an error naming it."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image, UnidentifiedImageError

from reidbench.data.types import ImageRef, Sample
from reidbench.errors import UserError
from reidbench.util.progress import progress_bar

SHOWN = 20  # unreadable files quoted in an error message (`reidbench datasets prepare` lists them all)


class UnreadableImages(UserError):
    """Image files that cannot be decoded: ``files`` maps each path to why."""

    def __init__(self, files: dict[str, str], hint: str = "", shown: int | None = None) -> None:
        self.files = dict(files)
        lines = [f"cannot read image {path}: {why}" for path, why in self.files.items()]
        listed = lines if shown is None else lines[:shown]
        more = f"\n  ... and {len(lines) - len(listed)} more" if len(lines) > len(listed) else ""
        text = (
            lines[0] if len(lines) == 1 else f"{len(lines)} images cannot be read:\n  " + "\n  ".join(listed)
        )
        super().__init__(text + more + (f"\n{hint}" if hint else ""))


def _reason(path: object, exc: BaseException) -> str:
    """``exc`` in a few words, without repeating the path."""
    text = str(exc).replace(f"'{path}'", "").replace(str(path), "").strip(" :")
    return text or type(exc).__name__


def _tile(img: Image.Image, ref: ImageRef, size: tuple[int, int]) -> np.ndarray:
    if ref.num_tiles > 1:
        if img.width % ref.num_tiles:
            raise UserError(
                f"{ref.path}: a {img.width}x{img.height} image cannot hold {ref.num_tiles} equal tiles "
                f"side by side; is this the right dataset for the loader?"
            )
        tile_w = img.width // ref.num_tiles
        img = img.crop((ref.tile * tile_w, 0, (ref.tile + 1) * tile_w, img.height))
    img = img.convert("RGB").resize((size[1], size[0]), Image.BILINEAR)
    return np.asarray(img, dtype=np.uint8).transpose(2, 0, 1)


def read_image(ref: ImageRef, size: tuple[int, int]) -> np.ndarray:
    """The ``ref`` tile resized to ``size`` = (height, width), as uint8 ``(3, H, W)``.

    A truncated or unreadable file is an error naming the path (never silently skipped).
    """
    return read_sample(Sample({"x": ref}, 0, 0), ["x"], size)[0]


def read_sample(sample: Sample, modalities: list[str], size: tuple[int, int]) -> list[np.ndarray]:
    """Each modality of ``sample`` as uint8 ``(3, H, W)``; a strip file is opened once for all its tiles."""
    out: list[np.ndarray | None] = [None] * len(modalities)
    by_path: dict[object, list[int]] = {}
    for j, m in enumerate(modalities):
        by_path.setdefault(sample.images[m].path, []).append(j)
    failed: dict[str, str] = {}
    for path, slots in by_path.items():
        try:
            with Image.open(path) as img:
                img.load()
                for j in slots:
                    out[j] = _tile(img, sample.images[modalities[j]], size)
        except (OSError, UnidentifiedImageError, SyntaxError, ValueError, UserError) as exc:
            failed[str(path)] = _reason(path, exc)
    if failed:
        raise UnreadableImages(failed)
    return out  # type: ignore[return-value]


def decode_into(
    samples: list[Sample],
    modalities: list[str],
    size: tuple[int, int],
    outs: list[np.ndarray],
    workers: int,
    show_progress: bool = True,
    description: str = "decoding",
) -> None:
    """Decode ``samples`` into ``outs[j][i]`` (modality j, sample i; arrays ``(N, 3, H, W)``) with threads.

    Every file is tried; the unreadable ones are then reported together (:class:`UnreadableImages`).
    """

    def decode(i: int) -> dict[str, str]:
        try:
            for j, array in enumerate(read_sample(samples[i], modalities, size)):
                outs[j][i] = array
        except UnreadableImages as exc:
            return exc.files
        return {}

    failed: dict[str, str] = {}
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for files in progress_bar(
            pool.map(decode, range(len(samples))), description, show_progress, len(samples)
        ):
            failed.update(files)
    if failed:
        raise UnreadableImages(failed, shown=SHOWN)


def decode_samples(
    samples: list[Sample],
    modalities: list[str],
    size: tuple[int, int],
    show_progress: bool = True,
    description: str = "decoding",
    workers: int = 4,
) -> np.ndarray:
    """All ``samples`` decoded into one uint8 array ``(N, M, 3, H, W)`` (modalities in the given order)."""
    out = np.empty((len(samples), len(modalities), 3, *size), dtype=np.uint8)
    decode_into(
        samples,
        modalities,
        size,
        [out[:, j] for j in range(len(modalities))],
        workers,
        show_progress,
        description,
    )
    return out
