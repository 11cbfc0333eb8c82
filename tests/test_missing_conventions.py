"""Missing-modality conventions: declared per method, chosen by the protocol, evaluated as each one says
(zero-filled input, or the key left out for the model to drop / reconstruct), named in metrics and tags."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from reidbench.errors import UserError
from reidbench.evaluation import evaluate
from reidbench.evaluation.features import eval_settings
from reidbench.evaluation.metrics import rank_metrics_from_features
from reidbench.evaluation.missing import (
    declared_conventions,
    model_conventions,
    resolve_conventions,
    split_setting,
)
from reidbench.nn import ModelOutput
from reidbench.protocol import build_protocol
from reidbench.registry import load_plugins
from reidbench.spec import make_spec
from tests.presets import build_model, make_datamodule

SMALL = ["sampler.p=2", "sampler.k=2", "eval.missing_modality=true", "eval.batch_size=16"]


def test_resolution_own_all_and_unsupported():
    assert resolve_conventions([], ["reconstruct", "zero"]) == ["reconstruct"]
    assert resolve_conventions(["all"], ["reconstruct", "zero"]) == ["reconstruct", "zero"]
    assert resolve_conventions(["zero"], ["reconstruct", "zero"]) == ["zero"]
    with pytest.raises(UserError, match="supports zero .*not reconstruct"):
        resolve_conventions(["reconstruct"], ["zero"], "method 'late_fusion'")
    assert split_setting("no_tir:zero") == ("no_tir", "zero") and split_setting("no_tir") == ("no_tir", "")


def test_declarations_and_model_conventions():
    load_plugins()
    assert declared_conventions("top_reid") == ("reconstruct", "zero")
    assert declared_conventions("late_fusion") == ("zero",)  # undeclared: zero
    plain, dropping = torch.nn.Linear(1, 1), torch.nn.Linear(1, 1)
    dropping.drops_missing_modalities = True  # GraFT / MMET with drop_missing
    assert model_conventions(plain) == ["zero"]
    assert model_conventions(dropping) == ["drop", "zero"]


def test_unknown_convention_is_a_protocol_error():
    with pytest.raises(UserError, match="missing_conventions: 'mean' unknown"):
        build_protocol("synthetic", ["eval.missing_conventions=[mean]"])
    assert build_protocol("synthetic", ["eval.missing_conventions=[all]"]).eval.missing_conventions == ["all"]


class Spy(torch.nn.Module):
    """Embeds each present modality by its mean pixel; records the keys each call got."""

    def __init__(self, modalities):
        super().__init__()
        self.modalities, self.seen, self.embed_dim = modalities, [], 3

    def forward(self, batch):
        self.seen.append(tuple(m for m in self.modalities if m in batch))
        cols = [
            batch[m].mean((1, 2, 3)) if m in batch else torch.full_like(batch["pid"], 7.0, dtype=torch.float)
            for m in self.modalities
        ]
        return ModelOutput(embedding=torch.stack(cols, 1) + 0.01 * batch["pid"][:, None])


def test_each_convention_gives_the_model_what_it_says(synthetic_dataset):
    spec = make_spec("late_fusion", "synthetic", 0, SMALL)
    data = make_datamodule(spec, synthetic_dataset)
    query, gallery = data.eval_set("query"), data.eval_set("gallery")
    model = Spy(list(data.modalities))
    metrics = evaluate(model, query, gallery, spec.protocol.eval, ["drop", "zero"])
    assert {"mAP@no_tir", "mAP@no_tir:zero", "mAP@no_rgb_nir:zero"} <= set(metrics)
    assert ("rgb", "nir") in model.seen  # drop: the key left out
    assert not any(k.endswith(":drop") for k in metrics)  # the own convention keeps the plain name

    def reference(keep, zero):  # the features written out: batches with tir absent or zeroed
        out = []
        for side in (query, gallery):
            rows = []
            for batch in side.batches(16, ()):
                for m in side.modalities:
                    if m not in keep and zero:
                        batch[m] = torch.zeros_like(batch[m])
                    elif m not in keep:
                        del batch[m]
                rows.append(model(batch).embedding)
            out.append(F.normalize(torch.cat(rows), dim=1))
        return out

    labels = dict(
        q_pids=query.pids,
        g_pids=gallery.pids,
        q_camids=query.camids,
        g_camids=gallery.camids,
        q_sceneids=query.sceneids,
        g_sceneids=gallery.sceneids,
        junk="market",
        max_rank=50,
        same_set=False,
    )
    for name, zero in (("mAP@no_tir", False), ("mAP@no_tir:zero", True)):
        qf, gf = reference(("rgb", "nir"), zero)
        expected = rank_metrics_from_features(qf, gf, **labels).as_dict()["mAP"]
        assert metrics[name] == pytest.approx(expected)
    assert metrics["mAP@no_tir"] != pytest.approx(metrics["mAP@no_tir:zero"])


def test_runner_checks_the_method_supports_the_convention_before_training(synthetic_dataset):
    from reidbench.runner import missing_conventions

    spec = make_spec("late_fusion", "synthetic", 0, [*SMALL, "eval.missing_conventions=[reconstruct]"])
    model = build_model(spec, synthetic_dataset, make_datamodule(spec, synthetic_dataset))
    with pytest.raises(UserError, match="method 'late_fusion' supports zero"):
        missing_conventions(spec, model)


def test_top_reid_reconstructs_or_takes_zeros(synthetic_dataset):
    from reidbench.runner import missing_conventions

    spec = make_spec("top_reid", "synthetic", 0, [*SMALL, "eval.missing_conventions=[all]"])
    data = make_datamodule(spec, synthetic_dataset)
    torch.manual_seed(0)
    model = build_model(spec, synthetic_dataset, data).eval()
    conventions = missing_conventions(spec, model)
    assert conventions == ["reconstruct", "zero"]
    batch = next(data.eval_batches("query", 4))
    full = model(batch).embedding
    without = {k: v for k, v in batch.items() if k != "tir"}
    rebuilt = model(without).embedding  # tir rebuilt: mean of rgb->tir and nir->tir
    tokens = {m: model.backbones[m](batch[m], camids=batch["camid"]) for m in ("rgb", "nir")}
    expected_tir = (
        model.crm.maps["rgb"]["tir"](tokens["rgb"]) + model.crm.maps["nir"]["tir"](tokens["nir"])
    ) / 2
    expected = model.tpm([tokens["rgb"], tokens["nir"], expected_tir])
    torch.testing.assert_close(rebuilt, expected)
    assert not torch.allclose(rebuilt, full)
    names = [s.name for s in eval_settings(data.modalities, spec.protocol.eval, conventions)]
    assert {"no_tir", "no_tir:zero", "no_rgb_nir", "no_rgb_nir:zero"} <= set(names)
