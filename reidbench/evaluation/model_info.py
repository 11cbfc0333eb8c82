"""``reidbench info METHOD --dataset DATASET``: a method's size at the protocol's real input size, without
training, data or downloads.

The model is built as a run builds it (registered defaults, the dataset's protocol, ``--set``), with random
weights (``backbone.pretrained=false``, no weights file) on PyTorch's ``meta`` device: parameters have
shapes but no storage, so even three ViT-B/16 cost no memory and no initialisation time. One inference
forward on a one-sample batch at ``data.image_size`` gives the descriptor width and the FLOPs
(:mod:`reidbench.evaluation.cost`'s counter: a multiply-add counts 2), and records which modules run:
"used at test" counts the parameters of the modules an inference forward calls (TOP-ReID's CRM and its
training heads are not).

The number of identities and cameras (the classifier and camera-embedding sizes) come from the dataset's
published counts and file-name rule, or ``--classes`` / ``--cameras``, else from the dataset itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from reidbench.data.checks import EXPECTED_COUNTS
from reidbench.data.types import DatasetInfo
from reidbench.evaluation.cost import forward_gflops
from reidbench.nn.factory import BuildInfo, create_method
from reidbench.spec import make_spec

RANDOM_WEIGHTS = ["backbone.pretrained=false", "backbone.weights=null"]


@dataclass(frozen=True)
class ModelInfo:
    """What ``reidbench info`` prints."""

    method: str
    dataset: str
    image_size: tuple[int, int]
    modalities: tuple[str, ...]
    num_classes: int
    num_cameras: int
    params: int
    trainable: int
    used_at_test: int
    descriptor_dim: int
    gflops: float

    def rows(self) -> list[tuple[str, str]]:
        """(label, value) lines for a terminal table."""
        return [
            ("input", f"{'+'.join(self.modalities)} at {self.image_size[0]}x{self.image_size[1]}"),
            ("identities / cameras", f"{self.num_classes} / {self.num_cameras}"),
            ("parameters (total)", f"{self.params:,} ({self.params / 1e6:.2f} M)"),
            ("parameters (trainable)", f"{self.trainable:,} ({self.trainable / 1e6:.2f} M)"),
            ("parameters (used at test)", f"{self.used_at_test:,} ({self.used_at_test / 1e6:.2f} M)"),
            ("descriptor", f"{self.descriptor_dim}-d"),
            ("GFLOPs per sample (test)", f"{self.gflops:.2f}"),
        ]


def dataset_facts(name: str) -> tuple[int | None, int | None]:
    """(training identities, cameras) from the published counts and the file-name rule, None if unknown."""
    from reidbench.data import names

    rules = {
        "rgbnt201": names.RGBNT201_NAME,
        "rgbnt100": names.VEHICLE_STRIP,
        "msvr310": names.MSVR310_NAME,
        "rgbn300": names.RGBN300_STRIP,
        "market1501_mm": names.MARKET_NAME,
    }
    train = EXPECTED_COUNTS.get(name, {}).get("train")
    rule = rules.get(name)
    cameras = rule.cams[1] - rule.cam_base + 1 if rule is not None else None
    return (train.ids if train is not None else None), cameras


def model_info(
    method: str,
    dataset: str,
    overrides: list[str] = (),
    num_classes: int | None = None,
    num_cameras: int | None = None,
    data_root: Path | None = None,
) -> ModelInfo:
    """Parameters, descriptor width and GFLOPs of ``method`` under ``dataset``'s protocol (random weights)."""
    spec = make_spec(method, dataset, 0, [*overrides, *RANDOM_WEIGHTS])
    known_classes, known_cameras = dataset_facts(dataset)
    num_classes = num_classes or known_classes
    num_cameras = num_cameras if num_cameras is not None else known_cameras
    if num_classes is None or num_cameras is None:  # the synthetic set or a merged one: read it
        from reidbench.data.loading import load_dataset
        from reidbench.spec import default_data_root

        info = load_dataset(dataset, data_root or default_data_root()).info
        num_classes, num_cameras = num_classes or info.num_train_ids, num_cameras or info.num_cameras
    modalities = tuple(spec.protocol.data.modalities)
    data = DatasetInfo(dataset, list(modalities), num_classes, num_cameras=num_cameras)
    build = BuildInfo.from_protocol(spec.protocol, data, num_classes)
    size = (spec.protocol.data.image_size[0], spec.protocol.data.image_size[1])
    with torch.device("meta"):
        model = create_method(method, spec.protocol.method, build)
        batch = {m: torch.zeros(1, 3, *size) for m in modalities}
        batch.update(pid=torch.zeros(1, dtype=torch.long), camid=torch.zeros(1, dtype=torch.long))
    used = modules_called(model, batch)
    embedding = model.eval()(batch).embedding
    return ModelInfo(
        method,
        dataset,
        size,
        modalities,
        num_classes,
        num_cameras,
        params=count(model.parameters()),
        trainable=count(p for p in model.parameters() if p.requires_grad),
        used_at_test=count(p for m in used for p in m.parameters(recurse=False)),
        descriptor_dim=int(embedding.shape[1]),
        gflops=forward_gflops(model, batch),
    )


def count(params) -> int:
    """Number of elements of ``params`` (each tensor once)."""
    return sum(p.numel() for p in {id(p): p for p in params}.values())


@torch.no_grad()
def modules_called(model: nn.Module, batch: dict) -> list[nn.Module]:
    """The modules whose forward an inference forward of ``model`` on ``batch`` calls (each once), with the
    submodules of a called ``nn.MultiheadAttention`` (it reads ``out_proj``'s weights, never calls it)."""
    called: dict[int, nn.Module] = {}
    hooks = [
        m.register_forward_pre_hook(lambda mod, args: called.setdefault(id(mod), mod) and None)
        for m in model.modules()
    ]
    model.eval()
    try:
        model(batch)
    finally:
        for h in hooks:
            h.remove()
    for module in [m for m in called.values() if isinstance(m, nn.MultiheadAttention)]:
        called.update({id(sub): sub for sub in module.modules()})
    return list(called.values())
