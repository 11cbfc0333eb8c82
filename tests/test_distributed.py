"""One run on several processes (gloo on CPU): the DDP math, global batches, and 2 processes vs 1."""

from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from reidbench.nn.output import ModelOutput
from reidbench.parallel import distributed, launch
from reidbench.train.losses import batch_hard_triplet
from tests.conftest import TINY

WORLD = 2


def _math_worker(rank: int, port: int, out_dir: str) -> None:
    env = distributed.DistEnv(rank, rank, WORLD, "127.0.0.1", port)
    distributed.init(env, torch.device("cpu"))
    try:
        torch.manual_seed(0)
        x_full, weight, target = torch.randn(8, 5) * 3 + 1, torch.randn(5), torch.randn(8, 5)
        labels, proj = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3]), torch.randn(5, 4)
        rows = slice(rank * 4, rank * 4 + 4)
        bn = distributed.sync_batchnorm(nn.Sequential(nn.BatchNorm1d(5)), torch.device("cpu"))[0]
        bn.weight.data.copy_(weight)
        x = x_full[rows].clone().requires_grad_()
        y = bn(x)
        ((y - target[rows]) ** 2).sum().backward()
        dist = torch.distributed
        dist.all_reduce(bn.weight.grad)  # summed over ranks, as the single-process sum of squares
        # the loss of gathered outputs: DDP averages the parameter gradients of the ranks
        p = proj.clone().requires_grad_()
        out = distributed.gather_output(
            ModelOutput(embedding=x_full[rows] @ p, logits=(x_full[rows] @ p)[:, :2]), 4
        )
        loss = batch_hard_triplet(out.embedding, labels, 0.3) + out.logits.pow(2).mean()
        loss.backward()
        dist.all_reduce(p.grad)
        p.grad /= WORLD
        torch.save(
            {
                "y": y.detach(),
                "x_grad": x.grad,
                "w_grad": bn.weight.grad,
                "mean": bn.running_mean,
                "var": bn.running_var,
                "p_grad": p.grad,
                "loss": loss.detach(),
            },
            Path(out_dir) / f"{rank}.pt",
        )
    finally:
        distributed.shutdown()


@pytest.mark.slow
def test_global_batchnorm_and_gathered_loss_equal_one_process(tmp_path):
    mp.spawn(_math_worker, args=(launch.free_port(), str(tmp_path)), nprocs=WORLD)
    r0, r1 = (torch.load(tmp_path / f"{r}.pt") for r in range(WORLD))
    torch.manual_seed(0)
    x_full, weight, target = torch.randn(8, 5) * 3 + 1, torch.randn(5), torch.randn(8, 5)
    labels, proj = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3]), torch.randn(5, 4)
    bn = nn.BatchNorm1d(5)
    bn.weight.data.copy_(weight)
    x = x_full.clone().requires_grad_()
    y = bn(x)
    ((y - target) ** 2).sum().backward()
    assert torch.allclose(torch.cat([r0["y"], r1["y"]]), y, atol=1e-5)
    assert torch.allclose(torch.cat([r0["x_grad"], r1["x_grad"]]), x.grad, atol=1e-5)
    for r in (r0, r1):
        assert torch.allclose(r["w_grad"], bn.weight.grad, atol=1e-4)
        assert torch.allclose(r["mean"], bn.running_mean, atol=1e-6)
        assert torch.allclose(r["var"], bn.running_var, atol=1e-5)
    p = proj.clone().requires_grad_()
    emb = x_full @ p
    loss = batch_hard_triplet(emb, labels, 0.3) + emb[:, :2].pow(2).mean()
    loss.backward()
    for r in (r0, r1):
        assert torch.allclose(r["loss"], loss, atol=1e-6)
        assert torch.allclose(r["p_grad"], p.grad, atol=1e-5)


def test_the_ranks_batches_make_up_the_single_process_batch(synthetic_dataset):
    from reidbench.data.module import DataModule
    from reidbench.protocol import build_protocol

    protocol = build_protocol("synthetic", TINY)
    cpu = torch.device("cpu")
    one = DataModule(synthetic_dataset, protocol, cpu, seed=0, show_progress=False)
    ranks = [
        DataModule(synthetic_dataset, protocol, cpu, seed=0, rank=r, world_size=WORLD, show_progress=False)
        for r in range(WORLD)
    ]
    for epoch in (0, 1):
        steps = list(zip(one.train_batches(epoch), *(d.train_batches(epoch) for d in ranks), strict=True))
        assert len(steps) == one.steps_per_epoch() == ranks[1].steps_per_epoch()
        for batch, *parts in steps:
            for key in (
                "rgb",
                "nir",
                "tir",
                "pid",
                "index",
                "camid",
            ):  # augmented images included, bit for bit
                assert torch.equal(torch.cat([p[key] for p in parts]), batch[key])
            assert not {int(i) for i in parts[0]["pid"]} & {int(i) for i in parts[1]["pid"]}  # P/N ids each
    with pytest.raises(Exception, match="cannot be split over 3 processes"):
        distributed.check_divisible(4, 3)


@pytest.mark.slow
def test_two_gloo_processes_train_like_one(tmp_path, mlflow_uri):
    from mlflow.tracking import MlflowClient

    from reidbench import tracking
    from reidbench.context import RunContext
    from reidbench.runner import run_one
    from reidbench.spec import make_spec
    from reidbench.sweeps.executors import Job, LocalPool
    from reidbench.train.checkpoint import Checkpointer

    # SGD: Adam would turn the rounding noise of parameters whose exact gradient is 0 (key biases, the
    # final norm's bias before the BNNeck) into lr-sized steps, hiding how close the gradients are
    spec = make_spec(
        "late_fusion",
        "synthetic",
        0,
        [
            "sampler.p=4",
            "sampler.k=4",
            "train.epochs=2",
            "train.max_steps_per_epoch=3",
            "optim.name=sgd",
            "optim.lr=0.05",
        ],
    )
    digest = spec.config_hash
    single = run_one(
        spec,
        RunContext(Path("unused"), checkpoint_dir=tmp_path / "one", keep_checkpoints=True),
        torch.device("cpu"),
    )
    tracking.prepare(mlflow_uri, "reidbench")  # the parent creates the store before the workers start
    ctx = RunContext(
        Path("unused"), mlflow_uri, device="cpu", checkpoint_dir=tmp_path / "two", keep_checkpoints=True
    )
    (outcome,) = LocalPool([None], tmp_path / "jobs", nprocs=WORLD).run([Job(spec, ctx, WORLD)])
    assert outcome.ok, f"{outcome.error}\n{outcome.log.read_text()[-3000:]}"

    one = Checkpointer(tmp_path / "one" / digest).load()
    two = Checkpointer(tmp_path / "two" / digest).load()
    loss_one = [h["train_loss"] for h in one.history]
    loss_two = [h["train_loss"] for h in two.history]
    weight_diff = max((one.model[k].float() - two.model[k].float()).abs().max().item() for k in one.model)
    metric_diff = {k: abs(single.metrics[k] - outcome.metrics[k]) for k in ("mAP", "rank1", "mINP")}
    print(
        f"\nDDP x{WORLD} vs 1 process: train_loss {loss_one} vs {loss_two}; "
        f"max |weight diff| {weight_diff:.2e}; "
        f"|metric diff| {metric_diff}"
    )
    assert two.samples_seen == one.samples_seen  # the same global batches
    assert loss_two == pytest.approx(loss_one, rel=1e-4) and loss_one[1] < loss_one[0]
    assert weight_diff < 1e-4
    # near-tied distances of a barely trained model: one query's rank-1 may flip (1/96), mAP moves by < 1e-3
    assert metric_diff["mAP"] < 2e-3 and metric_diff["mINP"] < 2e-3
    assert metric_diff["rank1"] <= 1 / single.metrics["num_valid_queries"] + 1e-9
    assert (
        outcome.metrics["num_valid_queries"] == single.metrics["num_valid_queries"]
    )  # every query, gathered

    client = MlflowClient(mlflow_uri)
    (run,) = client.search_runs([client.get_experiment_by_name("reidbench").experiment_id])  # rank 0 only
    assert run.data.tags["world_size"] == "2" and run.info.status == "FINISHED"
    assert run.data.metrics["mAP"] == outcome.metrics["mAP"]
