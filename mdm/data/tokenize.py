"""Offline tokenization: raw text / image-text / audio-text -> token shards (mdm.data.shards).

    mdm-tokenize --demo data/demo --out data/demo_shards --seq_len 128
    mdm-tokenize --tokenizers my_tok/ --text a.txt b.jsonl --images imgs/ --captions caps.json \
                 --audio clips/ --transcripts trans.json --out shards/ --seq_len 256

Inputs: text files (.txt: one document per file; .jsonl: {"text": ...} per line); images as a
.npy array [N, H, W, 3] uint8 or a folder of PNGs, with captions as a JSON list (or a
{file name: caption} map for a folder); audio as a .npy array [N, T] float32 or a folder of WAV
files, with transcripts likewise. Records may carry "split" ("train" / "valid" / "eval");
otherwise a deterministic `--eval_fraction` is held out. Tokenizers come from a directory with
text/, image/ and audio/ sub-directories (mdm.tokenizers.load_tokenizer), or from the demo.

Layout (mdm.token_space): text documents are packed; each image-text pair gives a T2I and an
I2T row, each audio-text pair a T2S and an S2T row (`--pair_tasks` to choose). The token space
offsets are derived from the tokenizers' vocabulary sizes and recorded in the manifest, with
each tokenizer's description (id, vocab size, frame rate, image size). Written in parts: an
interrupted run resumes where it stopped; a directory holding another data set is refused.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import sys
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from mdm.data.shards import write_sequences
from mdm.run_contract import MODALITIES
from mdm.token_space import (
    LayoutError,
    Sequences,
    TokenSpace,
    concat,
    pack_text,
    pair_sequence,
)

EVAL_SPLITS = ("valid", "eval", "test")


@dataclasses.dataclass
class RawDataset:
    """Raw inputs of the tokenize step, wherever they came from."""

    text: dict[str, list[str]]                       # split -> documents
    images: np.ndarray | None = None                 # uint8 [N, H, W, 3]
    captions: list[str] = dataclasses.field(default_factory=list)
    image_splits: list[str] = dataclasses.field(default_factory=list)
    waves: np.ndarray | None = None                  # float32 [N, T]
    transcripts: list[str] = dataclasses.field(default_factory=list)
    audio_splits: list[str] = dataclasses.field(default_factory=list)
    fingerprint: str = ""


def _split_of(rec: dict[str, Any], key: str, eval_fraction: float) -> str:
    s = rec.get("split")
    if s is not None:
        return "eval" if s in EVAL_SPLITS else "train"
    h = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) / 2 ** 32
    return "eval" if h < eval_fraction else "train"


def raw_from_demo(demo: Any) -> RawDataset:
    """The embedded demo data set (mdm.demo_data.DemoDataset)."""
    images, irecs = demo.image_text()
    waves, arecs = demo.audio_text()
    return RawDataset(
        text={"train": demo.text("train"), "eval": demo.text("valid")},
        images=images, captions=[r["caption"] for r in irecs],
        image_splits=["eval" if r["split"] in EVAL_SPLITS else "train" for r in irecs],
        waves=waves, transcripts=[r["text"] for r in arecs],
        audio_splits=["eval" if r["split"] in EVAL_SPLITS else "train" for r in arecs],
        # the stages the data come from (not the checkers, which only score samples)
        fingerprint=json.dumps({k: v for k, v in demo.summary.get("stage_keys", {}).items()
                                if k != "checkers"}, sort_keys=True))


def _load_text(paths: Sequence[str], eval_fraction: float) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {"train": [], "eval": []}
    for p in paths:
        if p.endswith(".jsonl"):
            with open(p, encoding="utf-8") as f:
                for i, line in enumerate(f):
                    if line.strip():
                        rec = json.loads(line)
                        if "text" not in rec:
                            raise LayoutError(f"{p}:{i + 1}: a .jsonl record needs a 'text' field")
                        out[_split_of(rec, f"{p}:{i}", eval_fraction)].append(rec["text"])
        else:
            with open(p, encoding="utf-8") as f:
                out[_split_of({}, p, eval_fraction)].append(f.read())
    return out


def _load_media(path: str, labels_path: str, kind: str, field: str, eval_fraction: float
                ) -> tuple[np.ndarray, list[str], list[str]]:
    with open(labels_path, encoding="utf-8") as f:
        labels = json.load(f)
    if os.path.isdir(path):
        if not isinstance(labels, dict):
            raise LayoutError(f"{labels_path}: with a folder of files, give a JSON object "
                              "{file name: text}")
        names = sorted(labels)
        arrays = [_read_media_file(os.path.join(path, n), kind) for n in names]
        data = np.stack(arrays)
        recs = [{"key": n} for n in names]
        texts = [labels[n] if isinstance(labels[n], str) else labels[n][field] for n in names]
    else:
        data = np.load(path, allow_pickle=False)
        if not isinstance(labels, list) or len(labels) != len(data):
            raise LayoutError(f"{labels_path}: expected a list of {len(data)} {field}s matching "
                              f"{path} (got {len(labels) if isinstance(labels, list) else 'an object'})")
        recs = [r if isinstance(r, dict) else {} for r in labels]
        texts = [r if isinstance(r, str) else r.get(field, r.get("text")) for r in labels]
    splits = [_split_of(r, f"{path}:{i}", eval_fraction) for i, r in enumerate(recs)]
    return data, texts, splits


def _read_media_file(path: str, kind: str) -> np.ndarray:
    if kind == "image":
        import matplotlib.image as mpimg
        img = mpimg.imread(path)
        if img.dtype != np.uint8:
            img = (np.clip(img, 0, 1) * 255).round().astype(np.uint8)
        return img[..., :3]
    from scipy.io import wavfile
    _, w = wavfile.read(path)
    w = w.astype(np.float32) / (32768.0 if w.dtype == np.int16 else 1.0)
    return w if w.ndim == 1 else w.mean(1)


def _chunks(n: int, size: int) -> Iterator[tuple[int, slice]]:
    for k, start in enumerate(range(0, n, size)):
        yield k, slice(start, min(start + size, n))


def plan_parts(raw: RawDataset, toks: dict[str, Any], space: TokenSpace, seq_len: int,
               pair_tasks: Sequence[str], part_size: int
               ) -> list[tuple[str, str, int, Callable[[], Sequences]]]:
    """(split, row kind, part, make) for every part; `make` tokenizes only when called."""
    parts: list[tuple[str, str, int, Callable[[], Sequences]]] = []
    text_tok = toks["text"]
    for split, docs in raw.text.items():
        for k, sl in _chunks(len(docs), part_size):
            parts.append((split, "text", k,
                          lambda d=docs[sl]: pack_text([text_tok.encode(x) for x in d], seq_len, space)))

    def pairs(kind: str, media: np.ndarray | None, texts: list[str], splits: list[str],
              tasks: Sequence[str]) -> None:
        if media is None or not len(media):
            return
        if len(texts) != len(media) or len(splits) != len(media):
            raise LayoutError(f"{kind}: {len(media)} items but {len(texts)} texts")
        for split in ("train", "eval"):
            idx = np.flatnonzero(np.asarray(splits) == split)
            for k, sl in _chunks(len(idx), part_size):
                def make(ii=idx[sl]) -> Sequences:
                    codes = toks[kind].encode(media[ii])
                    rows = []
                    for j, i in enumerate(ii):
                        text_ids = text_tok.encode(texts[i])
                        for task in tasks:
                            try:
                                rows.append(pair_sequence(task, text_ids, codes[j], seq_len, space))
                            except LayoutError as e:
                                raise LayoutError(f"{kind} item {i} ({texts[i][:40]!r}): {e}; "
                                                  "raise --seq_len") from None
                    return concat(rows)
                parts.append((split, kind, k, make))

    pairs("image", raw.images, raw.captions, raw.image_splits,
          [t for t in pair_tasks if t in ("T2I", "I2T")])
    pairs("audio", raw.waves, raw.transcripts, raw.audio_splits,
          [t for t in pair_tasks if t in ("T2S", "S2T")])
    return parts


def token_space_for(toks: dict[str, Any], pad_vocab_to: int = 128) -> TokenSpace:
    return TokenSpace(text_vocab=toks["text"].vocab_size, image_vocab=toks["image"].vocab_size,
                      audio_vocab=toks["audio"].vocab_size, pad_vocab_to=pad_vocab_to)


def tokenize(raw: RawDataset, toks: dict[str, Any], out_dir: str, seq_len: int,
             pair_tasks: Sequence[str] = ("T2I", "I2T", "T2S", "S2T"), part_size: int = 256,
             pad_vocab_to: int = 128, progress: bool = True) -> dict[str, Any]:
    """Write the token shards of `raw` into out_dir (resumable); returns the manifest."""
    from tqdm.auto import tqdm
    space = token_space_for(toks, pad_vocab_to)
    fp = hashlib.sha256(json.dumps({
        "inputs": raw.fingerprint or _content_hash(raw), "seq_len": seq_len,
        "tasks": list(pair_tasks), "tokenizers": {k: t.tokenizer_id for k, t in toks.items()},
        "space": space.to_dict()}, sort_keys=True).encode()).hexdigest()[:16]
    parts = plan_parts(raw, toks, space, seq_len, pair_tasks, part_size)
    bar = tqdm(total=len(parts), desc="tokenize", unit="part", disable=not progress)
    try:
        return write_sequences(out_dir, fp, space, seq_len, parts,
                               tokenizers={k: t.describe() for k, t in toks.items()},
                               info={"pair_tasks": list(pair_tasks)}, progress=bar)
    finally:
        bar.close()


def _content_hash(raw: RawDataset) -> str:
    h = hashlib.sha256()
    for split in sorted(raw.text):
        for d in raw.text[split]:
            h.update(d.encode())
    for arr in (raw.images, raw.waves):
        if arr is not None:
            h.update(np.ascontiguousarray(arr).tobytes())
    h.update(json.dumps([raw.captions, raw.transcripts, raw.image_splits, raw.audio_splits]).encode())
    return h.hexdigest()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="mdm-tokenize", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="output shard directory")
    ap.add_argument("--seq_len", type=int, default=128)
    ap.add_argument("--demo", help="a built demo data set directory (mdm.demo_data)")
    ap.add_argument("--tokenizers", help="directory with text/, image/, audio/ tokenizers")
    ap.add_argument("--text", nargs="*", default=[])
    ap.add_argument("--images")
    ap.add_argument("--captions")
    ap.add_argument("--audio")
    ap.add_argument("--transcripts")
    ap.add_argument("--eval_fraction", type=float, default=0.05)
    ap.add_argument("--pair_tasks", default="T2I,I2T,T2S,S2T")
    ap.add_argument("--part_size", type=int, default=256)
    args = ap.parse_args(argv)
    from mdm.tokenizers import load_tokenizer
    if args.demo:
        from mdm.demo_data.build import DemoDataset
        summary = os.path.join(args.demo, "summary.json")
        if not os.path.exists(summary):
            ap.error(f"--demo {args.demo}: no summary.json (build it with python -m mdm.demo_data)")
        with open(summary) as f:
            demo = DemoDataset(__import__("pathlib").Path(args.demo), json.load(f))
        raw = raw_from_demo(demo)
        tok_dir = args.tokenizers or os.path.join(args.demo, "tokenizers")
    else:
        if not args.tokenizers:
            ap.error("--tokenizers is required with raw inputs")
        if bool(args.images) != bool(args.captions) or bool(args.audio) != bool(args.transcripts):
            ap.error("--images needs --captions and --audio needs --transcripts")
        for p in [*args.text, args.images, args.captions, args.audio, args.transcripts]:
            if p and not os.path.exists(p):
                ap.error(f"input not found: {p}")
        raw = RawDataset(text=_load_text(args.text, args.eval_fraction))
        if args.images:
            raw.images, raw.captions, raw.image_splits = _load_media(
                args.images, args.captions, "image", "caption", args.eval_fraction)
        if args.audio:
            raw.waves, raw.transcripts, raw.audio_splits = _load_media(
                args.audio, args.transcripts, "audio", "text", args.eval_fraction)
        tok_dir = args.tokenizers
    toks = {k: load_tokenizer(os.path.join(tok_dir, k)) for k in MODALITIES}
    m = tokenize(raw, toks, args.out, args.seq_len, args.pair_tasks.split(","), args.part_size)
    rows = {s: {k: v["rows"] for k, v in kinds.items()} for s, kinds in m["splits"].items()}
    print(json.dumps({"out": args.out, "rows": rows, "token_space": m["token_space"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
