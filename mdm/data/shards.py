"""Token shards: fixed-length laid-out sequences in tensorstore (zarr) arrays + a JSON manifest.

    <dir>/manifest.json
    <dir>/<split>/<modality>/{tokens, segment_ids, cond}     zarr arrays [rows, seq_len]
    <dir>/<split>/<modality>/parts/part-NNNNN/...             while writing (removed at the end)

`split` is "train" or "eval"; `modality` is the row kind: text (packed documents), image
(image-text pairs) or audio (audio-text pairs). The manifest records the format version, the
data set's fingerprint (what the inputs and tokenizers were), seq_len, the token space, the
tokenizers (`describe()` of each: kind, vocab size, tokenizer id, frame rate / image size), and
per split and modality the row count, the real content tokens per modality and a sha256 of every
array, so a reader can reject corrupted or mismatched shards with a clear error.

Writing is resumable: inputs are written in numbered parts, each recorded in the manifest's
`progress` when complete; a restarted writer skips finished parts, and `finalize` concatenates
the parts, computes checksums and marks the manifest complete. A writer refuses to write into a
directory holding a different data set (another fingerprint).
"""
from __future__ import annotations

import datetime
import hashlib
import json
import os
import shutil
from typing import Any, Iterable

import numpy as np
import tensorstore as ts

from mdm.run_contract import MODALITIES
from mdm.token_space import Sequences, TokenSpace, validate_sequences

FORMAT = "mdm-token-shards"
VERSION = 1
MANIFEST = "manifest.json"
ARRAYS = {"tokens": np.int32, "segment_ids": np.int32, "cond": np.uint8}
ROW_KINDS = MODALITIES
SPLITS = ("train", "eval")


class ShardError(ValueError):
    """Token shards are missing, incomplete, corrupted or do not match the config."""


def _spec(path: str) -> dict[str, Any]:
    return {"driver": "zarr", "kvstore": {"driver": "file", "path": os.path.abspath(path)}}


def write_array(path: str, data: np.ndarray) -> None:
    rows = max(1, min(1024, data.shape[0]))
    arr = ts.open(_spec(path), create=True, delete_existing=True, dtype=ts.dtype(data.dtype.name),
                  shape=list(data.shape),
                  chunk_layout=ts.ChunkLayout(chunk_shape=[rows, data.shape[1]])).result()
    arr.write(data).result()


def open_array(path: str) -> ts.TensorStore:
    try:
        return ts.open(_spec(path), open=True).result()
    except Exception as e:  # tensorstore raises ValueError / RuntimeError variants
        raise ShardError(f"cannot open token array {path}: {e}") from None


def checksum(data: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(data).astype(data.dtype.newbyteorder("<"),
                                                           copy=False).tobytes()).hexdigest()


def _read_manifest(directory: str) -> dict[str, Any] | None:
    p = os.path.join(directory, MANIFEST)
    if not os.path.exists(p):
        return None
    try:
        with open(p) as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise ShardError(f"{p} is not valid JSON ({e})") from None


def _write_manifest(directory: str, m: dict[str, Any]) -> None:
    tmp = os.path.join(directory, MANIFEST + ".tmp")
    with open(tmp, "w") as f:
        json.dump(m, f, indent=2, sort_keys=True)
    os.replace(tmp, os.path.join(directory, MANIFEST))


class ShardWriter:
    """Resumable writer. `fingerprint` identifies the data set (inputs + tokenizers + layout)."""

    def __init__(self, directory: str, fingerprint: str, space: TokenSpace, seq_len: int,
                 tokenizers: dict[str, Any] | None = None, info: dict[str, Any] | None = None):
        self.dir, self.space, self.seq_len = directory, space, seq_len
        os.makedirs(directory, exist_ok=True)
        m = _read_manifest(directory)
        if m is not None and m.get("fingerprint") != fingerprint:
            raise ShardError(f"{directory} already holds a different data set (fingerprint "
                             f"{m.get('fingerprint')} != {fingerprint}); choose another "
                             "directory or delete it")
        if m is None:
            m = {"format": FORMAT, "version": VERSION, "fingerprint": fingerprint,
                 "seq_len": seq_len, "token_space": space.to_dict(),
                 "tokenizers": tokenizers or {}, "info": info or {}, "progress": {},
                 "complete": False, "splits": {}}
            _write_manifest(directory, m)
        self.manifest = m

    @property
    def complete(self) -> bool:
        return bool(self.manifest.get("complete"))

    def part_done(self, split: str, kind: str, part: int) -> bool:
        return f"{split}/{kind}/{part}" in self.manifest["progress"]

    def write_part(self, split: str, kind: str, part: int, seqs: Sequences) -> None:
        """Write one part (validated) and record it as finished."""
        if split not in SPLITS or kind not in ROW_KINDS:
            raise ShardError(f"unknown split/kind {split}/{kind}")
        validate_sequences(seqs, self.space, self.seq_len)
        base = os.path.join(self.dir, split, kind, "parts", f"part-{part:05d}")
        for name, dtype in ARRAYS.items():
            write_array(os.path.join(base, name), getattr(seqs, name).astype(dtype))
        self.manifest["progress"][f"{split}/{kind}/{part}"] = int(len(seqs))
        _write_manifest(self.dir, self.manifest)

    def finalize(self) -> dict[str, Any]:
        """Concatenate parts per split and kind, checksum, and mark the manifest complete."""
        splits: dict[str, Any] = {}
        for key in sorted(self.manifest["progress"]):
            split, kind, _ = key.split("/")
            splits.setdefault(split, {}).setdefault(kind, None)
        for split, kinds in splits.items():
            for kind in kinds:
                kdir = os.path.join(self.dir, split, kind)
                parts = sorted(int(k.split("/")[2]) for k in self.manifest["progress"]
                               if k.startswith(f"{split}/{kind}/"))
                entry: dict[str, Any] = {"rows": 0, "checksums": {}}
                for name, dtype in ARRAYS.items():
                    data = np.concatenate([
                        open_array(os.path.join(kdir, "parts", f"part-{p:05d}", name)).read().result()
                        for p in parts]).astype(dtype)
                    write_array(os.path.join(kdir, name), data)
                    entry["checksums"][name] = checksum(data)
                    entry["rows"] = int(data.shape[0])
                    if name == "tokens":
                        mod = self.space.modality_of(data)
                        entry["content_tokens"] = {m: int((mod == i + 1).sum())
                                                   for i, m in enumerate(ROW_KINDS)}
                shutil.rmtree(os.path.join(kdir, "parts"), ignore_errors=True)
                kinds[kind] = entry
        self.manifest["splits"] = splits
        self.manifest["complete"] = True
        self.manifest["created"] = datetime.datetime.now(datetime.timezone.utc).isoformat()
        _write_manifest(self.dir, self.manifest)
        return self.manifest


def load_manifest(directory: str) -> dict[str, Any]:
    m = _read_manifest(directory)
    if m is None:
        raise ShardError(f"no token shards at {directory} (missing {MANIFEST}); run "
                         "`mdm-tokenize` first")
    if m.get("format") != FORMAT or m.get("version") != VERSION:
        raise ShardError(f"{directory}: not a {FORMAT} v{VERSION} manifest")
    if not m.get("complete"):
        raise ShardError(f"{directory}: tokenization did not finish; rerun the same "
                         "`mdm-tokenize` command to resume it")
    return m


def check_compatible(m: dict[str, Any], space: TokenSpace, seq_len: int, where: str) -> None:
    """Reject shards whose layout differs from the run's config, naming the field."""
    if m["seq_len"] != seq_len:
        raise ShardError(f"{where}: shards have seq_len {m['seq_len']} but config.data.seq_len "
                         f"is {seq_len}")
    have = m["token_space"]
    for f in ("text_vocab", "image_vocab", "audio_vocab"):
        if have[f] != getattr(space, f):
            raise ShardError(f"{where}: shards were tokenized with {f} {have[f]} but "
                             f"config.token_space.{f} is {getattr(space, f)}")


def open_split(directory: str, split: str, verify: bool = True) -> dict[str, dict[str, Any]]:
    """{kind: {"rows": n, "tokens": TensorStore, ...}} for one split, checksums verified."""
    m = load_manifest(directory)
    if split not in m["splits"]:
        raise ShardError(f"{directory}: no '{split}' split (has {sorted(m['splits'])})")
    out: dict[str, dict[str, Any]] = {}
    for kind, entry in m["splits"][split].items():
        arrays: dict[str, Any] = {"rows": entry["rows"]}
        for name in ARRAYS:
            path = os.path.join(directory, split, kind, name)
            arr = open_array(path)
            if tuple(arr.shape) != (entry["rows"], m["seq_len"]):
                raise ShardError(f"{path}: shape {tuple(arr.shape)} does not match the manifest "
                                 f"({entry['rows']}, {m['seq_len']})")
            if verify:
                got = checksum(arr.read().result().astype(ARRAYS[name]))
                if got != entry["checksums"][name]:
                    raise ShardError(f"{path}: checksum mismatch (corrupted or modified shard); "
                                     "re-run tokenization")
            arrays[name] = arr
        out[kind] = arrays
    return out


def write_sequences(directory: str, fingerprint: str, space: TokenSpace, seq_len: int,
                    parts: Iterable[tuple[str, str, int, Any]],
                    tokenizers: dict[str, Any] | None = None,
                    info: dict[str, Any] | None = None, progress: Any = None) -> dict[str, Any]:
    """Write (split, kind, part index, make_sequences) parts, skipping finished ones.

    `make_sequences()` is called only for parts not yet written (resumption).
    """
    w = ShardWriter(directory, fingerprint, space, seq_len, tokenizers, info)
    if w.complete:
        return w.manifest
    for split, kind, idx, make in parts:
        if not w.part_done(split, kind, idx):
            w.write_part(split, kind, idx, make())
        if progress is not None:
            progress.update(1)
    return w.finalize()
