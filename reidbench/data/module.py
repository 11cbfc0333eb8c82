"""DataModule: the decoded cache -> PK batches, synchronised augmentation, normalisation, on the device.

JPEG decoding never happens in the training loop: every split is decoded once into the memory-mapped
cache (:mod:`reidbench.data.cache`). When the splits fit (``data.on_device``; ``auto``: on a GPU with
enough free memory) they are copied to the device whole and batches are gathered and augmented there;
otherwise each batch is cut from the memory-mapped cache on the host (one slice copy per sample, uint8,
then normalised sample by sample in a few threads: :mod:`reidbench.data.host`) and moved. With a caption
tokenizer (the method's) each split's captions are tokenized once at set-up, and batches carry them as
``text_ids`` / ``text_mask`` / ``text_words`` tensors cut to the batch's longest caption.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from reidbench.data.augment import AugmentParams, augment_numpy, augment_torch, draw_params, torch_maps
from reidbench.data.cache import load_split
from reidbench.data.evalset import EvalSet
from reidbench.data.host import normalise_numpy, parallel
from reidbench.data.sampler import PKSampler
from reidbench.data.text import CaptionTokenizer, TokenizedText
from reidbench.data.types import Dataset, Sample, relabel
from reidbench.errors import UserError
from reidbench.protocol import Protocol

Batch = dict[str, object]
ON_DEVICE_FRACTION = 0.4  # auto: the images may take at most this share of the free GPU memory
COPY_CHUNK = 1024  # samples per host -> device copy when moving a split to the GPU


@dataclass
class EncodedSplit:
    """One split: uint8 images per modality ``(N, 3, H, W)`` (on the device, or memory-mapped on the host)
    plus label tensors and the tokenized captions (when a tokenizer is given) on the device."""

    images: dict[str, torch.Tensor]
    pids: torch.Tensor
    camids: torch.Tensor
    sceneids: torch.Tensor
    text: TokenizedText | None = None

    def __len__(self) -> int:
        return len(self.pids)


def resolve_on_device(setting: bool | str, device: torch.device, nbytes: int) -> bool:
    """Whether the decoded images go to ``device`` whole (``auto``: a GPU with ``nbytes`` to spare)."""
    if setting != "auto":
        return bool(setting)
    if device.type != "cuda":
        return False  # on the CPU the memory-mapped cache already is in (page-cached) memory
    free, _ = torch.cuda.mem_get_info(device)
    return nbytes <= ON_DEVICE_FRACTION * free


class DataModule:
    """Training and evaluation batches for one dataset under one protocol; ``tokenizer``: the method's
    caption tokenizer (used when the protocol attaches captions, ``data.text``). ``train=False``: query and
    gallery only (a target dataset, saved weights): the training split is neither decoded nor sampled."""

    def __init__(
        self,
        dataset: Dataset,
        protocol: Protocol,
        device: torch.device,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        show_progress: bool = True,
        tokenizer: CaptionTokenizer | None = None,
        train: bool = True,
    ) -> None:
        cfg = protocol.data
        missing = [m for m in cfg.modalities if m not in dataset.info.modalities]
        if missing:
            raise UserError(
                f"protocol asks for modalities {missing} that dataset {dataset.info.name!r} lacks "
                f"(it has {dataset.info.modalities}); set data.modalities accordingly"
            )
        self.info, self.protocol, self.device = dataset.info, protocol, torch.device(device)
        self.modalities = list(cfg.modalities)
        self.rank, self.world_size, self.seed = rank, world_size, seed
        self.tokenizer = tokenizer if cfg.text else None
        self.size = (cfg.image_size[0], cfg.image_size[1])
        same_set = dataset.splits.gallery is dataset.splits.query
        splits = (["train"] if train else []) + ["query"] + ([] if same_set else ["gallery"])
        arrays = {s: load_split(dataset, s, self.size, show_progress) for s in splits}
        nbytes = sum(arrays[s][m].nbytes for s in splits for m in self.modalities)
        self.on_device = resolve_on_device(cfg.on_device, self.device, nbytes)
        self.query = self._encode(dataset.splits.query, arrays["query"])
        self.gallery = self.query if same_set else self._encode(dataset.splits.gallery, arrays["gallery"])
        # batched gather (augment_torch) where the images live on a GPU, slice copies on the host otherwise
        self.gather_on_device = self.query.images[self.modalities[0]].device.type != "cpu"
        self.num_classes = 0
        if train:
            self._init_train(dataset, arrays["train"])
        self._fill: dict[str, np.ndarray] = {}
        self._scale: dict[str, np.ndarray] = {}
        self._shift: dict[str, np.ndarray] = {}
        for m in self.modalities:
            mean = np.asarray(cfg.mean.get(m, [0.5] * 3), np.float32).reshape(3, 1, 1)
            std = np.asarray(cfg.std.get(m, [0.5] * 3), np.float32).reshape(3, 1, 1)
            self._fill[m] = np.round(mean * 255).astype(np.uint8)
            self._scale[m] = (1 / (255 * std)).astype(np.float32)
            self._shift[m] = (-mean / std).astype(np.float32)
        self._scale_t = {m: torch.from_numpy(v).to(self.device) for m, v in self._scale.items()}
        self._shift_t = {m: torch.from_numpy(v).to(self.device) for m, v in self._shift.items()}
        self._staging: dict[str, np.ndarray] = {}

    def _init_train(self, dataset: Dataset, arrays: dict[str, np.ndarray]) -> None:
        """The training split, its contiguous labels and the PK sampler over them."""
        self.train = self._encode(dataset.splits.train, arrays)
        labels, self.num_classes = relabel(dataset.splits.train)
        self.train_labels = torch.tensor(labels, dtype=torch.long, device=self.device)
        sampler = self.protocol.sampler
        try:
            self.sampler = PKSampler(labels, sampler.p, sampler.k, self.seed)
        except ValueError as exc:
            raise UserError(f"dataset {dataset.info.name!r}: {exc}; set sampler.p (and sampler.k)") from None

    def _encode(self, samples: list[Sample], arrays: dict[str, np.ndarray]) -> EncodedSplit:
        def labels(values: list[int]) -> torch.Tensor:
            return torch.tensor(values, dtype=torch.long, device=self.device)

        images = {m: self._place(arrays[m]) for m in self.modalities}
        text = None
        if self.tokenizer is not None:
            text = self.tokenizer.encode([s.caption or "" for s in samples], self.device)
        return EncodedSplit(
            images,
            labels([s.pid for s in samples]),
            labels([s.camid for s in samples]),
            labels([s.sceneid for s in samples]),
            text,
        )

    def _place(self, array: np.ndarray) -> torch.Tensor:
        """A split's images on the device (``on_device``) or as a CPU tensor over the memory-mapped cache."""
        if not self.on_device:
            return torch.from_numpy(array)
        if self.device.type == "cpu":
            return torch.from_numpy(np.array(array))  # read into RAM
        try:
            out = torch.empty(array.shape, dtype=torch.uint8, device=self.device)
            for start in range(0, len(array), COPY_CHUNK):
                out[start : start + COPY_CHUNK].copy_(torch.from_numpy(array[start : start + COPY_CHUNK]))
        except torch.OutOfMemoryError:
            raise UserError(
                f"the decoded images ({array.nbytes / 2**30:.1f} GiB per modality and split) do not fit "
                f"on {self.device}; set data.on_device=false (or auto)"
            ) from None
        return out

    def normalise(self, images: torch.Tensor, modality: str) -> torch.Tensor:
        """uint8 ``(B, 3, H, W)`` of ``modality`` -> float32 on the device, normalised with the protocol's
        mean / std (each a per-channel affine map of the 0..255 value)."""
        if images.device.type == "cpu" and self.device.type == "cpu":
            out = np.empty(tuple(images.shape), np.float32)  # NumPy asks for huge pages: fewer page faults
            array = images.numpy()
            parallel(
                len(array),
                lambda lo, hi: normalise_numpy(
                    array[lo:hi], self._scale[modality], self._shift[modality], out[lo:hi]
                ),
            )
            return torch.from_numpy(out)
        images = images.to(self.device, non_blocking=True)
        out = torch.empty(images.shape, dtype=torch.float32, device=self.device).copy_(images)
        return out.mul_(self._scale_t[modality]).add_(self._shift_t[modality])

    def epoch_indices(self, epoch: int) -> list[np.ndarray]:
        """This rank's sample indices per step of ``epoch`` (capped by train.max_steps_per_epoch)."""
        batches = self.sampler.rank_batches(epoch, self.rank, self.world_size)
        return batches[: self.protocol.train.max_steps_per_epoch]

    def steps_per_epoch(self) -> int:
        """Steps of epoch 0 (other epochs may differ by a step: PK batching is random)."""
        return len(self.epoch_indices(0))

    def augment_params(self, epoch: int, step: int) -> AugmentParams:
        """This rank's share of the augmentation draws of global batch ``step`` of ``epoch``.

        Drawn for the whole global batch from (seed, epoch, step), so a sample gets the same augmentation
        whatever the number of processes.
        """
        per_rank = self.protocol.sampler.p * self.protocol.sampler.k // self.world_size
        rng = np.random.default_rng([self.seed, epoch, step, 0xA06])
        params = draw_params(per_rank * self.world_size, self.size, self.protocol.data.augment, rng)
        return params[self.rank * per_rank : (self.rank + 1) * per_rank]

    def train_batches(self, epoch: int) -> Iterator[Batch]:
        """This rank's augmented training batches of ``epoch`` (deterministic given seed and epoch)."""
        for step, idx in enumerate(self.epoch_indices(epoch)):
            params = self.augment_params(epoch, step)
            index = torch.from_numpy(idx).to(self.device)
            batch: Batch = {m: self.normalise(u8, m) for m, u8 in self._augment(idx, index, params).items()}
            yield self._labels(batch, self.train, index, idx, pid=self.train_labels[index])

    def _augment(
        self, idx: np.ndarray, index: torch.Tensor, params: AugmentParams
    ) -> dict[str, torch.Tensor]:
        """uint8 augmented images per modality: gathered on the GPU, or cut from the host cache in threads."""
        images = self.train.images
        if self.gather_on_device:
            maps = torch_maps(params, self.size, self.device)
            return {
                m: augment_torch(images[m], index, params, torch.from_numpy(self._fill[m].ravel()), maps)
                for m in self.modalities
            }
        shape = (len(idx), 3, *self.size)
        for m in self.modalities:
            if m not in self._staging or self._staging[m].shape != shape:
                self._staging[m] = np.empty(shape, np.uint8)  # reused: normalise() copies out of it
        arrays = {m: images[m].numpy() for m in self.modalities}

        def work(lo: int, hi: int) -> None:
            for m in self.modalities:
                augment_numpy(arrays[m], idx[lo:hi], params[lo:hi], self._fill[m], self._staging[m][lo:hi])

        parallel(len(idx), work)
        return {m: torch.from_numpy(self._staging[m]) for m in self.modalities}

    def eval_batches(self, split: str, batch_size: int, drop: tuple[str, ...] = ()) -> Iterator[Batch]:
        """Un-augmented batches of ``split`` (query / gallery); modalities in ``drop`` are zero-filled."""
        enc: EncodedSplit = getattr(self, split)
        for start in range(0, len(enc), batch_size):
            end = min(start + batch_size, len(enc))
            batch: Batch = {}
            for m in self.modalities:
                if m in drop:
                    batch[m] = torch.zeros((end - start, 3, *self.size), device=self.device)
                else:
                    batch[m] = self.normalise(enc.images[m][start:end], m)
            index = torch.arange(start, end, device=self.device)
            yield self._labels(batch, enc, index, np.arange(start, end), pid=enc.pids[index])

    def eval_set(self, split: str) -> EvalSet:
        """``split`` (query / gallery) as an evaluation set; on RGBNT201 the gallery is the query set."""
        if split == "gallery" and self.gallery is self.query:
            split = "query"
        enc: EncodedSplit = getattr(self, split)
        return EvalSet(
            tuple(self.modalities),
            enc.pids,
            enc.camids,
            enc.sceneids,
            lambda batch_size, drop=(): self.eval_batches(split, batch_size, drop),
            self.device,
        )

    def _labels(
        self, batch: Batch, enc: EncodedSplit, index: torch.Tensor, rows: np.ndarray, pid: torch.Tensor
    ) -> Batch:
        """Labels (and captions) of the samples ``index`` (``rows`` on the host) added to ``batch``."""
        batch.update(pid=pid, camid=enc.camids[index], sceneid=enc.sceneids[index], index=index)
        if enc.text is not None:
            batch.update(enc.text.batch(index, rows))
        return batch
