"""The shared protocol as typed dataclasses, loaded from benchmarks/protocols/<dataset>.yaml, and the
stable :func:`config_hash` of a resolved config (how finished work is recognised)."""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from reidbench.config import apply_override, from_dict, parse_override, to_dict, yaml_problem
from reidbench.errors import UserError
from reidbench.util.files import read_yaml
from reidbench.util.resources import shipped_dir
from reidbench.util.selectors import FORMS, selector_problem

MODALITIES = ("rgb", "nir", "tir")
# what an absent modality becomes at test time (reidbench.evaluation.missing), in a caption's words
MISSING_CONVENTIONS = {
    "zero": "input zero-filled after normalisation (mid-grey)",
    "drop": "left out, the model fuses the present modalities",
    "reconstruct": "left out, the model rebuilds it from the present modalities",
}


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
class ParamGroupCfg:
    """A parameter-group rule (reidbench.train.optim): the model's tensors matching any selector of
    ``match`` get the rule's settings; rules apply in order, a later one overriding what an earlier set."""

    name: str = ""  # shown in the resolved groups
    match: list[str] = field(default_factory=list)  # selectors: all, bias, norm, 1d, backbone, in:M, re:RX
    lr: float | None = None  # absolute learning rate
    lr_scale: float | None = None  # x the stage's learning rate
    weight_decay: float | None = None  # absolute weight decay
    weight_decay_scale: float | None = None  # x the stage's weight decay


@dataclass
class OptimCfg:
    name: Literal["adamw", "adam", "sgd"] = "adamw"
    lr: float = 3.5e-4
    weight_decay: float = 0.05
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8  # Adam / AdamW epsilon
    momentum: float = 0.9
    nesterov: bool = False  # SGD only
    grad_clip: float | None = None
    no_decay: list[str] = field(default_factory=lambda: ["1d"])  # selectors of tensors without decay
    groups: list[ParamGroupCfg] = field(default_factory=list)  # per-group rules, in order


@dataclass
class ScheduleCfg:
    """The learning-rate schedule (reidbench.train.schedule states every formula)."""

    kind: Literal["cosine", "constant", "warmup_sqrt"] = "cosine"
    warmup_epochs: float = 1.0
    warmup_steps: int | None = None  # warmup in optimiser steps (wins over warmup_epochs)
    warmup_factor: float = 0.01  # lr multiplier at t = 0 of the warmup
    min_lr_factor: float = 0.0  # cosine floor as a fraction of lr
    bounds: Literal["per_group", "shared"] = "per_group"  # factors x each group's lr, or x the stage lr
    cosine: Literal["after_warmup", "whole"] = "after_warmup"  # cosine over [warmup, total) or [0, total)
    step_per: Literal["step", "epoch"] = "step"  # t counts optimiser steps, or epochs (set once per epoch)
    first_epoch: int = 0  # t of a stage's first epoch when step_per=epoch (1: loops counting from 1)
    noise_pct: float = 0.0  # > 0: lr x (1 + n), n ~ N(0, 1) redrawn until |n| < noise_pct, for t < total
    noise_seed: int = 42  # n is drawn from a torch.Generator seeded noise_seed + t


@dataclass
class LossCfg:
    """Loss weights. ``variant`` names the set of terms (methods list the variants they support)."""

    variant: str = "ce+triplet"
    id_weight: float = 1.0
    triplet_weight: float = 1.0
    triplet_margin: float | None = 0.3  # None: soft margin log(1 + exp(d_ap - d_an))
    label_smoothing: float = 0.1
    center_weight: float = 0.0005
    # the centers' learning rate, as given for every optimizer: 0.5 is BoT's SGD value; with Adam / AdamW
    # (a per-coordinate step size) a value near optim.lr is the comparable one (see check_center_lr)
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
    warmup_steps: int | None = None  # None: schedule.warmup_steps (either one wins over warmup_epochs)


@dataclass
class TrainCfg:
    epochs: int = 60
    stages: list[StageCfg] = field(default_factory=list)  # empty: one stage with the defaults above
    allow_random_frozen: bool = False  # run a stage that freezes a randomly initialised backbone anyway
    amp: bool = True  # bf16 autocast on CUDA (ignored on CPU)
    compile: bool = False
    max_steps_per_epoch: int | None = None  # cap on PK batches per epoch (tests, quick looks)


@dataclass
class BackboneCfg:
    """Image backbone. ``source`` timm, hf, clip (OpenAI CLIP tower, reidbench.nn.clip) or transreid (a
    TransReID ViT with a camera embedding, reidbench.nn.transreid); None sizes keep the model's defaults."""

    name: str = "vit_base_patch16_224"
    source: Literal["timm", "hf", "clip", "transreid"] = "timm"
    pretrained: bool = True
    weights: str | None = None  # local file or HF directory; overrides the hub download
    patch_size: int | None = None
    embed_dim: int | None = None
    depth: int | None = None
    num_heads: int | None = None
    drop_path: float = (
        0.1  # stochastic depth (timm and TransReID backbones; transformers ViT / DeiT have none)
    )
    proj_dim: int | None = None  # CLIP: width of the projection applied to every token (None: the model's)
    # camera embedding x this (None: the backbone's default, CLIP 1.0 on the CLS token, TransReID 3.0 on
    # every token; 0: off)
    camera_coef: float | None = None


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
    # ... under these conventions (zero | drop | reconstruct; []: the method's own; [all]: every one it
    # supports); see reidbench.evaluation.missing
    missing_conventions: list[str] = field(default_factory=list)
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
                warmup_steps=_stage_warmup_steps(s, self.schedule),
            )
            for s in stages
        ]


def _stage_warmup_steps(stage: StageCfg, schedule: ScheduleCfg) -> int | None:
    """A stage's warmup in steps: its own, else (unless it sets warmup_epochs) the schedule's."""
    if stage.warmup_steps is not None or stage.warmup_epochs is not None:
        return stage.warmup_steps
    return schedule.warmup_steps


# Sections every protocol file must have (a missing one would silently fall back to the defaults).
REQUIRED_SECTIONS = ("data", "sampler", "optim", "schedule", "loss", "train", "backbone", "eval", "seeds")
_PROTOCOL_FILE: ContextVar[Path | None] = ContextVar("protocol_file", default=None)


def protocols_dir() -> Path:
    """Folder of the protocol YAML files (``REIDBENCH_PROTOCOLS``; default: shipped with the package)."""
    env = os.environ.get("REIDBENCH_PROTOCOLS")
    return Path(env) if env else shipped_dir("protocols")


@contextmanager
def protocol_file(path: Path | None) -> Iterator[None]:
    """Within the block, protocols are read from ``path`` (``--protocol``) unless one is passed explicitly."""
    token = _PROTOCOL_FILE.set(Path(path) if path is not None else None)
    try:
        yield
    finally:
        _PROTOCOL_FILE.reset(token)


def active_protocol_file(path: Path | None = None) -> Path | None:
    """``path``, else the file chosen by :func:`protocol_file`, else None (the built-in protocol)."""
    return Path(path) if path is not None else _PROTOCOL_FILE.get()


def protocol_path(dataset: str, path: Path | None = None) -> Path:
    """The protocol file of ``dataset``: ``path`` (checked to exist) or ``<protocols_dir>/<dataset>.yaml``."""
    if path is not None:
        if not Path(path).is_file():
            raise UserError(f"--protocol {path}: no such file; pass the path of a protocol YAML file")
        return Path(path)
    found = protocols_dir() / f"{dataset}.yaml"
    if not found.is_file():
        found = _registered_protocol(dataset) or found
    if not found.is_file():
        known = sorted(p.stem for p in protocols_dir().glob("*.yaml"))
        raise UserError(
            f"no protocol file {found} for dataset {dataset!r}. Protocols: {', '.join(known)}; "
            f"or pass your own with --protocol PATH."
        )
    return found


def _registered_protocol(dataset: str) -> Path | None:
    """The protocol file a (plugin) dataset names at registration (``protocol=PATH``), if any."""
    from reidbench.registry import DATASETS, load_plugins

    load_plugins()
    path = DATASETS.get(dataset).meta.get("protocol") if dataset in DATASETS else None
    return Path(path) if path else None


def load_protocol_dict(dataset: str, path: Path | None = None) -> dict[str, Any]:
    """The raw YAML of ``dataset``'s protocol (``path``: a protocol file of the user's), checked to be a
    mapping with every section."""
    path = protocol_path(dataset, path)
    try:
        data = read_yaml(path)
    except OSError as exc:
        raise UserError(f"cannot read protocol file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML, {yaml_problem(exc)}; fix that line") from None
    if not isinstance(data, dict):
        raise UserError(
            f"{path}: expected a mapping of sections (data:, sampler:, optim:, ...), got {data!r}"
        )
    missing = [name for name in REQUIRED_SECTIONS if name not in data]
    if missing:
        raise UserError(
            f"{path}: missing section(s) {', '.join(missing)}; a protocol states every section "
            f"({', '.join(REQUIRED_SECTIONS)}), copy them from benchmarks/protocols/{dataset}.yaml"
        )
    found = data.setdefault("dataset", dataset)
    if found != dataset:
        raise UserError(
            f"{path}: this is the protocol of dataset {found!r} (its dataset: key), not of {dataset!r}; "
            f"use it with --dataset {found} or change the key"
        )
    return data


def build_protocol(
    dataset: str,
    overrides: list[str] = (),
    base: dict[str, Any] | None = None,
    method: str | None = None,
    path: Path | None = None,
    dataset_modalities: list[str] | None = None,
) -> Protocol:
    """Protocol of ``dataset`` with dotted ``overrides`` (``optim.lr=3e-4``) applied, type- and value-checked.

    Read from ``path`` when given (else the file chosen by :func:`protocol_file`, else the built-in one).
    Applied in order: ``base`` (the method's registered defaults), the protocol file's
    ``method_settings`` for ``method`` (dotted settings this dataset gives one method, e.g. a tiny text
    encoder on the synthetic set), then the user's overrides. ``dataset_modalities``: what the dataset
    has, which ``data.modalities`` must be among.
    """
    path = protocol_path(dataset, active_protocol_file(path))
    data = load_protocol_dict(dataset, path)
    settings = data.pop("method_settings", None) or {}
    where = f"{path}: method_settings"
    if not isinstance(settings, dict) or not all(isinstance(v, dict) for v in settings.values()):
        raise UserError(f"{where} must map method names to {{dotted.key: value}} mappings")
    layers = [base or {}, settings.get(method, {}) if method else {}]
    for layer in layers:
        for key, value in layer.items():
            apply_override(data, key, copy.deepcopy(value))
    try:
        data = to_dict(from_dict(Protocol, data))  # every default present: overrides can address list items
    except UserError as exc:
        raise UserError(f"{path}: {exc}") from None
    for text in overrides:
        apply_override(data, *parse_override(text))
    protocol = from_dict(Protocol, data)
    validate_protocol(protocol, str(path), dataset_modalities)
    return protocol


def validate_protocol(protocol: Protocol, where: str, dataset_modalities: list[str] | None = None) -> None:
    """A UserError listing every value no run could train with (``where``: the protocol file)."""
    problems = [*_value_problems(protocol), *_modality_problems(protocol.data.modalities, dataset_modalities)]
    if problems:
        raise UserError(
            f"protocol of {protocol.dataset!r}: {'; '.join(problems)}. Fix the value(s) in {where} "
            f"or in the --set overrides"
        )


def _value_problems(p: Protocol) -> list[str]:
    checks: list[tuple[str, Any, str]] = [  # key, value, rule
        ("train.epochs", p.train.epochs, "int>=1"),
        ("train.max_steps_per_epoch", p.train.max_steps_per_epoch, "int>=1?"),
        ("sampler.p", p.sampler.p, "int>=1"),
        ("sampler.k", p.sampler.k, "int>=1"),
        ("optim.lr", p.optim.lr, ">0"),
        ("optim.weight_decay", p.optim.weight_decay, ">=0"),
        ("loss.center_lr", p.loss.center_lr, ">0"),
        ("schedule.warmup_epochs", p.schedule.warmup_epochs, ">=0"),
        ("schedule.warmup_steps", p.schedule.warmup_steps, "int>=0?"),
        ("schedule.warmup_factor", p.schedule.warmup_factor, ">=0"),
        ("schedule.min_lr_factor", p.schedule.min_lr_factor, ">=0"),
        ("schedule.noise_pct", p.schedule.noise_pct, ">=0"),
        ("eval.batch_size", p.eval.batch_size, "int>=1"),
        ("eval.max_rank", p.eval.max_rank, "int>=1"),
        *((f"data.image_size.{i}", v, "int>=1") for i, v in enumerate(p.data.image_size)),
    ]
    for i, stage in enumerate(p.train.stages):
        key = f"train.stages.{i}"
        checks += [
            (f"{key}.epochs", stage.epochs, "int>=1?"),
            (f"{key}.epoch_share", stage.epoch_share, ">0?"),
            (f"{key}.lr", stage.lr, ">0?"),
            (f"{key}.lr_scale", stage.lr_scale, ">0"),
            (f"{key}.warmup_epochs", stage.warmup_epochs, ">=0?"),
            (f"{key}.warmup_steps", stage.warmup_steps, "int>=0?"),
        ]
    for i, group in enumerate(p.optim.groups):
        key = f"optim.groups.{i}"
        checks += [
            (f"{key}.lr", group.lr, ">0?"),
            (f"{key}.lr_scale", group.lr_scale, ">0?"),
            (f"{key}.weight_decay", group.weight_decay, ">=0?"),
            (f"{key}.weight_decay_scale", group.weight_decay_scale, ">=0?"),
        ]
    problems = [
        f"{key} must be {_RULES[rule]}, got {value!r}" for key, value, rule in checks if _bad(value, rule)
    ]
    problems += [  # counts past int32 (an epoch count of 1e20) can never run
        f"{key} must be at most {INT_MAX}, got {value!r}"
        for key, value, rule in checks
        if rule.startswith("int") and isinstance(value, int) and value > INT_MAX
    ]
    problems += _group_problems(p.optim) + _schedule_problems(p)
    if len(p.data.image_size) != 2:
        problems.append(f"data.image_size must be [height, width], got {p.data.image_size!r}")
    if not p.seeds:
        problems.append("seeds must list at least one seed, got []")
    unknown = [c for c in p.eval.missing_conventions if c not in MISSING_CONVENTIONS]
    if unknown and p.eval.missing_conventions != ["all"]:
        problems.append(
            f"eval.missing_conventions: {', '.join(map(repr, unknown))} unknown, expected among "
            f"{', '.join(MISSING_CONVENTIONS)} or [all]"
        )
    return problems


def _schedule_problems(p: Protocol) -> list[str]:
    """Warmup in optimiser steps where the schedule counts epochs."""
    if p.schedule.step_per != "epoch":
        return []
    keys = ["schedule"] if p.schedule.warmup_steps is not None else []
    keys += [f"train.stages.{i}" for i, s in enumerate(p.train.stages) if s.warmup_steps is not None]
    return [
        f"{key}.warmup_steps is set but schedule.step_per=epoch counts epochs; use warmup_epochs"
        for key in keys
    ]


def _group_problems(optim: OptimCfg) -> list[str]:
    """Unknown selectors, and group rules that set nothing or set a value both ways."""
    problems = [f"optim.no_decay: {why}" for why in map(selector_problem, optim.no_decay) if why is not None]
    for i, g in enumerate(optim.groups):
        key = f"optim.groups.{i}"
        if not g.match:
            problems.append(f"{key}.match must list at least one selector ({FORMS})")
        problems += [f"{key}.match: {why}" for why in map(selector_problem, g.match) if why is not None]
        if g.lr is not None and g.lr_scale is not None:
            problems.append(f"{key} sets both lr and lr_scale; keep one")
        if g.weight_decay is not None and g.weight_decay_scale is not None:
            problems.append(f"{key} sets both weight_decay and weight_decay_scale; keep one")
        if all(v is None for v in (g.lr, g.lr_scale, g.weight_decay, g.weight_decay_scale)):
            problems.append(f"{key} sets none of lr, lr_scale, weight_decay, weight_decay_scale")
    return problems


INT_MAX = 2**31 - 1  # the largest count, step or size a protocol may hold

_RULES = {
    "int>=1": "an integer >= 1",
    "int>=1?": "null or an integer >= 1",
    "int>=0?": "null or an integer >= 0",
    ">0": "a finite number > 0",
    ">0?": "null or a finite number > 0",
    ">=0": "a finite number >= 0",
    ">=0?": "null or a finite number >= 0",
}


def _bad(value: Any, rule: str) -> bool:
    if value is None:
        return not rule.endswith("?")
    if not math.isfinite(value):
        return True
    return value <= 0 if ">0" in rule else value < (1 if "int>=1" in rule else 0)


def _modality_problems(modalities: list[str], available: list[str] | None) -> list[str]:
    unknown = [m for m in modalities if m not in MODALITIES]
    absent = [m for m in modalities if m in MODALITIES and available is not None and m not in available]
    problems = []
    if not modalities:
        problems.append(f"data.modalities must name at least one of {', '.join(MODALITIES)}")
    if unknown:
        problems.append(
            f"data.modalities: {', '.join(map(repr, unknown))} unknown, "
            f"expected among {', '.join(MODALITIES)}"
        )
    if absent:
        problems.append(
            f"data.modalities: the dataset has no {', '.join(absent)} images "
            f"(it has {', '.join(available or [])})"
        )
    if len(set(modalities)) != len(modalities):
        problems.append(f"data.modalities lists a modality twice: {modalities!r}")
    return problems


def config_hash(config: dict[str, Any]) -> str:
    """Stable 12-hex-digit hash of a resolved config (key order and float spelling do not matter)."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def dump_yaml(config: dict[str, Any]) -> str:
    """The resolved config as YAML text."""
    return yaml.safe_dump(config, sort_keys=False)
