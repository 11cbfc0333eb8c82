"""MMET: Multi-Modal Equivalent Transformer (Xiang et al., arXiv 2304.09498), after the official code
(github.com/JeremyXSC/MMET, a TorchMultimodal FLAVA fork).

Architecture (FLAVA without weight sharing between encoders):

* image encoder: a ViT (the protocol's backbone) with a learnable mask token; every image modality
  (RGB / NIR / TIR) goes through it;
* text encoder: BERT from transformers (``text_model``, or random init from a config), WordPiece tokens,
  captions truncated at ``text_max_len`` = 77 (the method declares the tokenizer, :func:`mmet_tokenizer`;
  the DataModule tokenizes each split once and batches carry ``text_ids`` / ``text_mask`` / ``text_words``);
* multimodal encoder: ``mm_layers`` (6) pre-LN transformer layers over ``[CLS_M; image_to_mm(image
  tokens) per modality; text_to_mm(text tokens)]`` plus a final LayerNorm (caption padding masked unless
  ``mm_attend_padding``);
* one shared BNNeck + bias-free linear ID head applied to whichever CLS fits the input: ``mode=image``
  -> the image CLS (or CLS_M over the image modalities when there are several), ``text`` -> the text
  CLS, ``multimodal`` -> CLS_M. ``eval_mode`` evaluates a trained model on another input (the
  "equivalent" use: train image+text, retrieve with images only). With ``drop_missing`` the
  missing-modality evaluation leaves absent image modalities out of the multimodal sequence instead
  of feeding zero-filled images.

Masked multimodal modeling in training: BEiT blockwise masks over ``image_mask_ratio`` (75/196) of the
patches (mask token in place of the patch embedding, blocks >= ``mask_min_block`` = 16 patches) and
BERT whole-word masking of ``text_mask_prob`` (15%) of the tokens (80% [MASK] / 10% random / 10% kept).
Reconstruction losses are loss terms: ``mlm`` (masked language modeling: CE over the vocabulary, decoder
tied to the word embeddings) and ``mpr`` (masked patch regression: MSE to per-patch-normalised pixels of
the masked patches, replacing the DALL-E dVAE tokens of the official MIM, which needs a second pretrained
network). Both read the final tokens of the encoder that produces the embedding (the multimodal encoder's
outputs when it is used). Their heads exist only if a stage's loss variant names them, e.g.
``--set loss.variant=ce+triplet+mlm+mpr``.

ReID losses (official ``make_loss``): CE without label smoothing + soft-margin batch-hard triplet, both on
the post-BN feature (``feature=post_bn``, also the retrieval feature; ``pre_bn`` is the usual BNNeck use).

Multimodal forward, a recipe setting (``method.*``): ``--recipe official`` runs the official FLAVA forward
(``mm_attend_padding=true``: the multimodal encoder attends to the padded caption, as ``encode_mm`` passes
no attention mask; ``mm_input=pre_norm``: it reads each encoder's tokens before the final LayerNorm;
``text_encoder=flava``: FLAVA's pre-LN text encoder with dropout 0; no stream embedding with one image
modality). ``--recipe shared`` keeps a documented improvement: padding masked, post-LN tokens (no parameter
unused), BERT. The contrastive / ITM pretraining heads are not built. Every setting against the official
code, per track, is in the table below (generated from the registration's fidelity rows).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from reidbench.data.text import CaptionTokenizer, TextVocab, build_tokenizer
from reidbench.data.types import DatasetInfo
from reidbench.errors import UserError
from reidbench.fidelity import docstring_table
from reidbench.methods.mmet_config import MMET_FIDELITY, MMETConfig
from reidbench.nn import BNNeckHead, ModelOutput, batch_camids, build_image_backbone
from reidbench.nn.factory import BuildInfo
from reidbench.nn.masking import block_masks, normalised_patches, whole_word_mask
from reidbench.nn.text import TextEncoder, build_text_encoder
from reidbench.nn.tokens import PreNormEncoder
from reidbench.protocol import LossCfg

__doc__ += docstring_table(MMET_FIDELITY)


class MaskedLMHead(nn.Module):
    """BERT's prediction head: dense -> GELU -> LayerNorm -> vocabulary logits (decoder tied to
    ``embedding`` when given)."""

    def __init__(self, dim: int, vocab_size: int, embedding: nn.Embedding | None = None) -> None:
        super().__init__()
        self.transform = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.LayerNorm(dim, eps=1e-12))
        self.embedding = embedding
        self.decoder = None if embedding is not None else nn.Linear(dim, vocab_size, bias=False)
        self.bias = nn.Parameter(torch.zeros(vocab_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.embedding.weight if self.embedding is not None else self.decoder.weight
        return F.linear(self.transform(x), weight, self.bias)


@dataclass
class Streams:
    """The final tokens per input stream (for reconstruction) and the CLS that feeds the head."""

    cls: torch.Tensor
    image: torch.Tensor | None = None  # (M*B, T, D) image-stream tokens, modality-major
    text: torch.Tensor | None = None  # (B, L, D)


class MMET(nn.Module):
    """Architecture: ``image_encoder`` / ``text_encoder`` -> (``mm_encoder``) -> CLS -> shared ``head``.

    Encoders a mode does not use may be None. ``mm_cls`` (1, 1, D), ``stream_embedding`` (streams, D).
    Captions arrive tokenized (``text_ids``, ``text_mask``, ``text_words``: the batch contract); ``vocab``
    describes their tokenizer (for whole-word masking).
    """

    def __init__(
        self,
        modalities: list[str],
        image_encoder: nn.Module | None,
        text_encoder: TextEncoder | None,
        vocab: TextVocab | None,
        mm_encoder: nn.Module | None,
        image_to_mm: nn.Module | None,
        text_to_mm: nn.Module | None,
        head: BNNeckHead,
        mode: str = "multimodal",
        eval_mode: str | None = None,
        feature: str = "post_bn",
        image_mask_ratio: float = 0.0,
        mask_min_block: int = 16,
        text_mask_prob: float = 0.0,
        stream_embedding: nn.Parameter | None = None,
        mlm_head: MaskedLMHead | None = None,
        mpr_head: nn.Module | None = None,
        drop_missing: bool = False,
        attend_padding: bool = False,
        mm_input: str = "post_norm",
    ) -> None:
        super().__init__()
        self.attend_padding, self.mm_input = attend_padding, mm_input
        self.modalities = list(modalities)
        self.drops_missing_modalities = drop_missing  # evaluation leaves absent modalities out of the batch
        self.image_encoder, self.text_encoder, self.vocab = image_encoder, text_encoder, vocab
        self.mm_encoder, self.image_to_mm, self.text_to_mm = mm_encoder, image_to_mm, text_to_mm
        self.mm_cls = (
            nn.Parameter(torch.zeros(1, 1, head.bn.num_features)) if mm_encoder is not None else None
        )
        self.stream_embedding = stream_embedding
        self.head = head
        self.embed_dim: int = head.bn.num_features
        self.mode, self.eval_mode, self.feature = mode, eval_mode or mode, feature
        self.image_mask_ratio, self.mask_min_block = image_mask_ratio, mask_min_block
        self.text_mask_prob = text_mask_prob
        self.mlm_head, self.mpr_head = mlm_head, mpr_head

    def forward(self, batch: dict) -> ModelOutput:
        mode = self.mode if self.training else self.eval_mode
        extras: dict[str, torch.Tensor] = {}
        images = image_mask = ids = attn = mlm_labels = None
        image_tokens = text_tokens = None
        present = [m for m in self.modalities if m in batch]  # all of them, except in drop-missing evaluation
        uses_mm = mode == "multimodal" or (mode == "image" and len(self.modalities) > 1)
        final_norm = not (uses_mm and self.mm_input == "pre_norm")  # FLAVA: the mm encoder reads pre-LN
        if mode in ("image", "multimodal"):
            if not present:
                raise UserError(f"mmet ({mode} mode) got none of its image modalities {self.modalities}")
            images = torch.cat([batch[m] for m in present])
            if self.training and self.image_mask_ratio > 0:
                image_mask = block_masks(
                    len(images), self.image_encoder.grid, self.image_mask_ratio, self.mask_min_block
                ).to(images.device)
            pre = {} if final_norm else {"final_norm": False}  # backbones that offer pre-LN tokens
            camids = batch_camids(batch, len(present))
            image_tokens = self.image_encoder(images, image_mask, camids=camids, **pre)
        if mode in ("text", "multimodal"):
            ids, attn, mlm_labels = self._text(batch)
            text_tokens = self.text_encoder(ids, attn, final_norm=final_norm)
        streams = self._streams(mode, present, image_tokens, text_tokens, attn)
        bn_feat, logits = self.head(streams.cls)
        embedding = bn_feat if self.feature == "post_bn" else streams.cls
        if self.mpr_head is not None and image_mask is not None:
            extras["mpr_loss"] = self._patch_regression(streams.image, images, image_mask)
        if self.mlm_head is not None and mlm_labels is not None:
            extras["mlm_loss"] = self._masked_lm(streams.text, mlm_labels)
        return ModelOutput(embedding=embedding, logits=logits, extras=extras)

    def _text(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Token ids and attention mask of the batch's captions; whole-word masked in training (then also
        the MLM labels)."""
        if "text_ids" not in batch:
            raise UserError(
                "mmet needs captions: the batch has no 'text_ids' (set data.text=true on a dataset "
                "with captions, or method.mode=image)"
            )
        ids, attn = batch["text_ids"], batch["text_mask"]
        if not (self.training and self.text_mask_prob > 0):
            return ids, attn, None
        vocab = self.vocab
        ids, labels = whole_word_mask(
            ids, batch["text_words"], self.text_mask_prob, vocab.mask_id, vocab.size, vocab.special_ids
        )
        return ids, attn, labels

    def _streams(
        self,
        mode: str,
        present: list[str],
        image: torch.Tensor | None,
        text: torch.Tensor | None,
        attn: torch.Tensor | None,
    ) -> Streams:
        if mode == "text":
            return Streams(cls=text[:, 0], text=text)
        if mode == "image" and len(self.modalities) == 1:
            return Streams(cls=image[:, 0], image=image)
        num = len(present)
        size = len(image) // num
        mapped = self.image_to_mm(image).unflatten(0, (num, size))  # (M, B, T, D)
        if self.stream_embedding is not None:
            index = [self.modalities.index(m) for m in present]
            mapped = mapped + self.stream_embedding[index, None, None].to(mapped.dtype)
        parts = [mapped.transpose(0, 1).flatten(1, 2)]  # (B, M*T, D)
        pads = [torch.zeros(size, num * image.shape[1], dtype=torch.bool, device=image.device)]
        if mode == "multimodal":
            t = self.text_to_mm(text)
            if self.stream_embedding is not None:
                t = t + self.stream_embedding[-1].to(t.dtype)
            parts.append(t)
            pads.append(attn == 0)
        cls = self.mm_cls.expand(size, -1, -1).to(parts[0].dtype)
        pad = torch.cat([torch.zeros(size, 1, dtype=torch.bool, device=cls.device), *pads], dim=1)
        if self.attend_padding:  # the official FLAVA forward: encode_mm passes no attention mask
            pad = None
        out = self.mm_encoder(torch.cat([cls, *parts], dim=1), pad)
        tokens = image.shape[1] * num
        image_out = (
            out[:, 1 : 1 + tokens].unflatten(1, (num, -1)).transpose(0, 1).flatten(0, 1)
        )  # (M*B, T, D)
        return Streams(
            cls=out[:, 0], image=image_out, text=out[:, 1 + tokens :] if mode == "multimodal" else None
        )

    def _patch_regression(
        self, tokens: torch.Tensor, images: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        prefix = self.image_encoder.num_prefix_tokens
        pred = self.mpr_head(tokens[:, prefix:][mask]).float()
        target = normalised_patches(images, self.image_encoder.patch_size)[mask]
        return (pred - target).pow(2).mean()

    def _masked_lm(self, tokens: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        chosen = labels != -100
        return F.cross_entropy(self.mlm_head(tokens[chosen]).float(), labels[chosen])


def _check_widths(dim: int, text: TextEncoder | None, modes: set[str], uses_mm: bool, mm_heads: int) -> None:
    """A UserError when the multimodal encoder's heads do not divide ``dim`` or the text width differs."""
    if uses_mm and dim % mm_heads:
        raise UserError(f"mmet: width {dim} is not a multiple of method.mm_heads={mm_heads}")
    if "text" in modes and text.dim != dim:
        raise UserError(
            f"mmet: the shared head takes width {dim} but the text encoder gives {text.dim}; "
            f"set method.text_hidden={dim}"
        )


def mmet_model(
    image_encoder: nn.Module | None,
    text_encoder: TextEncoder | None,
    modalities: list[str],
    num_classes: int,
    vocab: TextVocab | None = None,
    mode: str = "multimodal",
    eval_mode: str | None = None,
    mm_layers: int = 6,
    mm_heads: int = 12,
    feature: str = "post_bn",
    image_mask_ratio: float = 0.0,
    mask_min_block: int = 16,
    text_mask_prob: float = 0.0,
    modality_embedding: bool = True,
    mlm_head: bool = False,
    mpr_head: bool = False,
    drop_missing: bool = False,
    modality_embedding_single: bool = True,
    attend_padding: bool = False,
    mm_input: str = "post_norm",
) -> MMET:
    """Model builder: MMET over ``modalities`` from an image and a text encoder (either None when no mode
    uses it); ``vocab``: the captions' tokenizer (text modes); ``mlm_head`` / ``mpr_head``: build the
    reconstruction heads; ``attend_padding``: the multimodal encoder sees the caption padding (no mask);
    ``mm_input``: the unimodal tokens it reads, after (``post_norm``) or before (``pre_norm``) their final
    LayerNorm; ``modality_embedding_single``: a stream embedding also with one image modality."""
    modes = {mode, eval_mode or mode}
    image, text = image_encoder, text_encoder
    dim = image.dim if image is not None else text.dim
    uses_mm = "multimodal" in modes or (image is not None and len(modalities) > 1)
    _check_widths(dim, text, modes, uses_mm, mm_heads)
    mm = image_to_mm = text_to_mm = streams = None
    if uses_mm:
        mm = PreNormEncoder(dim, mm_layers, mm_heads)
        image_to_mm = nn.Linear(image.dim, dim)
        text_to_mm = nn.Linear(text.dim, dim) if "multimodal" in modes else None
        if modality_embedding and (modality_embedding_single or len(modalities) > 1):
            streams = nn.Parameter(torch.zeros(len(modalities) + (text_to_mm is not None), dim))
    mlm = mpr = None
    if mlm_head:
        mlm = MaskedLMHead(dim, vocab.size, text.word_embeddings if text.dim == dim else None)
    if mpr_head:
        mpr = nn.Linear(dim, image.patch_size**2 * 3)
    return MMET(
        modalities,
        image,
        text,
        vocab,
        mm,
        image_to_mm,
        text_to_mm,
        BNNeckHead(dim, num_classes),
        mode,
        eval_mode,
        feature,
        image_mask_ratio,
        mask_min_block,
        text_mask_prob,
        streams,
        mlm,
        mpr,
        drop_missing,
        attend_padding,
        mm_input,
    )


def check_modes(cfg: MMETConfig) -> None:
    """A model trained on images only (text only) cannot retrieve with text (images)."""
    for trained, untrained in (("image", "text"), ("text", "image")):
        if cfg.mode == trained and cfg.modes() != {trained}:
            raise UserError(
                f"mmet: a model trained with method.mode={trained} has no trained {untrained} path for "
                f"method.eval_mode={cfg.eval_mode}"
            )


def mmet(cfg: MMETConfig, info: BuildInfo) -> MMET:
    """Registered builder: the protocol's image backbone (with a mask token when masking), BERT for the
    captions, then MMET with the knobs of ``cfg``."""
    check_modes(cfg)
    modes = cfg.modes()
    if cfg.needs_text() and info.text is None:
        raise UserError(
            "mmet with text (method.mode / eval_mode text or multimodal) needs captions: "
            + (
                "set data.text=true"
                if info.dataset.has_text
                else "this dataset has none; use method.mode=image"
            )
        )
    image = text = None
    if modes & {"image", "multimodal"}:
        masked = cfg.image_mask_ratio > 0 and cfg.mode != "text"
        image = build_image_backbone(
            info.backbone, info.image_size, mask_token=masked, num_cameras=info.num_cameras
        )
    if cfg.needs_text():
        text = build_text_encoder(
            cfg.text_model,
            info.text.size,
            cfg.text_pretrained,
            cfg.text_weights,
            cfg.text_hidden,
            cfg.text_layers,
            cfg.text_heads,
            max(512, cfg.text_max_len),
            cfg.text_encoder,
        )
    return mmet_model(
        image,
        text,
        list(info.modalities),
        info.num_classes,
        info.text,
        cfg.mode,
        cfg.eval_mode,
        cfg.mm_layers,
        cfg.mm_heads,
        cfg.feature,
        cfg.image_mask_ratio,
        cfg.mask_min_block,
        cfg.text_mask_prob,
        cfg.modality_embedding,
        mlm_head="mlm" in info.loss_terms and cfg.mode != "image",
        mpr_head="mpr" in info.loss_terms and cfg.mode != "text",
        drop_missing=cfg.drop_missing,
        modality_embedding_single=cfg.modality_embedding_single,
        attend_padding=cfg.mm_attend_padding,
        mm_input=cfg.mm_input,
    )


def mmet_tokenizer(cfg: MMETConfig, dataset: DatasetInfo) -> CaptionTokenizer | None:
    """The captions' tokenizer (truncating at ``text_max_len``), None without text; a relative
    ``method.tokenizer`` that exists in the dataset's folder is read from there (the synthetic set ships
    its ``vocab.txt``)."""
    if not cfg.needs_text() or not dataset.has_text:
        return None
    source = cfg.tokenizer or cfg.text_weights or cfg.text_model
    if cfg.tokenizer and dataset.root is not None and not Path(cfg.tokenizer).expanduser().is_absolute():
        local = Path(dataset.root) / cfg.tokenizer
        if local.exists():
            source = str(local)
    return CaptionTokenizer(build_tokenizer(source), cfg.text_max_len)


def mmet_loss_terms(cfg: MMETConfig, loss: LossCfg) -> dict:
    """``mlm`` and ``mpr`` criterion terms, reading the losses the model computed in its forward."""

    def term(key: str, knob: str):
        def fn(out: ModelOutput, labels: torch.Tensor, _: float) -> torch.Tensor:
            if key not in out.extras:
                raise UserError(
                    f"loss term {key.split('_')[0]!r} has nothing to reconstruct: it needs "
                    f"masking on (method.{knob} > 0) and an input that has it (method.mode)"
                )
            return out.extras[key]

        return fn

    return {
        "mlm": (term("mlm_loss", "text_mask_prob"), cfg.mlm_weight),
        "mpr": (term("mpr_loss", "image_mask_ratio"), cfg.mpr_weight),
    }
