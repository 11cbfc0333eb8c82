"""DataModule: decoded uint8 arrays on the device -> PK batches, synchronised augmentation, normalisation.

JPEG decoding happens once, before training; the training loop only gathers, augments and normalises
on the device.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from reidbench.data.augment import synced_augment
from reidbench.data.images import decode_samples
from reidbench.data.sampler import PKSampler
from reidbench.data.types import Dataset, Sample, relabel
from reidbench.errors import UserError
from reidbench.protocol import Protocol

Batch = dict[str, object]


@dataclass
class EncodedSplit:
    """One split decoded: uint8 images ``(N, M, 3, H, W)`` on the device plus label tensors."""

    images: torch.Tensor
    pids: torch.Tensor
    camids: torch.Tensor
    sceneids: torch.Tensor
    captions: list[str | None]

    def __len__(self) -> int:
        return len(self.pids)


def encode_split(samples: list[Sample], modalities: list[str], size: tuple[int, int], device: torch.device,
                 show_progress: bool, description: str) -> EncodedSplit:
    """Decode ``samples`` once and move them to ``device``."""
    images = torch.from_numpy(decode_samples(samples, modalities, size, show_progress, description)).to(device)

    def labels(values: list[int]) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.long, device=device)

    return EncodedSplit(images, labels([s.pid for s in samples]), labels([s.camid for s in samples]),
                        labels([s.sceneid for s in samples]), [s.caption for s in samples])


class DataModule:
    """Training and evaluation batches for one dataset under one protocol."""

    def __init__(self, dataset: Dataset, protocol: Protocol, device: torch.device, seed: int = 0,
                 rank: int = 0, world_size: int = 1, show_progress: bool = True) -> None:
        cfg = protocol.data
        missing = [m for m in cfg.modalities if m not in dataset.info.modalities]
        if missing:
            raise UserError(f"protocol asks for modalities {missing} that dataset {dataset.info.name!r} lacks "
                            f"(it has {dataset.info.modalities}); set data.modalities accordingly")
        self.info, self.protocol, self.device = dataset.info, protocol, device
        self.modalities = list(cfg.modalities)
        self.rank, self.world_size, self.seed = rank, world_size, seed
        size = (cfg.image_size[0], cfg.image_size[1])
        self.train = encode_split(dataset.splits.train, self.modalities, size, device, show_progress, "decoding train")
        self.query = encode_split(dataset.splits.query, self.modalities, size, device, show_progress, "decoding query")
        self.gallery = (self.query if dataset.splits.gallery is dataset.splits.query else
                        encode_split(dataset.splits.gallery, self.modalities, size, device, show_progress,
                                     "decoding gallery"))
        labels, self.num_classes = relabel(dataset.splits.train)
        self.train_labels = torch.tensor(labels, dtype=torch.long, device=device)
        self.sampler = PKSampler(labels, protocol.sampler.p, protocol.sampler.k, seed)
        mean = [cfg.mean.get(m, [0.5] * 3) for m in self.modalities]
        std = [cfg.std.get(m, [0.5] * 3) for m in self.modalities]
        self.mean = torch.tensor(mean, device=device).view(1, -1, 3, 1, 1) * 255
        self.std = torch.tensor(std, device=device).view(1, -1, 3, 1, 1) * 255

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 ``(B, M, 3, H, W)`` -> normalised float."""
        return (images.float() - self.mean) / self.std

    def epoch_indices(self, epoch: int) -> list[np.ndarray]:
        """This rank's sample indices per step of ``epoch`` (capped by train.max_steps_per_epoch)."""
        batches = self.sampler.rank_batches(epoch, self.rank, self.world_size)
        return batches[: self.protocol.train.max_steps_per_epoch]

    def steps_per_epoch(self) -> int:
        """Steps of epoch 0 (other epochs may differ by a step: PK batching is random)."""
        return len(self.epoch_indices(0))

    def train_batches(self, epoch: int) -> Iterator[Batch]:
        """This rank's augmented training batches of ``epoch`` (deterministic given seed and epoch)."""
        gen = torch.Generator(device="cpu").manual_seed(self.seed * 100_003 + epoch * 7919 + self.rank)
        for idx in self.epoch_indices(epoch):
            index = torch.from_numpy(idx).to(self.device)
            x = synced_augment(self.normalise(self.train.images[index]), self.protocol.data.augment, gen)
            yield self._batch(x, self.train, index, pid=self.train_labels[index])

    def eval_batches(self, split: str, batch_size: int, drop: tuple[str, ...] = ()) -> Iterator[Batch]:
        """Un-augmented batches of ``split`` (query / gallery); modalities in ``drop`` are zero-filled."""
        enc = getattr(self, split)
        for start in range(0, len(enc), batch_size):
            index = torch.arange(start, min(start + batch_size, len(enc)), device=self.device)
            x = self.normalise(enc.images[index])
            batch = self._batch(x, enc, index, pid=enc.pids[index])
            for m in drop:
                batch[m] = torch.zeros_like(batch[m])
            yield batch

    def _batch(self, x: torch.Tensor, enc: EncodedSplit, index: torch.Tensor, pid: torch.Tensor) -> Batch:
        batch: Batch = {m: x[:, j] for j, m in enumerate(self.modalities)}
        batch.update(pid=pid, camid=enc.camids[index], sceneid=enc.sceneids[index], index=index)
        if self.protocol.data.text:
            batch["text"] = [enc.captions[i] or "" for i in index.tolist()]
        return batch


def split_labels(split: EncodedSplit) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pids, camids, sceneids) of a split as NumPy arrays."""
    return split.pids.cpu().numpy(), split.camids.cpu().numpy(), split.sceneids.cpu().numpy()
