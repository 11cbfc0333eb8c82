"""Building a registered method (as timm's ``create_model``): :func:`create_method` with the method's
typed config (or a dict of knobs, parsed once) and a :class:`BuildInfo` of what else the builder needs;
:func:`create_loss_terms` and :func:`create_tokenizer` give the criterion terms and the caption tokenizer
the method declares at registration (``loss_terms=fn(cfg, loss_cfg)``, ``tokenizer=fn(cfg, dataset_info)``).

Registered method builders are ``fn(cfg, info: BuildInfo) -> nn.Module`` whose result has ``embed_dim``
(the width of ``ModelOutput.embedding``); they are imported on first use, not at registration.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from reidbench.data.types import DatasetInfo
from reidbench.protocol import BackboneCfg, LossCfg, Protocol
from reidbench.registry import METHODS, load_plugins, resolve
from reidbench.spec import method_config

if TYPE_CHECKING:
    from torch import nn

    from reidbench.data.text import CaptionTokenizer, TextVocab


@dataclass(frozen=True)
class BuildInfo:
    """What a method builder needs besides its knobs."""

    modalities: tuple[str, ...]
    num_classes: int
    image_size: tuple[int, int]  # (height, width)
    backbone: BackboneCfg
    dataset: DatasetInfo
    loss_terms: frozenset[str] = frozenset()  # every loss term the protocol's stages name
    text: TextVocab | None = None  # set when batches carry tokenized captions (text_ids, text_mask, ...)

    @property
    def num_cameras(self) -> int:
        """How many camera ids the dataset has (camera embeddings size by it; 0: unknown)."""
        return self.dataset.num_cameras

    @classmethod
    def from_protocol(
        cls,
        protocol: Protocol,
        dataset: DatasetInfo,
        num_classes: int,
        tokenizer: CaptionTokenizer | None = None,
    ) -> BuildInfo:
        """The build info of a run under ``protocol``; ``tokenizer``: the one the DataModule got."""
        return cls(
            tuple(protocol.data.modalities),
            num_classes,
            (protocol.data.image_size[0], protocol.data.image_size[1]),
            protocol.backbone,
            dataset,
            stage_terms(protocol),
            tokenizer.vocab() if tokenizer is not None and protocol.data.text else None,
        )


def stage_terms(protocol: Protocol) -> frozenset[str]:
    """Every loss term named by the protocol's (resolved) stages."""
    return frozenset(t.strip() for s in protocol.resolved_stages() for t in (s.loss or "").split("+"))


def parse_config(name: str, config: Any = None) -> Any:
    """Method ``name``'s typed config: ``config`` itself when typed, else parsed from a dict of knobs."""
    cls = METHODS.get(name).meta.get("config")
    if cls is not None and isinstance(config, cls):
        return config
    return method_config(name, dict(config or {}))


def create_method(name: str, config: Any, info: BuildInfo) -> nn.Module:
    """Build method ``name`` with ``config`` (its typed config, or a dict of knobs) for ``info``."""
    load_plugins()
    entry = METHODS.get(name)
    return entry.load()(parse_config(name, config), info)


def create_loss_terms(name: str, config: Any, loss: LossCfg) -> dict[str, tuple[Any, float]] | None:
    """The criterion terms method ``name`` adds (name -> (fn, weight)), or None."""
    load_plugins()
    ref = METHODS.get(name).meta.get("loss_terms")
    return resolve(ref)(parse_config(name, config), loss) if ref else None


def create_tokenizer(
    name: str, config: Any, protocol: Protocol, dataset: DatasetInfo
) -> CaptionTokenizer | None:
    """The caption tokenizer method ``name`` declares for ``dataset``; None when it reads no text or the
    protocol attaches no captions (``data.text``)."""
    load_plugins()
    ref = METHODS.get(name).meta.get("tokenizer")
    if not ref or not protocol.data.text:
        return None
    return resolve(ref)(parse_config(name, config), dataset)
