"""Evaluation only: a trained model (a run's saved weights, a weights file, a zoo entry) scored on a dataset
in every evaluation setting, logged as an evaluation run (tag ``run_kind=eval``) linked to its training run.

The model is rebuilt from the config saved with its weights (the config hash guards against weights of
another method or config) and loaded strictly, except for the ID classifier when the dataset's class count
differs. The eval sets come from :func:`reidbench.evaluation.targets.target_eval_sets` (the DataModule /
eval_set path of a training run's final and ``--test-on`` evaluations), so on the training dataset the
metrics are those of the training run.
"""

from __future__ import annotations

import copy
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reidbench import tracking
from reidbench.config import apply_override, from_dict, parse_override, to_dict
from reidbench.errors import UserError
from reidbench.protocol import EvalCfg, Protocol, validate_protocol
from reidbench.train.weights import (
    CONFIG_FILE,
    LoadReport,
    Weights,
    check_config,
    load_weights_into,
    read_config,
    read_weights,
    run_weights,
)

if TYPE_CHECKING:
    import torch
    from torch import nn

    from reidbench.data.types import Dataset

DEFAULT_RECIPE = "shared"


@dataclass
class Source:
    """Trained weights to evaluate and where they came from (``label``: for messages and the run name)."""

    weights: Weights
    label: str
    run_id: str | None = None  # the training run, when known

    @property
    def protocol(self) -> Protocol:
        return from_dict(Protocol, copy.deepcopy(self.weights.config["protocol"]), "protocol")


def recipe_of(config: dict[str, Any], tags: dict[str, str] | None = None) -> str:
    """The training recipe of a run: its ``recipe`` tag, else the config's ``recipe`` (top level or in the
    protocol), else ``shared``."""
    protocol = config.get("protocol") or {}
    return str((tags or {}).get("recipe") or config.get("recipe") or protocol.get("recipe") or DEFAULT_RECIPE)


def from_weights(path: Path, config_path: Path | None = None, label: str | None = None) -> Source:
    """A weights file; ``config_path`` (default: a config.yaml beside it, when there is one) must describe
    the same method and config."""
    weights = read_weights(path)
    config_path = config_path or (Path(path).parent / CONFIG_FILE)
    if config_path.is_file():
        check_config(weights, read_config(config_path), str(config_path))
    return Source(weights, label or str(path), weights.run_id)


def from_run(uri: str, run_id: str, work: Path) -> Source:
    """The final weights a finished training run saved (artifact ``model/model.safetensors``), checked
    against the run's ``weights_sha256`` and ``config_hash`` tags; downloaded under ``work``."""
    record = tracking.get_run(uri, run_id)
    if record.tags.get("run_kind") not in ("run", "trial") or record.status != "FINISHED":
        raise UserError(
            f"run {run_id} is a {record.status} {record.tags.get('run_kind', '?')!r} run; --run takes a "
            "FINISHED training run (tag run_kind=run, or a tuning trial)"
        )
    return Source(run_weights(uri, run_id, work), f"run {run_id}", run_id)


def shape_like(model: nn.Module, weights: Weights) -> None:
    """Give a freshly built ``model`` the backbone shapes of pruned ``weights`` (nothing for unpruned ones),
    so that they load strictly."""
    if weights.shapes:
        from reidbench.prune.structured import apply_structure

        apply_structure(model, weights.shapes)


def eval_modalities(trained: Protocol, dataset: Dataset) -> list[str]:
    """The training modalities ``dataset`` has (the others are absent in the missing-modality way)."""
    common = [m for m in trained.data.modalities if m in dataset.info.modalities]
    if not common:
        raise UserError(
            f"dataset {dataset.info.name!r} has none of the modalities the model was trained on "
            f"({', '.join(trained.data.modalities)}); it has {', '.join(dataset.info.modalities)}"
        )
    return common


def eval_cfg(trained: Protocol, trained_on: str, dataset: Dataset, overrides: list[str] = ()) -> EvalCfg:
    """The evaluation settings on ``dataset``: the trained protocol's on the dataset it was trained on
    (``trained_on``; a validation split of it included), on another one with that dataset's junk rule and
    same-set fact (:func:`~reidbench.evaluation.targets.target_eval_cfg`, as ``--test-on``); then the
    ``overrides`` (``eval.KEY=VALUE`` only: the rest is fixed by the trained model)."""
    from reidbench.evaluation.targets import target_eval_cfg

    same = dataset.info.name.split(":", 1)[0] == trained_on  # a validation split is named DATASET:val
    cfg = trained.eval if same else target_eval_cfg(dataset, trained.eval)
    protocol = replace(trained, eval=apply_eval_overrides(cfg, overrides))
    validate_protocol(protocol, "the --set overrides")
    return protocol.eval


def apply_eval_overrides(cfg: EvalCfg, overrides: list[str] | tuple[str, ...]) -> EvalCfg:
    """``cfg`` with the ``eval.KEY=VALUE`` ``overrides``; a UserError for any other key, an unknown eval
    key or a value of the wrong type. Torch-free: ``reidbench eval`` checks its --set with it first
    (on the default settings), before it loads anything."""
    bad = [o for o in overrides if not o.split("=", 1)[0].strip().startswith("eval.")]
    if bad:
        raise UserError(
            f"--set {bad[0]}: evaluation takes eval.KEY=VALUE settings only (eval.rerank=true, "
            "eval.missing_modality=true, eval.cross_modal=[rgb->nir]); the rest is fixed by the trained model"
        )
    data = {"eval": to_dict(cfg)}
    for text in overrides:
        apply_override(data, *parse_override(text))
    return from_dict(EvalCfg, data["eval"], "eval")


@dataclass
class EvalResult:
    """Metrics of one evaluation, the MLflow run they were logged to, and what loading dropped."""

    metrics: dict[str, float]
    run_id: str | None
    load: LoadReport
    protocol: Protocol


def evaluate_source(
    source: Source,
    dataset: Dataset,
    device: torch.device,
    overrides: list[str] = (),
    uri: str | None = None,
    experiment: str = tracking.DEFAULT_EXPERIMENT,
    show_progress: bool = False,
    say: Any = None,
    validation: float | None = None,
) -> EvalResult:
    """Rebuild ``source``'s model, load its weights, evaluate it on ``dataset`` in every setting its
    protocol (with ``overrides``) asks for; logged to ``uri`` as a ``run_kind=eval`` run when given.
    ``validation``: the fraction ``dataset``'s validation split was carved with (recorded), if it is one."""
    from reidbench.data.types import relabel
    from reidbench.evaluation import evaluate
    from reidbench.evaluation.cost import count_params
    from reidbench.evaluation.targets import target_eval_sets
    from reidbench.nn.factory import BuildInfo, create_method, create_tokenizer
    from reidbench.runner import seed_everything
    from reidbench.spec import method_config

    config, method = source.weights.config, source.weights.method
    trained = source.protocol
    modalities = eval_modalities(trained, dataset)
    settings = eval_cfg(trained, str(config["dataset"]), dataset, list(overrides))
    name = dataset.info.name.split(":", 1)[0]
    protocol = replace(
        trained, dataset=name, eval=settings, data=replace(trained.data, modalities=modalities)
    )
    seed_everything(int(config.get("seed", 0)))
    cfg = method_config(method, trained.method)
    tokenizer = create_tokenizer(method, cfg, trained, dataset.info)
    build = copy.deepcopy(trained)
    build.backbone.pretrained, build.backbone.weights = False, None  # every weight comes from the file
    info = BuildInfo.from_protocol(build, dataset.info, relabel(dataset.splits.train)[1], tokenizer)
    model = create_method(method, cfg, info)
    shape_like(model, source.weights)
    load = load_weights_into(model, source.weights.state, str(source.weights.path))
    if load.dropped and say is not None:
        say(load.message)
    model = model.to(device)
    fill = not getattr(model, "drops_missing_modalities", False)
    query, gallery = target_eval_sets(dataset, trained, modalities, device, tokenizer, fill, show_progress)
    split = f"val:{validation}" if validation is not None else "test"
    run = _open_eval_run(uri, experiment, source, protocol, load, device, split) if uri else None
    try:
        metrics = evaluate(model, query, gallery, protocol.eval)
        metrics["params"] = float(count_params(model))
    except BaseException:
        if run is not None:
            run.finish("FAILED")
        raise
    if run is not None:
        run.log_metrics(metrics)
        run.finish()
    return EvalResult(metrics, run.run_id if run is not None else None, load, protocol)


def _open_eval_run(
    uri: str, experiment: str, source: Source, protocol: Protocol, load: LoadReport, device: Any, split: str
) -> tracking.Run:
    config = source.weights.config
    tags = {
        "run_kind": "eval",
        "method": source.weights.method,
        "dataset": protocol.dataset,
        "split": split,
        "source_dataset": str(config["dataset"]),
        "source_config_hash": source.weights.config_hash,
        "source_weights": source.label,
        "seed": str(config.get("seed", "")),
        "recipe": recipe_of(config),
        "git_commit": tracking.git_commit(),
        "device": str(device),
    }
    if source.run_id:
        tags["source_run_id"] = source.run_id
    if load.dropped:
        tags["classifier_dropped"] = "true"
    name = f"eval {source.weights.method}@{protocol.dataset} <- {config['dataset']}#s{config.get('seed', '')}"
    run = tracking.Run(uri, tracking.prepare(uri, experiment), name, tags)
    run.log_params(tracking.flatten({"eval": to_dict(protocol.eval), "modalities": protocol.data.modalities}))
    return run


def download_dir() -> tempfile.TemporaryDirectory:
    """A temporary folder for downloaded artifacts."""
    return tempfile.TemporaryDirectory(prefix="reidbench-eval-")
