"""DataModule on the cache: batch contents, synchronised augmentation, DDP invariance, on-device option."""

import numpy as np
import pytest
import torch
from PIL import Image

from reidbench.data import module as module_mod
from reidbench.data.augment import augment_numpy
from reidbench.data.cache import load_split
from reidbench.data.images import read_image
from reidbench.data.module import DataModule, resolve_on_device
from reidbench.data.text import CaptionTokenizer
from reidbench.data.types import Dataset, DatasetInfo, DatasetSplits, ImageRef, Sample
from reidbench.protocol import build_protocol
from reidbench.registry import DATASETS, load_plugins
from tests.layouts import small_rgbnt201_root
from tests.presets import caption_tokenizer, write_vocab

load_plugins()
SMALL_PROTOCOL = [
    "data.image_size=[16, 8]",
    "sampler.p=2",
    "sampler.k=2",
    "data.augment.pad=2",
    "data.mean.rgb=[0.4, 0.5, 0.6]",
    "data.std.rgb=[0.2, 0.25, 0.3]",
]


@pytest.fixture
def dataset(tmp_path, tmp_path_factory, monkeypatch):
    root = small_rgbnt201_root(tmp_path, tmp_path_factory, monkeypatch)
    return DATASETS.get("rgbnt201").builder(root)


def make(dataset, *overrides, **kw):
    protocol = build_protocol("synthetic", [*SMALL_PROTOCOL, *overrides])
    return DataModule(dataset, protocol, torch.device("cpu"), show_progress=False, **kw)


def test_eval_batches_are_the_decoded_images_normalised(dataset):
    data = make(dataset, "data.text=true")
    assert data.gallery is data.query  # RGBNT201: one test set
    batches = list(data.eval_batches("query", 5, drop=("tir",)))
    assert [len(b["pid"]) for b in batches] == [5, 3]
    b = batches[1]
    sample = dataset.splits.query[6]
    raw = torch.from_numpy(np.array(read_image(sample.images["rgb"], (16, 8)))).float() / 255
    expected = (raw - torch.tensor([0.4, 0.5, 0.6]).view(3, 1, 1)) / torch.tensor([0.2, 0.25, 0.3]).view(
        3, 1, 1
    )
    assert torch.allclose(b["rgb"][1], expected, atol=1e-5)
    nir = torch.from_numpy(np.array(read_image(sample.images["nir"], (16, 8)))).float() / 255
    assert torch.allclose(b["nir"][1], (nir - 0.5) / 0.5, atol=1e-5)
    assert torch.equal(b["tir"], torch.zeros(3, 3, 16, 8))
    assert b["pid"][1] == sample.pid and b["camid"][1] == sample.camid and b["index"].tolist() == [5, 6, 7]
    assert b["rgb"].is_contiguous() and "text_ids" not in b  # no tokenizer: no captions


def test_batches_carry_the_captions_tokenized_as_the_tokenizer_does_per_batch(dataset, tmp_path):
    tokenizer = caption_tokenizer(write_vocab(tmp_path / "vocab.txt"))
    short = CaptionTokenizer(tokenizer.tokenizer, max_len=12)  # truncates the longer captions
    data = make(dataset, "data.text=true", tokenizer=short)
    assert data.tokenizer is short and not make(dataset, tokenizer=short).tokenizer  # data.text=false: unused
    batches = [*data.eval_batches("query", 3), next(data.train_batches(0))]
    splits = [dataset.splits.query] * 3 + [dataset.splits.train]
    for batch, samples in zip(batches, splits, strict=True):
        captions = [samples[i].caption or "" for i in batch["index"].tolist()]
        assert any(captions)
        enc = short.tokenizer(
            captions, padding="longest", truncation=True, max_length=12, return_tensors="pt"
        )
        assert torch.equal(batch["text_ids"], enc["input_ids"])
        assert torch.equal(batch["text_mask"], enc["attention_mask"])
        words = [[-1 if w is None else w for w in enc.word_ids(i)] for i in range(len(captions))]
        assert batch["text_words"].tolist() == words
    assert max(len(b["text_ids"][0]) for b in batches) == 12


def test_train_batches_are_pk_batches_of_the_cache_augmented_then_normalised(dataset):
    data = make(dataset)
    arrays = load_split(dataset, "train", (16, 8), show_progress=False)
    batches = list(data.train_batches(1))
    assert len(batches) == data.steps_per_epoch() or abs(len(batches) - data.steps_per_epoch()) <= 1
    for step, (idx, batch) in enumerate(zip(data.epoch_indices(1), batches, strict=True)):
        params = data.augment_params(1, step)
        assert torch.equal(batch["index"], torch.from_numpy(idx))
        assert torch.equal(batch["pid"], data.train_labels[torch.from_numpy(idx)])
        for m in ("rgb", "nir", "tir"):
            fill = data._fill[m]
            u8 = torch.from_numpy(augment_numpy(np.asarray(arrays[m]), idx, params, fill)).float()
            assert torch.allclose(batch[m], u8 * data._scale[m] + data._shift[m], atol=1e-6)
    again = next(make(dataset).train_batches(1))
    assert torch.equal(again["rgb"], batches[0]["rgb"])
    other = next(make(dataset).train_batches(2))
    assert not torch.equal(other["rgb"], batches[0]["rgb"])


def test_one_draw_augments_every_modality_of_a_sample(dataset):
    """A dataset whose three modalities are the same file: the augmented modalities stay identical."""
    same = [
        Sample({m: s.images["rgb"] for m in ("rgb", "nir", "tir")}, s.pid, s.camid)
        for s in dataset.splits.train
    ]
    info = DatasetInfo("same-files", ["rgb", "nir", "tir"], 4, root=dataset.info.root)
    ds = Dataset(info, DatasetSplits(same, same[:4], same[4:8]))
    data = make(ds, "data.augment.erase=0.8", "data.mean={}", "data.std={}")
    for batch in data.train_batches(0):
        assert torch.equal(batch["rgb"], batch["nir"]) and torch.equal(batch["rgb"], batch["tir"])


def test_global_batches_and_augmentation_do_not_depend_on_the_number_of_processes(dataset):
    single = list(make(dataset, "sampler.p=4").train_batches(3))
    ranks = [list(make(dataset, "sampler.p=4", rank=r, world_size=2).train_batches(3)) for r in (0, 1)]
    assert len(single) == len(ranks[0]) == len(ranks[1]) > 0
    for whole, a, b in zip(single, *ranks, strict=True):
        for key in ("rgb", "tir", "pid", "index"):
            assert torch.equal(whole[key], torch.cat([a[key], b[key]]))


def test_training_never_decodes_images(dataset, monkeypatch):
    data = make(dataset)

    def no_decoding(*_, **__):
        raise AssertionError("decoded an image in the training loop")

    monkeypatch.setattr(Image, "open", no_decoding)
    assert sum(len(b["pid"]) for b in data.train_batches(0)) > 0
    assert sum(len(b["pid"]) for b in data.eval_batches("query", 4)) == 8


def test_gpu_style_batched_gather_gives_the_same_batches(dataset):
    host, batched = make(dataset, "data.augment.erase=0.9"), make(dataset, "data.augment.erase=0.9")
    assert not host.gather_on_device
    batched.gather_on_device = True  # what a GPU-resident cache uses (augment_torch), run here on the CPU
    for a, b in zip(host.train_batches(4), batched.train_batches(4), strict=True):
        for m in ("rgb", "nir", "tir"):
            assert torch.equal(a[m], b[m])


def test_on_device_true_holds_the_images_in_memory_with_the_same_batches(dataset):
    mapped, loaded = make(dataset, "data.on_device=false"), make(dataset, "data.on_device=true")
    assert mapped_file(mapped.train.images["rgb"].data_ptr()).endswith("rgb.npy")
    assert not mapped_file(loaded.train.images["rgb"].data_ptr()).endswith(".npy")  # read into memory
    for a, b in zip(mapped.train_batches(0), loaded.train_batches(0), strict=True):
        assert torch.equal(a["nir"], b["nir"])


def mapped_file(address: int) -> str:
    """The file mapped at ``address`` in this process ('' for anonymous memory)."""
    with open("/proc/self/maps") as fh:
        for line in fh:
            parts = line.split()
            start, end = (int(x, 16) for x in parts[0].split("-"))
            if start <= address < end:
                return parts[5] if len(parts) > 5 else ""
    return ""


def test_auto_on_device_means_a_gpu_with_room_to_spare(monkeypatch):
    assert resolve_on_device("auto", torch.device("cpu"), 1) is False
    assert resolve_on_device(True, torch.device("cpu"), 10**15) is True
    assert resolve_on_device(False, torch.device("cuda"), 1) is False
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (80 * 2**30, 80 * 2**30))
    assert resolve_on_device("auto", torch.device("cuda"), 6 * 2**30) is True
    assert (
        resolve_on_device("auto", torch.device("cuda"), int(module_mod.ON_DEVICE_FRACTION * 80 * 2**30) + 1)
        is False
    )


def test_on_device_setting_is_type_checked():
    from reidbench.errors import UserError

    with pytest.raises(UserError, match="data.on_device"):
        build_protocol("synthetic", ["data.on_device=sometimes"])


def test_image_refs_are_read_per_modality_file(dataset):
    ref = dataset.splits.train[0].images["tir"]
    assert isinstance(ref, ImageRef) and ref.path.parent.name == "TI"


def test_caption_truncation_warns_with_the_share_of_tokens_dropped(tmp_path):
    from reidbench.data.text import CaptionTokenizer
    from tests.presets import caption_tokenizer, write_vocab

    base = caption_tokenizer(write_vocab(tmp_path / "vocab.txt"))
    tokenizer = CaptionTokenizer(base.tokenizer, max_len=6)
    captions = ["a red car", "a red car with blue stripes and a hot engine", ""]
    lengths = [len(base.tokenizer(c)["input_ids"]) for c in captions]  # with [CLS] and [SEP]
    dropped = sum(max(0, n - 6) for n in lengths)
    assert tokenizer.truncation(captions) == (1, dropped, sum(lengths))
    with pytest.warns(
        UserWarning, match=rf"1 of 3 captions are longer than 6 tokens: truncating drops {dropped} "
    ):
        text = tokenizer.encode(captions, torch.device("cpu"))
    assert text.ids.shape[1] == 6
