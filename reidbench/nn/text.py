"""Text side: a BERT encoder from transformers returning all tokens (the tokenizer belongs to the data
pipeline: :mod:`reidbench.data.text`).

It loads from the hub (needs network or the local cache) or from a local Hugging Face directory. A
randomly initialised encoder is built from a ``BertConfig`` (BERT-base sizes unless given), so nothing is
downloaded.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from reidbench.errors import UserError
from reidbench.util.hub import hub_download

FAMILIES = ("bert", "flava")  # transformers BertModel (post-LN, dropout 0.1) / FlavaTextModel (pre-LN, 0)


class TextEncoder(nn.Module):
    """BERT or FLAVA's text encoder: ``(input_ids, attention_mask) -> (B, L, D)`` last hidden states (CLS
    first). BERT is post-LN (no final LayerNorm); FLAVA's is pre-LN with a final LayerNorm, and
    ``final_norm=False`` returns its tokens before that norm (``final_norm(tokens)`` applies it)."""

    def __init__(self, bert: nn.Module) -> None:
        super().__init__()
        self.bert = bert
        self.dim: int = bert.config.hidden_size

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, final_norm: bool = True
    ) -> torch.Tensor:
        pre = not final_norm and self.has_final_norm
        out = self.bert(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=pre)
        return out.hidden_states[-1] if pre else out.last_hidden_state

    @property
    def has_final_norm(self) -> bool:
        return getattr(self.bert, "layernorm", None) is not None

    def final_norm(self, tokens: torch.Tensor) -> torch.Tensor:
        """The final LayerNorm (identity for BERT, which has none)."""
        return self.bert.layernorm(tokens) if self.has_final_norm else tokens

    @property
    def word_embeddings(self) -> nn.Embedding:
        return self.bert.embeddings.word_embeddings


def build_text_encoder(
    name: str,
    vocab_size: int,
    pretrained: bool,
    weights: str | None = None,
    hidden: int | None = None,
    layers: int | None = None,
    heads: int | None = None,
    max_positions: int = 512,
    family: str = "bert",
) -> TextEncoder:
    """A ``family`` (bert / flava) text encoder without pooler: from ``weights`` (a local HF directory), the
    hub (``pretrained``), or randomly initialised with base sizes unless ``hidden`` / ``layers`` / ``heads``
    are given."""
    from transformers import BertConfig, BertModel, FlavaTextConfig, FlavaTextModel

    if family not in FAMILIES:
        raise UserError(f"method.text_encoder={family!r}: expected one of {', '.join(FAMILIES)}")
    model_cls, config_cls = (BertModel, BertConfig) if family == "bert" else (FlavaTextModel, FlavaTextConfig)
    if weights or pretrained:
        if any(v is not None for v in (hidden, layers, heads)):
            raise UserError(
                "text encoder sizes (method.text_hidden / text_layers / text_heads) only apply to "
                "a randomly initialised encoder; unset them or set method.text_pretrained=false"
            )
        if weights:
            path = Path(weights).expanduser()
            if not path.is_dir():
                raise UserError(f"method.text_weights={weights}: expected a Hugging Face model directory")
            try:
                bert = model_cls.from_pretrained(str(path), add_pooling_layer=False)
            except (OSError, ValueError) as exc:
                problem = f"cannot load a {family} text model ({exc})"
                raise UserError(f"method.text_weights={weights}: {problem}") from None
        else:
            with hub_download(f"text encoder {name!r}", "method.text_weights=PATH"):
                bert = model_cls.from_pretrained(name, add_pooling_layer=False)
        if bert.config.vocab_size < vocab_size:
            raise UserError(
                f"the tokenizer has {vocab_size} tokens but the text encoder only "
                f"{bert.config.vocab_size}: use the tokenizer that belongs to the encoder"
            )
        return TextEncoder(bert)
    config = config_cls(vocab_size=vocab_size, max_position_embeddings=max_positions)
    if hidden is not None:
        config.hidden_size, config.intermediate_size = hidden, 4 * hidden
    if layers is not None:
        config.num_hidden_layers = layers
    if heads is not None:
        config.num_attention_heads = heads
    if config.hidden_size % config.num_attention_heads:
        raise UserError(
            f"text encoder: hidden size {config.hidden_size} is not a multiple of "
            f"{config.num_attention_heads} heads (method.text_hidden / method.text_heads)"
        )
    return TextEncoder(model_cls(config, add_pooling_layer=False))
