"""The shared protocol as typed dataclasses, loaded from benchmarks/protocols/<dataset>.yaml, and the
stable :func:`config_hash` of a resolved config (how finished work is recognised)."""

from __future__ import annotations

import copy
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from reidbench.config import apply_override, from_dict, parse_override, to_dict
from reidbench.errors import UserError

MODALITIES = ("rgb", "nir", "tir")


@dataclass
class AugmentCfg:
    """Training augmentation, applied identically to every modality of a sample."""

    flip: float = 0.5  # probability of a horizontal flip
    pad: int = 10  # padding (with the mean) before the random crop back to image_size (0 disables)
    erase: float = 0.5  # probability of random erasing
    erase_scale: list[float] = field(default_factory=lambda: [0.02, 0.4])
    erase_ratio: list[float] = field(default_factory=lambda: [0.3, 3.3])


@dataclass
class DataCfg:
    """Which modalities are read, at what size, and how they are normalised."""

    modalities: list[str] = field(default_factory=lambda: list(MODALITIES))
    image_size: list[int] = field(default_factory=lambda: [256, 128])  # [height, width]
    mean: dict[str, list[float]] = field(default_factory=dict)  # per modality; 0.5 when absent
    std: dict[str, list[float]] = field(default_factory=dict)
    augment: AugmentCfg = field(default_factory=AugmentCfg)
    text: bool = False  # attach captions as the `text` modality when the dataset has them
    on_device: bool | Literal["auto"] = "auto"  # decoded images on the GPU whole (auto: when they fit)


@dataclass
class SamplerCfg:
    """P identities x K instances per global batch."""

    p: int = 16
    k: int = 4


@dataclass
class OptimCfg:
    name: Literal["adamw", "adam", "sgd"] = "adamw"
    lr: float = 3.5e-4
    weight_decay: float = 0.05
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    momentum: float = 0.9
    grad_clip: float | None = None


@dataclass
class ScheduleCfg:
    kind: Literal["cosine", "constant", "warmup_sqrt"] = "cosine"
    warmup_epochs: float = 1.0
    warmup_factor: float = 0.01  # lr multiplier at step 0 of the warmup
    min_lr_factor: float = 0.0  # cosine floor as a fraction of lr


@dataclass
class LossCfg:
    """Loss weights. ``variant`` names the set of terms (methods list the variants they support)."""

    variant: str = "ce+triplet"
    id_weight: float = 1.0
    triplet_weight: float = 1.0
    triplet_margin: float | None = 0.3  # None: soft margin log(1 + exp(d_ap - d_an))
    label_smoothing: float = 0.1
    center_weight: float = 0.0005
    center_lr: float = 0.5
    center_learnable: bool = True  # false: centers stay at their random init (the official GraFT code)


@dataclass
class StageCfg:
    """One training stage; unset fields inherit from train / optim / schedule / loss."""

    name: str = "main"
    epochs: int | None = None
    epoch_share: float | None = None  # when epochs is unset: this fraction of train.epochs (at least 1)
    lr: float | None = None
    lr_scale: float = 1.0  # multiplies the stage's lr (its own or optim.lr)
    weight_decay: float | None = None
    label_smoothing: float | None = None
    loss: str | None = None  # loss variant for this stage
    freeze: list[str] = field(default_factory=list)  # module names of the model to freeze (e.g. backbone)
    schedule: Literal["cosine", "constant", "warmup_sqrt"] | None = None
    warmup_epochs: float | None = None  # None: schedule.warmup_epochs


@dataclass
class TrainCfg:
    epochs: int = 60
    stages: list[StageCfg] = field(default_factory=list)  # empty: one stage with the defaults above
    amp: bool = True  # bf16 autocast on CUDA (ignored on CPU)
    compile: bool = False
    max_steps_per_epoch: int | None = None  # cap on PK batches per epoch (tests, quick looks)


@dataclass
class BackboneCfg:
    """Image backbone. ``source`` timm or hf; None sizes keep the model's defaults."""

    name: str = "vit_base_patch16_224"
    source: Literal["timm", "hf"] = "timm"
    pretrained: bool = True
    weights: str | None = None  # local file or HF directory; overrides the hub download
    patch_size: int | None = None
    embed_dim: int | None = None
    depth: int | None = None
    num_heads: int | None = None
    drop_path: float = 0.1


@dataclass
class EvalCfg:
    junk: Literal["market", "scene", "none"] = "market"
    same_set: bool = False  # query set is the gallery (RGBNT201)
    max_rank: int = 50
    batch_size: int = 256
    rerank: bool = False  # also report k-reciprocal re-ranked metrics (mAP@rerank, ...)
    rerank_k1: int = 20
    rerank_k2: int = 6
    rerank_lambda: float = 0.3
    missing_modality: bool = False  # also evaluate every non-empty proper subset of the modalities
    cross_modal: list[str] = field(
        default_factory=list
    )  # e.g. ["rgb->nir+tir"]; ["all"]: each one vs the rest


@dataclass
class Protocol:
    """Everything that defines how a method is trained and evaluated on a dataset."""

    dataset: str
    data: DataCfg = field(default_factory=DataCfg)
    sampler: SamplerCfg = field(default_factory=SamplerCfg)
    optim: OptimCfg = field(default_factory=OptimCfg)
    schedule: ScheduleCfg = field(default_factory=ScheduleCfg)
    loss: LossCfg = field(default_factory=LossCfg)
    train: TrainCfg = field(default_factory=TrainCfg)
    backbone: BackboneCfg = field(default_factory=BackboneCfg)
    eval: EvalCfg = field(default_factory=EvalCfg)
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    method: dict[str, Any] = field(default_factory=dict)  # method knobs, checked by the method's config class

    def resolved_stages(self) -> list[StageCfg]:
        """The stages with every inherited field filled in."""
        stages = self.train.stages or [StageCfg()]

        def epochs(s: StageCfg) -> int:
            if s.epochs is not None:
                return s.epochs
            return (
                self.train.epochs
                if s.epoch_share is None
                else max(1, round(s.epoch_share * self.train.epochs))
            )

        return [
            StageCfg(
                name=s.name,
                epochs=epochs(s),
                lr=(self.optim.lr if s.lr is None else s.lr) * s.lr_scale,
                weight_decay=self.optim.weight_decay if s.weight_decay is None else s.weight_decay,
                label_smoothing=self.loss.label_smoothing if s.label_smoothing is None else s.label_smoothing,
                loss=self.loss.variant if s.loss is None else s.loss,
                freeze=list(s.freeze),
                schedule=self.schedule.kind if s.schedule is None else s.schedule,
                warmup_epochs=self.schedule.warmup_epochs if s.warmup_epochs is None else s.warmup_epochs,
            )
            for s in stages
        ]


def protocols_dir() -> Path:
    """Folder of the protocol YAML files (``REIDBENCH_PROTOCOLS`` or the repo's benchmarks/protocols)."""
    env = os.environ.get("REIDBENCH_PROTOCOLS")
    return Path(env) if env else Path(__file__).resolve().parents[1] / "benchmarks" / "protocols"


def load_protocol_dict(dataset: str) -> dict[str, Any]:
    """The raw YAML of ``dataset``'s protocol."""
    path = protocols_dir() / f"{dataset}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in protocols_dir().glob("*.yaml"))
        raise UserError(f"no protocol file {path} for dataset {dataset!r}. Protocols: {', '.join(known)}.")
    with path.open() as fh:
        data = yaml.safe_load(fh) or {}
    data.setdefault("dataset", dataset)
    return data


def build_protocol(
    dataset: str, overrides: list[str] = (), base: dict[str, Any] | None = None, method: str | None = None
) -> Protocol:
    """Protocol of ``dataset`` with dotted ``overrides`` (``optim.lr=3e-4``) applied, type-checked.

    Applied in order: ``base`` (the method's registered defaults), the protocol file's
    ``method_settings`` for ``method`` (dotted settings this dataset gives one method, e.g. a tiny text
    encoder on the synthetic set), then the user's overrides.
    """
    data = load_protocol_dict(dataset)
    settings = data.pop("method_settings", None) or {}
    where = f"{protocols_dir() / dataset}.yaml: method_settings"
    if not isinstance(settings, dict) or not all(isinstance(v, dict) for v in settings.values()):
        raise UserError(f"{where} must map method names to {{dotted.key: value}} mappings")
    layers = [base or {}, settings.get(method, {}) if method else {}]
    for layer in layers:
        for key, value in layer.items():
            apply_override(data, key, copy.deepcopy(value))
    data = to_dict(from_dict(Protocol, data))  # every default present: overrides can address list items
    for text in overrides:
        apply_override(data, *parse_override(text))
    return from_dict(Protocol, data)


def config_hash(config: dict[str, Any]) -> str:
    """Stable 12-hex-digit hash of a resolved config (key order and float spelling do not matter)."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def dump_yaml(config: dict[str, Any]) -> str:
    """The resolved config as YAML text."""
    return yaml.safe_dump(config, sort_keys=False)
