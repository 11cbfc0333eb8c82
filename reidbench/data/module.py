"""DataModule: the decoded cache -> PK batches, synchronised augmentation, normalisation, on the device.

JPEG decoding never happens in the training loop: every split is decoded once into the memory-mapped
cache (:mod:`reidbench.data.cache`). When the splits fit (``data.on_device``; ``auto``: on a GPU with
enough free memory) they are copied to the device whole and batches are gathered and augmented there;
otherwise each batch is cut from the memory-mapped cache on the host (one slice copy per sample, uint8)
and only then moved and normalised.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from reidbench.data.augment import AugmentParams, augment_numpy, augment_torch, draw_params
from reidbench.data.cache import load_split
from reidbench.data.sampler import PKSampler
from reidbench.data.types import Dataset, Sample, relabel
from reidbench.errors import UserError
from reidbench.protocol import Protocol

Batch = dict[str, object]
ON_DEVICE_FRACTION = 0.4  # auto: the images may take at most this share of the free GPU memory
COPY_CHUNK = 1024  # samples per host -> device copy when moving a split to the GPU


@dataclass
class EncodedSplit:
    """One split: uint8 images per modality ``(N, 3, H, W)`` (on the device, or memory-mapped on the host)
    plus label tensors on the device."""

    images: dict[str, torch.Tensor]
    pids: torch.Tensor
    camids: torch.Tensor
    sceneids: torch.Tensor
    captions: list[str | None]

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


def empty_float(shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """An uninitialised float32 tensor; on the CPU allocated by NumPy, which asks the kernel for huge pages
    (a fresh 25 MB torch allocation costs more in page faults than the normalisation itself)."""
    if device.type == "cpu":
        return torch.from_numpy(np.empty(shape, np.float32))
    return torch.empty(shape, dtype=torch.float32, device=device)


class DataModule:
    """Training and evaluation batches for one dataset under one protocol."""

    def __init__(self, dataset: Dataset, protocol: Protocol, device: torch.device, seed: int = 0,
                 rank: int = 0, world_size: int = 1, show_progress: bool = True) -> None:
        cfg = protocol.data
        missing = [m for m in cfg.modalities if m not in dataset.info.modalities]
        if missing:
            raise UserError(f"protocol asks for modalities {missing} that dataset {dataset.info.name!r} lacks "
                            f"(it has {dataset.info.modalities}); set data.modalities accordingly")
        self.info, self.protocol, self.device = dataset.info, protocol, torch.device(device)
        self.modalities = list(cfg.modalities)
        self.rank, self.world_size, self.seed = rank, world_size, seed
        self.size = (cfg.image_size[0], cfg.image_size[1])
        same_set = dataset.splits.gallery is dataset.splits.query
        splits = ["train", "query"] + ([] if same_set else ["gallery"])
        arrays = {s: load_split(dataset, s, self.size, show_progress) for s in splits}
        nbytes = sum(arrays[s][m].nbytes for s in splits for m in self.modalities)
        self.on_device = resolve_on_device(cfg.on_device, self.device, nbytes)
        self.train = self._encode(dataset.splits.train, arrays["train"])
        self.query = self._encode(dataset.splits.query, arrays["query"])
        self.gallery = self.query if same_set else self._encode(dataset.splits.gallery, arrays["gallery"])
        labels, self.num_classes = relabel(dataset.splits.train)
        self.train_labels = torch.tensor(labels, dtype=torch.long, device=self.device)
        self.sampler = PKSampler(labels, protocol.sampler.p, protocol.sampler.k, seed)
        self._fill: dict[str, np.ndarray] = {}
        self._scale: dict[str, torch.Tensor] = {}
        self._shift: dict[str, torch.Tensor] = {}
        for m in self.modalities:
            mean = np.asarray(cfg.mean.get(m, [0.5] * 3), np.float32).reshape(3, 1, 1)
            std = np.asarray(cfg.std.get(m, [0.5] * 3), np.float32).reshape(3, 1, 1)
            self._fill[m] = np.round(mean * 255).astype(np.uint8)
            self._scale[m] = torch.from_numpy(1 / (255 * std)).to(self.device)
            self._shift[m] = torch.from_numpy(-mean / std).to(self.device)
        self._staging: dict[str, np.ndarray] = {}

    def _encode(self, samples: list[Sample], arrays: dict[str, np.ndarray]) -> EncodedSplit:
        def labels(values: list[int]) -> torch.Tensor:
            return torch.tensor(values, dtype=torch.long, device=self.device)

        images = {m: self._place(arrays[m]) for m in self.modalities}
        return EncodedSplit(images, labels([s.pid for s in samples]), labels([s.camid for s in samples]),
                            labels([s.sceneid for s in samples]), [s.caption for s in samples])

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
            raise UserError(f"the decoded images ({array.nbytes / 2**30:.1f} GiB per modality and split) do not fit "
                            f"on {self.device}; set data.on_device=false (or auto)") from None
        return out

    def normalise(self, images: torch.Tensor, modality: str) -> torch.Tensor:
        """uint8 ``(B, 3, H, W)`` of ``modality`` -> float32 normalised with the protocol's mean / std."""
        images = images.to(self.device, non_blocking=True)
        out = empty_float(tuple(images.shape), self.device)
        out.copy_(images)
        return out.mul_(self._scale[modality]).add_(self._shift[modality])

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
            batch: Batch = {m: self.normalise(self._augment(m, idx, index, params), m) for m in self.modalities}
            yield self._labels(batch, self.train, index, pid=self.train_labels[index])

    def _augment(self, modality: str, idx: np.ndarray, index: torch.Tensor, params: AugmentParams) -> torch.Tensor:
        images = self.train.images[modality]
        if images.device.type != "cpu":
            return augment_torch(images, index, params, torch.from_numpy(self._fill[modality].ravel()))
        shape = (len(idx), *images.shape[1:])
        if modality not in self._staging or self._staging[modality].shape != shape:
            self._staging[modality] = np.empty(shape, np.uint8)  # reused: normalise() copies out of it
        return torch.from_numpy(augment_numpy(images.numpy(), idx, params, self._fill[modality],
                                              self._staging[modality]))

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
            yield self._labels(batch, enc, index, pid=enc.pids[index])

    def _labels(self, batch: Batch, enc: EncodedSplit, index: torch.Tensor, pid: torch.Tensor) -> Batch:
        batch.update(pid=pid, camid=enc.camids[index], sceneid=enc.sceneids[index], index=index)
        if self.protocol.data.text:
            batch["text"] = [enc.captions[i] or "" for i in index.tolist()]
        return batch


def split_labels(split: EncodedSplit) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pids, camids, sceneids) of a split as NumPy arrays."""
    return split.pids.cpu().numpy(), split.camids.cpu().numpy(), split.sceneids.cpu().numpy()
