"""Captions as token ids: the BERT WordPiece tokenizer a method declares (:func:`build_tokenizer`), run
once per split when the DataModule is set up (:class:`CaptionTokenizer`); batches carry the rows they need.

The tokenizer loads from a plain WordPiece ``vocab.txt`` file, a local Hugging Face directory or the hub
(needs network or the local cache).
"""

from __future__ import annotations

import inspect
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reidbench.errors import UserError
from reidbench.util.hub import hub_download


def build_tokenizer(source: str, key: str = "method.tokenizer") -> Any:
    """A fast BERT WordPiece tokenizer from a vocab file, a tokenizer directory or a hub name.

    ``key`` is the setting named in error messages.
    """
    from transformers import BertTokenizerFast

    path = Path(source).expanduser()
    hint = f"{key}=PATH (a vocab.txt file or a tokenizer directory)"
    try:
        if path.is_file():  # a WordPiece vocabulary, one token a line
            params = inspect.signature(BertTokenizerFast.__init__).parameters
            arg = "vocab" if "vocab" in params else "vocab_file"  # transformers >= 5 renamed it
            tokenizer = BertTokenizerFast(**{arg: str(path)})
        elif path.is_dir():
            tokenizer = BertTokenizerFast.from_pretrained(str(path))
        else:
            with hub_download(f"tokenizer {source!r}", hint):
                tokenizer = BertTokenizerFast.from_pretrained(source)
    except (OSError, ValueError) as exc:
        raise UserError(f"{key}={source}: cannot read a BERT tokenizer there ({exc})") from None
    if len(tokenizer) <= len(tokenizer.all_special_ids):  # transformers >= 5 builds an empty one from nothing
        raise UserError(
            f"tokenizer {source!r}: no WordPiece vocabulary found (offline without a cached copy, "
            f"or no vocab.txt / tokenizer.json there). Pass {hint}."
        )
    return tokenizer


@dataclass(frozen=True)
class TextVocab:
    """What a text model needs to know of the tokenizer: vocabulary size, [MASK] id, special-token ids."""

    size: int
    mask_id: int
    special_ids: frozenset[int]


@dataclass
class TokenizedText:
    """A split's captions: token ids and attention mask ``(N, L)`` padded to the split's longest caption,
    the whole-word index of every token (-1 for special tokens and padding) and the length of each."""

    ids: torch.Tensor
    mask: torch.Tensor
    words: torch.Tensor
    lengths: np.ndarray  # tokens per caption, on the host

    def batch(self, index: torch.Tensor, rows: np.ndarray) -> dict[str, torch.Tensor]:
        """``text_ids``, ``text_mask`` and ``text_words`` of the samples ``index`` (the same as ``rows``, on
        the host), cut to the longest of their captions: what tokenizing them with padding="longest" gives."""
        length = int(self.lengths[rows].max())
        return {
            "text_ids": self.ids[index, :length],
            "text_mask": self.mask[index, :length],
            "text_words": self.words[index, :length],
        }


@dataclass(frozen=True)
class CaptionTokenizer:
    """A Hugging Face tokenizer and the length captions are truncated at."""

    tokenizer: Any
    max_len: int = 77

    def vocab(self) -> TextVocab:
        """Vocabulary size, [MASK] id and special-token ids."""
        tok = self.tokenizer
        return TextVocab(len(tok), tok.mask_token_id, frozenset(tok.all_special_ids))

    def truncation(self, captions: list[str]) -> tuple[int, int, int]:
        """What cutting at ``max_len`` drops: (captions cut, tokens dropped, tokens in all captions)."""
        lengths = [len(ids) for ids in self.tokenizer(captions, truncation=False)["input_ids"]]
        over = [n - self.max_len for n in lengths if n > self.max_len]
        return len(over), sum(over), sum(lengths)

    def encode(self, captions: list[str], device: torch.device) -> TokenizedText:
        """``captions`` tokenized together (truncated at ``max_len``; a warning says how much that cut),
        on ``device``."""
        cut, dropped, total = self.truncation(captions)
        if cut:
            warnings.warn(
                f"{cut} of {len(captions)} captions are longer than {self.max_len} tokens: truncating drops "
                f"{dropped} of {total} tokens ({100 * dropped / max(total, 1):.1f} %), the end of a caption "
                "first (a sample's caption joins its RGB, NIR and TIR captions in that order); raise "
                "method.text_max_len to keep them",
                UserWarning,
                stacklevel=2,
            )
        enc = self.tokenizer(
            captions, padding="longest", truncation=True, max_length=self.max_len, return_tensors="pt"
        )
        words = [[-1 if w is None else w for w in enc.word_ids(i)] for i in range(len(captions))]
        mask = enc["attention_mask"]
        return TokenizedText(
            enc["input_ids"].to(device),
            mask.to(device),
            torch.tensor(words, dtype=torch.long, device=device),
            mask.sum(1).numpy(),
        )
