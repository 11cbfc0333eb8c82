"""A temporary MLflow store with known numbers, logged through reidbench.tracking (no training)."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

from reidbench import tracking

EXPERIMENT = "known"
GIT_COMMIT = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c"
PARAMS = {
    "protocol.train.epochs": "12",
    "protocol.train.stages": "[]",
    "protocol.backbone.name": "vit_tiny",
    "protocol.backbone.pretrained": "False",
    "protocol.optim.lr": "0.001",
}
LATE_FUSION = {  # seed -> metrics
    0: {
        "mAP": 0.60,
        "rank1": 0.70,
        "train_images_per_s": 300.0,
        "train_time_s": 60.0,
        "mAP@no_tir": 0.50,
        "mAP@no_rgb_nir": 0.30,
        "rank1@no_tir": 0.61,
        "mAP@rgb->nir+tir": 0.20,
    },
    1: {
        "mAP": 0.62,
        "rank1": 0.71,
        "train_images_per_s": 310.0,
        "train_time_s": 66.0,
        "mAP@no_tir": 0.52,
        "mAP@no_rgb_nir": 0.31,
        "rank1@no_tir": 0.62,
        "mAP@rgb->nir+tir": 0.25,
    },
    2: {
        "mAP": 0.64,
        "rank1": 0.75,
        "train_images_per_s": 320.0,
        "train_time_s": 72.0,
        "mAP@no_tir": 0.57,
        "mAP@no_rgb_nir": 0.35,
        "rank1@no_tir": 0.66,
        "mAP@rgb->nir+tir": 0.30,
    },
}
GRAFT = {0: {"mAP": 0.70, "rank1": 0.66}, 1: {"mAP": 0.74, "rank1": 0.68}}
MMET = {0: {"mAP": 0.50, "rank1": 0.80}}
TOKENS = [1, 4, 16]
LOSSES = ["ce+triplet", "ce", "ce+triplet+center"]
PUBLISHED = """# a comment line
method,dataset,setting,backbone,mAP,mAP_std,rank1,rank1_std,rank5,rank10,mINP,params_m,source,selection,seeds,note
graft,synthetic,,DeiT-B,80.0,,60.0,,,,,101,Paper A Table 1,best-epoch-on-test,1,made up for the test
DeMo,synthetic,no_tir,CLIP,40.0,,45.0,,,,,,Paper B Fig. 3,best-epoch-on-test,1,
TOP-ReID,rgbnt100,,ViT-B/16,81.2,,96.4,,,,,,Paper C,best-epoch-on-test,1,
"""


def token_map(tokens: int, seed: int) -> float:
    return 0.5 + 0.02 * tokens**0.5 + 0.01 * seed


def loss_map(variant: str, seed: int) -> float:
    return 0.4 + 0.05 * variant.count("+") + 0.01 * seed


def log_run(
    uri: str,
    exp_id: str,
    method: str,
    dataset: str,
    seed: int,
    metrics: dict[str, float],
    tags: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
    history: dict[str, list[float]] | None = None,
    status: str = "FINISHED",
    kind: str = "run",
) -> str:
    """One run with the contract's tags (a config hash from its params and seed), params, per-epoch history
    and final metrics."""
    params = {**PARAMS, **(params or {})}
    digest = hashlib.sha256(repr((method, dataset, seed, sorted(params.items()))).encode()).hexdigest()
    run = tracking.Run(
        uri,
        exp_id,
        f"{method}@{dataset}#s{seed}",
        {
            "run_kind": kind,
            "method": method,
            "dataset": dataset,
            "seed": str(seed),
            "device": "cpu",
            "config_hash": digest[:16],
            "git_commit": GIT_COMMIT,
            **(tags or {}),
        },
    )
    run.log_params(params)
    history = history or {}
    for step in range(max(map(len, history.values()), default=0)):
        run.log_metrics({k: v[step] for k, v in history.items() if step < len(v)}, step=step)
    run.log_metrics(metrics)
    run.finish(status)
    return run.run_id


def make_store(directory: Path) -> str:
    """Fill ``directory``/mlflow.db with the runs above (plus ones the report must ignore); the URI."""
    uri = f"sqlite:///{directory / 'mlflow.db'}"
    exp = tracking.prepare(uri, EXPERIMENT)
    # Superseded: an earlier run of late_fusion seed 1 with the same config; the later one counts.
    log_run(uri, exp, "late_fusion", "synthetic", 1, {"mAP": 0.10, "rank1": 0.10, "params": 2.5e6})
    time.sleep(0.02)
    for seed, metrics in LATE_FUSION.items():
        log_run(
            uri,
            exp,
            "late_fusion",
            "synthetic",
            seed,
            {**metrics, "params": 2.5e6},
            tags={"missing_convention": "zero"},
            history={
                "train_ce": [2.0, 1.5, 1.0 - 0.1 * seed],
                "train_triplet": [1.0, 0.5, 0.5],
                "train_loss": [3.0, 2.0, 1.5 - 0.1 * seed],
                "lr": [1e-3, 5e-4, 1e-4],
            },
        )
    for seed, metrics in GRAFT.items():
        log_run(
            uri,
            exp,
            "graft",
            "synthetic",
            seed,
            {**metrics, "params": 5e6},
            history={"train_loss": [3.0, 2.5, 2.0], "train_ce": [3.0, 2.5, 2.0]},
        )
    for seed, metrics in MMET.items():
        log_run(uri, exp, "mmet", "synthetic", seed, {**metrics, "params": 9e6})
    # Ignored: a failed run and a parent run.
    log_run(uri, exp, "late_fusion", "synthetic", 3, {"mAP": 0.99, "rank1": 0.99}, status="FAILED")
    log_run(uri, exp, "late_fusion", "synthetic", 0, {"mAP": 0.98, "rank1": 0.98}, kind="parent")
    ablation = {"ablation": "fusion_tokens", "axis": "method.fusion_tokens", "axis_default": "4"}
    for dataset in ("synthetic", "rgbnt100"):
        for tokens in TOKENS:
            for seed in (0, 1):
                log_run(
                    uri,
                    exp,
                    "graft",
                    dataset,
                    seed,
                    {"mAP": token_map(tokens, seed), "rank1": 0.6},
                    tags={**ablation, "value": str(tokens)},
                    params={"protocol.method.fusion_tokens": str(tokens)},
                )
    ablation = {"ablation": "loss", "axis": "loss.variant", "axis_default": "ce+triplet"}
    for variant in LOSSES:
        for seed in (0, 1):
            log_run(
                uri,
                exp,
                "graft",
                "synthetic",
                seed,
                {"mAP": loss_map(variant, seed), "rank1": 0.6},
                tags={**ablation, "value": variant},
                params={"protocol.loss.variant": variant},
                history={"train_loss": [2.0, 1.0]},
            )
    return uri


# --- a store shaped like `make demo`'s (its methods and synthetic-protocol params), three seeds -------------
DEMO_EXPERIMENT = "demo"
DEMO_METHODS = {  # method -> (mAP, params, loss terms)
    "single_modality": (0.246, 1.18e5, ["ce", "triplet"]),
    "graft": (0.453, 9.61e5, ["ce", "aug_triplet", "center"]),
    "late_fusion": (0.646, 1.24e5, ["ce", "triplet"]),
    "mmet": (0.679, 3.12e5, ["ce", "triplet", "itc"]),
    "early_fusion": (0.763, 3.99e5, ["ce", "triplet"]),
}
DEMO_PARAMS = {
    "protocol.train.epochs": "12",
    "protocol.train.stages": "[]",
    "protocol.backbone.name": "vit_tiny_patch16_224",
    "protocol.backbone.pretrained": "False",
    "protocol.backbone.patch_size": "8",
    "protocol.backbone.embed_dim": "64",
    "protocol.backbone.depth": "2",
    "protocol.backbone.num_heads": "2",
}
# GraFT's two stages as the run path logs them: shares of train.epochs, no epochs of their own.
GRAFT_STAGES = str(
    [
        {"name": "frozen", "epochs": None, "epoch_share": 0.4, "loss": "ce+aug_triplet"},
        {"name": "unfrozen", "epochs": None, "epoch_share": 0.6, "loss": "ce+aug_triplet+center"},
    ]
)
SETTINGS = ["no_rgb", "no_nir", "no_tir", "no_rgb_nir", "no_rgb_tir", "no_nir_tir"]
DEMO_SEEDS = (0, 1, 2)


def demo_metrics(m_ap: float, params: float, seed: int) -> dict[str, float]:
    """Final metrics of one demo run: accuracy, missing-modality mAP, cost."""
    jitter = 0.013 * (seed - 1)
    accuracy = {"mAP": m_ap + jitter, "rank1": m_ap + 0.05 + jitter, "rank5": 0.9, "rank10": 0.95}
    missing = {f"mAP@{s}": (m_ap + jitter) * (0.9 - 0.1 * i) for i, s in enumerate(SETTINGS)}
    cost = {
        "params": params,
        "gflops": params * 2.1e-4,
        "train_images_per_s": 1234.5 + 10 * seed,
        "train_time_s": 48.3 + 3 * seed,
    }
    return {**accuracy, "mINP": m_ap - 0.1, **missing, "mAP@rgb->nir+tir": m_ap / 2, **cost}


def demo_history(terms: list[str], epochs: int) -> dict[str, list[float]]:
    """Per-epoch ``train_<term>``, their sum ``train_loss`` and ``lr``, as the engine logs them."""
    curves = {f"train_{t}": [(i + 1) * 2.0 / (e + 1) for e in range(epochs)] for i, t in enumerate(terms)}
    curves["train_loss"] = [sum(c[e] for c in curves.values()) for e in range(epochs)]
    curves["lr"] = [1e-3 * (1 - e / epochs) for e in range(epochs)]
    return curves


def make_demo_store(directory: Path) -> str:
    """The demo's five methods x three seeds, a fusion-token ablation run with ``train.epochs=6`` (the
    protocol YAML says 12), and one RGBNT201 run on partial data; the URI."""
    uri = f"sqlite:///{directory / 'mlflow.db'}"
    exp = tracking.prepare(uri, DEMO_EXPERIMENT)
    for method, (m_ap, params, terms) in DEMO_METHODS.items():
        stages = {"protocol.train.stages": GRAFT_STAGES} if method == "graft" else {}
        for seed in DEMO_SEEDS:
            log_run(
                uri,
                exp,
                method,
                "synthetic",
                seed,
                demo_metrics(m_ap, params, seed),
                tags={"recipe": "demo-tiny"},
                params={**DEMO_PARAMS, **stages},
                history=demo_history(terms, 12),
            )
    ablation = {"ablation": "fusion_tokens", "axis": "method.fusion_tokens", "axis_default": "1"}
    for tokens in (1, 4):
        for seed in (0, 1):
            log_run(
                uri,
                exp,
                "graft",
                "synthetic",
                seed,
                {"mAP": 0.4 + 0.01 * tokens + 0.01 * seed, "rank1": 0.5},
                tags={**ablation, "value": str(tokens)},
                params={
                    **DEMO_PARAMS,
                    "protocol.train.epochs": "6",
                    "protocol.train.stages": GRAFT_STAGES,
                    "protocol.method.fusion_tokens": str(tokens),
                },
                history=demo_history(["ce", "aug_triplet"], 6),
            )
    log_run(
        uri,
        exp,
        "late_fusion",
        "rgbnt201",
        0,
        {"mAP": 0.383, "rank1": 0.41},
        tags={"partial_data": "true"},
        params=DEMO_PARAMS,
    )
    return uri
