"""Train on one dataset (or several merged), test on others: targets, merged sources, modalities, the
second synthetic domain, suites and the cross-domain report."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import cli
from reidbench.data.synthetic import SyntheticConfig, identity_codes, plan, write_data_root
from reidbench.data.types import Dataset, DatasetSplits
from reidbench.errors import UserError
from reidbench.generalisation import merged_name, split_target, target_key
from reidbench.spec import make_spec
from tests.conftest import TINY
from tests.layouts import small, use_counts_of
from tests.presets import build_model, make_datamodule


def run_cli(monkeypatch, capsys, *args):
    monkeypatch.setattr(sys, "argv", ["reidbench", *args])
    code = 0
    try:
        cli.main()
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out + out.err


# --- names, specs, hashes -----------------------------------------------------------------------------------


def test_target_metric_names_round_trip():
    assert target_key("mAP", "rgbn300") == "mAP@to_rgbn300"
    assert split_target("mAP@to_rgbn300") == ("mAP", "rgbn300")
    assert split_target("mAP@no_tir@to_rgbn300") == ("mAP@no_tir", "rgbn300")
    assert split_target("mAP@no_tir") is None and split_target("mAP") is None


def test_targets_join_the_config_only_when_given():
    plain = make_spec("late_fusion", "synthetic", 0)
    assert make_spec("late_fusion", "synthetic", 0, test_on=[]).config_hash == plain.config_hash
    crossed = make_spec("late_fusion", "synthetic", 0, test_on=["synthetic_shift"])
    assert "test_on" not in plain.config()
    assert crossed.config()["test_on"] == {"synthetic_shift": ["rgb", "nir", "tir"]}
    assert crossed.config_hash != plain.config_hash
    assert crossed.datasets == ["synthetic", "synthetic_shift"]


def test_a_target_with_fewer_modalities_is_resolved_to_the_common_ones():
    spec = make_spec("late_fusion", "rgbnt100", 0, test_on=["rgbn300", "msvr310"])
    assert spec.test_on == {"rgbn300": ("rgb", "nir"), "msvr310": ("rgb", "nir", "tir")}
    nir_tir = make_spec("late_fusion", "rgbnt100", 0, ["data.modalities=[nir,tir]"], test_on=["rgbn300"])
    assert nir_tir.test_on == {"rgbn300": ("nir",)}


def test_disjoint_modalities_fail_with_both_modality_sets_named():
    with pytest.raises(UserError) as err:
        make_spec("late_fusion", "rgbnt100", 0, ["data.modalities=[tir]"], test_on=["rgbn300"])
    assert "trained on tir" in str(err.value) and "'rgbn300' has rgb+nir" in str(err.value)


def test_disjoint_modalities_fail_on_the_command_line_before_anything_is_stored(
    monkeypatch, capsys, tmp_path
):
    store = tmp_path / "mlflow.db"
    code, out = run_cli(
        monkeypatch,
        capsys,
        "run",
        "-m",
        "late_fusion",
        "-d",
        "rgbnt100",
        "--set",
        "data.modalities=[tir]",
        "--test-on",
        "rgbn300",
        "--tracking-uri",
        f"sqlite:///{store}",
        "--results-dir",
        str(tmp_path / "results"),
    )
    assert code == 2 and "Traceback" not in out
    assert "trained on tir" in out and "has rgb+nir" in out
    assert not store.exists() and not (tmp_path / "results").exists()


def test_merged_sources_use_the_first_protocol_and_the_shared_modalities():
    spec = make_spec("late_fusion", merged_name(["rgbnt100", "msvr310"]), 0)
    assert spec.dataset == "rgbnt100+msvr310" and spec.protocol.dataset == "rgbnt100"
    assert spec.datasets == ["rgbnt100", "msvr310"]
    with pytest.raises(UserError, match="has no tir"):  # RGBN300 has no TIR: the union cannot train on it
        make_spec("late_fusion", "rgbnt100+rgbn300", 0)
    assert make_spec("late_fusion", "rgbnt100+rgbn300", 0, ["data.modalities=[rgb,nir]"]).dataset
    with pytest.raises(UserError, match="named twice"):
        merged_name(["rgbnt100", "rgbnt100"])


# --- merged sources -----------------------------------------------------------------------------------------


@pytest.fixture
def two_sources(monkeypatch, tmp_path):
    """A small RGBNT100-layout and a small MSVR310-layout dataset (camera vs scene junk rule) in one
    data root, loaded apart and merged."""
    from reidbench import runner

    configs = {"rgbnt100": small("rgbnt100"), "msvr310": small("msvr310", seed=3)}
    for name, config in configs.items():
        write_data_root(tmp_path, config)
        use_counts_of(monkeypatch, name, config)
    apart = [runner.load_dataset(name, tmp_path) for name in configs]
    return apart, runner.load_dataset("rgbnt100+msvr310", tmp_path)


def test_merged_sources_keep_identities_and_cameras_apart(two_sources):
    (vehicles, msvr), merged = two_sources
    assert merged.info.name == "rgbnt100+msvr310" and merged.info.junk == "scene"
    for split in ("train", "query", "gallery"):
        a, b = getattr(vehicles.splits, split), getattr(msvr.splits, split)
        both = getattr(merged.splits, split)
        assert len(both) == len(a) + len(b)
        first, second = both[: len(a)], both[len(a) :]
        assert not {s.pid for s in first} & {s.pid for s in second}
        assert not {s.camid for s in first} & {s.camid for s in second}
        # the same images, identity and camera shifted by one constant per source
        assert [s.images for s in first] == [s.images for s in a]
        assert len({s.pid - o.pid for s, o in zip(second, b, strict=True)}) == 1
        assert len({s.camid - o.camid for s, o in zip(second, b, strict=True)}) == 1
    ids = {s.pid for s in merged.splits.train}
    assert merged.info.num_train_ids == len(ids) == vehicles.info.num_train_ids + msvr.info.num_train_ids


def _junk(query, gallery, rule):
    """Plain reference: gallery items removed for each query (same id, and same camera / scene)."""
    key = "camid" if rule == "market" else "sceneid"
    return np.array([[q.pid == g.pid and getattr(q, key) == getattr(g, key) for g in gallery] for q in query])


def test_the_merged_junk_rule_removes_what_each_sources_own_rule_removes(two_sources):
    (vehicles, msvr), merged = two_sources
    nq, ng = len(vehicles.splits.query), len(vehicles.splits.gallery)
    merged_junk = _junk(merged.splits.query, merged.splits.gallery, merged.info.junk)
    own = _junk(vehicles.splits.query, vehicles.splits.gallery, "market")
    assert own.any() and (merged_junk[:nq, :ng] == own).all()
    own = _junk(msvr.splits.query, msvr.splits.gallery, "scene")
    assert own.any() and (merged_junk[nq:, ng:] == own).all()
    assert not merged_junk[:nq, ng:].any() and not merged_junk[nq:, :ng].any()


def test_the_pk_sampler_draws_across_merged_sources(two_sources):
    from reidbench.data.sampler import PKSampler
    from reidbench.data.types import relabel

    (vehicles, _), merged = two_sources
    labels, num = relabel(merged.splits.train)
    first = vehicles.info.num_train_ids  # labels 0..first-1 are the first source's identities
    sampler = PKSampler(labels, p=num, k=2, seed=0)
    batches = sampler.global_batches(0)
    assert batches
    for batch in batches:  # every identity of both sources in each batch, none mixed up
        drawn = {labels[i] for i in batch}
        assert drawn == set(range(num)) and any(d < first for d in drawn) and any(d >= first for d in drawn)


# --- evaluation on a target ---------------------------------------------------------------------------------


def _without(dataset: Dataset, modality: str, name: str) -> Dataset:
    """``dataset`` as another dataset that lacks ``modality`` (the same files for the others)."""

    def drop(samples):
        return [
            dataclasses.replace(s, images={m: r for m, r in s.images.items() if m != modality})
            for s in samples
        ]

    query = drop(dataset.splits.query)
    gallery = query if dataset.splits.gallery is dataset.splits.query else drop(dataset.splits.gallery)
    info = dataclasses.replace(
        dataset.info, name=name, modalities=[m for m in dataset.info.modalities if m != modality]
    )
    return Dataset(info, DatasetSplits(drop(dataset.splits.train), query, gallery))


@pytest.fixture(scope="module")
def small_synthetic(tmp_path_factory):
    """A small synthetic set (4 training, 8 test identities) read as the synthetic dataset."""
    from reidbench.data.builtin import ALL, scan_strips
    from reidbench.data.names import VEHICLE_STRIP

    root = write_data_root(tmp_path_factory.mktemp("small"), small("rgbnt100", test_ids=8))
    return scan_strips("synthetic", root, ALL, VEHICLE_STRIP)


@pytest.mark.parametrize("method", ["late_fusion", "graft"])
def test_a_target_with_fewer_modalities_is_scored_as_the_missing_modality_setting(small_synthetic, method):
    """The synthetic test split as a target without TIR scores exactly what the in-domain missing-modality
    evaluation without TIR scores: zero-filled TIR (late fusion), TIR left out (GraFT with drop_missing)."""
    from reidbench.evaluation import evaluate
    from reidbench.evaluation.targets import evaluate_targets

    knobs = {"drop_missing": True} if method == "graft" else {}
    overrides = [*TINY, "eval.missing_modality=true"]
    overrides += ["method.heads=2", "method.dim_feedforward=128"] if method == "graft" else []
    spec = make_spec(method, "synthetic", 0, overrides)
    data = make_datamodule(spec, small_synthetic)
    torch.manual_seed(0)
    model = build_model(spec, small_synthetic, data, **knobs).eval()
    assert getattr(model, "drops_missing_modalities", False) == (method == "graft")
    reference = evaluate(model, data.eval_set("query"), data.eval_set("gallery"), spec.protocol.eval)
    target = _without(small_synthetic, "tir", "synthetic_rgb_nir")
    crossed = dataclasses.replace(spec, test_on={"synthetic_rgb_nir": ("rgb", "nir")})
    found = evaluate_targets(model, crossed, {"synthetic_rgb_nir": target}, torch.device("cpu"))
    for metric in ("mAP", "rank1", "mINP"):
        assert found[f"{metric}@to_synthetic_rgb_nir"] == reference[f"{metric}@no_tir"]
    # and it is not the all-modality score: without TIR the untrained model ranks otherwise
    assert any(found[f"{m}@to_synthetic_rgb_nir"] != reference[m] for m in ("mAP", "rank1", "mINP"))


def test_a_target_is_scored_with_its_own_junk_rule(synthetic_dataset):
    """The target's junk rule and query = gallery fact (its dataset info), the source's other settings."""
    from reidbench.evaluation.targets import target_eval_cfg

    spec = make_spec("late_fusion", "synthetic", 0, TINY)
    scene = dataclasses.replace(
        synthetic_dataset, info=dataclasses.replace(synthetic_dataset.info, junk="scene")
    )
    assert target_eval_cfg(scene, spec.protocol.eval).junk == "scene"
    same = dataclasses.replace(scene, info=dataclasses.replace(scene.info, same_set=True))
    cfg = target_eval_cfg(same, dataclasses.replace(spec.protocol.eval, max_rank=7))
    assert (cfg.junk, cfg.same_set, cfg.max_rank) == ("scene", True, 7)
    assert target_eval_cfg(synthetic_dataset, spec.protocol.eval).junk == "market"


def test_target_sets_use_the_source_protocols_image_size_and_normalisation(synthetic_dataset):
    from reidbench.evaluation.targets import target_eval_sets

    spec = make_spec(
        "late_fusion", "synthetic", 0, ["data.image_size=[16,32]", "data.mean.rgb=[0.2,0.2,0.2]"]
    )
    query, gallery = target_eval_sets(synthetic_dataset, spec.protocol, ("rgb", "nir"), torch.device("cpu"))
    batch = next(query.batches(4, ()))
    assert batch["rgb"].shape == (4, 3, 16, 32) and batch["tir"].shape == (4, 3, 16, 32)
    assert (batch["tir"] == 0).all() and query.modalities == ("rgb", "nir")
    assert len(query) == len(synthetic_dataset.splits.query) and len(gallery) == len(
        synthetic_dataset.splits.gallery
    )
    # normalised with the source protocol's mean: a value v maps to (v / 255 - 0.2) / 0.5
    assert batch["rgb"].min() >= (0 - 0.2) / 0.5 - 1e-6 and batch["rgb"].max() <= (1 - 0.2) / 0.5 + 1e-6


# --- the second synthetic domain ----------------------------------------------------------------------------


def test_the_default_synthetic_dataset_keeps_its_folder_and_identities():
    assert SyntheticConfig().key() == "synthetic-v2-48-24-4-4-1-32-64-0-rgbnt100"


def test_synthetic_shift_has_other_cameras_and_identities():
    base, shift = SyntheticConfig(), SyntheticConfig(domain="shift")
    assert shift.key() != base.key()
    assert {it.cam for it in plan(base)} == {1, 2, 3, 4} and {it.cam for it in plan(shift)} == {5, 6, 7, 8}
    assert not {it.code for it in plan(base)} & {it.code for it in plan(shift)}
    codes = identity_codes(10, 0, exclude=set(identity_codes(50, 0)))
    assert len(set(codes)) == 10 and not set(codes) & set(identity_codes(50, 0))


def test_synthetic_shift_renders_another_domain():
    from reidbench.data.synthetic import DOMAINS, render_sample

    a = render_sample((5, 3, 7), 2, np.random.default_rng(0), 32, 64)
    b = render_sample((5, 3, 7), 2, np.random.default_rng(0), 32, 64, DOMAINS["shift"])
    assert a.shape == b.shape and np.abs(a - b).mean() > 0.05


# --- suites and ablations -----------------------------------------------------------------------------------


def test_the_generalisation_suite_lists_the_protocol(monkeypatch):
    from reidbench.sweeps.suite import find_suite

    suite = find_suite("generalisation")
    specs = suite.specs(["late_fusion"], [0])
    pairs = {(s.dataset, tuple(s.test_on)) for s in specs}
    assert ("synthetic", ("market1501_mm",)) in pairs and ("msvr310", ("rgbnt100",)) in pairs
    assert ("rgbnt100", ("rgbn300",)) in pairs and ("market1501_mm", ("rgbnt201",)) in pairs
    rgbn = next(s for s in specs if s.test_on.get("rgbn300"))
    assert rgbn.protocol.data.modalities == ["rgb", "nir"] and rgbn.test_on["rgbn300"] == ("rgb", "nir")
    assert all(s.tags["suite"] == "generalisation" for s in specs)


def test_a_suite_file_mistake_names_the_entry_and_key(tmp_path):
    from reidbench.sweeps.suite import load_suite

    path = tmp_path / "bad.yaml"
    path.write_text("methods: [late_fusion]\nentries:\n  - {datasets: [synthetic], tests: [x]}\n")
    with pytest.raises(UserError, match=r"entries\[0\]: unknown key 'tests'"):
        load_suite(path)
    path.write_text("methods: [late_fusion]\nentries:\n  - {datasets: [synthetic], test_on: [nope]}\n")
    with pytest.raises(UserError, match="entry 1: unknown dataset 'nope'"):
        load_suite(path).specs()
    path.write_text(
        "methods: [late_fusion]\nentries:\n"
        "  - {datasets: [rgbnt100, msvr310], merge: true, test_on: [rgbn300]}\n"
    )
    [spec] = load_suite(path).specs(seeds=[0])
    assert spec.dataset == "rgbnt100+msvr310" and spec.test_on == {"rgbn300": ("rgb", "nir")}


def test_a_suite_entry_may_name_its_recipe(tmp_path):
    from reidbench.sweeps.suite import find_suite, load_suite

    demo = find_suite("demo").specs()
    assert len(demo) == 9 and {s.recipe for s in demo} == {"shared", "official"}
    official = sorted(s.method for s in demo if s.recipe == "official")
    assert official == ["graft", "top_reid"]
    graft = next(s for s in demo if s.method == "graft" and s.recipe == "official")
    assert graft.config()["recipe"] == "official" and graft.protocol.train.allow_random_frozen
    path = tmp_path / "bad.yaml"
    path.write_text("entries:\n  - {methods: [graft], datasets: [synthetic], recipe: offical}\n")
    with pytest.raises(UserError, match=r"entries\[0\].recipe: expected shared or official, got 'offical'"):
        load_suite(path)


def test_a_suite_with_missing_data_names_every_missing_dataset(monkeypatch, capsys, tmp_path):
    code, out = run_cli(
        monkeypatch,
        capsys,
        "suite",
        "generalisation",
        "--data-root",
        str(tmp_path / "none"),
        "--tracking-uri",
        f"sqlite:///{tmp_path / 'mlflow.db'}",
        "--results-dir",
        str(tmp_path / "results"),
    )
    assert code == 2 and "Traceback" not in out
    assert "5 dataset(s) cannot be read" in out and "--skip-missing runs the 6 of" in out
    for folder in ("RGBNT100", "MSVR310", "RGBN300", "RGBNT201", "Market1501-MM"):
        assert folder in out
    assert not (tmp_path / "mlflow.db").exists()


def test_an_ablation_file_may_test_every_point_on_targets(tmp_path, monkeypatch):
    from reidbench.sweeps.ablation import load_ablation

    path = tmp_path / "x.yaml"
    path.write_text(
        "method: late_fusion\naxis: optim.lr\nvalues: [0.001, 0.002]\ndefault: 0.001\n"
        "datasets: [synthetic]\nseeds: [0]\ntest_on: [synthetic_shift]\n"
    )
    specs = load_ablation(path).specs()
    assert len(specs) == 2 and all(s.test_on == {"synthetic_shift": ("rgb", "nir", "tir")} for s in specs)


# --- the report ---------------------------------------------------------------------------------------------


def _results(values):
    from reidbench.context import RunResult

    out = []
    for method, seed, metrics in values:
        spec = make_spec(method, "synthetic", seed, test_on=["synthetic_shift"])
        out.append(RunResult(spec, metrics, f"run-{method}-{seed}"))
    return out


def test_the_crossdomain_table_marks_the_in_domain_cell_and_averages_seeds():
    from reidbench.report import make_report
    from reidbench.report.latex import latex_table
    from reidbench.report.results import results_frame
    from reidbench.report.text import csv_records, markdown_table

    runs = _results(
        [
            ("late_fusion", 0, {"mAP": 0.61, "rank1": 0.7, "mAP@to_synthetic_shift": 0.40}),
            ("late_fusion", 1, {"mAP": 0.65, "rank1": 0.8, "mAP@to_synthetic_shift": 0.44}),
            ("mmet", 0, {"mAP": 0.7, "rank1": 0.9, "mAP@to_synthetic_shift": 0.5}),
        ]
    )
    report = make_report(results_frame(runs), ["mAP"], [])
    [table] = [t for t in report.tables if t.name == "crossdomain"]
    assert [r.label for r in table.rows] == ["late_fusion @ Synthetic", "mmet @ Synthetic"]
    assert [c.group_key for c in table.columns] == ["synthetic", "synthetic_shift"]
    cells = [[table.rows[i].cell(c) for c in table.columns] for i in range(2)]
    assert cells[0][0].mean == pytest.approx(0.63) and cells[0][0].std == pytest.approx(
        np.std([0.61, 0.65], ddof=1)
    )
    assert cells[0][1].mean == pytest.approx(0.42) and cells[1][1].mean == 0.5 and cells[1][1].n == 1
    markdown = markdown_table(table)
    assert "| late_fusion @ Synthetic | 2 | *63.0* ± 2.8 [37.6, 88.4] | 42.0 ± 2.8 [16.6, 67.4] |" in markdown
    assert "| mmet @ Synthetic | 1 | *70.0* | 50.0 |" in markdown
    assert r"\textit{63.0}" in latex_table(table)
    records = csv_records(table)
    assert [(r["method"], r["test_set"], r["in_domain"]) for r in records] == [
        ("late_fusion", "synthetic", True),
        ("late_fusion", "synthetic_shift", False),
        ("mmet", "synthetic", True),
        ("mmet", "synthetic_shift", False),
    ]
    # the target metric is no missing-modality setting, and --test-on makes no variant
    assert not any(t.name.startswith("missing_") for t in report.tables)
    assert all(g.variant == "" for g in report.groups)


def test_the_crossdomain_heatmap_outlines_the_in_domain_cells():
    from reidbench.report import make_report
    from reidbench.report.crossdomain import heatmap
    from reidbench.report.results import results_frame

    runs = _results([("late_fusion", 0, {"mAP": 0.6, "rank1": 0.7, "mAP@to_synthetic_shift": 0.4})])
    report = make_report(results_frame(runs), ["mAP"], [])
    figure, caption, numbers = heatmap(report.groups, "mAP")
    [ax, _colorbar] = figure.axes
    texts = [t.get_text() for t in ax.texts]
    assert texts == ["60.0", "40.0"] and "in-domain cell outlined" in caption
    # the numbers written beside the figure are the ones it shows
    assert list(numbers["mean"].round(1)) == [60.0, 40.0] and list(numbers["in_domain"]) == [True, False]
    [outline] = [p for p in ax.patches if not p.get_fill()]
    assert outline.get_xy() == (0, 0)
    assert (
        heatmap(make_report(results_frame(_results([("mmet", 0, {"mAP": 0.5})])), ["mAP"], []).groups) is None
    )


def test_a_target_scored_on_fewer_modalities_is_stated_in_the_caption():
    from reidbench.context import RunResult
    from reidbench.report import make_report
    from reidbench.report.results import results_frame

    spec = make_spec("late_fusion", "rgbnt100", 0, test_on=["rgbn300"])
    run = RunResult(spec, {"mAP": 0.5, "mAP@to_rgbn300": 0.2}, "r1")
    [table] = [t for t in make_report(results_frame([run]), ["mAP"], []).tables if t.name == "crossdomain"]
    assert "RGBN300: RGB+NIR" in table.caption


@pytest.mark.slow
def test_a_cross_domain_run_end_to_end_in_domain_cell_equals_the_runs_metric(mlflow_uri, tmp_path):
    """A real (tiny) run trained on synthetic and tested on synthetic_shift, logged to MLflow, reported:
    the in-domain cell is exactly the run's logged mAP, the target cell its mAP@to_synthetic_shift."""
    from reidbench import tracking
    from reidbench.context import RunContext
    from reidbench.report import load_report, write_report
    from reidbench.runner import run_one

    spec = make_spec("late_fusion", "synthetic", 0, TINY, test_on=["synthetic_shift"])
    result = run_one(
        spec, RunContext(Path("unused"), tracking_uri=mlflow_uri, experiment="x"), torch.device("cpu")
    )
    assert {"mAP", "rank1", "mAP@to_synthetic_shift", "mINP@to_synthetic_shift"} <= set(result.metrics)
    [record] = tracking.find_runs(mlflow_uri, "x", "tags.run_kind = 'run'")
    assert record.metrics["mAP"] == result.metrics["mAP"]
    report = load_report(mlflow_uri, "x", ["mAP"], reported_mode="none", with_histories=False)
    [table] = [t for t in report.tables if t.name == "crossdomain"]
    [row] = table.rows
    in_domain, target = (row.cell(c) for c in table.columns)
    assert in_domain.mean == record.metrics["mAP"] and in_domain.n == 1
    assert target.mean == record.metrics["mAP@to_synthetic_shift"]
    written = write_report(report, tmp_path / "out", ["markdown", "csv"], ["mAP"])
    assert tmp_path / "out" / "crossdomain.csv" in written
    assert tmp_path / "out" / "figures" / "crossdomain_mAP.png" in written
