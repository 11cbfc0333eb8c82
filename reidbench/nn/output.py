"""What every model's forward returns."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class ModelOutput:
    """``embedding``: the retrieval feature (B, D); ``logits``: ID logits in training (B, C);
    ``extras``: named tensors for method-specific losses (e.g. GraFT's ``data_embedding``, MMET's
    ``mlm_loss``). Every architecture says the width of ``embedding`` in its ``embed_dim``."""

    embedding: torch.Tensor
    logits: torch.Tensor | None = None
    extras: dict[str, torch.Tensor] = field(default_factory=dict)
