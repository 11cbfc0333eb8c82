"""Camera ids reach the models: the dataset info counts the cameras, every method hands the batch's
``camid`` to its image backbone (repeated per stacked modality)."""

from __future__ import annotations

import pytest
import torch

from reidbench.data.module import DataModule
from reidbench.data.types import Sample, count_cameras
from reidbench.nn.backbones import ImageBackbone, batch_camids
from tests.presets import build_model, tiny_method, write_vocab

METHODS_WITH_IMAGES = ["early_fusion", "graft", "late_fusion", "mmet", "multi_stream_vit", "single_modality"]


def test_count_cameras_spans_every_split():
    def sample(cam):
        return Sample({}, pid=1, camid=cam)

    assert count_cameras([sample(0), sample(2)], [sample(5)]) == 6
    assert count_cameras([]) == 0


def test_synthetic_dataset_knows_its_cameras(synthetic_dataset):
    splits = synthetic_dataset.splits
    cams = {s.camid for s in [*splits.train, *splits.query, *splits.gallery]}
    assert synthetic_dataset.info.num_cameras == max(cams) + 1 >= 2


def test_batch_camids_repeats_modality_major():
    batch = {"camid": torch.tensor([3, 1])}
    assert batch_camids(batch, 3).tolist() == [3, 1, 3, 1, 3, 1]
    assert batch_camids(batch) is batch["camid"]
    assert batch_camids({}, 2) is None


@pytest.mark.parametrize("method", METHODS_WITH_IMAGES)
def test_every_method_passes_the_batch_camids_to_its_backbone(method, synthetic_dataset, tmp_path):
    from reidbench.spec import make_spec

    vocab = write_vocab(tmp_path / "vocab.txt")
    spec = make_spec(method, "synthetic", 0, ["sampler.p=2", "sampler.k=2", *tiny_method(method, vocab)])
    data = DataModule(synthetic_dataset, spec.protocol, torch.device("cpu"), show_progress=False)
    if method == "mmet":
        from tests.presets import make_datamodule

        data = make_datamodule(spec, synthetic_dataset)
    model = build_model(spec, synthetic_dataset, data)
    seen: list[torch.Tensor | None] = []

    def record(module, args, kwargs):
        seen.append(kwargs.get("camids", args[2] if len(args) > 2 else None))

    backbones = [m for m in model.modules() if isinstance(m, ImageBackbone)]
    assert backbones
    for b in backbones:
        b.register_forward_pre_hook(record, with_kwargs=True)
    batch = next(data.train_batches(0))
    model(batch)
    cams = batch["camid"]
    assert seen and all(c is not None for c in seen)
    for c in seen:  # each call sees the batch's camids, once per modality it stacks
        assert len(c) % len(cams) == 0
        assert torch.equal(c, cams.repeat(len(c) // len(cams)))
