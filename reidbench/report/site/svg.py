"""Training curves as inline SVG: one line per loss term (mean over seeds per epoch), the learning rate
dotted on its own right-hand scale. Reads :func:`reidbench.report.plots.curve_frame`'s rows."""

from __future__ import annotations

from html import escape

import pandas as pd

from reidbench.report.plots import loss_terms, term_name

W, H = 560, 250
LEFT, RIGHT, TOP, BOTTOM = 48, 56, 12, 30
PALETTE = ["#0173b2", "#de8f05", "#029e73", "#d55e00", "#cc78bc", "#ca9161", "#56b4e9", "#949494"]


def _scale(lo: float, hi: float, a: float, b: float):
    span = (hi - lo) or 1.0
    return lambda v: a + (v - lo) / span * (b - a)


def _polyline(points: pd.Series, x, y, style: str) -> str:
    coords = " ".join(f"{x(e):.1f},{y(v):.1f}" for e, v in points.items())
    return f'<polyline fill="none" points="{coords}" {style}/>'


def curves_svg(frame: pd.DataFrame) -> str:
    """The SVG of ``frame`` (columns ``key``, ``epoch``, ``value``; several runs are averaged per epoch)."""
    means = frame.groupby(["key", "epoch"])["value"].mean()
    terms = loss_terms(frame["key"].unique())
    epochs = sorted(frame["epoch"].unique())
    losses = means[means.index.get_level_values(0).isin(terms)] if terms else pd.Series(dtype=float)
    x = _scale(min(epochs), max(epochs), LEFT, W - RIGHT)
    y = _scale(0.0, float(losses.max()) if len(losses) else 1.0, H - BOTTOM, TOP)
    parts = [_axes(epochs, x, y, float(losses.max()) if len(losses) else 1.0)]
    legend = []
    for i, key in enumerate(terms):
        colour = PALETTE[i % len(PALETTE)]
        dash = ' stroke-dasharray="5 3"' if key == "train_loss" else ""
        colour = "#222" if key == "train_loss" else colour
        parts.append(_polyline(means[key], x, y, f'stroke="{colour}" stroke-width="1.6"{dash}'))
        legend.append((term_name(key), colour, dash))
    if "lr" in means.index.get_level_values(0):
        lr = means["lr"]
        y_lr = _scale(0.0, float(lr.max()) or 1.0, H - BOTTOM, TOP)
        parts.append(_polyline(lr, x, y_lr, 'stroke="#999" stroke-width="1.2" stroke-dasharray="2 2"'))
        parts += [
            f'<text x="{W - RIGHT + 4}" y="{y_lr(v) + 3:.1f}" class="tick">{v:.2g}</text>'
            for v in (0.0, float(lr.max()))
        ]
        mid = (TOP + H - BOTTOM) / 2
        parts.append(
            f'<text x="{W - 8}" y="{mid}" class="label" transform="rotate(90 {W - 8} {mid})">lr</text>'
        )
        legend.append(("lr (right scale)", "#999", ' stroke-dasharray="2 2"'))
    parts += _legend(legend)
    return (
        f'<svg class="curves" viewBox="0 0 {W} {H + 18 * ((len(legend) + 3) // 4)}" role="img">'
        f"<title>training loss per epoch</title>{''.join(parts)}</svg>"
    )


def _axes(epochs: list[int], x, y, top: float) -> str:
    """Frame, epoch ticks (at most ~8) and three loss ticks."""
    step = max(1, len(epochs) // 8)
    ticks = [
        f'<text x="{x(e):.1f}" y="{H - BOTTOM + 14}" class="tick" text-anchor="middle">{e}</text>'
        for e in epochs[::step]
    ]
    for v in (0.0, top / 2, top):
        ticks.append(f'<text x="{LEFT - 4}" y="{y(v) + 3:.1f}" class="tick" text-anchor="end">{v:.3g}</text>')
        ticks.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{y(v):.1f}" y2="{y(v):.1f}" class="grid"/>')
    labels = (
        f'<text x="{(LEFT + W - RIGHT) / 2}" y="{H - 2}" class="label" text-anchor="middle">epoch</text>'
        f'<text x="12" y="{(TOP + H - BOTTOM) / 2}" class="label" text-anchor="middle" '
        f'transform="rotate(-90 12 {(TOP + H - BOTTOM) / 2})">loss</text>'
    )
    return "".join(ticks) + labels


def _legend(entries: list[tuple[str, str, str]]) -> list[str]:
    out = []
    for i, (name, colour, dash) in enumerate(entries):
        cx, cy = LEFT + (i % 4) * 125, H + 12 + 18 * (i // 4)
        out.append(
            f'<line x1="{cx}" x2="{cx + 22}" y1="{cy}" y2="{cy}" stroke="{colour}" stroke-width="2"{dash}/>'
        )
        out.append(f'<text x="{cx + 27}" y="{cy + 4}" class="tick">{escape(name)}</text>')
    return out
