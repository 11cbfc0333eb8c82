"""The report keeps apart what differs, as a user reads it after `reidbench report`: GraFT's official and
shared recipes are separate bars, panels and cost rows; two pruning studies with different --fraction are
separate, readably labelled rows (their shared round 0 says so); a --test-on run re-run without it keeps
the cross-domain table; the LaTeX has no raw < / > in text and captions clear the top rule; the results
figure's labels never overlap."""

from __future__ import annotations

import itertools
import re
import shutil
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

from reidbench import tracking
from reidbench.report import plots
from reidbench.report.latex import CAPTION_GAP
from reidbench.report.ticks import label_boxes
from tests.report_store import DEMO_PARAMS, demo_history, log_run
from tests.test_report_paper import cli_output

EXPERIMENT = "separate"
GRAFT = {"shared": (0.45, (0, 1, 2)), "official": (0.20, (0, 1))}  # recipe -> (mAP, seeds)
BASE = {0: 0.40, 1: 0.42}  # seed -> round-0 mAP of the pruning studies
FRACTIONS = {"0.3": 2, "0.5": 1}  # --fraction -> rounds run
SCHEDULE = "unstructured-l1"
FINETUNE = {"protocol.train.epochs": "1", "protocol.optim.lr": "0.0001"}


def _graft(uri: str, exp: str) -> None:
    """GraFT on both recipe tracks (three seeds shared, two official) and late_fusion beside them."""
    for recipe, (m_ap, seeds) in GRAFT.items():
        for seed in seeds:
            metrics = {"mAP": m_ap + 0.01 * seed, "rank1": m_ap + 0.1, "params": 9.6e5, "train_time_s": 60}
            terms = ["ce", "aug_triplet"] if recipe == "shared" else ["ce", "aug_triplet", "center"]
            log_run(uri, exp, "graft", "synthetic", seed, metrics, tags={"recipe": recipe},
                    params=DEMO_PARAMS, history=demo_history(terms, 4))  # fmt: skip
    for seed in (0, 1):
        metrics = {"mAP": 0.6 + 0.01 * seed, "rank1": 0.7, "params": 1.2e5, "train_time_s": 30}
        log_run(uri, exp, "late_fusion", "synthetic", seed, metrics, tags={"recipe": "shared"},
                params=DEMO_PARAMS)  # fmt: skip


def _prune(uri: str, exp: str) -> None:
    """`reidbench prune --fraction 0.3 --rounds 2` then `--fraction 0.5 --rounds 1`, two seeds, as the
    runs record them: round 0 is one base run per seed (both studies reuse it), each later round names the
    config hash of the round before it (param prune.source) and its fraction."""
    cost = {"params": 1.24e5, "gflops": 0.0235}
    for seed, m_ap in BASE.items():
        tags = {
            "recipe": "shared",
            "ablation": f"prune_{SCHEDULE}",
            "axis": "prune.round",
            "axis_default": "0",
        }
        metrics = {"mAP": m_ap, "rank1": 0.5, "nonzero_params": 1.24e5, "throughput": 160.0, **cost}
        log_run(uri, exp, "late_fusion", "synthetic", seed, metrics, tags={**tags, "value": "0"},
                params=DEMO_PARAMS)  # fmt: skip
        for fraction, rounds in FRACTIONS.items():
            source = f"base{seed}"
            for r in range(1, rounds + 1):
                step = {"prune.schedule": SCHEDULE, "prune.fraction": fraction, "prune.round": str(r),
                        "prune.source": source, **FINETUNE}  # fmt: skip
                kept = (1 - float(fraction)) ** r
                metrics = {"mAP": m_ap - 0.1 * float(fraction) * r, "rank1": 0.5,
                           "nonzero_params": 1.24e5 * kept, "throughput": 200.0, **cost}  # fmt: skip
                log_run(uri, exp, "late_fusion", "synthetic", seed, metrics,
                        tags={**tags, "value": str(r)}, params={**DEMO_PARAMS, **step})  # fmt: skip
                source = f"{fraction}-{r}-{seed}"


def _test_on_then_plain(uri: str, exp: str) -> None:
    """`reidbench run -m mmet --seeds 0 --test-on synthetic_shift`, then the same seed without --test-on
    (a later run: it supersedes the first and did not measure the target)."""
    crossed = {"mAP": 0.55, "rank1": 0.6, "mAP@to_synthetic_shift": 0.31, "rank1@to_synthetic_shift": 0.4}
    log_run(uri, exp, "mmet", "synthetic", 0, crossed, tags={"recipe": "shared"},
            params={**DEMO_PARAMS, "test_on.synthetic_shift": "['rgb', 'nir', 'tir']"})  # fmt: skip
    time.sleep(0.05)
    log_run(uri, exp, "mmet", "synthetic", 0, {"mAP": 0.56, "rank1": 0.61}, tags={"recipe": "shared"},
            params=DEMO_PARAMS)  # fmt: skip


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory) -> Path:
    """`reidbench report --format latex --format csv --format markdown` on the store above (figures on)."""
    directory = tmp_path_factory.mktemp("separate")
    uri = f"sqlite:///{directory / 'mlflow.db'}"
    exp = tracking.prepare(uri, EXPERIMENT)
    _graft(uri, exp)
    _prune(uri, exp)
    _test_on_then_plain(uri, exp)
    out = directory / "out"
    code, text = cli_output(
        "report", "--tracking-uri", uri, "--experiment", EXPERIMENT, "--reported", "none",
        "--format", "latex", "--format", "csv", "--format", "markdown", "--out", str(out),
    )  # fmt: skip
    assert code == 0, text
    return out


def _rows(path: Path, **where: str) -> pd.DataFrame:
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    for column, value in where.items():
        frame = frame[frame[column] == value]
    return frame


# --- recipes: bars, panels, cost rows ----------------------------------------------------------------------
def test_results_figure_has_a_bar_per_recipe_with_its_own_seeds(report_dir):
    bars = _rows(report_dir / "figures" / "results_synthetic.csv", metric="mAP").set_index("series")
    assert {"graft", "graft (official recipe)"} <= set(bars.index)
    for series, recipe in (("graft", "shared"), ("graft (official recipe)", "official")):
        m_ap, seeds = GRAFT[recipe]
        assert int(bars.loc[series, "n"]) == len(seeds)  # not one merged bar of 5 seeds
        assert float(bars.loc[series, "mean"]) == pytest.approx(100 * m_ap + sum(seeds) / len(seeds))
    assert bars.loc["graft (official recipe)", "std"] != ""  # two seeds: a real error bar


def test_training_curves_have_a_panel_per_recipe(report_dir):
    curves = _rows(report_dir / "figures" / "curves_synthetic.csv", term="total", epoch="1")
    n = dict(zip(curves["panel"], curves["n"].astype(int), strict=True))
    assert n["graft"] == 3 and n["graft (official recipe)"] == 2
    center = _rows(report_dir / "figures" / "curves_synthetic.csv", term="center")
    assert set(center["panel"]) == {"graft (official recipe)"}  # the official loss's term in its own panel


def test_cost_table_has_a_recipe_column(report_dir):
    cost = _rows(report_dir / "cost.csv", method="graft")
    assert sorted(cost["recipe"]) == ["official", "shared"] and len(cost) == 2
    assert sorted(cost["params_m_n"].astype(int)) == [2, 3]
    markdown = (report_dir / "cost.md").read_text()
    assert "| Method | Recipe |" in markdown and "| graft | official |" in markdown
    assert "| graft | shared |" in markdown


# --- pruning studies ----------------------------------------------------------------------------------------
def test_two_pruning_studies_are_separate_readable_rows(report_dir):
    table = _rows(report_dir / f"ablation_prune_{SCHEDULE}.csv")
    rounds = {
        (v, r): int(n) for v, r, n in zip(table["variant"], table["value"], table["mAP_n"], strict=True)
    }
    assert rounds == {
        ("unpruned, shared by pruned per round 0.3 / 0.5", "0"): 2,
        ("pruned per round 0.3", "1"): 2,
        ("pruned per round 0.3", "2"): 2,  # a round only one study reached keeps its study's name
        ("pruned per round 0.5", "1"): 2,  # not averaged with 0.3 as if they were seeds
    }
    markdown = (report_dir / f"ablation_prune_{SCHEDULE}.md").read_text()
    body = [line for line in markdown.splitlines() if line.startswith("| 0") or line.startswith("| 1")]
    assert body[0].startswith("| 0 (default) | late_fusion [unpruned, shared by pruned per round 0.3 / 0.5]")
    for path in report_dir.rglob("*"):
        if path.suffix in (".csv", ".md", ".tex"):
            assert "prune.source" not in path.read_text() and "base0" not in path.read_text(), path


def test_pruning_figures_name_each_study(report_dir):
    pareto = _rows(report_dir / "figures" / "pareto_synthetic.csv", cost="non-zero parameters (M)")
    assert set(pareto["series"]) == {
        "late_fusion [unpruned, shared by pruned per round 0.3 / 0.5]",
        "late_fusion [pruned per round 0.3]",
        "late_fusion [pruned per round 0.5]",
    }
    assert set(pareto["n"].astype(int)) == {2}


# --- --test-on then a plain rerun ---------------------------------------------------------------------------
def test_a_plain_rerun_after_test_on_keeps_the_cross_domain_table(report_dir):
    cross = _rows(report_dir / "crossdomain.csv", method="mmet").set_index("test_set")
    assert float(cross.loc["synthetic_shift", "mAP_mean"]) == pytest.approx(31.0)
    assert float(cross.loc["synthetic", "mAP_mean"]) == pytest.approx(56.0)  # the later run's own mAP
    assert (report_dir / "figures" / "crossdomain_mAP.csv").is_file()


# --- LaTeX --------------------------------------------------------------------------------------------------
def _text_mode(tex: str) -> str:
    """``tex`` without comments and inline math: what LaTeX sets in text mode."""
    lines = [line for line in tex.splitlines() if not line.lstrip().startswith("%")]
    return re.sub(r"\$[^$]*\$", "", "\n".join(lines))


def test_latex_has_no_raw_angle_brackets_in_text(report_dir):
    files = sorted(report_dir.glob("*.tex"))
    assert len(files) >= 5
    for path in files:
        text = _text_mode(path.read_text())
        assert "<" not in text and ">" not in text, (path.name, re.findall(r".{30}[<>].{10}", text))
    leaderboard = (report_dir / "leaderboard.tex").read_text()
    assert r"p $\geq$ 0.05" in leaderboard and r"n $\geq$ 2" in leaderboard


def test_table_captions_clear_the_top_rule(report_dir):
    for path in sorted(report_dir.glob("*.tex")):
        if path.stem == "report":
            continue
        tex = path.read_text()
        assert tex.index(CAPTION_GAP) < tex.index(r"\caption{") < tex.index(r"\toprule"), path.name
        assert re.search(r"\\setlength\{\\belowcaptionskip\}\{[1-9]\d*pt\}", tex), path.name


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not installed")
def test_the_pdf_prints_geq_not_an_inverted_question_mark(report_dir):
    done = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "report.tex"],
        cwd=report_dir,
        capture_output=True,
        text=True,
        errors="replace",
        timeout=180,
    )
    assert done.returncode == 0, done.stdout[-2000:]
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext not installed (poppler-utils)")
    text = subprocess.run(["pdftotext", "report.pdf", "-"], cwd=report_dir, capture_output=True, text=True)
    flat = " ".join(text.stdout.split())
    assert "¿" not in flat and "¡" not in flat and "p ≥ 0.05" in flat


# --- tick labels --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("count", [2, 9, 30])
def test_results_figure_tick_labels_never_overlap(count):
    words = "graft [pruned per round 0.3, optim.lr=0.0001] (official recipe)"
    rows = [
        {"method": f"m{i}", "label": f"m{i} {words[: 8 + 7 * (i % 8)]}".strip(), "dataset": "synthetic",
         "seed": s, "mAP": 0.5, "rank1": 0.6, "ablation": "", "run_id": f"r{i}-{s}"}
        for i in range(count)
        for s in (0, 1)
    ]  # fmt: skip
    [plot] = plots.results_figures(pd.DataFrame(rows), ["mAP", "rank1"])
    ax = plot.figure.axes[0]
    boxes = label_boxes(plot.figure, ax)
    assert len(boxes) == count
    overlapping = [(a, b) for a, b in itertools.combinations(boxes, 2) if a.overlaps(b)]
    assert not overlapping, (
        f"{len(overlapping)} overlapping label pairs, figure {plot.figure.get_size_inches()}"
    )
    axes_box = ax.get_window_extent()
    assert all(axes_box.x0 - 1 <= b.x0 + b.width / 2 <= axes_box.x1 + 1 for b in boxes)  # under the bars
    shown = [t.get_text().replace("\n", " ") for t in ax.get_xticklabels()]
    assert sorted(shown) == sorted({r["label"] for r in rows})  # wrapped, never cut


def test_categorical_ablation_tick_labels_never_overlap():
    values = [f"ce+triplet+center variant {i} with a long name" for i in range(12)]
    rows = [
        {"method": "graft", "label": "graft", "dataset": d, "seed": s, "ablation": "loss",
         "axis": "loss.variant", "value": v, "axis_default": values[0], "mAP": 0.5,
         "run_id": f"{d}{v}{s}", "variant": ""}
        for d in ("synthetic", "rgbnt100")
        for v in values
        for s in (0, 1)
    ]  # fmt: skip
    [plot] = plots.ablation_figures(pd.DataFrame(rows), ["mAP"])
    for ax in plot.figure.axes:
        boxes = label_boxes(plot.figure, ax)
        assert len(boxes) == len(values)
        assert not [(a, b) for a, b in itertools.combinations(boxes, 2) if a.overlaps(b)]
    first = plot.figure.axes[0].get_xticklabels()[0].get_text()
    assert first.endswith("\n(default)")  # the default's mark stays on its own line
