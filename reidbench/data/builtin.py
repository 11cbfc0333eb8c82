"""The registered datasets: the official layouts, read exactly as published, and the synthetic one.

Every builder has the signature ``builder(data_root, allow_partial=False, validate=True) -> Dataset``.
It reads ``<data_root>/<Official folder>`` (folder name case ignored), collects what does not match the
official layout or the published counts (:mod:`reidbench.data.checks`), and then fails with all of it,
or with ``allow_partial`` warns and goes on with what it could read. ``validate=False`` returns the
dataset with its problems attached and raises nothing (``reidbench datasets check``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from reidbench.data.cache import cache_dir
from reidbench.data.captions import attach_captions
from reidbench.data.checks import EXPECTED_COUNTS, Problems, check_counts, finish
from reidbench.data.folders import read_identity_folders, read_modality_folders
from reidbench.data.names import (
    MARKET_NAME,
    MSVR310_NAME,
    RGBN300_STRIP,
    RGBNT201_NAME,
    VEHICLE_STRIP,
    NameRule,
)
from reidbench.data.strips import SPLIT_FOLDERS, find_folder, read_strip_split
from reidbench.data.synthetic import SyntheticConfig, expected_counts, generate
from reidbench.data.types import Dataset, DatasetInfo, DatasetSplits, Sample, count_cameras, relabel
from reidbench.errors import UserError
from reidbench.registry.entries import DATASETS

ALL = ["rgb", "nir", "tir"]
SEPARATE_FOLDERS = {"rgb": "RGB", "nir": "NI", "tir": "TI"}  # RGBNT201, Market1501-MM
MSVR_FOLDERS = {"rgb": "vis", "nir": "ni", "tir": "th"}

SOURCES = {
    "rgbnt201": "RGBNT201 comes from the authors of 'Robust Multi-Modality Person Re-identification' "
    "(AAAI'21; Google Drive / Baidu links in the TOP-ReID and IEEE READMEs); unpack it so that "
    "<data-root>/RGBNT201/train_171/RGB/ exists.",
    "rgbnt100": "RGBNT100 comes from the HAMNet authors (github.com/ttaalle/multi-modal-vehicle-Re-ID; "
    "Baidu / Google Drive links in the GraFT README); unpack it so that <data-root>/RGBNT100/rgbir/ exists.",
    "rgbn300": "RGBN300 comes from the HAMNet authors (github.com/ttaalle/multi-modal-vehicle-Re-ID; "
    "Baidu code 11y8, Google Drive copy in the GraFT README); unpack it so that "
    "<data-root>/RGBN300/rgbir/ exists.",
    "msvr310": "MSVR310 comes from the CCNet authors (github.com/superlollipop123/Cross-directional-Center-"
    "Network-and-MSVR310); unpack it so that <data-root>/MSVR310/bounding_box_train/ exists.",
    "market1501_mm": "Market1501-MM (Market-1501 with generated NIR/TIR) comes from the IEEE authors "
    "(AAAI'22, shared next to RGBNT201); unpack it so that <data-root>/Market1501-MM/train/RGB/ exists.",
}


def dataset_root(data_root: Path, name: str, folders: tuple[str, ...], inside: str) -> Path:
    """``<data_root>/<one of folders>`` (case ignored) or a UserError saying what was expected."""
    root = find_folder(Path(data_root), *folders)
    if root is None:
        raise UserError(
            f"dataset {name!r}: expected folder {Path(data_root) / folders[0]} with {inside} inside. "
            f"{SOURCES.get(name, '')} (--data-root or $REIDBENCH_DATA chooses <data-root>.)"
        )
    return root


def assemble(
    name: str,
    root: Path,
    modalities: list[str],
    splits: dict[str, list[Sample]],
    folders: dict[str, Path],
    problems: Problems,
    junk: str = "market",
    cam_base: int = 1,
) -> Dataset:
    """Attach captions (``<root>/text``), check the published counts and wrap up a :class:`Dataset`."""
    text = find_folder(root, "text")
    same_set = splits["gallery"] is splits["query"]
    for split in ("train", "query", "gallery"):
        if split == "gallery" and same_set:
            continue
        check_counts(name, split, folders[split], splits[split], problems)
        splits[split] = attach_captions(splits[split], text, "train" if split == "train" else "test")
    if same_set:
        splits["gallery"] = splits["query"]
    _, num_ids = relabel(splits["train"])
    train = splits["train"]
    info = DatasetInfo(
        name=name,
        modalities=list(modalities),
        num_train_ids=num_ids,
        junk=junk,
        same_set=same_set,
        has_text=bool(train) and all(s.caption for s in train),
        source=SOURCES.get(name, ""),
        root=root,
        extra={"cam_base": cam_base},
        num_cameras=count_cameras(train, splits["query"], splits["gallery"]),
    )
    return Dataset(info, DatasetSplits(**splits), dict(folders), list(problems))


def scan_strips(name: str, root: Path, modalities: list[str], rule: NameRule) -> Dataset:
    """A ``rgbir/{bounding_box_train,bounding_box_test,query}`` strip dataset under ``root``."""
    rgbir = find_folder(root, "rgbir")
    if rgbir is None:
        raise UserError(
            f"dataset {name!r}: expected folder {root / 'rgbir'} with bounding_box_train/, "
            f"bounding_box_test/ and query/ inside. {SOURCES.get(name, '')}"
        )
    problems = Problems()
    folders = {split: find_folder(rgbir, folder) or rgbir / folder for split, folder in SPLIT_FOLDERS.items()}
    splits = {split: read_strip_split(folders[split], modalities, rule, problems) for split in SPLIT_FOLDERS}
    return assemble(name, root, modalities, splits, folders, problems)


def scan_rgbnt100(data_root: Path) -> Dataset:
    """RGBNT100: ``RGBNT100/rgbir/*/`` 768x128 strips RGB|NIR|TIR."""
    root = dataset_root(data_root, "rgbnt100", ("RGBNT100",), "rgbir/")
    return scan_strips("rgbnt100", root, ALL, VEHICLE_STRIP)


def scan_rgbn300(data_root: Path) -> Dataset:
    """RGBN300: ``RGBN300/rgbir/*/`` 512x128 strips RGB|NIR (EDITOR calls the folder RGBNT300)."""
    root = dataset_root(data_root, "rgbn300", ("RGBN300", "RGBNT300"), "rgbir/")
    return scan_strips("rgbn300", root, ["rgb", "nir"], RGBN300_STRIP)


def scan_rgbnt201(data_root: Path) -> Dataset:
    """RGBNT201: ``RGBNT201/{train_171,test}/{RGB,NI,TI}/``; the test set is both query and gallery."""
    root = dataset_root(data_root, "rgbnt201", ("RGBNT201",), "train_171/ and test/")
    problems = Problems()
    train_dir = find_folder(root, "train_171") or root / "train_171"
    test_dir = find_folder(root, "test") or root / "test"
    train = read_modality_folders(train_dir, SEPARATE_FOLDERS, RGBNT201_NAME, problems)
    test = read_modality_folders(test_dir, SEPARATE_FOLDERS, RGBNT201_NAME, problems)
    splits = {"train": train, "query": test, "gallery": test}
    return assemble(
        "rgbnt201", root, ALL, splits, {"train": train_dir, "query": test_dir, "gallery": test_dir}, problems
    )


def scan_msvr310(data_root: Path) -> Dataset:
    """MSVR310: ``MSVR310/{bounding_box_train,bounding_box_test,query3}/<VVVV>/{vis,ni,th}/`` with scene
    ids."""
    root = dataset_root(
        data_root, "msvr310", ("MSVR310", "msvr310"), "bounding_box_train/, bounding_box_test/ and query3/"
    )
    problems = Problems()
    names = {"train": "bounding_box_train", "gallery": "bounding_box_test", "query": "query3"}
    folders = {split: find_folder(root, folder) or root / folder for split, folder in names.items()}
    splits = {
        split: read_identity_folders(folders[split], MSVR_FOLDERS, MSVR310_NAME, problems) for split in names
    }
    return assemble("msvr310", root, ALL, splits, folders, problems, junk="scene", cam_base=0)


def scan_market1501_mm(data_root: Path) -> Dataset:
    """Market1501-MM: ``Market1501-MM/{train,query,gallery}/{RGB,NI,TI}/`` (Market-1501 names; -1 junk
    skipped)."""
    root = dataset_root(
        data_root, "market1501_mm", ("Market1501-MM", "Market1501_MM"), "train/, query/ and gallery/"
    )
    problems = Problems()
    folders = {split: find_folder(root, split) or root / split for split in ("train", "query", "gallery")}
    splits = {
        split: read_modality_folders(folders[split], SEPARATE_FOLDERS, MARKET_NAME, problems)
        for split in folders
    }
    return assemble("market1501_mm", root, ALL, splits, folders, problems)


def register_layout(
    name: str, description: str, scan: Callable[[Path], Dataset], modalities: list[str] = ALL, **meta: object
) -> None:
    """Register ``scan`` (which collects problems) as a dataset builder that checks them.

    ``modalities``: what the dataset has (the protocol's ``data.modalities`` are checked against it);
    ``meta``: more of the entry's metadata, e.g. ``protocol=PATH`` (a plugin dataset's protocol file).
    """

    def builder(data_root: Path, allow_partial: bool = False, validate: bool = True, **_: object) -> Dataset:
        dataset = scan(Path(data_root))
        return finish(dataset, allow_partial) if validate else dataset

    builder.__doc__ = scan.__doc__
    module = sys.modules.get(scan.__module__)
    source = f"{scan.__module__} ({getattr(module, '__file__', '?')})"  # the scan's module, for collisions
    DATASETS.add(name, builder, description, source=source, scan=scan, modalities=list(modalities), **meta)


def scan_synthetic(_: Path, name: str = "synthetic", config: SyntheticConfig | None = None) -> Dataset:
    """The synthetic dataset (RGBNT100 layout), generated into the cache on first use."""
    config = config or SyntheticConfig()
    EXPECTED_COUNTS.setdefault(name, expected_counts(config))
    root = generate(cache_dir() / "synthetic", config)
    dataset = scan_strips(name, root, ALL, VEHICLE_STRIP)
    dataset.info.source = "It is generated by reidbench."
    return dataset


def scan_synthetic_shift(data_root: Path) -> Dataset:
    """The synthetic dataset's second domain (other cameras, palette, lighting, thermal contrast; other
    identities), generated into the cache on first use."""
    return scan_synthetic(data_root, "synthetic_shift", SyntheticConfig(domain="shift"))


register_layout(
    "synthetic",
    "procedural RGB/NIR/TIR vehicles whose identity needs fusion (generated, no download)",
    scan_synthetic,
)
register_layout(
    "synthetic_shift",
    "the synthetic vehicles' second domain: other cameras, palette, lighting, thermal contrast, identities",
    scan_synthetic_shift,
)
register_layout(
    "rgbnt201", "persons, RGB/NIR/TIR files, 171 train / 30 test ids (test = query = gallery)", scan_rgbnt201
)
register_layout(
    "rgbnt100", "vehicles, RGB/NIR/TIR 768x128 strips, 50 train / 50 test ids, 8 cameras", scan_rgbnt100
)
register_layout("rgbn300", "vehicles, RGB/NIR 512x128 strips, 8 cameras", scan_rgbn300, ["rgb", "nir"])
register_layout(
    "msvr310", "vehicles, RGB/NIR/TIR per-vehicle folders, 155 / 155 ids, scene-aware junk rule", scan_msvr310
)
register_layout(
    "market1501_mm",
    "persons, Market-1501 with generated NIR/TIR, 751 / 750 ids, 6 cameras",
    scan_market1501_mm,
)
