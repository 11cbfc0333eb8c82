"""What a dataset loader returns: samples (file references + labels) grouped in splits."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class ImageRef:
    """One modality image of a sample: a file and, for side-by-side strips, which tile of how many."""

    path: Path
    tile: int = 0
    num_tiles: int = 1


@dataclass(frozen=True)
class Sample:
    """One multimodal sample: an image per modality plus identity, camera and scene labels."""

    images: dict[str, ImageRef]
    pid: int
    camid: int
    sceneid: int = -1
    caption: str | None = None

    @property
    def name(self) -> str:
        return next(iter(self.images.values())).path.name


@dataclass
class DatasetSplits:
    """train / query / gallery sample lists (query may be the gallery, see ``DatasetInfo.same_set``)."""

    train: list[Sample]
    query: list[Sample]
    gallery: list[Sample]


@dataclass
class DatasetInfo:
    """Facts about a dataset the protocol and methods need."""

    name: str
    modalities: list[str]
    num_train_ids: int
    junk: str = "market"
    same_set: bool = False
    has_text: bool = False
    source: str = ""  # where the official download comes from
    root: Path | None = None
    extra: dict = field(default_factory=dict)  # e.g. cam_base: camera number of camid 0 in file names
    num_cameras: int = 0  # 1 + the largest camid of any split (camera embeddings size by it); 0: unknown


def count_cameras(*splits: list[Sample]) -> int:
    """How many camera ids ``splits`` span: 1 + the largest (0-based) camid, 0 when there are no samples."""
    return 1 + max((s.camid for split in splits for s in split), default=-1)


def relabel(samples: list[Sample]) -> tuple[list[int], int]:
    """Contiguous training labels 0..C-1 in order of sorted identity (same on every rank)."""
    ids = sorted({s.pid for s in samples})
    index = {pid: i for i, pid in enumerate(ids)}
    return [index[s.pid] for s in samples], len(ids)


@dataclass
class Dataset:
    """A loaded dataset: facts, the sample lists, the split folders and what its layout check found."""

    info: DatasetInfo
    splits: DatasetSplits
    folders: dict[str, Path] = field(default_factory=dict)  # split -> folder read
    problems: list[str] = field(default_factory=list)  # "<path>: <what is wrong>", empty when all is well
