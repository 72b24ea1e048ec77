"""The one tokenizer interface, its on-disk metadata and the registry that loads any tokenizer.

Every tokenizer maps one modality to LOCAL token ids in [0, vocab_size); the unified token space
(`mdm.token_space.TokenSpace`) adds the per-modality offset. A tokenizer is a directory:

    <dir>/mdm_tokenizer.json   {"format": "mdm-tokenizer", "version": 1, "type": <registry name>,
                                "kind": "text" | "image" | "audio", "tokenizer_id": <hash>,
                                "config": {...}}
    <dir>/...                  the type's own files (tokenizer.json, orbax params, ...)

`load_tokenizer(dir)` reads the metadata and dispatches on "type"; a directory (or file) holding
only a Hugging Face `tokenizer.json` loads as a text tokenizer, so a user can bring their own.

`tokenizer_id` is a content hash of what defines the mapping (config + vocabulary, or config +
weights), never of file bytes, timestamps or paths: saving, copying and reloading a tokenizer
keep its id, and any change of weights changes it. Data-set manifests record it.
"""
from __future__ import annotations

import abc
import hashlib
import json
import os
from pathlib import Path
from typing import Any, ClassVar, Iterable

import numpy as np

from mdm.run_contract import MODALITIES

META_FILE = "mdm_tokenizer.json"
META_FORMAT = "mdm-tokenizer"
META_VERSION = 1
KINDS: tuple[str, ...] = MODALITIES


class TokenizerError(ValueError):
    """A tokenizer directory, configuration or input is invalid."""


class Tokenizer(abc.ABC):
    """Abstract tokenizer: encode one modality to local ids in [0, vocab_size) and back.

    Subclasses set the class attributes `type_name` (registry key) and `kind`, and implement
    `vocab_size`, `encode`, `decode`, `config`, `_fingerprint`, `_save_files` and `_load`.
    Training is a classmethod `train(data, ...)` on each subclass (its data differ by modality).
    """

    type_name: ClassVar[str]
    kind: ClassVar[str]

    def __init__(self) -> None:
        self.path: Path | None = None  # directory it was saved to / loaded from

    # --- the mapping ------------------------------------------------------------------
    @property
    @abc.abstractmethod
    def vocab_size(self) -> int:
        """Number of local ids; every id produced by `encode` lies in [0, vocab_size)."""

    @abc.abstractmethod
    def encode(self, x: Any) -> Any:
        """Modality data -> int32 local ids."""

    @abc.abstractmethod
    def decode(self, ids: Any) -> Any:
        """int local ids -> modality data."""

    # --- identity ---------------------------------------------------------------------
    @abc.abstractmethod
    def config(self) -> dict[str, Any]:
        """JSON-serialisable configuration (architecture / vocabulary settings)."""

    @abc.abstractmethod
    def _fingerprint(self, h: "hashlib._Hash") -> None:
        """Feed the content that defines the mapping (vocabulary or weights) into `h`."""

    @property
    def tokenizer_id(self) -> str:
        """`<type>-<16 hex>`: sha256 of the canonical config JSON and the mapping's content."""
        cached = getattr(self, "_tokenizer_id_cache", None)
        if cached is not None:
            return cached
        h = hashlib.sha256()
        h.update(self.type_name.encode())
        h.update(canonical_json(self.config()).encode())
        self._fingerprint(h)
        tid = f"{self.type_name}-{h.hexdigest()[:16]}"
        self._tokenizer_id_cache = tid
        return tid

    def describe(self) -> dict[str, Any]:
        """What a data-set manifest records: kind, vocab_size, tokenizer_id, path (+ extras)."""
        return {
            "kind": self.kind,
            "type": self.type_name,
            "vocab_size": int(self.vocab_size),
            "tokenizer_id": self.tokenizer_id,
            "path": str(self.path) if self.path is not None else None,
        }

    # --- persistence ------------------------------------------------------------------
    def save(self, directory: str | os.PathLike) -> Path:
        """Write the tokenizer to `directory` (created; existing files are overwritten)."""
        d = Path(directory).absolute()
        d.mkdir(parents=True, exist_ok=True)
        self._save_files(d)
        meta = {
            "format": META_FORMAT, "version": META_VERSION, "type": self.type_name,
            "kind": self.kind, "vocab_size": int(self.vocab_size),
            "tokenizer_id": self.tokenizer_id, "config": self.config(),
        }
        _atomic_write_text(d / META_FILE, json.dumps(meta, indent=2, sort_keys=True) + "\n")
        self.path = d
        return d

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "Tokenizer":
        """Load a tokenizer of this class from `directory` (see `load_tokenizer` for any type)."""
        d = Path(directory).absolute()
        meta = read_meta(d)
        if meta["type"] != cls.type_name:
            raise TokenizerError(
                f"{d} holds a {meta['type']!r} tokenizer, not {cls.type_name!r}; "
                f"use mdm.tokenizers.load_tokenizer to load any type")
        tok = cls._load(d, meta["config"])
        tok.path = d
        if meta.get("tokenizer_id") and meta["tokenizer_id"] != tok.tokenizer_id:
            raise TokenizerError(
                f"{d}: content hash {tok.tokenizer_id} does not match the recorded "
                f"{meta['tokenizer_id']}; the files were modified or are corrupt")
        return tok

    @abc.abstractmethod
    def _save_files(self, directory: Path) -> None:
        """Write the type's own files into an existing directory."""

    @classmethod
    @abc.abstractmethod
    def _load(cls, directory: Path, config: dict[str, Any]) -> "Tokenizer":
        """Rebuild the tokenizer from its files and saved config."""

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(kind={self.kind!r}, vocab_size={self.vocab_size}, "
                f"id={self.tokenizer_id!r})")


# --- registry -------------------------------------------------------------------------------
_REGISTRY: dict[str, str] = {
    # type name -> "module:Class"; imported on demand so that text-only use never imports JAX.
    "bpe_text": "mdm.tokenizers.text:TextTokenizer",
    "fsq_image": "mdm.tokenizers.image:ImageTokenizer",
    "fsq_audio": "mdm.tokenizers.audio:AudioTokenizer",
}


def register_tokenizer(type_name: str, target: str | type) -> None:
    """Register a tokenizer class (or a "module:Class" string) under `type_name`."""
    if not isinstance(target, str):
        target = f"{target.__module__}:{target.__qualname__}"
    _REGISTRY[type_name] = target


def tokenizer_class(type_name: str) -> type[Tokenizer]:
    """The class registered under `type_name`."""
    try:
        target = _REGISTRY[type_name]
    except KeyError:
        raise TokenizerError(
            f"unknown tokenizer type {type_name!r}; registered: {sorted(_REGISTRY)}") from None
    import importlib
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def registered_types() -> tuple[str, ...]:
    return tuple(sorted(_REGISTRY))


def read_meta(directory: str | os.PathLike) -> dict[str, Any]:
    """Parse and validate `<directory>/mdm_tokenizer.json`."""
    d = Path(directory)
    f = d / META_FILE
    if not f.is_file():
        raise TokenizerError(f"{d} is not a tokenizer directory: {META_FILE} is missing")
    try:
        meta = json.loads(f.read_text())
    except json.JSONDecodeError as e:
        raise TokenizerError(f"{f} is not valid JSON: {e}") from None
    if meta.get("format") != META_FORMAT:
        raise TokenizerError(f"{f}: format is {meta.get('format')!r}, expected {META_FORMAT!r}")
    if int(meta.get("version", -1)) > META_VERSION:
        raise TokenizerError(f"{f}: version {meta['version']} is newer than this code "
                             f"({META_VERSION}); upgrade mdm")
    for key in ("type", "kind", "config"):
        if key not in meta:
            raise TokenizerError(f"{f}: missing key {key!r}")
    if meta["kind"] not in KINDS:
        raise TokenizerError(f"{f}: kind {meta['kind']!r} not in {KINDS}")
    return meta


def load_tokenizer(path: str | os.PathLike) -> Tokenizer:
    """Load any tokenizer from a directory written by `Tokenizer.save`.

    Also accepts a user's own Hugging Face `tokenizer.json` (the file itself, or a directory
    that holds one and no mdm metadata); it loads as a `TextTokenizer`.
    """
    p = Path(path).absolute()
    if p.is_file() and p.name.endswith(".json") and p.name != META_FILE:
        from mdm.tokenizers.text import TextTokenizer
        return TextTokenizer.from_tokenizer_json(p)
    if not p.exists():
        raise TokenizerError(f"no tokenizer at {p}: the path does not exist")
    if not (p / META_FILE).is_file() and (p / "tokenizer.json").is_file():
        from mdm.tokenizers.text import TextTokenizer
        return TextTokenizer.from_tokenizer_json(p / "tokenizer.json")
    meta = read_meta(p)
    return tokenizer_class(meta["type"]).load(p)


# --- helpers ----------------------------------------------------------------------------------
def canonical_json(obj: Any) -> str:
    """Key-sorted, whitespace-free JSON: the form that is hashed."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_json_default)


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, (np.ndarray, tuple)):
        return list(o)
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")


def hash_arrays(h: "hashlib._Hash", named_arrays: Iterable[tuple[str, np.ndarray]]) -> None:
    """Feed (name, dtype, shape, C-order bytes) of each array into `h`, in the given order."""
    for name, a in named_arrays:
        a = np.ascontiguousarray(np.asarray(a))
        h.update(name.encode())
        h.update(str(a.dtype).encode())
        h.update(repr(tuple(a.shape)).encode())
        h.update(a.tobytes())


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)
