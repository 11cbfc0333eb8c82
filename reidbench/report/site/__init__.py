"""The results as a static website and a machine-readable export.

runs.py      the runs behind a group: raw records, MLflow links, resolved config, page names
boards.py    one leaderboard per dataset (the report's leaderboard table, cells as HTML)
pages.py     a page per (method, dataset, recipe): seeds, cost, config, settings, curves
svg.py       training curves as inline SVG
figures.py   the report's figures with the CSV of their numbers
export.py    results.json (schema in the README)
render.py    jinja2 templates -> files; the same pages back ``serve``'s /results
"""

from reidbench.report.site.render import SiteLinks, render_site, write_json, write_site

__all__ = ["SiteLinks", "render_site", "write_json", "write_site"]
