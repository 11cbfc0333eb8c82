"""Loader for the side-by-side strip layout of RGBNT100 / RGBN300 (and the synthetic dataset).

``<root>/rgbir/{bounding_box_train,bounding_box_test,query}/VVVV_cCCCC_NNN.jpg``; each JPEG holds one
256-px-wide tile per modality, left to right (RGB | NIR | TIR). Query and gallery are separate folders.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from reidbench.data.types import ImageRef, Sample
from reidbench.errors import UserError

STRIP_NAME = re.compile(r"^([-\d]+)_c([-\d]+)_\d+\.jpg$")
SPLIT_FOLDERS = {"train": "bounding_box_train", "gallery": "bounding_box_test", "query": "query"}


def find_folder(parent: Path, *names: str) -> Path | None:
    """The child of ``parent`` whose name matches one of ``names`` ignoring case, if any."""
    if not parent.is_dir():
        return None
    wanted = {n.lower() for n in names}
    for child in sorted(parent.iterdir()):
        if child.is_dir() and child.name.lower() in wanted:
            return child
    return None


def read_strip_split(folder: Path, file_modalities: list[str], modalities: list[str],
                     max_pid: int = 600, max_cam: int = 8) -> list[Sample]:
    """Samples of one split folder of strips; names and label ranges are checked."""
    if not folder.is_dir():
        raise UserError(f"expected folder {folder} (RGBNT100 layout: rgbir/bounding_box_train, "
                        f"rgbir/bounding_box_test, rgbir/query)")
    samples = []
    for path in sorted(folder.glob("*.jpg")):
        match = STRIP_NAME.match(path.name)
        if not match:
            raise UserError(f"{path}: file name does not parse as VVVV_cCCCC_NNN.jpg")
        pid, cam = int(match.group(1)), int(match.group(2))
        if not (1 <= pid <= max_pid and 1 <= cam <= max_cam):
            raise UserError(f"{path}: identity {pid} / camera {cam} outside 1..{max_pid} / 1..{max_cam}")
        refs = {m: ImageRef(path, file_modalities.index(m), len(file_modalities)) for m in modalities}
        samples.append(Sample(refs, pid=pid, camid=cam - 1))
    if not samples:
        raise UserError(f"{folder} holds no .jpg files")
    return samples


def attach_captions(samples: list[Sample], text_dir: Path, split: str) -> list[Sample]:
    """Attach IDEA-style captions (``text/<split>_{RGB,NI,TI}.json``) joined per sample, when present."""
    by_name: dict[str, list[str]] = {}
    for tag in ("RGB", "NI", "TI"):
        path = text_dir / f"{split}_{tag}.json"
        if not path.is_file():
            continue
        try:
            items = json.loads(path.read_text())
            for item in items:
                by_name.setdefault(item["item"], []).append(item["description"])
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise UserError(f"{path}: expected a JSON list of {{'item', 'description'}} objects ({exc})") from None
    if not by_name:
        return samples
    return [Sample(s.images, s.pid, s.camid, s.sceneid, " ".join(by_name.get(s.name, [])) or None)
            for s in samples]
