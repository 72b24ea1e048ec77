"""Token shards: fixed-length laid-out sequences in tensorstore (zarr) arrays + a JSON manifest.

    <dir>/manifest.json
    <dir>/<split>/<modality>/{tokens, segment_ids, cond}     zarr arrays [rows, seq_len]
    <dir>/<split>/<modality>/parts/part-NNNNN/...             while writing (removed at the end)

`split` is "train" or "eval"; `modality` is the row kind: text (packed documents), image
(image-text pairs) or audio (audio-text pairs). The manifest records the format version, the
data set's fingerprint (what the inputs and tokenizers were), seq_len, the token space, the
tokenizers (`describe()` of each: kind, vocab size, tokenizer id, frame rate / image size), and
per split and modality the row count, the real content tokens per modality, the smallest and
largest token id (`id_range`) and a sha256 of every array, so a reader can reject corrupted or
mismatched shards with a clear error.

Token ids are checked against the token space once, when a split is opened, never per batch:
every id must be a layout token or lie inside the vocabulary range of a modality its row kind
holds (text rows: text; image rows: text + image; audio rows: text + audio), so an id beyond a
tokenizer's vocabulary is a ShardError at load and not a NaN (or silently wrong embedding) in
training. With `verify=True` (the default; what the trainer uses) the check is a vectorised pass
over the token arrays that the checksum verification reads anyway, so it costs no extra I/O.
With `verify=False` (for shards too large to re-read at every start) the arrays are not read;
the manifest's `id_range` and `content_tokens`, computed from the data and checked by the
writer at `finalize`, are checked instead (manifests written before `id_range` existed skip
this). Every read of an array (open, verify, batches) turns tensorstore / blosc failures (a
truncated or corrupt chunk) into a ShardError that names the file.

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
from mdm.token_space import (AUDIO, IMAGE, MODALITY_NAMES, TEXT, Sequences, TokenSpace,
                             validate_sequences)

FORMAT = "mdm-token-shards"
VERSION = 1
MANIFEST = "manifest.json"
ARRAYS = {"tokens": np.int32, "segment_ids": np.int32, "cond": np.uint8}
ROW_KINDS = MODALITIES
SPLITS = ("train", "eval")


# Row kind -> the content modalities (mdm.token_space ids) its rows may hold besides layout tokens.
KIND_MODALITIES = {"text": (TEXT,), "image": (TEXT, IMAGE), "audio": (TEXT, AUDIO)}
RETOKENIZE = "re-run tokenization (`mdm-tokenize`) into a fresh directory"


class ShardError(ValueError):
    """Token shards are missing, incomplete, corrupted or do not match the config."""


class OtherDataSet(ShardError):
    """The directory already holds token shards of a different data set (its fingerprint)."""


def _spec(path: str) -> dict[str, Any]:
    return {"driver": "zarr", "kvstore": {"driver": "file", "path": os.path.abspath(path)}}


def write_array(path: str, data: np.ndarray) -> None:
    rows = max(1, min(1024, data.shape[0]))
    arr = ts.open(_spec(path), create=True, delete_existing=True, dtype=ts.dtype(data.dtype.name),
                  shape=list(data.shape),
                  chunk_layout=ts.ChunkLayout(chunk_shape=[rows, data.shape[1]])).result()
    arr.write(data).result()


def _first_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return lines[0] if lines else type(e).__name__


def open_array(path: str) -> ts.TensorStore:
    try:
        return ts.open(_spec(path), open=True).result()
    except Exception as e:  # tensorstore raises ValueError / RuntimeError variants
        raise ShardError(f"cannot open token array {path} ({_first_line(e)}); missing or corrupt "
                         f"shard: {RETOKENIZE}") from None


def read_array(arr: ts.TensorStore, path: str) -> np.ndarray:
    """arr (an opened array or a slice of one) read into memory; a truncated or corrupt chunk
    (tensorstore / blosc decode errors) is a ShardError naming the file."""
    try:
        return arr.read().result()
    except Exception as e:  # tensorstore raises ValueError / RuntimeError variants
        raise ShardError(f"{path}: cannot read the token array ({_first_line(e)}); a chunk is "
                         f"truncated or corrupt: {RETOKENIZE}") from None


def id_range(tokens: np.ndarray) -> list[int]:
    """[smallest, largest] token id (recorded per split and kind in the manifest)."""
    if tokens.size == 0:
        return [0, 0]
    return [int(tokens.min()), int(tokens.max())]


def check_token_ids(tokens: np.ndarray, space: TokenSpace, kind: str, where: str,
                    block_elems: int = 1 << 22) -> None:
    """Every id of a `kind` row is a layout token or in the range of a modality the kind holds
    (KIND_MODALITIES), and never MASK. Vectorised over blocks of rows (bounded temporaries);
    raises ShardError naming the first bad id."""
    mods = KIND_MODALITIES[kind]
    top = max(space.modality_range(m)[1] for m in mods)  # the ranges are contiguous from 0
    holes = [space.modality_range(m) for m in (TEXT, IMAGE, AUDIO)
             if m not in mods and space.modality_range(m)[1] <= top]
    step = max(1, block_elems // max(1, tokens.shape[1]))
    for r0 in range(0, tokens.shape[0], step):
        t = tokens[r0:r0 + step]
        bad = (t < 0) | (t >= top) | (t == space.mask)
        for lo, hi in holes:
            bad |= (t >= lo) & (t < hi)
        if bad.any():
            r, c = (int(i) for i in np.argwhere(bad)[0])
            _bad_token(int(t[r, c]), r0 + r, c, space, kind, where)


def _bad_token(v: int, r: int, c: int, space: TokenSpace, kind: str, where: str) -> None:
    held = " + ".join(MODALITY_NAMES[m - 1] for m in KIND_MODALITIES[kind])
    if v < 0 or v >= space.used_vocab:
        what = (f"is outside the token space [0, {space.used_vocab}) of text_vocab "
                f"{space.text_vocab} + image_vocab {space.image_vocab} + audio_vocab "
                f"{space.audio_vocab}")
    elif v == space.mask:
        what = "is MASK, which never appears in data"
    else:
        m = MODALITY_NAMES[int(space.modality_of(np.asarray([v]))[0]) - 1]
        lo, hi = space.modality_range(m)
        what = (f"lies in the {m} range [{lo}, {hi}) but {kind} rows hold only {held} tokens "
                f"(an id beyond its tokenizer's vocabulary?)")
    raise ShardError(f"{where}: row {r} position {c}: token id {v} {what}; the shards do not "
                     f"match their manifest's token space: {RETOKENIZE}")


def check_manifest_ids(entry: dict[str, Any], space: TokenSpace, kind: str, where: str) -> None:
    """The manifest's record of a split/kind (id_range, content_tokens) against the token space:
    the cheap check used when the arrays are not read (verify=False)."""
    if "id_range" in entry:
        lo, hi = entry["id_range"]
        top = max(space.modality_range(m)[1] for m in KIND_MODALITIES[kind])
        if lo < 0 or hi >= top:
            raise ShardError(f"{where}: the manifest records token ids in [{lo}, {hi}] but {kind} "
                             f"rows must lie in [0, {top}) for this token space; {RETOKENIZE}")
    for m, n in (entry.get("content_tokens") or {}).items():
        if n and m in MODALITY_NAMES and MODALITY_NAMES.index(m) + 1 not in KIND_MODALITIES[kind]:
            raise ShardError(f"{where}: the manifest records {n} {m} tokens in {kind} rows, which "
                             f"hold only text and their own modality; {RETOKENIZE}")


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
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ShardError(f"{p} is not valid JSON ({e}); the manifest is truncated or corrupt: "
                         f"{RETOKENIZE}") from None
    except OSError as e:
        raise ShardError(f"{p}: cannot read the manifest ({e.strerror or e})") from None


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
            raise OtherDataSet(f"{directory} already holds a different data set (fingerprint "
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
                        read_array(open_array(p_path), p_path)
                        for p_path in (os.path.join(kdir, "parts", f"part-{p:05d}", name)
                                       for p in parts)]).astype(dtype)
                    if name == "tokens":  # what readers check without reading (verify=False)
                        check_token_ids(data, self.space, kind, os.path.join(kdir, "parts"))
                        mod = self.space.modality_of(data)
                        entry["content_tokens"] = {m: int((mod == i + 1).sum())
                                                   for i, m in enumerate(ROW_KINDS)}
                        entry["id_range"] = id_range(data)
                    write_array(os.path.join(kdir, name), data)
                    entry["checksums"][name] = checksum(data)
                    entry["rows"] = int(data.shape[0])
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
        why = "" if os.path.isdir(directory) else "no such directory, "
        raise ShardError(f"config.data.path: no token shards at {directory} ({why}missing "
                         f"{MANIFEST}); run `mdm-tokenize` first or point config.data.path at a "
                         "token-shard directory")
    if not isinstance(m, dict) or m.get("format") != FORMAT or m.get("version") != VERSION:
        raise ShardError(f"{os.path.join(directory, MANIFEST)}: not a {FORMAT} v{VERSION} "
                         f"manifest; {RETOKENIZE}")
    if not m.get("complete"):
        raise ShardError(f"{directory}: tokenization did not finish; rerun the same "
                         "`mdm-tokenize` command to resume it")
    _check_manifest_fields(m, os.path.join(directory, MANIFEST))
    return m


def _check_manifest_fields(m: dict[str, Any], where: str) -> None:
    """The fields readers use are there (a hand-edited or foreign manifest is a ShardError, not
    a KeyError)."""
    def need(cond: bool, what: str) -> None:
        if not cond:
            raise ShardError(f"{where}: {what}; {RETOKENIZE}")
    need(isinstance(m.get("seq_len"), int), "no integer seq_len")
    ts_ = m.get("token_space")
    need(isinstance(ts_, dict) and all(isinstance(ts_.get(f), int) for f in
                                       ("text_vocab", "image_vocab", "audio_vocab",
                                        "pad_vocab_to")), "token_space lacks its vocabulary sizes")
    need(isinstance(m.get("splits"), dict), "no splits")
    for split, kinds in m["splits"].items():
        need(isinstance(kinds, dict), f"split {split!r} is not a mapping of row kinds")
        for kind, e in kinds.items():
            need(isinstance(e, dict) and isinstance(e.get("rows"), int)
                 and isinstance(e.get("checksums"), dict)
                 and all(n in e["checksums"] for n in ARRAYS),
                 f"splits.{split}.{kind} lacks rows or checksums of {', '.join(ARRAYS)}")


def check_compatible(m: dict[str, Any], space: TokenSpace, seq_len: int, where: str) -> None:
    """Reject shards whose layout differs from the run's config, naming the field."""
    if m["seq_len"] != seq_len:
        raise ShardError(f"{where}: shards have seq_len {m['seq_len']} but config.data.seq_len "
                         f"is {seq_len}; set --config.data.seq_len={m['seq_len']} or tokenize "
                         f"with seq_len {seq_len}")
    have = m["token_space"]
    for f in ("text_vocab", "image_vocab", "audio_vocab"):
        if have[f] != getattr(space, f):
            raise ShardError(f"{where}: shards were tokenized with {f} {have[f]} but "
                             f"config.token_space.{f} is {getattr(space, f)}; set "
                             f"--config.token_space.{f}={have[f]} (the shards' tokenizer)")


def manifest_space(m: dict[str, Any]) -> TokenSpace:
    """The token space the shards were written in (their manifest's)."""
    t = m["token_space"]
    return TokenSpace(t["text_vocab"], t["image_vocab"], t["audio_vocab"], t["pad_vocab_to"])


def open_split(directory: str, split: str, verify: bool = True) -> dict[str, dict[str, Any]]:
    """{kind: {"rows": n, "path": dir, "tokens": TensorStore, ...}} for one split: shapes
    checked; with `verify`, checksums verified and every token id checked against the manifest's
    token space in the same read; without, the manifest's id record checked (module docstring)."""
    m = load_manifest(directory)
    if split not in m["splits"]:
        raise ShardError(f"{directory}: no '{split}' split (has {sorted(m['splits'])}); "
                         f"{RETOKENIZE}")
    space = manifest_space(m)
    out: dict[str, dict[str, Any]] = {}
    for kind, entry in m["splits"][split].items():
        if kind not in ROW_KINDS:
            raise ShardError(f"{os.path.join(directory, MANIFEST)}: unknown row kind {kind!r} "
                             f"in split {split!r} (known: {', '.join(ROW_KINDS)}); {RETOKENIZE}")
        kdir = os.path.join(directory, split, kind)
        arrays: dict[str, Any] = {"rows": entry["rows"], "path": kdir}
        if not verify:
            check_manifest_ids(entry, space, kind, kdir)
        for name in ARRAYS:
            path = os.path.join(kdir, name)
            arr = open_array(path)
            if tuple(arr.shape) != (entry["rows"], m["seq_len"]):
                raise ShardError(f"{path}: shape {tuple(arr.shape)} does not match the manifest "
                                 f"({entry['rows']}, {m['seq_len']}); {RETOKENIZE}")
            if verify:
                data = read_array(arr, path).astype(ARRAYS[name])
                if checksum(data) != entry["checksums"][name]:
                    raise ShardError(f"{path}: checksum mismatch (corrupted or modified shard); "
                                     f"{RETOKENIZE}")
                if name == "tokens":
                    check_token_ids(data, space, kind, path)
                del data
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
