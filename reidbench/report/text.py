"""Table -> Markdown (GitHub pipes; best bold, second underlined) and -> tidy CSV records."""

from __future__ import annotations

import math
from typing import Any

from reidbench.report.formatting import CellStyle
from reidbench.report.stats import FRACTION, ci95
from reidbench.report.tables import Table


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


MARKDOWN = CellStyle("–", "**{}**", "<u>{}</u>", "{mean} ± {std}", "*{}*", " [{lo}, {hi}]")


def markdown_table(table: Table) -> str:
    """Title, the table (column headers ``<group> <metric>``) and the caption in italics."""
    texts = [table.row_header, *table.text_columns]
    heads = [*texts, *(f"{c.header} {c.label}".strip() for c in table.columns)]
    lines = [
        f"**{_md(table.title)}**",
        "",
        "| " + " | ".join(map(_md, heads)) + " |",
        "|" + "---|" * len(texts) + "---:|" * len(table.columns),
    ]
    for i, (row, numbers) in enumerate(zip(table.rows, table.formatted(MARKDOWN), strict=True)):
        if row.reported and (i == 0 or not table.rows[i - 1].reported):
            lines.append("| *Reported in papers* †" + " |" * len(heads))
        cells = [row.label, *(row.text.get(t, "") for t in table.text_columns)]
        cells = [*(_md(c) for c in cells), *numbers]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join([*lines, "", f"*{_md(table.caption)}*", ""])


def csv_records(table: Table) -> list[dict[str, Any]]:
    """One record per row x column group: who / what, then ``<metric>_mean/_std/_n`` in the shown units.

    Units follow the column names: accuracy in %, ``params_m`` in millions, ``train_time_min`` in minutes.
    ``_n`` is the number of seeds (0: not stated by the paper); ``_ci95_low`` / ``_ci95_high`` the 95 % t
    interval of the mean where n >= 2.
    """
    records = []
    for row in table.rows:
        headers = dict.fromkeys(c.group_key for c in table.columns)
        for key in headers:
            columns = [c for c in table.columns if c.group_key == key]
            group = row.group(columns[0])
            if group is None:
                continue
            record: dict[str, Any] = {
                "block": "reported" if row.reported else "ours",
                "method": group.method,
                "variant": group.variant,
                "recipe": group.recipe,
                "dataset": group.dataset,
            }
            if table.group_kind == "setting":
                record["setting"] = key
            if table.group_kind == "target":  # cross-domain: the test set, and whether it is in-domain
                record |= {"test_set": key, "in_domain": key == group.dataset}
            if group.ablation:
                record |= {
                    "ablation": group.ablation,
                    "axis": group.axis,
                    "value": group.value,
                    "is_default": group.value == group.axis_default,
                }
            record |= {
                "backbone": group.backbone,
                "device": group.device,
                "epochs": " ".join(map(str, group.epochs)),
                "seeds": " ".join(map(str, group.seeds)),
            }
            for c in columns:
                cell = group.cells.get(c.key)
                ok = cell is not None and math.isfinite(cell.mean)
                record[f"{c.csv}_mean"] = cell.mean * c.scale if ok else math.nan
                record[f"{c.csv}_std"] = cell.std * c.scale if ok else math.nan
                record[f"{c.csv}_n"] = cell.n if ok else 0
                interval = ci95(cell, FRACTION if c.scale == 100 else None) if ok else None
                record[f"{c.csv}_ci95_low"] = interval[0] * c.scale if interval else math.nan
                record[f"{c.csv}_ci95_high"] = interval[1] * c.scale if interval else math.nan
            record |= {"source": group.source, "selection": group.selection, "note": group.note}
            records.append(record)
    return records
