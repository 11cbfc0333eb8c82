"""End to end: train two TINY runs through the CLI, then `reidbench report --format all` on them."""

import pandas as pd
import pytest

from tests.conftest import TINY
from tests.test_report import run_cli

pytestmark = pytest.mark.slow  # trains models or starts processes: `make test-fast` skips it


def test_run_then_report(monkeypatch, capsys, mlflow_uri, tmp_path):
    overrides = [a for o in TINY for a in ("--set", o)]
    code, out = run_cli(
        monkeypatch,
        capsys,
        "run",
        "-m",
        "late_fusion",
        "-d",
        "synthetic",
        "--seeds",
        "0,1",
        *overrides,
        "--tracking-uri",
        mlflow_uri,
        "-q",
    )
    assert code == 0, out
    code, out = run_cli(
        monkeypatch,
        capsys,
        "report",
        "--tracking-uri",
        mlflow_uri,
        "--format",
        "all",
        "--out",
        str(tmp_path),
        "--metric",
        "mAP,rank1,mINP",
    )
    assert code == 0, out
    assert "Leaderboard" in out and "late_fusion" in out and " ± " in out and "wrote" in out
    csv = pd.read_csv(tmp_path / "leaderboard.csv")
    assert csv["block"].tolist() == ["ours"] and csv.loc[0, "mAP_n"] == 2 and csv.loc[0, "epochs"] == 1
    runs = pd.read_csv(tmp_path / "runs.csv")
    assert sorted(runs["seed"]) == [0, 1] and runs["mAP"].between(0, 1).all()
    assert csv.loc[0, "mAP_mean"] == pytest.approx(100 * runs["mAP"].mean())
    for name in (
        "leaderboard.tex",
        "leaderboard.md",
        "cost.tex",
        "report.tex",
        "report.md",
        "figures/curves_synthetic.png",
        "figures/curves_synthetic.pdf",
    ):
        assert (tmp_path / name).stat().st_size > 0, name
    assert r"\scriptsize$\pm$" in (tmp_path / "leaderboard.tex").read_text()
