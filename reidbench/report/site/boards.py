"""One leaderboard per dataset, as the site shows it: the report's own leaderboard table for that dataset
(its rows, marks and caption), cells as HTML with the 95 % interval, rows linked to their pages.

Nothing is recomputed here: each board is :func:`reidbench.report.tables.leaderboard` over the dataset's
groups, its marks :meth:`Table.marks` (best / within noise of it by Welch's t-test / second best), each
cell :func:`reidbench.report.formatting.format_cell`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from markupsafe import Markup

from reidbench.report.collect import Group
from reidbench.report.formatting import Cell, CellStyle, dataset_name, format_cell
from reidbench.report.model import Report
from reidbench.report.site.runs import page_slug
from reidbench.report.tables import Column, Row, Table, leaderboard

HTML = CellStyle(
    "–",
    '<strong class="best">{}</strong>',
    '<u class="second">{}</u>',
    '{mean} <span class="std">± {std}</span>',
    '<em class="noted">{}</em>',
    ' <span class="ci" title="95 % t interval of the mean over seeds">[{lo}, {hi}]</span>',
)
TEXT_HEADERS = ["Recipe", "Backbone", "Seeds"]
CONVENTION_HEADER = "Missing-modality convention"


@dataclass
class CellView:
    """One shown number: its HTML, the value a column sorts by, a tooltip."""

    html: Markup
    sort: str
    title: str = ""


@dataclass
class BoardRow:
    label: str
    href: str | None  # the row's page (ours), relative to the index
    reported: bool
    partial: bool
    recipe: str
    texts: list[str]
    cells: list[CellView]
    source: str = ""  # published rows: where the number comes from
    note: str = ""


@dataclass
class Board:
    """One dataset's leaderboard."""

    dataset: str
    name: str
    caption: str
    text_headers: list[str]
    columns: list[Column]
    rows: list[BoardRow]
    recipes: list[str] = field(default_factory=list)

    @property
    def ours(self) -> list[BoardRow]:
        return [r for r in self.rows if not r.reported]

    @property
    def published(self) -> list[BoardRow]:
        return [r for r in self.rows if r.reported]


def reported_groups(report: Report) -> list[Group]:
    """The published groups the report's tables show (each once)."""
    found: dict[int, Group] = {}
    for table in report.tables:
        for row in table.rows:
            if row.reported:
                found |= {id(g): g for g in row.groups.values()}
    return list(found.values())


def cell_view(cell: Cell | None, column: Column, mark: int | None) -> CellView:
    """The HTML of ``cell`` (marked), the mean it sorts by (unrounded, in the shown unit), the number of
    seeds as a tooltip."""
    html = Markup(format_cell(cell, column.scale, column.decimals, column.show_std, mark, HTML))
    if cell is None or not math.isfinite(cell.mean):
        return CellView(html, "")
    title = f"n = {cell.n} seed(s)" if cell.n else "number of seeds not stated"
    return CellView(html, format(cell.mean * column.scale, ".10g"), title)


def boards(report: Report, metrics: list[str]) -> list[Board]:
    """A leaderboard per dataset our (non-ablation) runs cover, with that dataset's published rows."""
    ours = [g for g in report.groups if not g.ablation]
    reported = reported_groups(report)
    out = []
    for dataset in dict.fromkeys(g.dataset for g in ours):
        mine = [g for g in ours if g.dataset == dataset]
        table = leaderboard(mine, [g for g in reported if g.dataset == dataset], metrics)
        out.append(board(dataset, table))
    return out


def board(dataset: str, table: Table) -> Board:
    """The site's view of ``table`` (one dataset's leaderboard)."""
    marks = table.marks()
    conventions = [_convention(row) for row in table.rows]
    headers = TEXT_HEADERS + ([CONVENTION_HEADER] if any(conventions) else [])
    rows = []
    for i, row in enumerate(table.rows):
        group = next(iter(row.groups.values()))
        texts = [row.text.get(h, "") for h in TEXT_HEADERS] + ([conventions[i]] if any(conventions) else [])
        cells = [cell_view(row.cell(c), c, marks.get((i, j))) for j, c in enumerate(table.columns)]
        rows.append(
            BoardRow(
                label=row.label,
                href=None if row.reported else f"runs/{page_slug(group.method, dataset, group.recipe)}.html",
                reported=row.reported,
                partial=row.partial,
                recipe=row.text.get("Recipe", ""),
                texts=texts,
                cells=cells,
                source=_source(group) if row.reported else "",
                note=group.note if row.reported else "",
            )
        )
    recipes = sorted({r.recipe for r in rows if not r.reported} - {""})
    return Board(dataset, dataset_name(dataset), table.caption, headers, table.columns, rows, recipes)


def _convention(row: Row) -> str:
    """The missing-modality convention of a row's groups (the runs' tag ``missing_convention``)."""
    return " / ".join(sorted({g.missing_convention for g in row.groups.values()} - {""}))


def _source(group: Group) -> str:
    """``source (selection)`` of a published row."""
    return f"{group.source} ({group.selection})" if group.selection else group.source
