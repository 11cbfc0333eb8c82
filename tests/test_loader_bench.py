"""The loader benchmark script runs end to end (tiny sizes; no timing is asserted)."""

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "perf" / "loader_speed.py"


@pytest.mark.slow
def test_loader_benchmark_runs_and_reports_a_ratio(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("loader_speed", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = module.main(
        [
            "--ids",
            "4",
            "--cameras",
            "2",
            "--per-camera",
            "1",
            "--p",
            "4",
            "--k",
            "2",
            "--steps",
            "1",
            "--rounds",
            "1",
            "--warmup",
            "0",
            "--workers",
            "0",
            "--data",
            str(tmp_path / "data"),
        ]
    )
    out = capsys.readouterr().out
    assert "768x128 JPEG strips" in out and "reidbench / baseline:" in out
    assert result["reidbench"] > 0 and result["baseline"] > 0 and result["ratio"] > 0
