"""Tokenizers: one interface (train, save, load, encode, decode, tokenizer_id, describe) over
three modalities, each mapping to LOCAL ids in [0, vocab_size) (`mdm.token_space` adds the
per-modality offset).

    TextTokenizer   byte-level BPE (Hugging Face `tokenizers`); also wraps a user tokenizer.json
    ImageTokenizer  conv autoencoder + FSQ, uint8 [N, H, W, 3] <-> [N, (H/ds)^2] tokens
    AudioTokenizer  1-D conv codec + FSQ, float [N, T] waveform <-> [N, T / hop] tokens
    load_tokenizer  any of them from a directory, dispatching on its saved metadata

The image and audio classes (and FSQ) import JAX/Flax; they are loaded on first access so that
text-only use stays light.
"""
from __future__ import annotations

from typing import Any

from mdm.tokenizers.base import (KINDS, Tokenizer, TokenizerError, load_tokenizer, read_meta,
                                 register_tokenizer, registered_types, tokenizer_class)

_LAZY = {
    "TextTokenizer": "mdm.tokenizers.text",
    "ImageTokenizer": "mdm.tokenizers.image",
    "ImageTokenizerConfig": "mdm.tokenizers.image",
    "AudioTokenizer": "mdm.tokenizers.audio",
    "AudioTokenizerConfig": "mdm.tokenizers.audio",
    "AudioLossConfig": "mdm.tokenizers.audio",
    "FSQ": "mdm.tokenizers.fsq",
    "TrainSettings": "mdm.tokenizers.training",
}

__all__ = ["KINDS", "Tokenizer", "TokenizerError", "load_tokenizer", "read_meta",
           "register_tokenizer", "registered_types", "tokenizer_class", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mdm.tokenizers' has no attribute {name!r}")
