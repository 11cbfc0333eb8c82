"""Reader for the side-by-side strip layout of RGBNT100 / RGBN300 (and the default synthetic dataset).

``<root>/rgbir/{bounding_box_train,bounding_box_test,query}/VVVV_cCCCC_NNN.jpg``; each JPEG holds one
tile per modality, left to right (RGB | NIR | TIR; 256x128 each in the official downloads, so 768x128
for RGBNT100 and 512x128 for RGBN300). Query and gallery are separate folders.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, UnidentifiedImageError

from reidbench.data.checks import Problems
from reidbench.data.names import NameRule
from reidbench.data.types import ImageRef, Sample

SPLIT_FOLDERS = {"train": "bounding_box_train", "gallery": "bounding_box_test", "query": "query"}


def find_folder(parent: Path, *names: str) -> Path | None:
    """The child folder of ``parent`` named like one of ``names`` ignoring case (first name preferred)."""
    if not parent.is_dir():
        return None
    children = {child.name.lower(): child for child in sorted(parent.iterdir()) if child.is_dir()}
    for name in names:
        if name.lower() in children:
            return children[name.lower()]
    return None


def check_strip_geometry(path: Path, num_tiles: int, problems: Problems) -> None:
    """A strip must hold ``num_tiles`` tiles twice as wide as high (the official 256x128 tiles)."""
    try:
        with Image.open(path) as img:
            width, height = img.size
    except (OSError, UnidentifiedImageError) as exc:
        problems.add(path, f"cannot read image ({exc})")
        return
    if width != num_tiles * 2 * height:
        problems.add(
            path,
            f"expected a strip of {num_tiles} tiles of 2:1 ({num_tiles * 256}x128 in the official "
            f"download), found {width}x{height}: wrong dataset for this loader?",
        )


def read_strip_split(folder: Path, modalities: list[str], rule: NameRule, problems: Problems) -> list[Sample]:
    """Samples of one split folder of strips (tile i = ``modalities[i]``); problems are collected, not
    raised."""
    if not folder.is_dir():
        problems.add(folder, "missing folder")
        return []
    files = sorted(folder.glob("*.jpg"))
    if not files:
        problems.add(folder, "holds no .jpg files")
        return []
    check_strip_geometry(files[0], len(modalities), problems)
    samples = []
    for path in files:
        parsed = rule.parse(path.name)
        if isinstance(parsed, str):
            problems.add(path, parsed)
        elif parsed is not None:
            refs = {m: ImageRef(path, i, len(modalities)) for i, m in enumerate(modalities)}
            samples.append(Sample(refs, parsed.pid, parsed.camid, parsed.sceneid))
    return samples
