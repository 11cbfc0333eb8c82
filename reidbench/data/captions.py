"""Captions in the published (IDEA) format: ``text/{train,test}_{RGB,NI,TI}.json``.

Each file is a JSON list of ``{"item": <image file name>, "description": <caption>}``, one caption per
modality per image. A sample's caption joins its modalities' captions (RGB, NI, TI order).
"""

from __future__ import annotations

import json
from pathlib import Path

from reidbench.data.types import Sample
from reidbench.errors import UserError

TAGS = ("RGB", "NI", "TI")


def read_captions(text_dir: Path, split: str) -> dict[str, list[str]]:
    """File name -> captions (one per modality file present) of ``split`` (``train`` or ``test``)."""
    by_name: dict[str, list[str]] = {}
    for tag in TAGS:
        path = text_dir / f"{split}_{tag}.json"
        if not path.is_file():
            continue
        try:
            items = json.loads(path.read_text())
            for item in items:
                by_name.setdefault(str(item["item"]), []).append(str(item["description"]))
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise UserError(
                f"{path}: expected a JSON list of {{'item', 'description'}} objects ({exc}). "
                f"Re-copy it from the published annotations or remove it."
            ) from None
    return by_name


def attach_captions(samples: list[Sample], text_dir: Path | None, split: str) -> list[Sample]:
    """``samples`` with captions attached where the annotation files name them (unchanged when absent)."""
    by_name = read_captions(text_dir, split) if text_dir is not None else {}
    if not by_name:
        return samples
    return [
        Sample(s.images, s.pid, s.camid, s.sceneid, " ".join(by_name.get(s.name, [])) or None)
        for s in samples
    ]
