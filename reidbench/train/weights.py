"""Weights that outlive their run: a state dict saved as safetensors with the resolved config in the file's
header, its sha256, and loading that is strict except for the ID classifier.

A weights file is self-describing: its header metadata holds the run config (YAML), the config hash and the
method, so ``reidbench eval --weights FILE`` needs nothing else. :func:`save_weights` takes any state dict
(a pruned model's included) with the config it belongs to; :func:`read_weights` gives both back.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from reidbench import tracking
from reidbench.errors import UserError
from reidbench.protocol import dump_yaml
from reidbench.spec import hash_config
from reidbench.util.files import read_yaml

if TYPE_CHECKING:
    import torch
    from torch import nn

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.yaml"
ARTIFACT_DIR = "model"  # MLflow artifact folder of a run's weights and config
META_CONFIG, META_HASH, META_METHOD, META_RUN, META_ALIASES = (
    "reidbench.config",
    "reidbench.config_hash",
    "reidbench.method",
    "reidbench.run_id",
    "reidbench.aliases",  # JSON {name: name of the stored tensor it shares memory with}
)
META_SHAPES = "reidbench.backbone_shapes"  # a pruned model's heads / MLP channels per block (JSON)


@dataclass(frozen=True)
class SavedWeights:
    """Where a weights file was written, its sha256 and its size."""

    path: Path
    sha256: str
    nbytes: int


@dataclass
class Weights:
    """A weights file read back: tensors, the run config they were trained under, the header metadata."""

    path: Path
    state: dict[str, torch.Tensor]
    config: dict[str, Any]
    meta: dict[str, str] = field(default_factory=dict)

    @property
    def method(self) -> str:
        return str(self.config["method"])

    @property
    def config_hash(self) -> str:
        return self.meta[META_HASH]

    @property
    def shapes(self) -> dict[str, list[int]] | None:
        """A pruned model's backbone shapes (:func:`reidbench.prune.structured.structure`), else None
        (written by the pruning warm start, :mod:`reidbench.prune.rounds`)."""
        return json.loads(self.meta[META_SHAPES]) if META_SHAPES in self.meta else None

    @property
    def run_id(self) -> str | None:
        """The training run that saved these weights, when known."""
        return self.meta.get(META_RUN) or None


def sha256_file(path: Path) -> str:
    """Hex sha256 of the file at ``path``, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_weights(
    path: Path, state: dict[str, torch.Tensor], config: dict[str, Any], meta: dict[str, str] | None = None
) -> SavedWeights:
    """Write ``state`` to ``path`` as safetensors, the run ``config`` (its method, hash and YAML) in the
    header with the string pairs ``meta``; a tensor under several names is written once (the others are
    aliases restored by :func:`read_weights`)."""
    from safetensors.torch import save_file

    tensors, aliases, seen = {}, {}, {}
    for key, value in state.items():  # a tensor under several names (a shared backbone) is stored once
        ident = (
            value.untyped_storage().data_ptr(),
            value.storage_offset(),
            tuple(value.shape),
            value.stride(),
        )
        if ident in seen:
            aliases[key] = seen[ident]
            continue
        seen[ident] = key
        tensors[key] = value.detach().to("cpu").contiguous().clone()
    header = {
        "format": "pt",
        META_ALIASES: json.dumps(aliases, sort_keys=True),
        META_CONFIG: dump_yaml(config),
        META_HASH: hash_config(config),
        META_METHOD: str(config["method"]),
        **(meta or {}),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=header)
    return SavedWeights(path, sha256_file(path), path.stat().st_size)


def read_weights(path: Path) -> Weights:
    """The tensors and config of a weights file written by :func:`save_weights` (UserError otherwise)."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise UserError(f"no weights file {path}: pass the path of a {WEIGHTS_FILE} written by reidbench")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
            state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not a mapping)
    except (SafetensorError, OSError, ValueError) as exc:
        raise UserError(f"{path}: not a readable safetensors file ({exc}); is it damaged?") from None
    if META_CONFIG not in meta:
        raise UserError(
            f"{path}: a safetensors file without a reidbench config in its header; reidbench evaluates "
            "weights it saved itself (a finished run's model/ artifact, or a zoo export)"
        )
    for alias, stored in json.loads(meta.get(META_ALIASES, "{}")).items():
        state[alias] = state[stored]
    config = yaml.safe_load(meta[META_CONFIG])
    if hash_config(config) != meta.get(META_HASH):
        raise UserError(f"{path}: its header's config does not match its config hash; the file was edited")
    return Weights(path, state, config, meta)


def check_config(weights: Weights, config: dict[str, Any], where: str) -> None:
    """A UserError when ``weights`` were trained with another method or config than ``config`` (read from
    ``where``)."""
    other = hash_config(config)
    if config.get("method") != weights.method or other != weights.config_hash:
        raise UserError(
            f"{weights.path} holds weights of method {weights.method!r} trained with config "
            f"{weights.config_hash}, but {where} describes method {config.get('method')!r} with config "
            f"{other}: these weights belong to a different method or config; use the config saved with them"
        )


def read_config(path: Path) -> dict[str, Any]:
    """A run config YAML (config.yaml of a run or a zoo folder)."""
    try:
        config = read_yaml(Path(path))
    except (OSError, yaml.YAMLError) as exc:
        raise UserError(f"cannot read the run config {path}: {exc}") from None
    if not isinstance(config, dict) or "method" not in config or "protocol" not in config:
        raise UserError(f"{path}: not a reidbench run config (expected method:, dataset:, protocol: keys)")
    return config


def is_classifier(key: str) -> bool:
    """Whether a state-dict key is the ID classifier's (the BNNeck head's ``classifier``)."""
    parts = key.split(".")
    return len(parts) >= 2 and parts[-2] == "classifier"


@dataclass(frozen=True)
class LoadReport:
    """What loading left out: the ID classifier's keys, when its class count differed."""

    dropped: tuple[str, ...] = ()

    @property
    def message(self) -> str:
        if not self.dropped:
            return ""
        return (
            f"ID classifier dropped ({', '.join(self.dropped)}): its class count differs from this "
            "dataset's training identities; retrieval uses the embedding, not the classifier"
        )


def load_weights_into(model: nn.Module, state: dict[str, torch.Tensor], where: str) -> LoadReport:
    """Load ``state`` into ``model``: every key must match in name and shape, except the ID classifier,
    which is left at its initialisation when its class count differs (reported)."""
    own = model.state_dict()
    dropped = tuple(k for k, v in state.items() if is_classifier(k) and k in own and own[k].shape != v.shape)
    kept = {k: v for k, v in state.items() if k not in dropped}
    missing = [k for k in own if k not in kept and k not in dropped]
    unexpected = [k for k in kept if k not in own]
    wrong = [
        f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}"
        for k, v in kept.items()
        if k in own and own[k].shape != v.shape
    ]
    if missing or unexpected or wrong:
        problems = [
            f"{label}: {', '.join(keys[:5])}{' …' if len(keys) > 5 else ''}"
            for label, keys in (
                ("missing", missing),
                ("unexpected", unexpected),
                ("shape (file vs model)", wrong),
            )
            if keys
        ]
        raise UserError(
            f"{where} does not fit the model its config builds ({'; '.join(problems)}): the weights belong "
            "to a different method or config"
        )
    model.load_state_dict(kept, strict=False)
    return LoadReport(dropped)


def log_run_weights(
    run: tracking.Run, model: nn.Module, config: dict[str, Any], meta: dict[str, str] | None = None
) -> SavedWeights:
    """Save a finished run's final weights and config as artifacts ``model/model.safetensors`` and
    ``model/config.yaml`` (``meta``: more header pairs, e.g. what a warm start needs to load them again);
    tags ``weights_sha256``, ``weights_bytes`` and ``weights_save_s``."""
    start = time.perf_counter()
    meta = {META_RUN: run.run_id, **(meta or {})}
    with tempfile.TemporaryDirectory(prefix="reidbench-weights-") as tmp:
        saved = save_weights(Path(tmp) / WEIGHTS_FILE, model.state_dict(), config, meta)
        (Path(tmp) / CONFIG_FILE).write_text(dump_yaml(config))
        run.log_artifact(saved.path, ARTIFACT_DIR)
        run.log_artifact(Path(tmp) / CONFIG_FILE, ARTIFACT_DIR)
    run.set_tags(
        {
            "weights_sha256": saved.sha256,
            "weights_bytes": str(saved.nbytes),
            "weights_save_s": f"{time.perf_counter() - start:.3f}",
        }
    )
    return saved


def run_weights(uri: str, run_id: str, work: Path) -> Weights:
    """The final weights the training run ``run_id`` saved (artifact ``model/model.safetensors``; a reused
    point's copy leads to its origin), checked against the run's ``weights_sha256`` and ``config_hash``
    tags; downloaded under ``work``."""
    record = tracking.origin_run(uri, run_id)  # a reused point's copy holds no artifacts: its origin does
    run_id = record.run_id
    path = tracking.download_artifact(uri, run_id, f"{ARTIFACT_DIR}/{WEIGHTS_FILE}", work)
    if path is None:
        raise UserError(
            f"run {run_id} ({record.name}) saved no weights (trained with --no-save-weights, or before runs "
            "saved them): train it again to evaluate it"
        )
    expected = record.tags.get("weights_sha256")
    if expected and sha256_file(path) != expected:
        raise UserError(
            f"checksum mismatch: {ARTIFACT_DIR}/{WEIGHTS_FILE} of run {run_id} has sha256 "
            f"{sha256_file(path)}, the run recorded {expected}; the artifact store was altered"
        )
    weights = read_weights(path)
    if weights.config_hash != record.tags.get("config_hash"):
        raise UserError(
            f"run {run_id}: its weights were trained with config {weights.config_hash}, the run has config "
            f"{record.tags.get('config_hash')}: the artifacts belong to another run"
        )
    return weights
