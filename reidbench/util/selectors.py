"""Parameter selectors: which of a model's tensors a decay or group rule names (torch-free).

A selector is one of

* ``all``: every tensor;
* ``bias``: the name contains ``bias`` (the TransReID-family ``make_optimizer`` test, ``"bias" in key``);
* ``norm``: a parameter of a normalisation layer (LayerNorm, BatchNorm1d, GroupNorm, RMSNorm, ...: a
  module whose class name ends in ``Norm`` or ``Norm<k>d``);
* ``1d``: a tensor with at most one dimension (biases, norm weights, 1-D parameters);
* ``backbone``: under the model's ``backbone`` submodule (short for ``in:backbone``);
* ``in:PATH``: under the submodule ``PATH`` (dotted, e.g. ``in:image_encoder``);
* ``re:REGEX``: the parameter name matches ``REGEX`` (``re.search``), e.g. ``re:^backbone\\.(?!.*adapter)``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

KEYWORDS = ("all", "bias", "norm", "1d", "backbone")
FORMS = "all, bias, norm, 1d, backbone, in:MODULE or re:REGEX"


@dataclass(frozen=True)
class TensorInfo:
    """What a selector may look at: the parameter's name, its number of dimensions, and whether a
    normalisation layer owns it."""

    name: str
    ndim: int
    in_norm: bool


def selector_problem(selector: str) -> str | None:
    """Why ``selector`` is not a valid selector (None when it is)."""
    if not isinstance(selector, str):
        return f"{selector!r} is not a selector ({FORMS})"
    if selector in KEYWORDS:
        return None
    kind, sep, arg = selector.partition(":")
    if not sep or kind not in ("in", "re") or not arg:
        return f"unknown selector {selector!r} (expected {FORMS})"
    if kind == "re":
        try:
            re.compile(arg)
        except re.error as exc:
            return f"selector {selector!r}: not a regular expression ({exc})"
    return None


def matches(selector: str, tensor: TensorInfo) -> bool:
    """Whether ``selector`` names ``tensor`` (the selector is assumed valid)."""
    if selector == "all":
        return True
    if selector == "bias":
        return "bias" in tensor.name
    if selector == "norm":
        return tensor.in_norm
    if selector == "1d":
        return tensor.ndim <= 1
    if selector == "backbone":
        selector = "in:backbone"
    kind, _, arg = selector.partition(":")
    if kind == "in":
        return tensor.name.startswith(arg + ".")
    return re.search(arg, tensor.name) is not None


def matches_any(selectors: list[str], tensor: TensorInfo) -> bool:
    """Whether any of ``selectors`` names ``tensor``."""
    return any(matches(s, tensor) for s in selectors)
