"""Decoding: image files -> resized uint8 arrays, once, with a progress bar."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image, UnidentifiedImageError

from reidbench.data.types import ImageRef, Sample
from reidbench.errors import UserError
from reidbench.progress import progress_bar


def read_image(ref: ImageRef, size: tuple[int, int]) -> np.ndarray:
    """The ``ref`` tile resized to ``size`` = (height, width), as uint8 ``(3, H, W)``.

    A truncated or unreadable file is an error naming the path (never silently skipped).
    """
    try:
        with Image.open(ref.path) as img:
            img.load()
            if ref.num_tiles > 1:
                tile_w = img.width // ref.num_tiles
                img = img.crop((ref.tile * tile_w, 0, (ref.tile + 1) * tile_w, img.height))
            img = img.convert("RGB").resize((size[1], size[0]), Image.BILINEAR)
            return np.asarray(img, dtype=np.uint8).transpose(2, 0, 1)
    except (OSError, UnidentifiedImageError, SyntaxError) as exc:
        raise UserError(f"cannot read image {ref.path}: {exc}. Re-download or remove the file.") from None


def decode_samples(samples: list[Sample], modalities: list[str], size: tuple[int, int],
                   show_progress: bool = True, description: str = "decoding") -> np.ndarray:
    """All ``samples`` decoded into one uint8 array ``(N, M, 3, H, W)`` (modalities in the given order)."""
    out = np.empty((len(samples), len(modalities), 3, *size), dtype=np.uint8)

    def decode(i: int) -> int:
        for j, m in enumerate(modalities):
            out[i, j] = read_image(samples[i].images[m], size)
        return i

    with ThreadPoolExecutor(max_workers=4) as pool:
        for _ in progress_bar(pool.map(decode, range(len(samples))), description, show_progress, len(samples)):
            pass
    return out
