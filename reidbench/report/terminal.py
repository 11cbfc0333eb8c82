"""Table -> rich table for the terminal (best bold, second underlined)."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table as RichTable

from reidbench.report.formatting import CellStyle
from reidbench.report.tables import Table

RICH = CellStyle("–", "[bold]{}[/]", "[underline]{}[/]", "{mean} ± {std}", "[italic]{}[/]")


def rich_table(table: Table, caption: bool = True) -> RichTable:
    """The table as a rich Table; reported rows dimmed in their own section."""
    out = RichTable(
        title=escape(table.title), caption=escape(table.caption) if caption else None, caption_justify="left"
    )
    for name in [table.row_header, *table.text_columns]:
        out.add_column(escape(name), justify="left", overflow="fold")
    spans = [(header, i) for header, count in table.header_groups() for i in range(count)]
    for c, (header, i) in zip(table.columns, spans, strict=True):
        top = header if i == 0 else ""
        out.add_column(escape(f"{top}\n{c.label}" if header else c.label), justify="right")
    for i, (row, cells) in enumerate(zip(table.rows, table.formatted(RICH), strict=True)):
        last_ours = not row.reported and i + 1 < len(table.rows) and table.rows[i + 1].reported
        out.add_row(
            escape(row.label),
            *(escape(row.text.get(t, "")) for t in table.text_columns),
            *cells,
            style="dim" if row.reported else None,
            end_section=last_ours,
        )
    return out


def print_tables(console: Console, tables: list[Table], caption: bool = True) -> None:
    """Print each table."""
    for table in tables:
        console.print(rich_table(table, caption))
