"""The optimiser as a recipe states it: its type and arguments, and the parameter groups.

Recipe keys (``optim.*``; every one also settable with ``--set``):

* ``name``: ``sgd`` (``momentum``, ``nesterov``), ``adam`` or ``adamw`` (``betas``, ``eps``). Adam adds
  weight decay to the gradient (L2), AdamW decouples it (``torch.optim`` semantics).
* ``lr``, ``weight_decay``: the stage's base values (a stage may set its own ``lr``, ``lr_scale``,
  ``weight_decay``).
* ``no_decay``: selectors (:mod:`reidbench.util.selectors`) of the tensors that get weight decay 0 before
  the group rules apply; ``[]``: every tensor decays.
* ``groups``: rules applied in order to every trainable tensor. A rule whose ``match`` names the tensor sets
  its ``lr`` (absolute) or ``lr_scale`` (x the stage lr), and its ``weight_decay`` (absolute) or
  ``weight_decay_scale`` (x the stage weight decay); a later rule overrides what an earlier one set, so
  ``[{match: [bias], lr_scale: 2}, {match: [backbone], lr: 5e-6}]`` gives backbone biases 5e-6, as the
  TransReID-family ``make_optimizer`` does.

Tensors that end with equal settings share one ``torch.optim`` group (per-tensor groups in the official
code compute the same update). The criterion's learnable tensors (center-loss centers) form a group of
their own at ``loss.center_lr`` without decay. :func:`resolve_groups` is the table a test or a reader can
check: per group its name, lr, weight decay and tensor count.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch
from torch import nn

from reidbench.protocol import OptimCfg, Protocol, StageCfg
from reidbench.util.selectors import TensorInfo, matches_any

# Normalisation layers by class name: LayerNorm, BatchNorm1d, GroupNorm, RMSNorm, Fp32LayerNorm, LayerNorm2d
# (not PreNormEncoder and other containers named after a norm placement).
NORM_CLASS = re.compile(r"Norm(\dd)?$")


@dataclass
class ResolvedGroup:
    """One optimiser group: the rules that shaped it (``name``), its settings and its tensors."""

    name: str
    lr: float
    weight_decay: float
    params: list[nn.Parameter] = field(default_factory=list)
    names: list[str] = field(default_factory=list)

    def as_torch(self) -> dict:
        """The ``torch.optim`` param-group dict."""
        return {"params": self.params, "lr": self.lr, "weight_decay": self.weight_decay}


def tensor_infos(model: nn.Module) -> dict[str, TensorInfo]:
    """What a selector sees of each named parameter of ``model``."""
    in_norm = {
        f"{prefix}.{name}" if prefix else name
        for prefix, module in model.named_modules()
        if NORM_CLASS.search(type(module).__name__)
        for name, _ in module.named_parameters(recurse=False)
    }
    return {n: TensorInfo(n, p.ndim, n in in_norm) for n, p in model.named_parameters()}


def tensor_settings(info: TensorInfo, optim: OptimCfg, lr: float, weight_decay: float) -> tuple:
    """``(lr, weight_decay, rule names)`` of one tensor under the stage's ``lr`` / ``weight_decay`` (scales
    multiply those base values, not what an earlier rule set)."""
    tensor_lr, decay = lr, (0.0 if matches_any(optim.no_decay, info) else weight_decay)
    names = ["no_decay"] if decay == 0.0 and weight_decay != 0.0 else []
    for rule in optim.groups:
        if not matches_any(rule.match, info):
            continue
        names.append(rule.name or "+".join(rule.match))
        if rule.lr is not None:
            tensor_lr = rule.lr
        elif rule.lr_scale is not None:
            tensor_lr = lr * rule.lr_scale
        if rule.weight_decay is not None:
            decay = rule.weight_decay
        elif rule.weight_decay_scale is not None:
            decay = weight_decay * rule.weight_decay_scale
    return tensor_lr, decay, names


def resolve_groups(model: nn.Module, optim: OptimCfg, stage: StageCfg) -> list[ResolvedGroup]:
    """The trainable tensors of ``model`` grouped by resolved (lr, weight decay), in first-seen order."""
    infos = tensor_infos(model)
    groups: dict[tuple[float, float], ResolvedGroup] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        lr, decay, rules = tensor_settings(infos[name], optim, stage.lr, stage.weight_decay)
        label = "+".join(rules) or "default"
        group = groups.setdefault((lr, decay), ResolvedGroup(label, lr, decay))
        if label not in group.name.split(" | "):
            group.name += f" | {label}"
        group.params.append(param)
        group.names.append(name)
    return list(groups.values())


def build_optimizer(
    model: nn.Module, criterion: nn.Module, protocol: Protocol, stage: StageCfg
) -> torch.optim.Optimizer:
    """A fresh optimizer over the trainable tensors of ``model`` (grouped by :func:`resolve_groups`) and the
    criterion's learnable ones."""
    groups = [g.as_torch() for g in resolve_groups(model, protocol.optim, stage)]
    centers = [p for p in criterion.parameters() if p.requires_grad]
    if centers:
        groups.append({"params": centers, "weight_decay": 0.0, "lr": protocol.loss.center_lr})
    opt = protocol.optim
    if opt.name == "sgd":
        return torch.optim.SGD(groups, lr=stage.lr, momentum=opt.momentum, nesterov=opt.nesterov)
    cls = torch.optim.AdamW if opt.name == "adamw" else torch.optim.Adam
    return cls(groups, lr=stage.lr, betas=tuple(opt.betas), eps=opt.eps)
