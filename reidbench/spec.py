"""One point of a benchmark: :class:`RunSpec` (method x dataset x seed under a resolved protocol), how it is
made from names and overrides (:func:`make_spec`), and its config hash (how finished work is recognised).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from reidbench.config import from_dict, to_dict
from reidbench.errors import UserError
from reidbench.generalisation import common_modalities, source_names
from reidbench.protocol import Protocol, active_protocol_file, build_protocol, config_hash
from reidbench.recipes import DEFAULT_RECIPE, active_recipe, recipe_settings
from reidbench.registry import DATASETS, METHODS, load_plugins

# Protocol settings removed after runs were stored with them, and the value they always had: it joins the
# hash so that those runs keep their config hash (and stay skipped).
RETIRED_SETTINGS: dict[str, dict[str, Any]] = {"train": {"eval_every": 0}}
# Protocol settings added after runs were stored, with their default: at that default they stay out of the
# hash, so the configs that existed before keep their config hash.
ADDED_SETTINGS: dict[str, dict[str, Any]] = {
    "train": {"allow_random_frozen": False},
    "optim": {"eps": 1e-8, "nesterov": False, "no_decay": ["1d"], "groups": []},
    "schedule": {
        "warmup_steps": None,
        "bounds": "per_group",
        "cosine": "after_warmup",
        "step_per": "step",
        "first_epoch": 0,
        "noise_pct": 0.0,
        "noise_seed": 42,
    },
    "backbone": {"proj_dim": None, "camera_coef": None},
    "eval": {"missing_conventions": []},
}
# Method knobs added since (the method section holds every knob of a method, see make_spec).
ADDED_SETTINGS["method"] = {
    "modality_embedding_single": True,
    "mm_attend_padding": False,
    "mm_input": "post_norm",
    "text_encoder": "bert",
}
# The same for the fields of each train.stages entry.
ADDED_STAGE_SETTINGS: dict[str, Any] = {"warmup_steps": None}


@dataclass(frozen=True)
class RunSpec:
    """One run: a method on a dataset with one seed under a resolved protocol."""

    method: str
    dataset: str
    seed: int
    protocol: Protocol
    overrides: tuple[str, ...] = ()
    tags: dict[str, str] = field(default_factory=dict)  # e.g. ablation / axis / value
    validation: float | None = None  # evaluate on this fraction of training ids (tuning), not the test set
    # target dataset -> the modalities it is scored on (those it shares with data.modalities); see
    # reidbench.generalisation. Empty: in-domain only (and absent from the config, so hashes stay put).
    test_on: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # starts from another run's weights (a reidbench.train.warm_start.WarmStep, e.g. a pruning round); its
    # fields are the config's section named by its kind (``prune``: pruning configs keep their hashes)
    warm_start: Any = None
    recipe: str = DEFAULT_RECIPE  # shared | official (reidbench.recipes); official joins the config

    @property
    def datasets(self) -> list[str]:
        """Every single dataset the run reads: its sources (one, or the merged ones) and its targets."""
        return list(dict.fromkeys([*source_names(self.dataset), *self.test_on]))

    @property
    def name(self) -> str:
        targets = f">{','.join(self.test_on)}" if self.test_on else ""
        step = self.warm_start.label if self.warm_start is not None else ""
        val = ":val" if self.validation is not None else ""
        return f"{self.method}@{self.dataset}{val}{targets}{step}#s{self.seed}"

    def config(self) -> dict[str, Any]:
        """The fully resolved config (what the hash covers and what is logged)."""
        config = {
            "method": self.method,
            "dataset": self.dataset,
            "seed": self.seed,
            "protocol": to_dict(self.protocol),
        }
        if self.validation is not None:
            config["validation"] = self.validation
        if self.test_on:
            config["test_on"] = {target: list(mods) for target, mods in self.test_on.items()}
        if self.warm_start is not None:
            config[self.warm_start.kind] = asdict(self.warm_start)
        if self.recipe != DEFAULT_RECIPE:  # the shared track stays out: its configs keep their old hashes
            config["recipe"] = self.recipe
        return config

    @cached_property
    def config_hash(self) -> str:
        """Stable 12-hex-digit hash of :meth:`config` (retired settings at their old value)."""
        return hash_config(self.config())


def hash_config(config: dict[str, Any]) -> str:
    """The config hash of a resolved run config (:meth:`RunSpec.config`, or a logged config.yaml read back):
    retired settings join at their old value, added settings at their default leave."""
    config = copy.deepcopy(config)
    protocol = config["protocol"]
    for section, values in RETIRED_SETTINGS.items():
        protocol[section] = {**copy.deepcopy(values), **protocol.get(section, {})}
    for section, values in ADDED_SETTINGS.items():
        for key, default in values.items():
            if protocol.get(section, {}).get(key, default) == default:
                protocol.get(section, {}).pop(key, None)
    for stage in protocol.get("train", {}).get("stages", []):
        for key, default in ADDED_STAGE_SETTINGS.items():
            if stage.get(key, default) == default:
                stage.pop(key, None)
    return config_hash(config)


def default_data_root() -> Path:
    """``REIDBENCH_DATA`` or ./data."""
    return Path(os.environ.get("REIDBENCH_DATA", "data"))


def make_spec(
    method: str,
    dataset: str,
    seed: int,
    overrides: list[str] | tuple[str, ...] = (),
    tags: dict[str, str] | None = None,
    validation: float | None = None,
    protocol_path: Path | None = None,
    test_on: Sequence[str] = (),
    recipe: str | None = None,
) -> RunSpec:
    """Resolve method x dataset x seed with overrides into a checked RunSpec.

    ``protocol_path``: the user's protocol file (default: the one chosen by ``protocol.protocol_file``,
    else the built-in protocol); its absolute path becomes the run's ``protocol_file`` tag, while the
    config (and hash) hold its resolved content.

    ``dataset`` may name several sources merged for training (``rgbnt100+msvr310``): the protocol is the
    first source's, the modalities those every source has. ``test_on``: target datasets the final model is
    also evaluated on, each on the modalities it shares with the training ones (none shared: UserError).

    ``recipe``: ``shared`` or ``official`` (default: the one chosen by ``recipes.recipe_choice``, else
    shared); see :mod:`reidbench.recipes`.
    """
    load_plugins()
    if validation is not None:  # 0 must never mean "no split" (the run would score the test split)
        validation = check_fraction(validation)
    recipe = active_recipe(recipe)
    sources = source_names(dataset)
    base = recipe_settings(method, recipe, sources[0])
    available = [DATASETS.get(name).meta.get("modalities") for name in sources]
    modalities = available[0]
    if len(sources) > 1 and all(a is not None for a in available):
        modalities = [m for m in available[0] if all(m in a for a in available)]
    path = active_protocol_file(protocol_path)
    protocol = build_protocol(
        sources[0],
        list(overrides),
        base=base,
        method=method,
        path=path,
        dataset_modalities=modalities,
    )
    tags = {**(tags or {}), **({"protocol_file": str(path.resolve())} if path is not None else {})}
    knobs = method_config(method, protocol.method)  # validate the method knobs early
    if knobs is not None:  # every knob explicit: the same effective config always has the same hash
        protocol.method = to_dict(knobs)
    targets = resolve_targets(protocol.data.modalities, test_on)
    check_trainable(protocol)
    return RunSpec(
        method, dataset, seed, protocol, tuple(overrides), tags, validation, targets, recipe=recipe
    )


def check_fraction(fraction: float | None, option: str = "--val-fraction") -> float | None:
    """``fraction`` itself when it is None or in the open interval (0, 1), else UserError naming ``option``.

    Every path that carves a validation split checks its fraction here (0 must never mean "no split": a
    run would then score the test split under a validation name)."""
    if fraction is None:
        return None
    if isinstance(fraction, bool) or not isinstance(fraction, int | float) or not 0 < fraction < 1:
        raise UserError(
            f"{option}: a validation fraction must be a number strictly between 0 and 1 (a share of the "
            f"training identities), got {fraction!r}"
        )
    return float(fraction)


def check_trainable(protocol: Protocol) -> None:
    """Refuse a recipe that cannot train what it claims to: a stage that freezes a randomly initialised
    backbone (it would stay random) unless ``train.allow_random_frozen``."""
    random_backbone = not protocol.backbone.pretrained and not protocol.backbone.weights
    if not random_backbone or protocol.train.allow_random_frozen:
        return
    for stage in protocol.train.stages:
        frozen = [name for name in stage.freeze if name.split(".")[0] == "backbone"]
        if frozen:
            raise UserError(
                f"stage {stage.name!r} freezes {frozen[0]!r}, but the backbone is randomly initialised "
                "(backbone.pretrained=false, no backbone.weights): it would stay random. Give it weights "
                "(backbone.pretrained=true or backbone.weights=PATH), train without that stage (--recipe "
                "shared), or --set train.allow_random_frozen=true to run it anyway"
            )


def resolve_targets(trained: list[str], targets: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """Each target dataset with the modalities it is scored on (checked before anything runs)."""
    out = {}
    for target in dict.fromkeys(targets):
        has = DATASETS.get(target).meta.get("modalities") or list(trained)
        out[target] = tuple(common_modalities(trained, target, has))
    return out


def grid(
    methods: Sequence[str],
    datasets: Sequence[str],
    seeds: Sequence[int] | None = None,
    overrides: Sequence[str] = (),
    test_on: Sequence[str] = (),
) -> list[RunSpec]:
    """Every method x dataset x seed (default seeds: each protocol's ``seeds``); ``test_on``: the target
    datasets of every point."""
    specs = []
    for method in methods:
        for dataset in datasets:
            point_seeds = seeds or make_spec(method, dataset, 0, list(overrides)).protocol.seeds
            specs += [make_spec(method, dataset, s, list(overrides), test_on=test_on) for s in point_seeds]
    return specs


def method_config(method: str, knobs: dict[str, Any]) -> Any:
    """The method's typed config from the protocol's ``method`` section (None for a method without knobs)."""
    cls = METHODS.get(method).meta.get("config")
    if cls is None:
        if knobs:
            raise UserError(f"method {method!r} takes no knobs, got method.{next(iter(knobs))}")
        return None
    return from_dict(cls, knobs, "method")
