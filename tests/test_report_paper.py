"""reidbench report output that drops into a paper, on a store shaped like `make demo`'s: every table fits a
two-column page, report.tex compiles to a PDF whose figures have captions naming metric and dataset, runs
on partial data stay out unless asked for, and captions read the runs' own settings."""

from __future__ import annotations

import contextlib
import io
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import cli
from reidbench import tracking
from reidbench.errors import UserError
from reidbench.report import load_report
from reidbench.report import pdf as pdf_module
from reidbench.report.formatting import PARTIAL_MARK, PARTIAL_NOTE
from reidbench.report.latex import latex_table, table_width
from reidbench.report.pdf import overfull_boxes
from tests.report_store import DEMO_EXPERIMENT, log_run, make_demo_store
from tests.test_report import run_cli

needs_pdflatex = pytest.mark.skipif(
    shutil.which("pdflatex") is None,
    reason="pdflatex not installed (CI installs texlive-latex-base + texlive-latex-recommended)",
)
FIGURE = re.compile(r"\\includegraphics\[[^]]*\]\{([^}]*)\}\\caption\{(.*?)\}\\label")


@pytest.fixture(scope="module")
def demo_uri(tmp_path_factory) -> str:
    return make_demo_store(tmp_path_factory.mktemp("demo"))


def cli_output(*args: str) -> tuple[int, str]:
    """Run the CLI outside a test function (module fixtures have no capsys): exit code, output."""
    buffer, argv = io.StringIO(), sys.argv
    sys.argv = ["reidbench", *args]
    try:
        with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
            cli.main()
        code = 0
    except SystemExit as exc:
        code = exc.code
    finally:
        sys.argv = argv
    return code, " ".join(buffer.getvalue().split())


@pytest.fixture(scope="module")
def paper(demo_uri, tmp_path_factory) -> tuple[Path, str]:
    """`reidbench report --format all` on the demo-shaped store: the output folder and the CLI's output."""
    out = tmp_path_factory.mktemp("paper")
    code, text = cli_output(
        "report",
        *("--tracking-uri", demo_uri, "--experiment", DEMO_EXPERIMENT),
        *("--format", "all", "--out", str(out), "--reported", "none"),
    )
    assert code == 0, text
    return out, text


def compile_tex(folder: Path, name: str, body: str) -> str:
    """Compile ``body`` as ``name``.tex in a standard two-column article; the log."""
    (folder / f"{name}.tex").write_text(
        "\\documentclass[twocolumn]{article}\n\\usepackage{booktabs}\n\\usepackage{graphicx}\n"
        f"\\begin{{document}}\n{body}\n\\end{{document}}\n"
    )
    result = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", f"{name}.tex"],
        cwd=folder,
        capture_output=True,
        text=True,
        errors="replace",
        timeout=120,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    return (folder / f"{name}.log").read_text(errors="replace")


def tabular_widths(folder: Path, names: list[str]) -> dict[str, float]:
    """Each table file's tabular as LaTeX sets it: natural width in pt."""
    boxes = []
    for name in names:
        text = (folder / f"{name}.tex").read_text()
        tabular = re.search(r"\\begin\{tabular\}.*\\end\{tabular\}", text, re.S).group(0)
        boxes.append(f"\\sbox0{{{tabular}}}\\typeout{{WIDTH {name} \\the\\wd0}}")
    log = compile_tex(folder, "_widths", "\\setlength{\\tabcolsep}{4pt}\n" + "\n".join(boxes))
    return {name: float(pt) for name, pt in re.findall(r"^WIDTH (\S+) ([\d.]+)pt", log, re.MULTILINE)}


# --- Task A: a paper's page ---------------------------------------------------------------------------------
@needs_pdflatex
def test_report_and_every_table_alone_fit_a_two_column_page(paper, demo_uri):
    out, text = paper
    demo = (demo_uri, DEMO_EXPERIMENT, ["mAP", "rank1"], None, "none")
    assert "compiled" in text and "overfull" not in text
    assert overfull_boxes((out / "report.log").read_text(errors="replace")) == []
    tables = sorted(p.stem for p in out.glob("*.tex") if p.stem != "report" and not p.stem.startswith("_"))
    assert set(tables) == {
        "leaderboard",
        "cost",
        "missing_synthetic",
        "cross_synthetic",
        "ablation_fusion_tokens",
    }
    for name in tables:
        log = compile_tex(out, f"_alone_{name}", f"\\input{{{name}}}")
        assert overfull_boxes(log) == [], name
    estimates = {t.name: table_width(t) for t in load_report(*demo, with_histories=False).tables}
    widths = tabular_widths(out, tables)
    assert set(widths) == set(tables)
    for name, actual in widths.items():  # the float is chosen on the estimate
        assert actual <= estimates[name] <= 1.1 * actual, (name, actual, estimates[name])
    leaderboard = (out / "leaderboard.tex").read_text()
    assert "\\begin{table}[t]" in leaderboard  # one column: the five methods' mAP and R1 fit it
    assert "\\begin{table*}[t]" in (out / "missing_synthetic.tex").read_text()  # seven settings do not


@needs_pdflatex
def test_pdf_renders_with_captioned_figures_after_the_heading(paper, tmp_path):
    out, _ = paper
    tex = (out / "report.tex").read_text()
    figures = FIGURE.findall(tex)
    stems = {Path(path).stem for path, _ in figures}
    assert stems == {"results_synthetic", "ablation_fusion_tokens_mAP", "ablation_fusion_tokens_rank1"} | {
        "curves_synthetic",
        "curves_fusion_tokens_synthetic",
    }
    for path, caption in figures:
        assert (out / path).is_file() and (out / path).with_suffix(".png").is_file(), path
        assert "Synthetic" in caption, caption
        metric = "loss" if Path(path).stem.startswith("curves") else "Rank-1" if "rank1" in path else "mAP"
        assert metric in caption and "seeds" in caption, caption
    if shutil.which("pdftoppm") is None:
        pytest.skip("pdftoppm not installed (poppler-utils)")
    subprocess.run(
        ["pdftoppm", "-png", "-r", "40", str(out / "report.pdf"), str(tmp_path / "page")], check=True
    )
    pages = sorted(tmp_path.glob("page-*.png"))
    assert len(pages) >= 2 and all(p.read_bytes().startswith(b"\x89PNG") for p in pages)
    if shutil.which("pdftotext") is None:
        return
    text = subprocess.run(["pdftotext", str(out / "report.pdf"), "-"], capture_output=True, text=True).stdout
    flat = " ".join(text.split())
    assert flat.index("reidbench report") < flat.index("Table 1:")  # the heading before the floats
    assert len(re.findall(r"Figure \d+:", flat)) == len(figures)
    for needle in ("Results on Synthetic", "Training curves on Synthetic", "Ablation fusion"):
        assert needle in flat, needle


# --- Task B: a report that never misleads -------------------------------------------------------------------
def test_runs_on_partial_data_are_left_out_unless_asked_for_then_marked(demo_uri):
    default = load_report(demo_uri, DEMO_EXPERIMENT, ["mAP"], None, "matching", with_histories=False)
    assert default.runset.partial_left_out == 1
    assert "rgbnt201" not in {g.dataset for g in default.groups}
    assert not any(PARTIAL_MARK in r.label or r.reported for t in default.tables for r in t.rows)
    shown = load_report(
        demo_uri, DEMO_EXPERIMENT, ["mAP"], None, "matching", with_histories=False, include_partial=True
    )
    board = next(t for t in shown.tables if t.name == "leaderboard")
    partial = next(i for i, r in enumerate(board.rows) if r.label == f"late_fusion{PARTIAL_MARK}")
    assert PARTIAL_NOTE in board.caption and "RGBNT201" in board.caption
    assert not any(i == partial for i, _ in board.marks())  # 38.3 on 30 samples is never "best"
    assert any(r.reported for r in board.rows)  # the published RGBNT201 rows it would have stood beside
    assert r"late\_fusion\textsuperscript{\ddag}" in latex_table(board)


def test_only_partial_runs_is_a_user_error(tmp_path):
    uri = f"sqlite:///{tmp_path / 'p.db'}"
    exp = tracking.prepare(uri, "p")
    log_run(uri, exp, "late_fusion", "rgbnt201", 0, {"mAP": 0.383}, tags={"partial_data": "true"})
    with pytest.raises(UserError, match=r"all 1 finished run\(s\) are on partial data.*--include-partial"):
        load_report(uri, "p", ["mAP"], None, "none", with_histories=False)
    assert load_report(uri, "p", ["mAP"], None, "none", with_histories=False, include_partial=True).groups


def test_captions_read_the_epochs_the_runs_record(demo_uri):
    report = load_report(demo_uri, DEMO_EXPERIMENT, ["mAP"], None, "none", with_histories=False)
    by_name = {t.name: t for t in report.tables}
    # The ablation ran with --set train.epochs=6 (the protocol YAML says 12); GraFT's two stages are 0.4
    # and 0.6 of it, 2 + 4 epochs, not 6 + 6.
    ablation = by_name["ablation_fusion_tokens"].caption
    assert "(Synthetic 6 epochs)" in ablation and "12" not in ablation
    assert "(Synthetic 12 epochs)" in by_name["leaderboard"].caption  # graft: 5 + 7 of 12
    assert "Recipe: demo-tiny." in by_name["leaderboard"].caption
    assert (
        "Dataset: Synthetic. Recipe: demo-tiny. Device: cpu. Seeds: 3." in by_name["cost"].caption
    )  # constant
    backbone = (
        "Backbone: ViT-Ti/16 = vit_tiny_patch16_224 (patch 8, width 64, depth 2, heads 2, from scratch)."
    )
    assert backbone in by_name["leaderboard"].caption


def test_format_pdf_without_pdflatex_says_so(demo_uri, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(pdf_module, "pdflatex_available", lambda: False)
    base = ["report", "--tracking-uri", demo_uri, "--experiment", DEMO_EXPERIMENT, "--no-plots"]
    code, out = run_cli(monkeypatch, capsys, *base, "--format", "pdf", "--out", str(tmp_path / "a"))
    assert code == 2 and "--format pdf: pdflatex is not on the PATH" in out
    code, out = run_cli(monkeypatch, capsys, *base, "--format", "all", "--out", str(tmp_path / "b"))
    assert code == 0 and "pdflatex is not on the PATH" in out and "not report.pdf" in out
    assert (tmp_path / "b" / "report.tex").is_file() and not (tmp_path / "b" / "report.pdf").exists()
    assert "1 run(s) on partial data" in out
