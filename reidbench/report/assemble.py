"""Every table of a report, in order: the tables of :mod:`reidbench.report.tables`, then the cross-domain
table (:mod:`reidbench.report.crossdomain`, which builds on them)."""

from __future__ import annotations

from reidbench.report.collect import Group
from reidbench.report.crossdomain import crossdomain_table
from reidbench.report.tables import Table, ablation_table, cost_table, leaderboard, settings_table


def build_tables(ours: list[Group], reported: list[Group], metrics: list[str]) -> list[Table]:
    """Every table the groups support: leaderboard, cost, per-dataset missing / cross-modal, ablations."""
    main = [g for g in ours if not g.ablation]
    tables = []
    if main:
        tables += [leaderboard(main, reported, metrics), cost_table(main, reported)]
        for dataset in dict.fromkeys(g.dataset for g in main):
            for cross in (False, True):
                table = settings_table(dataset, main, reported, metrics, cross)
                if table is not None:
                    tables.append(table)
    for name in dict.fromkeys(g.ablation for g in ours if g.ablation):
        tables.append(ablation_table(name, ours, metrics))
    cross = crossdomain_table(ours, metrics)
    return tables + ([cross] if cross is not None else [])
