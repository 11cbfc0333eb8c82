"""GraFT: Gradual Fusion Transformer (Yin et al., arXiv 2310.16856), after the official code
(github.com/Nano1337/GraFT, ``models/DeiT_gradual_fusion.py``).

Architecture: one backbone shared by every modality (DeiT-B/16-distilled in the paper); per modality a
stack of ``depth`` ``nn.TransformerEncoderLayer``s (PyTorch defaults: ReLU, post-LN, FFN 2048, dropout
0.1; 8 heads) over ``[F fusion tokens; backbone tokens]``; the F learnable fusion tokens (Xavier-uniform)
are shared by all modalities. The embedding is the fusion-token outputs, flattened to F*D, averaged over
modalities with weights fixed at 1/M (``learnable_fusion_weights`` trains them). BNNeck head: CE on the
logits, triplet and center losses on the pre-BN embedding (also the retrieval feature). With
``drop_missing`` the missing-modality evaluation leaves absent modalities out and averages the present
ones (weights rescaled to the same total) instead of feeding zero-filled images.

Augmented triplet (``aug_triplet``): anchor and positive are fusion embeddings, the negative is a *data
token* embedding (output position ``data_token`` of the backbone tokens, 0 = CLS, F tokens wide,
averaged over modalities the same way); soft margin, no margin value. The official code builds fixed
offline triplets; here triplets come from the shared PK batch: for every anchor a uniformly drawn positive
and negative (``triplet_mining=random``, default, the official sampling without its fixed seed) or the
hardest ones (``triplet_mining=hard``). A single forward gives both embeddings: without positional
encoding the fusion layers are permutation-equivariant, so the output at a data token is the same as in
the official second pass with the order [data tokens; fusion tokens].

Losses (``loss.variant``): ``ce``, ``ce+triplet`` (batch-hard on the fusion embedding), ``ce+aug_triplet``,
``ce+aug_triplet+center``; weights 0.5 CE, 0.5 triplet, 0.0005 center as in ``loss/reid_loss.py``.
Center-loss centers are optimised here; the official code never updates them (``loss.center_learnable
=false`` reproduces that).

Training: ``--recipe shared`` (default) trains this architecture with the dataset protocol's recipe;
``--recipe official`` is the official one (``methods/graft_config.py``: two stages, frozen then unfrozen
backbone, AdamW on every tensor, warmup_sqrt from 0 over 500 steps with the official cool-down, DeiT-B/16
distilled without drop path). Every setting against the official code, per track, is in the table below
(generated from the registration's fidelity rows).
"""

from __future__ import annotations

import torch
from torch import nn

from reidbench.errors import UserError
from reidbench.fidelity import docstring_table
from reidbench.methods.graft_config import GRAFT_FIDELITY, GraftConfig
from reidbench.nn import BNNeckHead, ModelOutput, batch_camids, build_image_backbone
from reidbench.nn.factory import BuildInfo
from reidbench.nn.tokens import post_norm_stack
from reidbench.protocol import LossCfg
from reidbench.train.losses import augmented_triplet

__doc__ += docstring_table(GRAFT_FIDELITY)


class GraFT(nn.Module):
    """Architecture: shared ``backbone`` -> per-modality ``encoders`` over [fusion tokens; tokens] ->
    weighted average of the fusion-token outputs -> ``head``.

    ``fusion_tokens`` is ``(1, F, D)``; ``fusion_weights`` ``(M,)`` (a buffer when fixed). Extras:
    ``data_embedding`` (B, F*D), the negative side of the augmented triplet.
    """

    def __init__(
        self,
        backbone: nn.Module,
        encoders: dict[str, nn.Module],
        fusion_tokens: nn.Parameter,
        fusion_weights: torch.Tensor,
        head: BNNeckHead,
        data_token: int = 0,
        drop_missing: bool = False,
    ) -> None:
        super().__init__()
        self.modalities = list(encoders)
        self.drops_missing_modalities = drop_missing  # evaluation leaves absent modalities out of the batch
        self.backbone = backbone
        self.encoders = nn.ModuleDict(encoders)
        self.fusion_tokens = fusion_tokens
        if isinstance(fusion_weights, nn.Parameter):
            self.fusion_weights = fusion_weights
        else:
            self.register_buffer("fusion_weights", fusion_weights)
        self.head = head
        self.data_token = data_token
        self.embed_dim: int = fusion_tokens.shape[1] * fusion_tokens.shape[2]  # F * D

    def forward(self, batch: dict) -> ModelOutput:
        present = [m for m in self.modalities if m in batch]  # all of them, except in drop-missing evaluation
        size = batch[present[0]].shape[0]
        images = torch.cat([batch[m] for m in present])  # one pass for all modalities
        tokens = self.backbone(images, camids=batch_camids(batch, len(present)))
        num = self.fusion_tokens.shape[1]
        start = num + self.data_token
        fused, data = [], []
        for j, m in enumerate(present):
            t = tokens[j * size : (j + 1) * size]
            seq = torch.cat([self.fusion_tokens.expand(size, -1, -1).to(t.dtype), t], dim=1)
            out = self.encoders[m](seq)
            fused.append(out[:, :num].flatten(1))
            data.append(out[:, start : start + num].flatten(1))
        weights = self.fusion_weights
        if len(present) < len(self.modalities):  # rescale the present modalities' weights to the full sum
            kept = weights[[self.modalities.index(m) for m in present]]
            weights = kept * (weights.sum() / kept.sum())
        weights = weights.to(tokens.dtype)
        embedding = torch.einsum("m,mbd->bd", weights, torch.stack(fused))
        negative = torch.einsum("m,mbd->bd", weights, torch.stack(data))
        _, logits = self.head(embedding)
        return ModelOutput(embedding=embedding, logits=logits, extras={"data_embedding": negative})


def graft_model(
    backbone: nn.Module,
    modalities: list[str],
    num_classes: int,
    fusion_tokens: int = 1,
    depth: int = 1,
    heads: int = 8,
    dim_feedforward: int = 2048,
    dropout: float = 0.1,
    learnable_fusion_weights: bool = False,
    data_token: int = 0,
    drop_missing: bool = False,
) -> GraFT:
    """Model builder: GraFT over ``modalities`` on the shared token ``backbone``."""
    if fusion_tokens < 1 or depth < 1:
        raise UserError(
            f"graft: method.fusion_tokens ({fusion_tokens}) and method.depth ({depth}) must be >= 1"
        )
    dim = backbone.dim
    if dim % heads:
        raise UserError(f"graft: backbone width {dim} is not a multiple of method.heads={heads}")
    num_tokens = backbone.num_prefix_tokens + backbone.grid[0] * backbone.grid[1]
    if not 0 <= data_token <= num_tokens - fusion_tokens:
        raise UserError(
            f"graft: method.data_token={data_token} must lie in [0, {num_tokens - fusion_tokens}] "
            f"(the backbone gives {num_tokens} tokens)"
        )
    encoders = {m: post_norm_stack(dim, depth, heads, dim_feedforward, dropout) for m in modalities}
    init = torch.empty(fusion_tokens, 1, dim)
    nn.init.xavier_uniform_(init)  # the official (F, 1, D) parameter's initialisation
    tokens = nn.Parameter(init.transpose(0, 1).contiguous())
    weights = torch.full((len(modalities),), 1.0 / len(modalities))
    if learnable_fusion_weights:
        weights = nn.Parameter(weights)
    return GraFT(
        backbone,
        encoders,
        tokens,
        weights,
        BNNeckHead(fusion_tokens * dim, num_classes),
        data_token,
        drop_missing,
    )


def graft_loss_terms(cfg: GraftConfig, loss: LossCfg) -> dict:
    """The ``aug_triplet`` criterion term (weight ``loss.triplet_weight``, margin ``loss.triplet_margin``)."""

    def aug_triplet(out: ModelOutput, labels: torch.Tensor, _: float) -> torch.Tensor:
        return augmented_triplet(
            out.embedding, out.extras["data_embedding"], labels, cfg.triplet_mining, loss.triplet_margin
        )

    return {"aug_triplet": (aug_triplet, loss.triplet_weight)}


def graft(cfg: GraftConfig, info: BuildInfo) -> GraFT:
    """Registered builder: the protocol's backbone, then GraFT with the knobs of ``cfg``."""
    return graft_model(
        build_image_backbone(info.backbone, info.image_size, num_cameras=info.num_cameras),
        list(info.modalities),
        info.num_classes,
        cfg.fusion_tokens,
        cfg.depth,
        cfg.heads,
        cfg.dim_feedforward,
        cfg.dropout,
        cfg.learnable_fusion_weights,
        cfg.data_token,
        cfg.drop_missing,
    )
