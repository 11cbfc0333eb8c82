"""reidbench report: aggregates over seeds, best / second marks, reported rows, LaTeX / Markdown / CSV
output."""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import cli
from reidbench import tracking
from reidbench.errors import UserError
from reidbench.report import load_report, make_report, parse_metrics, write_report
from reidbench.report.collect import Group, tidy_runs
from reidbench.report.formatting import Cell, mean_std, setting_name
from reidbench.report.latex import latex_table
from reidbench.report.published import default_path, load_published
from reidbench.report.text import csv_records, markdown_table
from tests.report_store import EXPERIMENT, GRAFT, LATE_FUSION, PUBLISHED, log_run, make_store


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> tuple[str, Path]:
    directory = tmp_path_factory.mktemp("report")
    published = directory / "published.csv"
    published.write_text(PUBLISHED)
    return make_store(directory), published


@pytest.fixture(scope="module")
def report(store):
    uri, published = store
    return load_report(uri, EXPERIMENT, ["mAP", "rank1"], published, "matching")


@pytest.fixture(scope="module")
def written(report, tmp_path_factory) -> tuple[Path, list[Path]]:
    """The whole report (every file format and the figures), written once."""
    out = tmp_path_factory.mktemp("out")
    return out, write_report(report, out, ["latex", "markdown", "csv"], ["mAP"], plots=True)


def table(report, name):
    return next(t for t in report.tables if t.name == name)


def row(tab, label):
    return next(r for r in tab.rows if r.label == label)


def column(tab, key, dataset="synthetic"):
    return next(c for c in tab.columns if c.key == key and c.dataset in (dataset, None))


# --- aggregation --------------------------------------------------------------------------------------------
def test_leaderboard_is_mean_sample_std_and_n_over_seeds(report):
    lb = table(report, "leaderboard")
    late = row(lb, "late_fusion")
    for key in ("mAP", "rank1"):
        values = [m[key] for m in LATE_FUSION.values()]
        cell = late.cell(column(lb, key))
        assert cell.mean == pytest.approx(np.mean(values))
        assert cell.std == pytest.approx(np.std(values, ddof=1))  # sample std, not population
        assert cell.n == 3
    assert late.cell(column(lb, "rank1")).std == pytest.approx(math.sqrt(7) / 100)
    graft = row(lb, "graft").cell(column(lb, "mAP"))
    assert (graft.mean, graft.n) == (pytest.approx(0.72), 2)
    assert graft.std == pytest.approx(np.std([m["mAP"] for m in GRAFT.values()], ddof=1))
    mmet = row(lb, "mmet").cell(column(lb, "mAP"))
    assert mmet.n == 1 and math.isnan(mmet.std)
    assert row(lb, "mmet").text["Seeds"] == "1" and row(lb, "late_fusion").text["Seeds"] == "3"


def test_failed_parent_and_superseded_runs_are_not_averaged(report):
    runs = report.runset.runs
    assert report.runset.superseded == 1  # the earlier late_fusion seed-1 run (mAP 0.10)
    main = runs[runs["ablation"] == ""]
    assert sorted(main["mAP"].round(2)) == [0.5, 0.6, 0.62, 0.64, 0.7, 0.74]  # no 0.10, 0.98, 0.99


def test_best_is_bold_and_second_underlined_across_ours_and_reported(report):
    lb = table(report, "leaderboard")
    marks = lb.marks()
    labels = [r.label for r in lb.rows]

    def marked(key):
        j = lb.columns.index(column(lb, key))
        return {labels[i]: m for (i, jj), m in marks.items() if jj == j}

    # mAP: reported graft 80.0 > our graft 72.0 > late_fusion 62.0 > mmet 50.0
    assert marked("mAP") == {"graft†": 1, "graft": 2}
    # Rank-1: mmet 80.0 > late_fusion 72.0 > graft 67.0 > reported graft 60.0
    assert marked("rank1") == {"mmet": 1, "late_fusion": 2}


def test_rank_marks_tie_on_the_shown_precision():
    frame = pd.DataFrame(
        {
            "run_id": ["a", "b", "c"],
            "tags.method": ["x", "y", "z"],
            "tags.dataset": ["d"] * 3,
            "tags.seed": ["0"] * 3,
            "metrics.mAP": [0.50001, 0.49999, 0.4],
        }
    )
    lb = table(make_report(frame, ["mAP"], []), "leaderboard")
    marks = {lb.rows[i].label: m for (i, _), m in lb.marks().items()}
    assert marks == {"x": 1, "y": 1, "z": 2}


def test_reported_rows_form_their_own_block_for_matching_datasets(store, report):
    lb = table(report, "leaderboard")
    reported = [r for r in lb.rows if r.reported]
    assert [r.label for r in reported] == ["graft†"]  # TOP-ReID is on rgbnt100: no runs of ours there
    assert lb.rows[-1].reported and not lb.rows[0].reported
    assert reported[0].text == {"Recipe": "", "Backbone": "DeiT-B", "Seeds": "1"}
    assert "best-epoch-on-test" in lb.caption and "last epoch" in lb.caption
    uri, published = store
    everything = load_report(uri, EXPERIMENT, ["mAP"], published, "all", with_histories=False)
    assert "TOP-ReID†" in [r.label for r in table(everything, "leaderboard").rows]
    nothing = load_report(uri, EXPERIMENT, ["mAP"], published, "none", with_histories=False)
    assert not any(r.reported for r in table(nothing, "leaderboard").rows)


def test_cost_table(report):
    cost = table(report, "cost")
    late = row(cost, "late_fusion")
    ips = late.cell(column(cost, "train_images_per_s"))
    assert (ips.mean, ips.std, ips.n) == (pytest.approx(310), pytest.approx(10), 3)
    assert late.cell(column(cost, "train_time_s")).mean == pytest.approx(66)
    assert row(cost, "graft†").cell(column(cost, "params")).mean == pytest.approx(101e6)
    md = markdown_table(cost)
    assert "| late_fusion | cpu | 3 | 2.50 | 310 | 1.10 |" in md  # one dataset: named in the caption
    assert "Dataset: Synthetic." in cost.caption and "(minutes)" in cost.caption


def test_missing_modality_and_cross_modal_tables(report):
    missing = table(report, "missing_synthetic")
    assert [(c.header, c.label) for c in missing.columns] == [("", "All"), ("w/o", "TIR"), ("w/o", "RGB+NIR")]
    assert "mAP in % per test-time setting" in missing.caption
    assert [r.label for r in missing.rows] == ["late_fusion", "DeMo†"]  # only rows with such metrics
    cell = row(missing, "late_fusion").cell(column(missing, "mAP@no_tir"))
    assert cell.mean == pytest.approx(np.mean([0.5, 0.52, 0.57]))
    assert row(missing, "DeMo†").cell(column(missing, "mAP@no_tir")).mean == pytest.approx(0.40)
    cross = table(report, "cross_synthetic")
    assert [c.label for c in cross.columns][-1] == "RGB→NIR+TIR"
    assert row(cross, "late_fusion").cell(column(cross, "mAP@rgb->nir+tir")).std == pytest.approx(0.05)
    md = markdown_table(missing)
    assert "| Method | Convention | Backbone | Seeds | All | w/o TIR | w/o RGB+NIR |" in md
    assert "| late_fusion | zero |" in md and "| DeMo† | as published |" in md
    assert "zero: input zero-filled after normalisation" in missing.caption  # every convention defined


def test_settings_under_another_convention_are_named():
    from reidbench.report.formatting import setting_name, setting_order

    assert setting_name("no_tir:zero") == "w/o TIR (zero)" and setting_name("no_rgb_nir") == "w/o RGB+NIR"
    names = sorted(["no_tir:zero", "no_rgb", "no_tir", "no_rgb:zero"], key=setting_order)
    assert names == ["no_rgb", "no_tir", "no_rgb:zero", "no_tir:zero"]  # the row's own first


def test_ablation_tables(report):
    tokens = table(report, "ablation_fusion_tokens")
    assert [r.label for r in tokens.rows] == ["1", "4 (default)", "16"]
    assert tokens.row_header == "fusion tokens (count)"
    assert {c.dataset for c in tokens.columns} == {"synthetic", "rgbnt100"}
    cell = row(tokens, "16").cell(column(tokens, "mAP"))
    assert cell.mean == pytest.approx(0.5 + 0.02 * 4 + 0.005) and cell.n == 2
    loss = table(report, "ablation_loss")
    assert [r.label for r in loss.rows] == ["ce", "ce+triplet (default)", "ce+triplet+center"]
    assert "fusion_tokens" not in [g.ablation for g in report.groups if g.method == "late_fusion"]
    assert not any(r.label in ("1", "16") for r in table(report, "leaderboard").rows)


# --- variants, formatting, published.csv --------------------------------------------------------------------
def test_runs_differing_in_config_are_variants_not_averaged():
    frame = pd.DataFrame(
        {
            "run_id": list("abcd"),
            "start_time": pd.to_datetime([1, 2, 3, 4], unit="s"),
            "tags.method": ["m"] * 4,
            "tags.dataset": ["d"] * 4,
            "tags.seed": ["0", "1", "0", "0"],
            "params.seed": ["0", "1", "0", "0"],
            "params.protocol.train.epochs": ["12", "12", "1", "12"],
            "metrics.mAP": [0.5, 0.6, 0.1, 0.7],
        }
    )
    runset = tidy_runs(frame)
    assert runset.superseded == 1  # run d replaces run a (same seed, same config)
    assert sorted(runset.runs["label"]) == [
        "m [train.epochs=12]",
        "m [train.epochs=12]",
        "m [train.epochs=1]",
    ]
    lb = table(make_report(frame, ["mAP"], []), "leaderboard")
    assert row(lb, "m [train.epochs=12]").cell(column(lb, "mAP", "d")).mean == pytest.approx(0.65)
    assert "1–12 epochs" in lb.caption


def test_epochs_are_resolved_from_each_runs_own_stage_params():
    stages = str(
        [{"name": "a", "epochs": 2, "epoch_share": None}, {"name": "b", "epochs": None, "epoch_share": 0.5}]
    )
    frame = pd.DataFrame(
        {
            "run_id": list("abcd"),
            "tags.method": list("wxyz"),
            "tags.dataset": ["d"] * 4,
            "tags.seed": ["0"] * 4,
            "params.protocol.train.epochs": ["6", "10", "10", None],
            "params.protocol.train.stages": ["[]", stages, "[{'bogus': 1}]", "[]"],
            "metrics.mAP": [0.5] * 4,
        }
    )
    assert tidy_runs(frame).runs["epochs"].tolist() == [6, 2 + 5, 0, 0]  # unreadable or unset: unknown


def test_cell_and_formatting():
    assert Cell.of([0.6, 0.62, 0.64]).std == pytest.approx(0.02)
    assert math.isnan(Cell.of([0.5]).std) and Cell.of([float("nan"), 0.5]).n == 1
    assert mean_std(Cell.of([0.6, 0.62, 0.64])) == "62.0 ± 2.0"
    assert mean_std(Cell.of([0.5])) == "50.0"
    assert setting_name("no_rgb_nir") == "w/o RGB+NIR" and setting_name("rgb->nir+tir") == "RGB→NIR+TIR"
    assert parse_metrics(("mAP,R1", "mINP")) == ["mAP", "rank1", "mINP"] and parse_metrics(()) == [
        "mAP",
        "rank1",
    ]
    with pytest.raises(UserError, match="unknown metric"):
        parse_metrics(("top1",))


def test_metric_names_round_trip_through_mlflow_keys():
    names = [
        "mAP",
        "train_loss",
        "mAP@no_rgb_nir",
        "rank1@rgb->nir+tir",
        "mAP@rgb+nir->tir",
        "mAP@to_rgbn300",
    ]
    names += ["mAP@no_tir@to_rgbn300", "mINP@rgb->nir+tir@to_synthetic_shift"]  # settings on a target
    for name in names:
        key = tracking.mlflow_key(name)
        assert not set(key) & set("@>+")
        assert tracking.metric_name(key) == name


def test_repository_published_csv():
    groups = load_published(default_path())
    by = {(g.method, g.dataset, g.backbone): g for g in groups}
    graft = by[("graft", "rgbnt100", "DeiT-B")]
    assert graft.cells["mAP"].mean == pytest.approx(0.766) and graft.cells["rank1"].mean == pytest.approx(
        0.943
    )
    assert graft.cells["params"].mean == pytest.approx(101e6)
    assert by[("multi_stream_vit", "rgbn300", "DeiT-B")].cells["mAP"].mean == pytest.approx(0.737)
    unicat = by[("UniCat", "rgbnt201", "ViT-B/16")]
    assert unicat.cells["mAP"].std == pytest.approx(0.02) and unicat.cells["mAP"].n == 4
    assert by[("TOP-ReID", "rgbnt201", "ViT-B/16")].cells["mAP@no_rgb_tir"].mean == pytest.approx(0.262)
    assert {g.dataset for g in groups} >= {"rgbnt201", "rgbnt100", "msvr310", "rgbn300"}
    for g in groups:
        assert g.source and set(g.selection.split("; ")) <= {"best-epoch-on-test", "unknown"}
        assert all(0 < c.mean <= 1 for k, c in g.cells.items() if k != "params")


def test_bad_published_value_names_file_and_line(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text(PUBLISHED.replace("80.0", "eighty"))
    with pytest.raises(UserError, match=r"p\.csv:3: column mAP is 'eighty'"):
        load_published(path)


# --- output formats -----------------------------------------------------------------------------------------
def test_latex_table(report):
    tex = latex_table(table(report, "leaderboard"))
    for needle in [
        r"\toprule",
        r"\midrule",
        r"\bottomrule",
        r"\multicolumn{2}{c}{Synthetic}",
        r"\cmidrule(lr){4-5}",
        r"\textbf{80.0}",
        r"\underline{72.0}\,{\scriptsize$\pm$2.8}",
        r"62.0\,{\scriptsize$\pm$2.0}",
        r"late\_fusion",
        r"graft\textsuperscript{\dag}",
        r"\textit{Reported in papers}",
        r"mean $\pm$ sample std over n = 1--3 seeds",
        "last epoch",
        r"\label{tab:reidbench-leaderboard}",
    ]:
        assert needle in tex, needle


def test_markdown_and_csv(report, written):
    out, files = written
    md = markdown_table(table(report, "leaderboard"))
    assert "| Method | Backbone | Seeds | Synthetic mAP | Synthetic R1 |" in md
    assert "| graft | vit_tiny | 2 | <u>72.0</u> ± 2.8 [46.6, 97.4] | 67.0 ± 1.4 [54.3, 79.7] |" in md
    assert "Backbone: vit_tiny (from scratch)." in table(report, "leaderboard").caption
    assert "| graft† | DeiT-B | 1 | **80.0** | 60.0 |" in md
    assert (out / "leaderboard.md").read_text().startswith("**Leaderboard**")
    assert (
        "![curves_synthetic](figures/curves_synthetic.png)\n\n*Training curves on Synthetic"
        in (out / "report.md").read_text()
    )
    assert out / "runs.csv" in files and len(pd.read_csv(out / "runs.csv")) == 6 + 12 + 6
    csv = pd.read_csv(out / "leaderboard.csv").set_index(["block", "method"])
    late = csv.loc[("ours", "late_fusion")]
    assert (late["mAP_mean"], late["mAP_std"], late["mAP_n"]) == (pytest.approx(62.0), pytest.approx(2.0), 3)
    assert late["seeds"] == "0 1 2" and late["epochs"] == 12 and late["selection"] == "last-epoch"
    assert csv.loc[("reported", "graft"), "source"] == "Paper A Table 1"
    assert len(csv_records(table(report, "missing_synthetic"))) == 2 * 3  # 2 rows x (All + 2 settings)
    missing = pd.read_csv(out / "missing_synthetic.csv")
    assert set(missing["setting"]) == {"all", "no_tir", "no_rgb_nir"}
    ablation = pd.read_csv(out / "ablation_fusion_tokens.csv")
    assert ablation["is_default"].sum() == 2 and set(ablation["value"]) == {1, 4, 16}


def test_figures_are_written(written):
    out, files = written
    stems = {p.stem for p in files if p.parent.name == "figures"}
    assert stems == {
        "results_synthetic",
        "ablation_fusion_tokens_mAP",
        "ablation_loss_mAP",
        "curves_synthetic",
        "curves_loss_synthetic",
    }
    for stem in stems:
        for suffix, magic in ((".png", b"\x89PNG"), (".pdf", b"%PDF")):
            data = (out / "figures" / f"{stem}{suffix}").read_bytes()
            assert data.startswith(magic) and len(data) > 5000


def test_latex_compiles_with_pdflatex(written):
    if shutil.which("pdflatex") is None:
        pytest.skip("pdflatex not installed (CI installs texlive-latex-base + texlive-latex-recommended)")
    out, _ = written
    (out / "small.tex").write_text(
        "\\documentclass{article}\n\\usepackage{booktabs}\n\\begin{document}\n"
        "\\input{leaderboard}\n\\input{missing_synthetic}\n\\end{document}\n"
    )
    for doc in ("small", "report"):  # report.tex: every table and figure
        result = subprocess.run(
            ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", f"{doc}.tex"],
            cwd=out,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stdout[-3000:]
        assert (out / f"{doc}.pdf").stat().st_size > 1000


# --- command line -------------------------------------------------------------------------------------------
def run_cli(monkeypatch, capsys, *args):
    monkeypatch.setattr(sys, "argv", ["reidbench", *args])
    try:
        cli.main()
        code = 0
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, " ".join((out.out + out.err).split())  # the console wraps long lines


def test_report_cli_terminal_and_files(store, tmp_path, monkeypatch, capsys):
    uri, published = store
    code, out = run_cli(
        monkeypatch,
        capsys,
        "report",
        "--tracking-uri",
        uri,
        "--experiment",
        EXPERIMENT,
        "--published",
        str(published),
        "--format",
        "terminal",
        "--format",
        "markdown",
        "--out",
        str(tmp_path),
        "--metric",
        "mAP",
        "--no-plots",
    )
    assert code == 0, out
    assert "Leaderboard" in out and "62.0 ± 2.0" in out and "graft†" in out and "superseded" in out
    assert (tmp_path / "leaderboard.md").is_file() and not (tmp_path / "figures").exists()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--experiment", "nope"], "no experiment 'nope'"),
        (["--metric", "top1"], "unknown metric"),
        (["--published", "/nonexistent/p.csv"], "'/nonexistent/p.csv' does not exist"),
    ],
)
def test_report_cli_user_mistakes(store, monkeypatch, capsys, args, expected):
    uri, _ = store
    code, out = run_cli(
        monkeypatch, capsys, "report", "--tracking-uri", uri, "--experiment", EXPERIMENT, *args
    )
    assert code == 2 and expected in out and "Traceback" not in out


def test_report_cli_without_finished_runs(store, tmp_path, monkeypatch, capsys):
    code, out = run_cli(monkeypatch, capsys, "report", "--tracking-uri", f"sqlite:///{tmp_path / 'none.db'}")
    assert code == 2 and "no MLflow store" in out and not (tmp_path / "none.db").exists()
    uri, _ = store
    log_run(
        uri,
        tracking.prepare(uri, "failed_only"),
        "late_fusion",
        "synthetic",
        0,
        {"mAP": 0.5},
        status="FAILED",
    )
    code, out = run_cli(monkeypatch, capsys, "report", "--tracking-uri", uri, "--experiment", "failed_only")
    assert code == 2 and "no FINISHED training runs" in out and "1 FAILED" in out


# --- significance marks ---------------------------------------------------------------------------------
def test_stats_match_scipy_on_the_raw_seed_values():
    from scipy import stats

    from reidbench.report.stats import ci95, welch_p

    a, b = [0.70, 0.72, 0.71, 0.69], [0.66, 0.69, 0.64]
    ca, cb = Cell.of(a), Cell.of(b)
    assert abs(welch_p(ca, cb) - stats.ttest_ind(a, b, equal_var=False).pvalue) < 1e-12
    lo, hi = ci95(ca)
    half = stats.t.ppf(0.975, 3) * np.std(a, ddof=1) / 2  # sqrt(4) = 2
    assert abs(lo - (np.mean(a) - half)) < 1e-12 and abs(hi - (np.mean(a) + half)) < 1e-12
    assert welch_p(Cell.of([0.7]), cb) is None and ci95(Cell.of([0.7])) is None
    near_one = Cell.of([0.78, 0.93, 0.85])  # R1 of three seeds near the top: the raw interval passes 1
    assert ci95(near_one)[1] > 1 and ci95(near_one, (0.0, 1.0)) == (ci95(near_one)[0], 1.0)


def test_bold_is_shared_within_noise_and_kept_for_a_clear_winner():
    """Rows A and B within noise of each other (seeds overlap), C clearly below: A and B share bold, C gets
    the underline. With C far above the others, C alone is bold."""
    from reidbench.report.tables import Column, Row, Table

    def row(name, values):
        return Row(name, False, {"synthetic": Group(name, "synthetic", {"mAP": Cell.of(values)})})

    column = Column("mAP", "synthetic", "Synthetic", "synthetic", "mAP", "mAP")
    noisy = Table(
        "t",
        "t",
        "",
        "Method",
        [],
        [column],
        [row("A", [0.70, 0.74, 0.66]), row("B", [0.69, 0.73, 0.67]), row("C", [0.50, 0.51, 0.49])],
    )
    assert noisy.marks() == {(0, 0): 1, (1, 0): 1, (2, 0): 2} and noisy.tested()
    clear = Table(
        "t",
        "t",
        "",
        "Method",
        [],
        [column],
        [row("A", [0.70, 0.71, 0.69]), row("B", [0.69, 0.70, 0.68]), row("C", [0.90, 0.91, 0.89])],
    )
    assert clear.marks() == {(2, 0): 1, (0, 0): 2}
    single = Table("t", "t", "", "Method", [], [column], [row("A", [0.70]), row("B", [0.69])])
    assert single.marks() == {(0, 0): 1, (1, 0): 2} and not single.tested()  # n = 1: by the means alone
