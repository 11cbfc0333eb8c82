"""Category tick labels that never overlap: wrapped on words, set horizontally when they fit, else
vertically, and the figure widened (and heightened for tall labels) until no two labels' boxes meet.

Measured on the figure as it will be saved (Agg text extents after the constrained layout), so it holds for
any number of bars and any label length.
"""

from __future__ import annotations

import textwrap

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.transforms import Bbox

FLAT_CHARS = 14  # a horizontal label wraps at this many characters (whole words)
UPRIGHT_CHARS = 24  # a vertical one at this many: fewer lines, so narrower on the axis
GAP_PT = 1.5  # the least space between two labels, in points
MAX_TRIES = 6


def wrap_label(text: str, width: int) -> str:
    """``text`` broken on spaces into lines of at most ``width`` characters (a longer word stays whole; its
    own line breaks kept)."""
    lines = [
        wrapped
        for line in text.split("\n")
        for wrapped in textwrap.wrap(line, width, break_long_words=False, break_on_hyphens=False) or [line]
    ]
    return "\n".join(lines)


def label_boxes(fig: Figure, ax: Axes) -> list[Bbox]:
    """The window extents (pixels) of ``ax``'s visible, non-empty x tick labels, left to right, after the
    figure's layout."""
    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    labels = [t for t in ax.get_xticklabels() if t.get_visible() and t.get_text()]
    return sorted((t.get_window_extent(renderer) for t in labels), key=lambda b: b.x0)


def crowding(boxes: list[Bbox], gap: float) -> float:
    """How much wider the labels need the axis to be: the largest ratio of the space two neighbours need
    (half of each width plus ``gap``) to the space between their centres; <= 1 when none overlap."""
    worst = 0.0
    for left, right in zip(boxes, boxes[1:], strict=False):
        needed = (left.width + right.width) / 2 + gap
        between = max(right.x0 + right.width / 2 - (left.x0 + left.width / 2), 1e-9)
        worst = max(worst, needed / between)
    return worst


def _set_labels(ax: Axes, texts: list[str], width: int, rotation: float) -> None:
    ax.set_xticks(ax.get_xticks(), [wrap_label(t, width) for t in texts])
    for label in ax.get_xticklabels():
        label.set_rotation(rotation)
        label.set_horizontalalignment("center")
        label.set_rotation_mode("default")


def fit_x_labels(fig: Figure, axes: list[Axes]) -> None:
    """Wrap and orient the x tick labels of ``axes`` so that no two overlap: horizontal when every panel's
    labels fit, else vertical, then widen the figure until they fit; tall labels make the figure taller by
    their height so the panels keep their plotting area."""
    texts = {ax: [t.get_text() for t in ax.get_xticklabels()] for ax in axes}
    gap = GAP_PT * fig.dpi / 72
    for ax in axes:
        _set_labels(ax, texts[ax], FLAT_CHARS, 0)
    if max((crowding(label_boxes(fig, ax), gap) for ax in axes), default=0) <= 1:
        return
    for ax in axes:
        _set_labels(ax, texts[ax], UPRIGHT_CHARS, 90)
    tall = max((b.height for ax in axes for b in label_boxes(fig, ax)), default=0) / fig.dpi
    fig.set_figheight(fig.get_figheight() + max(0.0, tall - 0.4))
    for _ in range(MAX_TRIES):
        ratio = max((crowding(label_boxes(fig, ax), gap) for ax in axes), default=0)
        if ratio <= 1:
            return
        fig.set_figwidth(fig.get_figwidth() * ratio * 1.02)
