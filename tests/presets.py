"""Tiny per-method settings for CPU tests (on top of the synthetic protocol's tiny ViT)."""

from __future__ import annotations

from pathlib import Path


def write_vocab(path: Path, size: int | None = None) -> Path:
    """The synthetic captions' WordPiece vocab (filled up to ``size`` tokens when given)."""
    from reidbench.data.synthetic import caption_vocabulary

    tokens = [*caption_vocabulary(), "##s", "##ed"]
    tokens += [f"filler{i}" for i in range((size or 0) - len(tokens))]
    path.write_text("\n".join(tokens) + "\n")
    return path


FUSION_LAYERS = ["method.heads=2", "method.dim_feedforward=128"]


def tiny_method(method: str, vocab: Path) -> list[str]:
    """Overrides that make ``method`` tiny on the synthetic protocol."""
    return {
        "graft": FUSION_LAYERS,
        "early_fusion": FUSION_LAYERS,
        "mmet": [f"method.tokenizer={vocab}"],  # the synthetic protocol's method_settings make the rest tiny
    }.get(method, [])


def caption_tokenizer(vocab: Path):
    """A caption tokenizer (BERT WordPiece, 77 tokens) over ``vocab``."""
    from reidbench.data.text import CaptionTokenizer, build_tokenizer

    return CaptionTokenizer(build_tokenizer(str(vocab)))


def make_datamodule(spec, dataset):
    """``spec``'s DataModule on the CPU, with the caption tokenizer its method declares (as the runner)."""
    import torch

    from reidbench.data.module import DataModule
    from reidbench.nn.factory import create_tokenizer

    tokenizer = create_tokenizer(spec.method, spec.protocol.method, spec.protocol, dataset.info)
    return DataModule(dataset, spec.protocol, torch.device("cpu"), show_progress=False, tokenizer=tokenizer)


def build_model(spec, dataset, data, **knobs):
    """``spec``'s model for the DataModule ``data`` as the runner builds it; ``knobs`` change method knobs."""
    from reidbench.nn.factory import BuildInfo, create_method

    info = BuildInfo.from_protocol(spec.protocol, dataset.info, data.num_classes, data.tokenizer)
    return create_method(spec.method, {**spec.protocol.method, **knobs}, info)


def build_criterion(spec, data, model):
    """``spec``'s criterion for ``model`` as the runner builds it (the method's extra terms included)."""
    from reidbench.nn.factory import create_loss_terms
    from reidbench.train.losses import Criterion

    terms = create_loss_terms(spec.method, spec.protocol.method, spec.protocol.loss)
    return Criterion(spec.protocol.loss, data.num_classes, model.embed_dim, terms)


def random_embedding_map(dataset, draws: int = 5) -> float:
    """Mean mAP of random unit embeddings on the dataset's query / gallery (the chance level)."""
    import torch
    import torch.nn.functional as F

    from reidbench.evaluation.metrics import pairwise_distance, rank_metrics

    splits = dataset.splits

    def labels(samples, key):
        return torch.tensor([getattr(s, key) for s in samples])

    values = []
    for seed in range(draws):
        gen = torch.Generator().manual_seed(seed)
        q = F.normalize(torch.randn(len(splits.query), 64, generator=gen), dim=1)
        g = F.normalize(torch.randn(len(splits.gallery), 64, generator=gen), dim=1)
        result = rank_metrics(
            pairwise_distance(q, g),
            labels(splits.query, "pid"),
            labels(splits.gallery, "pid"),
            labels(splits.query, "camid"),
            labels(splits.gallery, "camid"),
            junk="market",
        )
        values.append(result.as_dict()["mAP"])
    return sum(values) / len(values)


def assert_method_learns(
    method: str,
    dataset,
    vocab: Path,
    epochs: int = 6,
    recipe: str | None = None,
    overrides: tuple[str, ...] = (),
) -> dict[str, float]:
    """Train ``method`` (tiny, registration defaults, ``recipe`` track, then ``overrides``) on the synthetic
    data for ``epochs`` on one CPU thread; its mAP must beat a random embedding 4x and the same untrained
    model by 0.05."""
    import torch

    from reidbench.context import RunContext
    from reidbench.runner import run_one
    from reidbench.spec import make_spec

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the test machine is shared: one thread does not spin-wait
    try:
        settings = [f"train.epochs={epochs}", *tiny_method(method, vocab), *overrides]
        spec = make_spec(method, "synthetic", 0, settings, recipe=recipe)
        untrained = untrained_metrics(spec, dataset)
        trained = run_one(spec, RunContext(Path("unused")), torch.device("cpu")).metrics
    finally:
        torch.set_num_threads(threads)
    chance = random_embedding_map(dataset)
    assert 0.02 < chance < 0.08
    assert trained["mAP"] > 4 * chance, (method, trained["mAP"], chance)
    assert trained["mAP"] > untrained["mAP"] + 0.05, (method, trained["mAP"], untrained["mAP"])
    return trained


def evaluate_data(model, data):
    """``evaluate`` on a DataModule's own query and gallery under its protocol's evaluation settings."""
    from reidbench.evaluation import evaluate

    return evaluate(model, data.eval_set("query"), data.eval_set("gallery"), data.protocol.eval)


def untrained_metrics(spec, dataset) -> dict[str, float]:
    """The metrics of ``spec``'s model at initialisation (seeded as a run seeds it), on the CPU."""
    from reidbench.runner import seed_everything

    seed_everything(spec.seed)
    data = make_datamodule(spec, dataset)
    return evaluate_data(build_model(spec, dataset, data), data)
