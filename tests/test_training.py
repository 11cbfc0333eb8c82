import pytest
import torch

from reidbench.data.module import DataModule
from reidbench.nn.factory import BuildInfo, create_method
from reidbench.protocol import build_protocol
from reidbench.train.engine import fit
from reidbench.train.losses import Criterion, batch_hard_triplet
from tests.conftest import TINY
from tests.presets import evaluate_data


def _setup(dataset, *overrides):
    protocol = build_protocol("synthetic", [*TINY, *overrides])
    data = DataModule(dataset, protocol, torch.device("cpu"), seed=0, show_progress=False)
    info = BuildInfo.from_protocol(protocol, dataset.info, data.num_classes)
    model = create_method("late_fusion", {}, info)
    return protocol, data, model


def test_batch_contract_and_forward_shapes(synthetic_dataset):
    protocol, data, model = _setup(synthetic_dataset)
    batch = next(data.train_batches(0))
    assert set(batch) >= {"rgb", "nir", "tir", "pid", "camid", "sceneid", "index"}
    assert batch["rgb"].shape == (16, 3, 32, 64) and batch["rgb"].dtype == torch.float32
    out = model(batch)
    assert out.embedding.shape == (16, 3 * 64)  # concat of three 64-d CLS tokens
    assert out.logits.shape == (16, data.num_classes)


def test_a_training_step_lowers_the_loss_on_a_fixed_batch(synthetic_dataset):
    protocol, data, model = _setup(synthetic_dataset, "data.augment.erase=0")
    criterion = Criterion(protocol.loss, data.num_classes, 3 * 64)
    batch = next(data.train_batches(0))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(5):
        loss = criterion(model(batch), batch["pid"], "ce+triplet", 0.1)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


@pytest.mark.slow
def test_fit_runs_stages_and_freezes(synthetic_dataset):
    protocol, data, model = _setup(
        synthetic_dataset,
        "train.stages=[{name: head, epochs: 1, freeze: [encoders]}, {name: all, epochs: 1}]",
    )
    criterion = Criterion(protocol.loss, data.num_classes, 3 * 64)
    before = [p.detach().clone() for p in model.encoders.parameters()]
    logged = []
    fit_result = fit(
        model,
        criterion,
        data,
        protocol,
        torch.device("cpu"),
        on_epoch=lambda state: logged.append((state.epoch - 1, state.history[-1])),
        show_progress=False,
    )
    assert [e for e, _ in logged] == [0, 1]
    assert fit_result.samples_seen == 2 * 4 * 16
    assert all(torch.isfinite(torch.tensor(m["train_loss"])) for _, m in logged)
    after = list(model.encoders.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))  # stage 2 trained them
    metrics = evaluate_data(model, data)
    assert 0 <= metrics["mAP"] <= 1 and metrics["num_valid_queries"] == 96


def test_batch_hard_triplet_by_hand():
    feat = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 3.0], [0.0, 5.0]])
    labels = torch.tensor([0, 0, 1, 1])
    # anchors: d_ap = [1, 1, 2, 2]; d_an = [3, sqrt(10), 3, 5]
    d_an = torch.tensor([3.0, 10**0.5, 3.0, 5.0])
    d_ap = torch.tensor([1.0, 1.0, 2.0, 2.0])
    expected = torch.relu(d_ap - d_an + 2.5).mean()
    assert torch.allclose(batch_hard_triplet(feat, labels, 2.5), expected, atol=1e-5)
    soft = torch.nn.functional.softplus(d_ap - d_an).mean()
    assert torch.allclose(batch_hard_triplet(feat, labels, None), soft, atol=1e-5)


@pytest.mark.slow
def test_missing_modality_and_cross_modal_settings(synthetic_dataset):
    from reidbench.evaluation.settings import cross_modal_settings, missing_modality_settings

    names = [s.name for s in missing_modality_settings(["rgb", "nir", "tir"])]
    assert names == ["no_tir", "no_nir", "no_rgb", "no_nir_tir", "no_rgb_tir", "no_rgb_nir"]
    assert [s.name for s in cross_modal_settings(["rgb", "nir"], ["all"])] == ["rgb->nir", "nir->rgb"]

    protocol, data, model = _setup(
        synthetic_dataset, "eval.missing_modality=true", "eval.cross_modal=[rgb->nir+tir]"
    )
    metrics = evaluate_data(model, data)
    assert {"mAP", "mAP@no_tir", "rank1@no_rgb_nir", "mAP@rgb->nir+tir"} <= set(metrics)
    assert len([k for k in metrics if k.startswith("mAP")]) == 1 + 6 + 1
    # zero-filling a modality changes the embedding, so the numbers differ from the full setting
    assert metrics["mAP@no_rgb_nir"] != metrics["mAP"]


def test_zero_fill_convention_matches_a_hand_made_batch(synthetic_dataset):
    from reidbench.evaluation.features import extract

    protocol, data, model = _setup(synthetic_dataset)
    model.eval()
    got = extract(model, data.eval_set("query"), 32, keep=("rgb", "nir"))
    batch = next(data.eval_batches("query", 32))
    batch["tir"] = torch.zeros_like(batch["tir"])
    with torch.no_grad():
        want = torch.nn.functional.normalize(model(batch).embedding, dim=1)
    assert torch.allclose(got[:32], want, atol=1e-6)


def test_bad_cross_modal_spec_is_a_user_error():
    import pytest

    from reidbench.errors import UserError
    from reidbench.evaluation.settings import cross_modal_settings

    with pytest.raises(UserError, match="QUERY->GALLERY"):
        cross_modal_settings(["rgb", "nir"], ["rgb->thermal"])


@pytest.mark.slow
def test_evaluate_reports_rerank_and_matches_rank_metrics(synthetic_dataset):
    from reidbench.evaluation import k_reciprocal_rerank, rank_metrics
    from reidbench.evaluation.features import extract

    protocol, data, model = _setup(synthetic_dataset, "eval.rerank=true")
    metrics = evaluate_data(model, data)
    qf, gf = extract(model, data.eval_set("query"), 64), extract(model, data.eval_set("gallery"), 64)
    from reidbench.evaluation.metrics import pairwise_distance

    plain = rank_metrics(
        pairwise_distance(qf, gf), data.query.pids, data.gallery.pids, data.query.camids, data.gallery.camids
    )
    assert abs(metrics["mAP"] - plain.mAP) < 1e-9
    reranked = rank_metrics(
        k_reciprocal_rerank(qf, gf),
        data.query.pids,
        data.gallery.pids,
        data.query.camids,
        data.gallery.camids,
    )
    assert abs(metrics["mAP@rerank"] - reranked.mAP) < 1e-9
