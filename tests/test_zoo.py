"""Saved weights, `reidbench eval` and the model zoo: train tiny -> export -> get -> eval gives the training
run's own final metrics; checksums, classifier dropping, evaluation settings and the user's mistakes."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import torch
import yaml

import cli
from reidbench import tracking
from reidbench.context import RunContext
from reidbench.errors import UserError
from reidbench.runner import load_dataset, run_one
from reidbench.spec import make_spec
from reidbench.train import weights
from reidbench.zoo import catalog, evaluate, fetch
from tests.conftest import TINY
from tests.layouts import data_root, small, use_counts_of

pytestmark = pytest.mark.slow  # the module trains two tiny runs (about 20 s on 2 CPU cores)

SETTINGS = ["eval.rerank=true", "eval.missing_modality=true", "eval.cross_modal=[rgb->nir+tir]"]
RANK_KEYS = ("rank1", "rank5", "rank10", "mAP", "mINP")


def rank_metrics(metrics: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if k.split("@", 1)[0] in RANK_KEYS}


def run_cli(monkeypatch, capsys, *args, raw=False):
    """Exit code and output of ``reidbench ARGS`` in process; whitespace collapsed unless ``raw`` (the
    console wraps long lines)."""
    monkeypatch.setattr(sys, "argv", ["reidbench", *args])
    code = 0
    try:
        cli.main()
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, (out.out + out.err) if raw else " ".join((out.out + out.err).split())


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Two tiny late-fusion runs of one seed, logged: plain, and with re-ranking / missing-modality /
    cross-modal settings and a cross-domain target (``--test-on synthetic_shift``) at training time
    (evaluation does not change training: the same weights)."""
    root = tmp_path_factory.mktemp("zoo")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    ctx = RunContext(Path("unused"), tracking_uri=uri, experiment="zoo", device="cpu")
    plain = run_one(make_spec("late_fusion", "synthetic", 0, TINY), ctx)
    spec = make_spec("late_fusion", "synthetic", 0, [*TINY, *SETTINGS], test_on=["synthetic_shift"])
    settings = run_one(spec, ctx)
    return {"root": root, "uri": uri, "plain": plain, "settings": settings}


@pytest.fixture(scope="module")
def exported(trained):
    """The plain run exported into a zoo folder, and a zoo file listing it."""
    root = trained["root"] / "export"
    result = _export_one(trained["uri"], trained["plain"].run_id, root)
    zoo_file = root / "zoo.yaml"
    catalog.write_zoo(zoo_file, result.entries)
    return {
        "zoo_file": zoo_file,
        "entry": result.entries[0],
        "folder": root / "models" / result.entries[0].name,
    }


def _export_one(uri: str, run_id: str, root: Path):
    """Export the experiment after moving every other run out of it (the export reads whole experiments)."""
    from mlflow.tracking import MlflowClient

    from reidbench.zoo.export import export_zoo

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("zoo")
    others = [r.info.run_id for r in client.search_runs([exp.experiment_id]) if r.info.run_id != run_id]
    for other in others:
        client.set_tag(other, "run_kind", "held")
    try:
        return export_zoo(uri, "zoo", root / "models", root)
    finally:
        for other in others:
            client.set_tag(other, "run_kind", "run")


def test_a_finished_run_saves_its_weights_with_sha256_and_config(trained, tmp_path):
    record = tracking.get_run(trained["uri"], trained["plain"].run_id)
    path = tracking.download_artifact(trained["uri"], record.run_id, "model/model.safetensors", tmp_path)
    config = tracking.download_artifact(trained["uri"], record.run_id, "model/config.yaml", tmp_path)
    assert path is not None and config is not None
    assert record.tags["weights_sha256"] == weights.sha256_file(path)
    assert int(record.tags["weights_bytes"]) == path.stat().st_size
    loaded = weights.read_weights(path)
    assert loaded.config == yaml.safe_load(config.read_text()) == trained["plain"].spec.config()
    assert loaded.config_hash == record.tags["config_hash"] == trained["plain"].spec.config_hash
    assert loaded.run_id == record.run_id
    # the backbone shared by the three modalities is stored once, and comes back under each name
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        stored = set(f.keys())
    assert len(stored) < len(loaded.state)
    assert (
        sum(loaded.state[k].numel() for k in stored if "running" not in k and "num_batches" not in k)
        == (record.metrics["params"])
    )
    model = _build(trained["plain"].spec)
    assert not weights.load_weights_into(model, loaded.state, "x").dropped
    assert all(torch.equal(v, loaded.state[k]) for k, v in model.state_dict().items())


def test_no_save_weights_saves_nothing_and_eval_says_so(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ctx = RunContext(Path("unused"), tracking_uri=uri, device="cpu", save_weights=False)
    result = run_one(make_spec("late_fusion", "synthetic", 0, TINY), ctx)
    assert "weights_sha256" not in tracking.get_run(uri, result.run_id).tags
    with pytest.raises(UserError, match="saved no weights"):
        evaluate.from_run(uri, result.run_id, tmp_path / "dl")


def test_export_get_eval_gives_the_training_runs_final_metrics(trained, exported, monkeypatch, capsys):
    entry, folder = exported["entry"], exported["folder"]
    assert entry.name == "late_fusion@synthetic" and entry.recipe == "shared"
    assert entry.source == "models/late_fusion@synthetic"
    files = {p.name for p in folder.iterdir()}
    assert files == {"model.safetensors", "config.yaml", "README.md", "SHA256SUMS"}
    sums = dict(reversed(line.split("  ")) for line in (folder / "SHA256SUMS").read_text().splitlines())
    assert sums == {name: weights.sha256_file(folder / name) for name in files - {"SHA256SUMS"}}
    card = (folder / "README.md").read_text()
    assert "license: mit" in card and entry.sha256 in card and trained["plain"].run_id in card
    final = trained["plain"].metrics
    assert entry.metrics["mAP"] == {"mean": final["mAP"], "std": None, "n": 1}
    assert entry.params == final["params"] and entry.gflops == final["gflops"]

    code, out = run_cli(
        monkeypatch, capsys, "zoo", "get", entry.name, "--zoo-file", str(exported["zoo_file"])
    )
    assert code == 0 and "verified sha256" in out
    cached = fetch.cached_folder(entry)
    assert weights.sha256_file(cached / "model.safetensors") == entry.sha256

    source = evaluate.from_weights(cached / "model.safetensors", label="zoo")
    dataset = _synthetic()
    result = evaluate.evaluate_source(
        source, dataset, torch.device("cpu"), uri=trained["uri"], experiment="zoo"
    )
    assert rank_metrics(result.metrics) == rank_metrics(final)  # exactly, not approximately
    assert not result.load.dropped
    record = tracking.get_run(trained["uri"], result.run_id)
    assert record.tags["run_kind"] == "eval" and record.tags["source_run_id"] == trained["plain"].run_id
    assert record.status == "FINISHED"
    assert rank_metrics(record.metrics) == rank_metrics(final)


def test_eval_settings_match_the_same_settings_at_training_time(trained, monkeypatch, capsys):
    source = evaluate.from_run(trained["uri"], trained["plain"].run_id, trained["root"] / "dl")
    result = evaluate.evaluate_source(source, _synthetic(), torch.device("cpu"), SETTINGS)
    at_training = {k: v for k, v in rank_metrics(trained["settings"].metrics).items() if "@to_" not in k}
    assert {"mAP@rerank", "mAP@no_tir", "mAP@rgb->nir+tir"} <= set(at_training)
    assert rank_metrics(result.metrics) == at_training

    code, out = run_cli(
        monkeypatch,
        capsys,
        "eval",
        "--run",
        trained["plain"].run_id,
        "--tracking-uri",
        trained["uri"],
        "--set",
        "eval.rerank=true",
    )
    assert code == 0, out
    assert "rerank" in out and f"{100 * at_training['mAP@rerank']:.1f}" in out


def test_eval_on_another_dataset_matches_the_training_runs_test_on_metrics(trained):
    from reidbench.generalisation import split_target

    source = evaluate.from_run(trained["uri"], trained["plain"].run_id, trained["root"] / "dl-shift")
    shift = load_dataset("synthetic_shift", Path("unused"))
    result = evaluate.evaluate_source(source, shift, torch.device("cpu"), SETTINGS)
    targets = {k: split_target(k) for k in trained["settings"].metrics}
    expected = {
        t[0]: v
        for k, v in trained["settings"].metrics.items()
        if (t := targets[k]) and t[1] == "synthetic_shift"
    }
    assert {"mAP", "mAP@rerank", "mAP@no_tir"} <= set(expected)
    assert rank_metrics(result.metrics) == rank_metrics(expected)


def test_eval_on_another_dataset_drops_the_classifier_and_runs(
    trained, tmp_path, tmp_path_factory, monkeypatch
):
    config = small("rgbn300")  # 4 training ids (the run had more), no thermal images
    root = data_root(tmp_path, config, tmp_path_factory.getbasetemp() / "layouts")
    use_counts_of(monkeypatch, "rgbn300", config)
    monkeypatch.setenv("REIDBENCH_CACHE", str(tmp_path / "cache"))
    dataset = load_dataset("rgbn300", root)
    source = evaluate.from_run(trained["uri"], trained["plain"].run_id, tmp_path / "dl")
    notes = []
    result = evaluate.evaluate_source(
        source,
        dataset,
        torch.device("cpu"),
        ["eval.missing_modality=true"],
        trained["uri"],
        "zoo",
        say=notes.append,
    )
    assert result.load.dropped == ("head.classifier.weight",)
    assert notes and "ID classifier dropped" in notes[0]
    assert result.protocol.data.modalities == ["rgb", "nir"]  # thermal: zero-filled, as a missing modality
    assert 0 < result.metrics["mAP"] <= 1 and 0 < result.metrics["mAP@no_nir"] <= 1
    assert "mAP@no_tir" not in result.metrics
    tags = tracking.get_run(trained["uri"], result.run_id).tags
    assert tags["dataset"] == "rgbn300" and tags["source_dataset"] == "synthetic"
    assert tags["classifier_dropped"] == "true"


def test_eval_on_a_validation_split_of_the_training_ids(trained, monkeypatch, capsys):
    code, out = run_cli(
        monkeypatch,
        capsys,
        "eval",
        "--run",
        trained["plain"].run_id,
        "--tracking-uri",
        trained["uri"],
        "--validation",
        "0.25",
    )
    assert code == 0, out
    assert "note: ID classifier dropped" in out  # a quarter of the training ids left the training split
    evals = tracking.find_runs(trained["uri"], "zoo", "tags.split = 'val:0.25'")
    assert len(evals) == 1 and evals[0].tags["source_run_id"] == trained["plain"].run_id
    assert 0 < evals[0].metrics["mAP"] <= 1


def test_a_flipped_byte_fails_the_checksum_naming_the_file(exported, tmp_path):
    entry = exported["entry"]
    folder = tmp_path / "damaged"
    shutil.copytree(exported["folder"], folder)
    data = bytearray((folder / "model.safetensors").read_bytes())
    data[len(data) // 2] ^= 0x01
    (folder / "model.safetensors").write_bytes(bytes(data))
    damaged = catalog.ZooEntry(**{**entry.__dict__, "name": "damaged@synthetic", "source": str(folder)})
    with pytest.raises(UserError, match="checksum mismatch") as info:
        fetch.fetch(damaged, tmp_path)
    assert str(folder / "model.safetensors") in str(info.value)
    assert not fetch.cached_folder(damaged).exists()  # nothing unverified is cached


def test_weights_of_another_config_are_refused(trained, exported, tmp_path):
    folder = tmp_path / "mixed"
    shutil.copytree(exported["folder"], folder)
    other = weights.read_weights(  # the config of the run with other evaluation settings
        tracking.download_artifact(
            trained["uri"], trained["settings"].run_id, "model/model.safetensors", tmp_path / "other"
        )
    )
    (folder / "config.yaml").write_text(yaml.safe_dump(other.config))
    with pytest.raises(UserError, match="different method or config"):
        evaluate.from_weights(folder / "model.safetensors")
    stale = catalog.ZooEntry(**{**exported["entry"].__dict__, "config_hash": other.config_hash})
    with pytest.raises(UserError, match="different method or config"):
        fetch.verify(stale, exported["folder"], "x")
    # a model of another method does not take these weights either
    from reidbench.train.weights import load_weights_into

    spec = make_spec("early_fusion", "synthetic", 0, TINY)
    model = _build(spec)
    with pytest.raises(UserError, match="does not fit the model"):
        load_weights_into(model, other.state, "model.safetensors")


def test_user_mistakes_are_one_line_errors(exported, trained, tmp_path, monkeypatch, capsys):
    zoo_file = str(exported["zoo_file"])
    cases = [
        (
            ["zoo", "get", "late_fusion@synthtic", "--zoo-file", zoo_file],
            "did you mean late_fusion@synthetic",
        ),
        (["eval", "--zoo", "graft@synthetic", "--zoo-file", zoo_file], "no model 'graft@synthetic'"),
        (["eval", "--run", "x", "--zoo", "y"], "exactly one of"),
        (["eval", "--weights", str(tmp_path / "none.safetensors")], "none.safetensors' does not exist"),
        (
            [
                "eval",
                "--run",
                trained["plain"].run_id,
                "--tracking-uri",
                trained["uri"],
                "--set",
                "optim.lr=1",
            ],
            "eval.KEY=VALUE settings only",
        ),
        (["eval", "--run", "0" * 32, "--tracking-uri", trained["uri"]], "no run '0000"),
        (["zoo", "list", "--zoo-file", str(tmp_path / "no.yaml")], "no zoo file"),
    ]
    for args, expected in cases:
        code, out = run_cli(monkeypatch, capsys, *args)
        assert code == 2 and expected in out and "Traceback" not in out, (args, out)


def test_no_network_is_a_clear_error(exported, tmp_path, monkeypatch):
    entry = exported["entry"]
    fields = {**entry.__dict__, "name": "offline@synthetic"}  # not in the cache
    url = catalog.ZooEntry(**{**fields, "source": "http://127.0.0.1:9/zoo/late_fusion"})
    with pytest.raises(UserError, match="no network or the host is unreachable"):
        fetch.fetch(url, tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    hub = catalog.ZooEntry(**{**fields, "source": "hf-hub:reidbench-test/none"})
    with pytest.raises(UserError, match="no network"):
        fetch.fetch(hub, tmp_path)


def test_zoo_list_prints_the_table(exported, monkeypatch, capsys):
    code, out = run_cli(
        monkeypatch, capsys, "zoo", "list", "--zoo-file", str(exported["zoo_file"]), "--markdown", raw=True
    )
    entry = exported["entry"]
    assert code == 0
    header, _, row = out.splitlines()
    assert header.split(" | ")[1:4] == ["method", "dataset", "recipe"]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[:4] == ["`late_fusion@synthetic`", "late_fusion", "synthetic", "shared"]
    assert cells[4] == f"{100 * entry.metrics['rank1']['mean']:.1f}"
    assert cells[5] == f"{100 * entry.metrics['mAP']['mean']:.1f}"
    assert cells[-1] == "`models/late_fusion@synthetic`"
    assert catalog.read_zoo(exported["zoo_file"]) == [entry]


def _synthetic():
    return load_dataset("synthetic", Path("unused"))


def _build(spec):
    from reidbench.nn.factory import BuildInfo, create_method
    from reidbench.spec import method_config

    dataset = _synthetic()
    info = BuildInfo.from_protocol(spec.protocol, dataset.info, dataset.info.num_train_ids)
    return create_method(spec.method, method_config(spec.method, spec.protocol.method), info)
