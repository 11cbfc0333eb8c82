"""TOP-ReID (Wang et al., AAAI 2024): a separate TransReID ViT per modality, the Token Permutation Module
(TPM) and the Complementary Reconstruction Module (CRM). Written from the paper and a reading of
924973292/TOP-ReID @921dd7c (``modeling/make_model.py``, ``fusion_part/TPM.py``, ``fusion_part/CRM.py``).

* Each modality's ViT gives its final tokens (B, 1+N, D) after the last LayerNorm; its CLS feeds its own
  BNNeck head; the three CLS concatenated feed the ``concat`` head.
* TPM: three rotation blocks, each one pre-LN cross-attention shared by the modalities (the CLS of one
  modality is the only query; the patch tokens of another are keys (LayerNormed) and values), then an MLP.
  Block 1: modality i's CLS reads the patches of modality i+1 (RGB<-NIR, NIR<-TIR, TIR<-RGB); block 2: of
  modality i-1; block 3: its own. The three CLS concatenated (3 x 768 = 2304-d) are the TPM feature: the
  retrieval embedding (before its BNNeck) and, with its head, the main (score, feature) pair.
* CRM: per source modality and target modality, ``crm_depth`` pre-LN self-attention layers map the source's
  token sequence to the target's; training adds the six MSEs. At test it is used only when a modality is
  missing (its key absent from the batch, the ``reconstruct`` convention): the missing tokens are the mean of
  their reconstructions from the present modalities.
* Loss pairs: TPM always; ``direct``: the concatenated CLS; else each modality's CLS (the shipped logs).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from reidbench.errors import UserError
from reidbench.fidelity import docstring_table
from reidbench.methods.top_reid_config import TOP_REID_FIDELITY, TopReIDConfig
from reidbench.nn import BNNeckHead, ModelOutput, batch_camids, build_image_backbone
from reidbench.nn.factory import BuildInfo
from reidbench.protocol import LossCfg
from reidbench.train.losses import batch_hard_triplet

__doc__ += docstring_table(TOP_REID_FIDELITY)


class CLSCrossAttention(nn.Module):
    """One query (a CLS token) over other tokens: LayerNorm on the keys only, bias-free q / k / v."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm_keys = nn.LayerNorm(dim)
        self.q, self.k, self.v = (nn.Linear(dim, dim, bias=False) for _ in range(3))
        self.proj = nn.Linear(dim, dim)

    def forward(self, cls: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        b, n, d = tokens.shape
        q = self.q(cls).view(b, 1, self.heads, -1).transpose(1, 2)
        k = self.k(self.norm_keys(tokens)).view(b, n, self.heads, -1).transpose(1, 2)
        v = self.v(tokens).view(b, n, self.heads, -1).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v)  # (B, H, 1, d)
        return self.proj(out.reshape(b, d))


class RotationBlock(nn.Module):
    """``cls + attn(LN(cls), tokens)``, then ``+ MLP(LN(.))`` (GELU, ratio 4): a pre-LN cross-attention
    block updating a CLS token from another token sequence."""

    def __init__(self, dim: int, heads: int) -> None:
        from timm.layers import Mlp

        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = CLSCrossAttention(dim, heads)
        self.mlp = Mlp(dim, 4 * dim)

    def forward(self, cls: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        cls = cls + self.attn(self.norm1(cls), tokens)
        return cls + self.mlp(self.norm2(cls))


class TokenPermutation(nn.Module):
    """TPM: three rotation blocks (one shared by all modalities each); returns the CLS tokens concatenated."""

    SHIFTS = (1, -1, 0)  # block k: modality i's CLS reads the patches of modality i + shift (cyclically)

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([RotationBlock(dim, heads) for _ in self.SHIFTS])

    def forward(self, tokens: list[torch.Tensor]) -> torch.Tensor:
        cls = [t[:, 0] for t in tokens]
        patches = [t[:, 1:] for t in tokens]
        m = len(tokens)
        for block, shift in zip(self.blocks, self.SHIFTS, strict=True):
            cls = [block(cls[i], patches[(i + shift) % m]) for i in range(m)]
        return torch.cat(cls, dim=-1)


def self_attention_stack(dim: int, heads: int, depth: int) -> nn.Sequential:
    """``depth`` pre-LN self-attention layers (bias-free qkv, GELU MLP ratio 4, LayerNorm eps 1e-5)."""
    from timm.models.vision_transformer import Block

    layers = [Block(dim, heads, 4.0, qkv_bias=False, norm_layer=nn.LayerNorm) for _ in range(depth)]
    return nn.Sequential(*layers)


class ComplementaryReconstruction(nn.Module):
    """CRM: ``maps[source][target]`` rebuilds the target modality's tokens from the source's."""

    def __init__(self, modalities: list[str], dim: int, heads: int, depth: int) -> None:
        super().__init__()
        self.maps = nn.ModuleDict(
            {
                s: nn.ModuleDict({t: self_attention_stack(dim, heads, depth) for t in modalities if t != s})
                for s in modalities
            }
        )

    def loss(self, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        """Sum over (source, target) pairs of the MSE between the reconstruction and the target's tokens."""
        terms = [
            F.mse_loss(net(tokens[s]).float(), tokens[t].float())
            for s, targets in self.maps.items()
            for t, net in targets.items()
        ]
        return torch.stack(terms).sum()

    def fill(self, tokens: dict[str, torch.Tensor], missing: list[str]) -> dict[str, torch.Tensor]:
        """``tokens`` plus each missing modality's: the mean of its reconstructions from the present ones."""
        present = [m for m in tokens if m not in missing]
        out = dict(tokens)
        for target in missing:
            out[target] = torch.stack([self.maps[s][target](tokens[s]) for s in present]).mean(0)
        return out


class TopReID(nn.Module):
    """Architecture: ``backbones[m]`` per modality -> TPM (+ CRM) -> heads. See the module docstring."""

    def __init__(
        self,
        backbones: dict[str, nn.Module],
        tpm: TokenPermutation,
        crm: ComplementaryReconstruction | None,
        num_classes: int,
        direct: bool = False,
    ) -> None:
        super().__init__()
        self.modalities = list(backbones)
        self.backbones = nn.ModuleDict(backbones)
        self.tpm, self.crm, self.direct = tpm, crm, direct
        dim = next(iter(backbones.values())).dim
        width = dim * len(self.modalities)
        self.modality_heads = nn.ModuleDict({m: BNNeckHead(dim, num_classes) for m in self.modalities})
        self.concat_head = BNNeckHead(width, num_classes)
        self.tpm_head = BNNeckHead(width, num_classes)
        self.embed_dim: int = width
        # an absent modality is left out of the batch and rebuilt by the CRM; without it, zero-filled
        self.missing_convention = "reconstruct" if crm is not None else "zero"
        self.drops_missing_modalities = crm is not None

    def forward(self, batch: dict) -> ModelOutput:
        present = [m for m in self.modalities if m in batch]
        missing = [m for m in self.modalities if m not in batch]
        if not present:
            raise UserError(f"top_reid got none of its modalities {self.modalities}")
        camids = batch_camids(batch)
        tokens = {m: self.backbones[m](batch[m], camids=camids) for m in present}
        if missing:
            if self.training or self.crm is None:
                raise UserError(
                    f"top_reid: modalities {missing} are absent; it reconstructs them with its CRM at test "
                    f"only (method.crm=true), or takes them zero-filled (missing convention 'zero')"
                )
            tokens = self.crm.fill(tokens, missing)
        feature = self.tpm([tokens[m] for m in self.modalities])
        if not self.training:
            return ModelOutput(embedding=feature)
        _, logits = self.tpm_head(feature)
        return ModelOutput(embedding=feature, logits=logits, extras=self._side_pairs(tokens))

    def _side_pairs(self, tokens: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``side_logits.<name>`` / ``side_feat.<name>`` of the side pairs, and the CRM loss."""
        cls = {m: tokens[m][:, 0] for m in self.modalities}
        extras: dict[str, torch.Tensor] = {}
        if self.direct:
            concat = torch.cat(list(cls.values()), dim=-1)
            extras.update({"side_logits.concat": self.concat_head(concat)[1], "side_feat.concat": concat})
        else:
            for m, feat in cls.items():
                extras.update({f"side_logits.{m}": self.modality_heads[m](feat)[1], f"side_feat.{m}": feat})
        if self.crm is not None:
            extras["crm_loss"] = self.crm.loss(tokens)
        return extras


def top_reid_model(
    backbones: dict[str, nn.Module],
    num_classes: int,
    direct: bool = False,
    crm: bool = True,
    crm_depth: int = 1,
    heads: int | None = None,
) -> TopReID:
    """Model builder: TOP-ReID over one token backbone per modality (``dim`` wide, all the same)."""
    first = next(iter(backbones.values()))
    heads = heads or getattr(first, "num_heads", None) or _heads_of(first)
    if first.dim % heads:
        raise UserError(f"top_reid: backbone width {first.dim} is not a multiple of method.heads={heads}")
    mods = list(backbones)
    reconstruction = ComplementaryReconstruction(mods, first.dim, heads, crm_depth) if crm else None
    return TopReID(backbones, TokenPermutation(first.dim, heads), reconstruction, num_classes, direct)


def _heads_of(backbone: nn.Module) -> int:
    """The attention heads of the backbone's first block (timm layout)."""
    for module in backbone.modules():
        if hasattr(module, "num_heads"):
            return int(module.num_heads)
    raise UserError("top_reid: cannot tell the backbone's attention heads; set method.heads")


def top_reid(cfg: TopReIDConfig, info: BuildInfo) -> TopReID:
    """Registered builder: a separate protocol backbone (TransReID with SIE by default) per modality."""
    if cfg.crm_depth < 1:
        raise UserError(f"top_reid: method.crm_depth must be >= 1, got {cfg.crm_depth}")
    backbones = {
        m: build_image_backbone(info.backbone, info.image_size, num_cameras=info.num_cameras)
        for m in info.modalities
    }
    return top_reid_model(backbones, info.num_classes, cfg.direct, cfg.crm, cfg.crm_depth, cfg.heads)


def top_reid_loss_terms(cfg: TopReIDConfig, loss: LossCfg) -> dict:
    """``side_ce`` / ``side_triplet`` (summed over the side pairs, weights ``loss.id_weight`` /
    ``loss.triplet_weight``) and ``crm`` (the summed reconstruction MSEs, weight ``method.crm_weight``)."""

    def pairs(out: ModelOutput, kind: str) -> list[torch.Tensor]:
        found = [v for k, v in out.extras.items() if k.startswith(f"side_{kind}.")]
        if not found:
            raise UserError("loss terms side_ce / side_triplet need top_reid's training forward")
        return found

    def side_ce(out: ModelOutput, labels: torch.Tensor, smoothing: float) -> torch.Tensor:
        scores = pairs(out, "logits")
        return sum(F.cross_entropy(s.float(), labels, label_smoothing=smoothing) for s in scores)

    def side_triplet(out: ModelOutput, labels: torch.Tensor, _: float) -> torch.Tensor:
        return sum(batch_hard_triplet(f, labels, loss.triplet_margin) for f in pairs(out, "feat"))

    def crm(out: ModelOutput, labels: torch.Tensor, _: float) -> torch.Tensor:
        if "crm_loss" not in out.extras:
            raise UserError("loss term 'crm' needs the CRM (method.crm=true)")
        return out.extras["crm_loss"]

    return {
        "side_ce": (side_ce, loss.id_weight),
        "side_triplet": (side_triplet, loss.triplet_weight),
        "crm": (crm, cfg.crm_weight),
    }
