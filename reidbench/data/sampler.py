"""PK sampler: P identities x K instances per global batch, deterministic and DDP-aware."""

from __future__ import annotations

import numpy as np


class PKSampler:
    """Batches of P identities with K samples each.

    The sequence of global batches depends only on (labels, p, k, seed, epoch): with N processes each
    rank takes a contiguous slice of P/N identities of every global batch, so the global batches are
    the same for any N. An identity with fewer than K samples is padded by sampling with replacement.
    """

    def __init__(self, labels: list[int] | np.ndarray, p: int, k: int, seed: int = 0) -> None:
        self.labels = np.asarray(labels)
        self.p, self.k, self.seed = p, k, seed
        self.ids = np.unique(self.labels)
        if len(self.ids) < p:
            raise ValueError(
                f"PK sampler: P={p} identities per batch but the training set has {len(self.ids)}"
            )
        self.by_id = {int(i): np.flatnonzero(self.labels == i) for i in self.ids}

    def global_batches(self, epoch: int) -> list[np.ndarray]:
        """The global batches of ``epoch``, each an array of P*K sample indices, identity-grouped."""
        rng = np.random.default_rng([self.seed, epoch])
        chunks: dict[int, list[np.ndarray]] = {}
        for pid, idx in self.by_id.items():
            idx = rng.permutation(idx) if len(idx) >= self.k else rng.choice(idx, self.k, replace=True)
            n = len(idx) // self.k
            chunks[pid] = [idx[c * self.k : (c + 1) * self.k] for c in range(n)]
        batches = []
        while True:
            available = [pid for pid, c in chunks.items() if c]
            if len(available) < self.p:
                return batches
            chosen = rng.choice(available, self.p, replace=False)
            batches.append(np.concatenate([chunks[int(pid)].pop() for pid in chosen]))

    def rank_batches(self, epoch: int, rank: int = 0, world_size: int = 1) -> list[np.ndarray]:
        """This rank's slice of every global batch (P must be divisible by the world size)."""
        if self.p % world_size:
            raise ValueError(f"P={self.p} identities per batch cannot be split over {world_size} processes")
        per_rank = self.p // world_size * self.k
        return [b[rank * per_rank : (rank + 1) * per_rank] for b in self.global_batches(epoch)]

    def __len__(self) -> int:
        return len(self.global_batches(0))
