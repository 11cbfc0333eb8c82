"""Several datasets as one training set (``-d rgbnt100 -d msvr310 --merge-sources``), like torchreid's
``combineall`` across datasets.

Identity, camera and scene ids of each source are offset past those of the sources before it, so no two
sources share an id: the relabelled training set has the sum of the sources' identities and the PK
sampler draws them across the sources. The merged test split is the union of the sources' query and
gallery sets; each query can only match its own source's gallery items. Junk rules: when the sources
agree the merged set keeps the rule; when they differ (RGBNT100's camera rule with MSVR310's scene rule)
the merged set uses the scene rule with each camera-rule source's scene id set to its camera id, which
removes exactly what the camera rule removes (same identity and same camera).
"""

from __future__ import annotations

from dataclasses import replace

from reidbench.data.types import Dataset, DatasetInfo, DatasetSplits, Sample, count_cameras, relabel
from reidbench.generalisation import merged_name

SPLITS = ("train", "query", "gallery")


def merge_datasets(datasets: list[Dataset]) -> Dataset:
    """One Dataset holding every source's splits with per-source id offsets (see the module docstring)."""
    junks = {d.info.junk for d in datasets}
    junk = junks.pop() if len(junks) == 1 else "scene"
    splits: dict[str, list[Sample]] = {s: [] for s in SPLITS}
    pid_base = cam_base = scene_base = 0
    for dataset in datasets:
        samples = [s for split in SPLITS for s in getattr(dataset.splits, split)]
        key = _junk_key(dataset.info.junk, junk)
        keys = {id(s): i for i, s in enumerate(samples)}  # the "none" rule: a key of its own per sample
        shifted: dict[int, Sample] = {}
        for s in samples:
            if id(s) in shifted:
                continue
            scene = {
                "scene": s.sceneid + scene_base,
                "camera": s.camid + cam_base,
                "sample": keys[id(s)] + scene_base,
            }[key]
            shifted[id(s)] = replace(s, pid=s.pid + pid_base, camid=s.camid + cam_base, sceneid=scene)
        for split in SPLITS:
            splits[split] += [shifted[id(s)] for s in getattr(dataset.splits, split)]
        pid_base += 1 + max(s.pid for s in samples)
        cam_base += 1 + max(s.camid for s in samples)
        scene_base += 1 + max(len(samples), *(s.sceneid for s in samples), *(s.camid for s in samples))
    first = datasets[0].info
    same_set = all(d.info.same_set for d in datasets)
    if same_set:
        splits["gallery"] = splits["query"]
    modalities = [m for m in first.modalities if all(m in d.info.modalities for d in datasets)]
    info = DatasetInfo(
        name=merged_name([d.info.name for d in datasets]),
        modalities=modalities,
        num_train_ids=relabel(splits["train"])[1],
        junk=junk,
        same_set=same_set,
        has_text=all(d.info.has_text for d in datasets),
        source=" ".join(d.info.source for d in datasets if d.info.source),
        root=first.root,
        extra={
            "sources": [d.info.name for d in datasets],
            "roots": [str(d.info.root) for d in datasets],
            "cam_base": first.extra.get("cam_base", 1),
        },
        num_cameras=count_cameras(*splits.values()),
    )
    folders = {f"{d.info.name}/{split}": path for d in datasets for split, path in d.folders.items()}
    return Dataset(info, DatasetSplits(**splits), folders, [p for d in datasets for p in d.problems])


def _junk_key(source_rule: str, merged_rule: str) -> str:
    """Which id of a source's samples the merged junk rule compares: its scene id, its camera id (a camera
    rule under a merged scene rule) or one key per sample (the "none" rule: nothing is junk)."""
    if source_rule == merged_rule or source_rule == "scene":
        return "scene"
    return "camera" if source_rule == "market" else "sample"
