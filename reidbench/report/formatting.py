"""Numbers and names as they appear in tables: the one place that formats ``mean ± std``."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from reidbench.report.stats import FRACTION, Cell, ci95

# Final metrics of the MLflow contract: (name, short label) in table order.
ACCURACY_METRICS = {"mAP": "mAP", "rank1": "R1", "rank5": "R5", "rank10": "R10", "mINP": "mINP"}
DATASET_NAMES = {
    "rgbnt201": "RGBNT201",
    "rgbnt100": "RGBNT100",
    "msvr310": "MSVR310",
    "rgbn300": "RGBN300",
    "market1501_mm": "Market1501-MM",
    "wmveid863": "WMVEID863",
    "synthetic": "Synthetic",
    "synthetic_shift": "Synthetic-shift",
}
PARTIAL_MARK = "‡"  # rows / labels of runs on partial data (tag partial_data=true)
PARTIAL_NOTE = (
    f"{PARTIAL_MARK} Trained and evaluated on partial data (the dataset's layout check failed; run with "
    "--allow-partial): not comparable with the other rows and never marked best."
)
# timm ViT / DeiT names -> the papers' short names (vit_base_patch16_224 -> ViT-B/16).
_VIT = re.compile(r"^(vit|deit)_(tiny|small|base|large|huge)_patch(\d+)_\d+")
_VIT_SIZES = {"tiny": "Ti", "small": "S", "base": "B", "large": "L", "huge": "H"}
MODALITY_NAMES = {"rgb": "RGB", "nir": "NIR", "tir": "TIR", "text": "Text"}

# Axis keys -> label with unit; others fall back to the key's last part.
AXIS_LABELS = {
    "method.fusion_tokens": "fusion tokens (count)",
    "method.depth": "fusion depth (layers)",
    "method.num_heads": "attention heads (count)",
    "backbone.depth": "backbone depth (blocks)",
    "optim.lr": "learning rate",
    "optim.weight_decay": "weight decay",
    "train.epochs": "training length (epochs)",
    "sampler.p": "identities per batch P (count)",
    "sampler.k": "images per identity K (count)",
    "loss.variant": "loss terms",
    "loss.label_smoothing": "label smoothing ε",
    "loss.triplet_margin": "triplet margin",
    "data.modalities": "training modalities",
    "method.mask_ratio": "mask ratio (fraction)",
}


def fmt_number(x: float, decimals: int | None = 1) -> str:
    """``x`` with ``decimals`` places; ``None``: three significant digits, no exponent."""
    if not math.isfinite(x):
        return "–"
    if decimals is None:
        magnitude = math.floor(math.log10(abs(x))) if x else 0
        decimals = max(0, 2 - magnitude)
    return f"{x:.{decimals}f}"


@dataclass(frozen=True)
class CellStyle:
    """Markup of one output format for a ``mean ± std`` cell (``{}`` / ``{mean}``, ``{std}`` placeholders)."""

    missing: str = "–"
    best: str = "{}"
    second: str = "{}"
    with_std: str = "{mean} ± {std}"
    noted: str = "{}*"  # a cell marked apart from the ranking (mark=3), e.g. the in-domain cell
    interval: str = ""  # appended after mean ± std when n >= 2 (``{lo}``, ``{hi}``: the 95 % t interval)


NOTED = 3  # format_cell's mark for a noted cell


PLAIN = CellStyle()


def format_cell(
    cell: Cell | None,
    scale: float = 100.0,
    decimals: int | None = 1,
    show_std: bool = True,
    mark: int | None = None,
    style: CellStyle = PLAIN,
) -> str:
    """The one ``mean ± std`` formatter: values times ``scale`` (100: fractions -> %), the mean marked
    best (``mark=1``), second (``2``) or noted (``NOTED``) in ``style``, the std left out when unknown
    (n < 2) or not wanted."""
    if cell is None or not math.isfinite(cell.mean):
        return style.missing
    mean = fmt_number(cell.mean * scale, decimals)
    marked = {1: style.best, 2: style.second, NOTED: style.noted}.get(mark or 0)
    mean = marked.format(mean) if marked else mean
    if show_std and cell.has_std:
        text = style.with_std.format(mean=mean, std=fmt_number(cell.std * scale, decimals))
        if style.interval and cell.n >= 2:
            lo, hi = ci95(cell, FRACTION if scale == 100 else None)
            text += style.interval.format(
                lo=fmt_number(lo * scale, decimals), hi=fmt_number(hi * scale, decimals)
            )
        return text
    return mean


def mean_std(cell: Cell, scale: float = 100.0, decimals: int | None = 1) -> str:
    """``m ± s`` (or ``m`` when there is no std) in plain text."""
    return format_cell(cell, scale, decimals)


def dataset_name(name: str) -> str:
    """Display name of a dataset (``rgbnt100`` -> ``RGBNT100``)."""
    return DATASET_NAMES.get(name, name)


def backbone_name(name: str) -> str:
    """Short display name of a backbone: ``vit_tiny_patch16_224`` -> ``ViT-Ti/16``; others unchanged."""
    match = _VIT.match(name)
    if not match:
        return name
    family = "ViT" if match[1] == "vit" else "DeiT"
    return f"{family}-{_VIT_SIZES[match[2]]}/{match[3]}"


def modality_list(text: str) -> str:
    """``rgb_nir`` / ``rgb+nir`` -> ``RGB+NIR``."""
    parts = text.replace("+", "_").split("_")
    return "+".join(MODALITY_NAMES.get(p, p) for p in parts)


def setting_name(setting: str) -> str:
    """Display name of an evaluation setting: ``no_rgb_nir`` -> ``w/o RGB+NIR``, ``rgb->nir`` ->
    ``RGB→NIR``."""
    if "->" in setting:
        query, gallery = setting.split("->", 1)
        return f"{modality_list(query)}→{modality_list(gallery)}"
    setting, _, convention = setting.partition(":")  # no_tir:zero: under another missing convention
    if setting.startswith("no_"):
        return f"w/o {modality_list(setting[3:])}" + (f" ({convention})" if convention else "")
    return setting


def setting_order(setting: str) -> tuple:
    """Sort key: fewer missing modalities first, then RGB, NIR, TIR order; unknown forms last."""
    order = list(MODALITY_NAMES)
    base, _, convention = setting.partition(":")
    if base.startswith("no_"):
        parts = base[3:].split("_")
        if all(p in order for p in parts):
            return (0, convention, len(parts), [order.index(p) for p in parts], setting)
    if "->" in setting:
        query, gallery = setting.split("->", 1)
        return (1, query, gallery.count("+"), gallery, setting)
    return (2, setting)


def axis_label(axis: str) -> str:
    """Readable label (with unit where there is one) for a dotted protocol key."""
    if axis in AXIS_LABELS:
        return AXIS_LABELS[axis]
    return axis.rsplit(".", 1)[-1].replace("_", " ")
