"""Byte-level BPE text tokenizer (Hugging Face `tokenizers`, Rust).

Byte-level BPE (GPT-2 style): text is UTF-8 encoded, each byte is mapped to one of 256 printable
base symbols, and merges learned on a corpus combine frequent adjacent symbols. Because every byte
string is representable and no normaliser is applied, `decode(encode(s)) == s` exactly for every
Unicode string (whitespace, newlines, tabs, CRLF and emoji included).

The vocabulary has no special tokens: PAD / MASK / EOS ... live in the unified token space
(`mdm.token_space`), which shifts these local ids by the text offset. A user's own
`tokenizer.json` loads through `TextTokenizer.from_tokenizer_json` (its added/special tokens
count in `vocab_size`; exact round trips then depend on that tokenizer's normaliser).
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

from mdm.tokenizers.base import Tokenizer, TokenizerError

TOKENIZER_FILE = "tokenizer.json"


class TextTokenizer(Tokenizer):
    """Byte-level BPE: str <-> int32 ids [L] in [0, vocab_size)."""

    type_name = "bpe_text"
    kind = "text"

    def __init__(self, hf_tokenizer: HFTokenizer, *, source: str = "trained") -> None:
        super().__init__()
        self._tok = hf_tokenizer
        self._source = source  # "trained" here, or "user" for a brought tokenizer.json

    # --- construction -----------------------------------------------------------------
    @classmethod
    def train(cls, texts: Iterable[str], *, vocab_size: int = 4096, min_frequency: int = 2,
              show_progress: bool = False) -> "TextTokenizer":
        """Learn byte-level BPE merges on `texts` until `vocab_size` symbols (256 bytes + merges).

        If the corpus supports fewer merges (each merge needs a pair seen >= min_frequency
        times), the vocabulary is smaller than requested; `vocab_size` reports the real size.
        """
        if vocab_size < 256:
            raise TokenizerError(f"byte-level BPE needs vocab_size >= 256 (the byte alphabet), "
                                 f"got {vocab_size}")
        tok = HFTokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size, min_frequency=min_frequency, show_progress=show_progress,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=[])
        tok.train_from_iterator(_nonempty(texts), trainer=trainer)
        return cls(tok)

    @classmethod
    def from_tokenizer_json(cls, path: str | Path) -> "TextTokenizer":
        """Wrap a user's Hugging Face `tokenizer.json` (any model: BPE, WordPiece, Unigram)."""
        p = Path(path)
        if not p.is_file():
            raise TokenizerError(f"tokenizer.json not found at {p}")
        try:
            tok = HFTokenizer.from_file(str(p))
        except Exception as e:  # the Rust error type is not exported
            raise TokenizerError(f"{p} is not a valid Hugging Face tokenizer.json: {e}") from None
        out = cls(tok, source="user")
        out.path = p.parent.absolute()
        return out

    # --- the mapping ------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> np.ndarray:
        """str -> int32 [L]."""
        if not isinstance(text, str):
            raise TokenizerError(f"TextTokenizer.encode takes a str, got {type(text).__name__}")
        return np.asarray(self._tok.encode(text, add_special_tokens=False).ids, dtype=np.int32)

    def encode_batch(self, texts: Sequence[str]) -> list[np.ndarray]:
        """list of str -> list of int32 [L_i] (parallel in Rust)."""
        encs = self._tok.encode_batch(list(texts), add_special_tokens=False)
        return [np.asarray(e.ids, dtype=np.int32) for e in encs]

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        """int [L] -> str (special tokens of a user tokenizer are kept, not skipped)."""
        ids = np.asarray(ids).reshape(-1)
        if ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size):
            raise TokenizerError(f"text ids must lie in [0, {self.vocab_size}); got range "
                                 f"[{ids.min()}, {ids.max()}]")
        return self._tok.decode(ids.tolist(), skip_special_tokens=False)

    def decode_batch(self, batch: Sequence[Sequence[int]]) -> list[str]:
        return [self.decode(ids) for ids in batch]

    def id_to_token(self, i: int) -> str | None:
        return self._tok.id_to_token(int(i))

    @property
    def hf_tokenizer(self) -> HFTokenizer:
        """The wrapped `tokenizers.Tokenizer`."""
        return self._tok

    # --- identity & persistence ---------------------------------------------------------
    def config(self) -> dict[str, Any]:
        model = self._tok.model
        return {"model": type(model).__name__, "source": self._source}

    def _fingerprint(self, h: "hashlib._Hash") -> None:
        # The serialised tokenizer (vocab, merges, pre-tokenizer, decoder) with sorted keys.
        h.update(self._tok.to_str(pretty=False).encode())

    def _save_files(self, directory: Path) -> None:
        self._tok.save(str(directory / TOKENIZER_FILE), pretty=True)

    @classmethod
    def _load(cls, directory: Path, config: dict[str, Any]) -> "TextTokenizer":
        f = directory / TOKENIZER_FILE
        if not f.is_file():
            raise TokenizerError(f"{directory}: {TOKENIZER_FILE} is missing")
        return cls(HFTokenizer.from_file(str(f)), source=config.get("source", "trained"))


def _nonempty(texts: Iterable[str]) -> Iterable[str]:
    for t in texts:
        if not isinstance(t, str):
            raise TokenizerError(f"training texts must be str, got {type(t).__name__}")
        if t:
            yield t
