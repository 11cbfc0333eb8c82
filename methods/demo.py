"""DeMo: Decoupled feature-based Mixture of Experts (Wang et al., AAAI'25), after the official code
(github.com/924973292/DeMo @b4f323a: ``modeling/make_model.py``, ``modeling/meta_arch.py``,
``modeling/moe/AttnMOE.py``).

Architecture: one CLIP visual tower shared by every modality (``backbone.source=clip``, ViT-B/16 at paper
size; the projection applied to every token, the camera embedding on the CLS token before the position
embedding: :mod:`reidbench.nn.clip`). Per modality (M of them, 3 in the paper):

- **PIFE** (``pife``, official GLOBAL_LOCAL): the global feature is ``QuickGELU(Linear(LN([CLS ; mean of the
  patch tokens])))``, 2d -> d, one reducer per modality; off: the CLS token.
- **HDM** (``hdm``): one learnable query per non-empty modality subset (2^M - 1 = 7: r, n, t, rn, rt, nt, rnt)
  attends, in its own ``nn.MultiheadAttention`` (d / 64 heads, attention dropout 0.1), to the
  concatenation of [global ; patch tokens] of that subset's modalities -> 7 decoupled d-wide features.
- **ATMoE** (``atm``): dense soft gating, ``heads`` H heads. The gate query is ``BN(QuickGELU(Linear(7d ->
  d)))`` of the concatenated features; per head its scaled dot product with the 7 features (bias-free
  q / k projections, scale (d/H)^-0.5) gives softmax weights over the 7 experts; expert (head h, feature e)
  is ``BN(QuickGELU(Linear(d/H -> d/H)))`` of that feature's h-th chunk. The gate-weighted expert outputs
  are concatenated (expert-major, heads within) -> 7d = 3584-d. No top-k, no load-balancing loss (the
  released code's ``loss_moe`` is 0). ``atm`` off: the 7 HDM features concatenated.

Heads (BNNeck: BN with frozen bias, bias-free classifier): one on the MoE feature, and either one on the
concatenated globals (``direct``, official DIRECT=1) or one per modality (DIRECT=0). Losses (criterion
terms ``ce`` and ``triplet``, both tracks): summed over every (logits, feature) pair, CE on the logits and
the batch-hard triplet on the pre-BN feature; the official recipe weighs them 0.25 / 1.0 with a soft
margin. Test descriptor (``descriptor``, official return_pattern): ``concat+moe`` = [concatenated globals ;
MoE feature] = 3 x 512 + 3584 = 5120-d at paper size (3), ``concat`` (1) or ``moe`` (2).

Missing modality: DeMo's convention is zero input (its ``TEST.MISS`` replaces the modality's normalised
tensor by zeros for query and gallery), which is what the missing-modality evaluation feeds (``zero``).
"""

from __future__ import annotations

from itertools import combinations

import torch
import torch.nn.functional as F
from torch import nn

from reidbench.errors import UserError
from reidbench.methods.demo_config import DemoConfig
from reidbench.nn import BNNeckHead, ModelOutput, batch_camids, build_image_backbone
from reidbench.nn.clip import QuickGELU
from reidbench.nn.factory import BuildInfo
from reidbench.protocol import LossCfg
from reidbench.train.losses import batch_hard_triplet


def modality_subsets(count: int) -> list[tuple[int, ...]]:
    """Non-empty subsets of ``range(count)`` by size, then in order (3: 0, 1, 2, 01, 02, 12, 012)."""
    return [c for size in range(1, count + 1) for c in combinations(range(count), size)]


def _reducer(dim: int) -> nn.Sequential:
    """PIFE's per-modality reducer: LN(2d) -> Linear(2d -> d) -> QuickGELU."""
    return nn.Sequential(nn.LayerNorm(2 * dim), nn.Linear(2 * dim, dim), QuickGELU())


def _expert(dim_in: int, dim_out: int) -> nn.Sequential:
    """An ATMoE expert (and the gate's input layer): Linear -> QuickGELU -> BatchNorm1d."""
    return nn.Sequential(nn.Linear(dim_in, dim_out), QuickGELU(), nn.BatchNorm1d(dim_out))


class HDM(nn.Module):
    """Hierarchical decoupling: a learnable query per modality subset over that subset's tokens."""

    def __init__(self, dim: int, subsets: list[tuple[int, ...]], dropout: float = 0.1) -> None:
        super().__init__()
        self.subsets = subsets
        self.queries = nn.Parameter(dim**-0.5 * torch.randn(len(subsets), dim))
        heads = max(dim // 64, 1)
        self.attn = nn.ModuleList(
            [nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True) for _ in subsets]
        )

    def forward(self, sequences: list[torch.Tensor]) -> torch.Tensor:
        """``sequences[m]``: (B, 1 + N, d) [global ; patches] of modality m -> (B, subsets, d)."""
        size = sequences[0].shape[0]
        out = []
        for query, subset, attn in zip(self.queries, self.subsets, self.attn, strict=True):
            keys = torch.cat([sequences[m] for m in subset], dim=1)
            q = query.to(keys.dtype).view(1, 1, -1).repeat(size, 1, 1)  # a copy, not a view of the leaf
            out.append(attn(q, keys, keys, need_weights=False)[0][:, 0])
        return torch.stack(out, dim=1)


class ATMoE(nn.Module):
    """Attention-triggered mixture of experts: dense soft gating per head, outputs concatenated."""

    def __init__(self, dim: int, experts: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise UserError(f"demo: feature width {dim} is not a multiple of method.heads={heads}")
        self.heads = heads
        self.gate_in = _expert(experts * dim, dim)
        self.q = nn.Linear(dim, dim, bias=False)
        self.k = nn.Linear(dim, dim, bias=False)
        self.experts = nn.ModuleList(
            [
                nn.ModuleList([_expert(dim // heads, dim // heads) for _ in range(experts)])
                for _ in range(heads)
            ]
        )

    def gates(self, feats: torch.Tensor) -> torch.Tensor:
        """Softmax weights over the experts, ``(B, heads, experts)``."""
        b, e, d = feats.shape
        h, dh = self.heads, d // self.heads
        q = self.q(self.gate_in(feats.flatten(1))).view(b, h, 1, dh)
        k = self.k(feats).view(b, e, h, dh).transpose(1, 2)
        return ((q @ k.transpose(-2, -1)) * dh**-0.5).softmax(-1)[:, :, 0]

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """``feats`` (B, experts, d) -> (B, experts * d)."""
        b, e, d = feats.shape
        gates = self.gates(feats)
        chunks = feats.view(b, e, self.heads, d // self.heads)
        per_head = [
            torch.stack([expert(chunks[:, i, h]) for i, expert in enumerate(head)], 1) * gates[:, h, :, None]
            for h, head in enumerate(self.experts)
        ]
        return torch.cat(per_head, dim=-1).flatten(1)


class DeMo(nn.Module):
    """Architecture: shared ``backbone`` -> per-modality ``reducers`` (PIFE) -> ``hdm`` -> ``moe``, and a
    BNNeck per supervised pair in ``heads`` (``moe_head`` with HDM; ``concat_head`` when ``direct``, else
    ``<modality>_head`` each). Training extras: ``feat:<pair>`` / ``logits:<pair>`` for every pair;
    ``logits`` is the first pair's.
    """

    def __init__(self, backbone: nn.Module, modalities: list[str], num_classes: int, cfg: DemoConfig) -> None:
        super().__init__()
        if cfg.atm and not cfg.hdm:
            raise UserError("demo: method.atm=true needs method.hdm=true (the ATMoE mixes the HDM features)")
        if cfg.descriptor != "concat" and not cfg.hdm:
            raise UserError(f"demo: method.descriptor={cfg.descriptor!r} needs method.hdm=true")
        self.modalities = list(modalities)
        self.descriptor = cfg.descriptor.split("+")
        self.backbone = backbone
        d, m = backbone.dim, len(modalities)
        subsets = modality_subsets(m)
        self.reducers = nn.ModuleDict({k: _reducer(d) for k in modalities}) if cfg.pife else None
        self.hdm = HDM(d, subsets, cfg.hdm_dropout) if cfg.hdm else None
        self.moe = ATMoE(d, len(subsets), cfg.heads) if cfg.atm else None
        widths = {"moe": len(subsets) * d} if cfg.hdm else {}
        widths |= {"concat": m * d} if cfg.direct else dict.fromkeys(modalities, d)
        self.heads = nn.ModuleDict({f"{k}_head": BNNeckHead(w, num_classes) for k, w in widths.items()})
        self.embed_dim: int = sum({"concat": m * d, "moe": widths.get("moe", 0)}[k] for k in self.descriptor)

    def encode(self, batch: dict) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Per modality: the global feature (B, d) and the HDM sequence [global ; patches] (B, 1+N, d)."""
        size, mods = batch[self.modalities[0]].shape[0], self.modalities
        tokens = self.backbone(torch.cat([batch[k] for k in mods]), camids=batch_camids(batch, len(mods)))
        tokens = tokens.view(len(mods), size, *tokens.shape[1:])
        globals_ = [self._global(k, tokens[i]) for i, k in enumerate(mods)]
        return globals_, [
            torch.cat([g[:, None], t[:, 1:]], dim=1) for g, t in zip(globals_, tokens, strict=True)
        ]

    def forward(self, batch: dict) -> ModelOutput:
        globals_, sequences = self.encode(batch)
        feats = dict(zip(self.modalities, globals_, strict=True))
        feats["concat"] = torch.cat(globals_, dim=-1)
        if self.hdm is not None:
            decoupled = self.hdm(sequences)
            feats["moe"] = self.moe(decoupled) if self.moe is not None else decoupled.flatten(1)
        embedding = torch.cat([feats[k] for k in self.descriptor], dim=-1)
        if not self.training:
            return ModelOutput(embedding=embedding)
        extras = {}
        for name, head in self.heads.items():
            key = name.removesuffix("_head")
            extras[f"feat:{key}"], extras[f"logits:{key}"] = feats[key], head(feats[key])[1]
        first = next(iter(self.heads)).removesuffix("_head")
        return ModelOutput(embedding=embedding, logits=extras[f"logits:{first}"], extras=extras)

    def _global(self, modality: str, tokens: torch.Tensor) -> torch.Tensor:
        """PIFE's global feature of one modality's tokens (B, 1 + N, d), or its CLS token."""
        if self.reducers is None:
            return tokens[:, 0]
        return self.reducers[modality](torch.cat([tokens[:, 0], tokens[:, 1:].mean(1)], dim=-1))


def supervised_pairs(out: ModelOutput) -> list[str]:
    """The names of the (logits, feature) pairs a DeMo training output carries."""
    return [k.removeprefix("logits:") for k in out.extras if k.startswith("logits:")]


def demo_loss_terms(cfg: DemoConfig, loss: LossCfg) -> dict:
    """``ce`` and ``triplet`` summed over DeMo's supervised pairs (replacing the single-pair built-ins)."""

    def ce(out: ModelOutput, labels: torch.Tensor, smoothing: float) -> torch.Tensor:
        terms = [
            F.cross_entropy(out.extras[f"logits:{k}"].float(), labels, label_smoothing=smoothing)
            for k in supervised_pairs(out)
        ]
        return torch.stack(terms).sum()

    def triplet(out: ModelOutput, labels: torch.Tensor, _: float) -> torch.Tensor:
        terms = [
            batch_hard_triplet(out.extras[f"feat:{k}"], labels, loss.triplet_margin)
            for k in supervised_pairs(out)
        ]
        return torch.stack(terms).sum()

    return {"ce": (ce, loss.id_weight), "triplet": (triplet, loss.triplet_weight)}


def demo(cfg: DemoConfig, info: BuildInfo) -> DeMo:
    """Registered builder: the protocol's (CLIP) backbone with a camera embedding, then DeMo's heads."""
    backbone = build_image_backbone(info.backbone, info.image_size, num_cameras=info.num_cameras)
    return DeMo(backbone, list(info.modalities), info.num_classes, cfg)
