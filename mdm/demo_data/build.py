"""Build the embedded demo data set: raw text / image-text / audio-text, the three tokenizers
trained on it, the checkers, and a summary. Nothing is downloaded; everything is a function of
(seed, scale), the installed espeak-ng and the installed text sources (mdm.demo_data.text: the
standard library's pydoc topics and Debian's fortunes / dict-* packages; a scale that needs more
prose than is installed fails with one line naming the apt command).

Layout of `out_dir` (each stage is a directory written atomically, with `_stage.json` holding
its content key; a stage whose key matches is reused, so a second call returns at once):

    text/          train.jsonl, valid.jsonl            {"text": document} per line
    image_text/    images.npy                          uint8 [N, S, S, 3]
                   captions.json                       [{"caption", "split", "source", ...}]
    audio_text/    audio.npy                           float32 [N, clip * sample_rate]
                   transcripts.json                    [{"text", "label", "speaker", "split", ...}]
                   examples/*.wav                      one held-out clip per word, to listen to
    tokenizers/    text/, image/, audio/               `mdm.tokenizers.load_tokenizer` dirs
    checkers/      image_checker.npz, audio_checker.npz (arrays + JSON header, no pickle),
                   report.json (accuracies),
                   reconstructions.png, decoded_examples/*.wav
    summary.json   counts (the text's sources: package, documents, characters, bytes each),
                   tokenizer descriptions (manifest entries), PSNR, SNR, mel distance,
                   checker accuracies on held-out real and tokenizer-decoded data, timings

Stage keys: text <- (seed, size limits, the content of each text source: the bytes of its
installed files, see mdm.demo_data.text.sources_fingerprint); image_text <- (seed, sizes);
audio_text <- (seed, renderings, rate, espeak-ng version); each tokenizer <- (its data keys,
config, training settings); checkers <- (data keys, tokenizer ids, checker file versions). A
stage is also rebuilt when one of its files (STAGE_FILES) is missing: a data set built before
the checkers were saved as .npz (it has the old .pkl files) rebuilds its checkers stage only.
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
from tqdm.auto import tqdm

from mdm.demo_data.audio_checker import CHECKER_VERSION as AUDIO_CHECKER_VERSION
from mdm.demo_data.image_checker import CHECKER_VERSION as IMAGE_CHECKER_VERSION
from mdm.demo_data.scales import DemoScale, get_scale
from mdm.demo_data.vocab import DIGIT_WORDS
from mdm.run_contract import MODALITIES

DEMO_FORMAT = "mdm-demo"
DEMO_VERSION = 1  # bump when a generator or tokenizer recipe changes: every cached stage rebuilds
STAGE_FILE = "_stage.json"
SUMMARY_FILE = "summary.json"
IMAGE_CHECKER_FILE = "image_checker.npz"
AUDIO_CHECKER_FILE = "audio_checker.npz"
# files a stage must hold to be reused (besides a matching key)
STAGE_FILES: dict[str, tuple[str, ...]] = {"checkers": (IMAGE_CHECKER_FILE, AUDIO_CHECKER_FILE)}


@dataclasses.dataclass
class DemoDataset:
    """A built demo data set: its directory, summary, and loaders for each part."""

    root: Path
    summary: dict[str, Any]

    def text(self, split: str = "train") -> list[str]:
        with open(self.root / "text" / f"{split}.jsonl", encoding="utf-8") as f:
            return [json.loads(line)["text"] for line in f if line.strip()]

    def image_text(self, split: str | None = None) -> tuple[np.ndarray, list[dict[str, Any]]]:
        """uint8 images [N, S, S, 3] and caption records (optionally one split)."""
        images = np.load(self.root / "image_text" / "images.npy", allow_pickle=False)
        recs = json.loads((self.root / "image_text" / "captions.json").read_text())
        return _select(images, recs, split)

    def audio_text(self, split: str | None = None) -> tuple[np.ndarray, list[dict[str, Any]]]:
        """float32 waveforms [N, T] and transcript records (optionally one split)."""
        waves = np.load(self.root / "audio_text" / "audio.npy", allow_pickle=False)
        recs = json.loads((self.root / "audio_text" / "transcripts.json").read_text())
        return _select(waves, recs, split)

    def tokenizer(self, kind: str) -> Any:
        from mdm.tokenizers import load_tokenizer
        return load_tokenizer(self.root / "tokenizers" / kind)

    def image_checker(self) -> Any:
        from mdm.demo_data.image_checker import ImageChecker
        return ImageChecker.load(self._checker_file(IMAGE_CHECKER_FILE))

    def audio_checker(self) -> Any:
        from mdm.demo_data.audio_checker import AudioChecker
        return AudioChecker.load(self._checker_file(AUDIO_CHECKER_FILE))

    def _checker_file(self, name: str) -> Path:
        """The .npz checker; in a data set built by an older version, the old .pkl (which the
        loader refuses, without unpickling it, with a line saying to rebuild)."""
        p = self.root / "checkers" / name
        old = p.with_suffix(".pkl")
        return old if not p.exists() and old.exists() else p

    @property
    def sample_rate(self) -> int:
        return int(self.summary["scale"]["sample_rate"])


def _select(arr: np.ndarray, recs: list[dict[str, Any]], split: str | None
            ) -> tuple[np.ndarray, list[dict[str, Any]]]:
    if split is None:
        return arr, recs
    idx = [i for i, r in enumerate(recs) if r["split"] == split]
    return arr[idx], [recs[i] for i in idx]


# --- the build ---------------------------------------------------------------------------------
def build_demo_dataset(out_dir: str | os.PathLike, seed: int = 0,
                       scale: str | DemoScale = "small", *, progress: bool = True,
                       force: bool = False) -> DemoDataset:
    """Generate (or reuse) the demo data set in `out_dir`; see the module docstring.

    seed: every random choice (document order, shape attributes and jitter, digit split,
    speaker / rate / pitch of each clip, tokenizer initialisation and batches).
    scale: "small" (the `make demo` default), "tiny" (tests) or a DemoScale.
    force: rebuild every stage even if its key matches.
    """
    sc = get_scale(scale)
    root = Path(out_dir).absolute()
    root.mkdir(parents=True, exist_ok=True)
    with _lock(root):
        keys = _stage_keys(sc, seed)
        summary_file = root / SUMMARY_FILE
        if not force and summary_file.is_file():
            summary = json.loads(summary_file.read_text())
            if summary.get("stage_keys") == keys and all(
                    _stage_current(root, name, key) for name, key in keys.items()):
                if summary.get("root") != str(root):       # the directory was moved / copied
                    summary = _summarise(root, sc, seed, keys, summary["timings_seconds"])
                    _write_json(summary_file, summary)
                return DemoDataset(root, summary)
        timings: dict[str, float] = {}
        steps: list[tuple[str, Callable[[Path], dict[str, Any]]]] = [
            ("text", lambda d: _build_text(d, sc, seed)),
            ("image_text", lambda d: _build_image_text(d, sc, seed)),
            ("audio_text", lambda d: _build_audio_text(d, sc, seed, progress)),
            ("tokenizers/text", lambda d: _build_text_tokenizer(d, root, sc)),
            ("tokenizers/image", lambda d: _build_image_tokenizer(d, root, sc, seed, progress)),
            ("tokenizers/audio", lambda d: _build_audio_tokenizer(d, root, sc, seed, progress)),
            ("checkers", lambda d: _build_checkers(d, root, sc)),
        ]
        bar = tqdm(steps, desc=f"demo data ({sc.name})", disable=not progress)
        for name, fn in bar:
            bar.set_postfix_str(name)
            t0 = time.perf_counter()
            if force or not _stage_current(root, name, keys[name]):
                _run_stage(root / name, keys[name], fn)
            timings[name] = round(time.perf_counter() - t0, 2)
        summary = _summarise(root, sc, seed, keys, timings)
        _write_json(summary_file, summary)
        return DemoDataset(root, summary)


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


# --- stage keys and atomic stages -----------------------------------------------------------------
def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _stage_keys(sc: DemoScale, seed: int) -> dict[str, str]:
    from mdm.demo_data.text import sources_fingerprint
    base = {"format": DEMO_FORMAT, "version": DEMO_VERSION, "seed": seed}
    k: dict[str, str] = {}
    k["text"] = _hash({**base, "stage": "text", "max_chars": sc.text_max_chars,
                       "min_bytes": sc.text_min_bytes,
                       "per_source": sc.text_max_chars_per_source,
                       "sources": sources_fingerprint(sources=sc.text_sources)})
    k["image_text"] = _hash({**base, "stage": "image_text", "size": sc.image_size,
                             "digits": sc.num_digits, "shapes": sc.num_shapes,
                             "valid": sc.image_valid_fraction})
    k["audio_text"] = _hash({**base, "stage": "audio_text", "words": DIGIT_WORDS,
                             "renderings": sc.renderings_per_word, "sr": sc.sample_rate,
                             "clip": sc.clip_seconds, "espeak": _espeak_version()})
    k["tokenizers/text"] = _hash({"stage": "tok_text", "data": [k["text"], k["image_text"],
                                  k["audio_text"]], "vocab": sc.text_vocab})
    k["tokenizers/image"] = _hash({"stage": "tok_image", "data": k["image_text"], "seed": seed,
                                   "cfg": sc.image_tokenizer.to_dict(),
                                   "train": dataclasses.asdict(sc.image_train)})
    k["tokenizers/audio"] = _hash({"stage": "tok_audio", "data": k["audio_text"], "seed": seed,
                                   "cfg": sc.audio_tokenizer.to_dict(),
                                   "train": dataclasses.asdict(sc.audio_train),
                                   "crop": sc.audio_crop_seconds})
    k["checkers"] = _hash({"stage": "checkers", "data": [k["image_text"], k["audio_text"]],
                           "tok": [k["tokenizers/image"], k["tokenizers/audio"]],
                           "files": [[IMAGE_CHECKER_FILE, IMAGE_CHECKER_VERSION],
                                     [AUDIO_CHECKER_FILE, AUDIO_CHECKER_VERSION]]})
    return k


def _espeak_version() -> str:
    exe = shutil.which("espeak-ng")
    if exe is None:
        return "missing"
    try:
        return subprocess.run([exe, "--version"], capture_output=True, text=True,
                              timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _stage_key(d: Path) -> str | None:
    f = d / STAGE_FILE
    if not f.is_file():
        return None
    try:
        return json.loads(f.read_text()).get("key")
    except json.JSONDecodeError:
        return None


def _stage_current(root: Path, name: str, key: str) -> bool:
    """The stage in root/name was built with `key` and holds the files it must hold."""
    d = root / name
    return _stage_key(d) == key and all((d / f).is_file() for f in STAGE_FILES.get(name, ()))


def _run_stage(d: Path, key: str, fn: Callable[[Path], dict[str, Any]]) -> None:
    """Build into a temporary sibling, mark it with its key, then swap it in."""
    tmp = d.with_name(f".{d.name}.tmp{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        info = fn(tmp)
        (tmp / STAGE_FILE).write_text(json.dumps({"key": key, "info": info}, indent=2,
                                                 default=float) + "\n")
        if d.exists():
            shutil.rmtree(d)
        os.replace(tmp, d)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _stage_info(root: Path, name: str) -> dict[str, Any]:
    return json.loads((root / name / STAGE_FILE).read_text())["info"]


@contextlib.contextmanager
def _lock(root: Path) -> Iterator[None]:
    with open(root / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# --- raw data stages --------------------------------------------------------------------------
def _build_text(d: Path, sc: DemoScale, seed: int) -> dict[str, Any]:
    from mdm.demo_data.text import make_text_corpus
    train, valid, info = make_text_corpus(
        seed, max_chars=sc.text_max_chars, min_bytes=sc.text_min_bytes,
        max_chars_per_source=sc.text_max_chars_per_source, sources=sc.text_sources,
        scale_name=sc.name)
    for split, docs in (("train", train), ("valid", valid)):
        with open(d / f"{split}.jsonl", "w", encoding="utf-8") as f:
            for doc in docs:
                f.write(json.dumps({"text": doc}, ensure_ascii=False) + "\n")
    return info


def _build_image_text(d: Path, sc: DemoScale, seed: int) -> dict[str, Any]:
    from mdm.demo_data.digits import make_digits
    from mdm.demo_data.shapes import make_shapes
    dig, dig_cap, dig_attr = make_digits(sc.image_size, sc.num_digits, seed)
    shp, shp_cap, shp_attr = make_shapes(sc.num_shapes, sc.image_size, seed + 1)
    records = []
    for caps, attrs in ((dig_cap, dig_attr), (shp_cap, shp_attr)):
        n_valid = int(round(sc.image_valid_fraction * len(caps)))
        for i, (c, a) in enumerate(zip(caps, attrs)):
            records.append({"caption": c, "split": "valid" if i >= len(caps) - n_valid
                            else "train", **a})
    np.save(d / "images.npy", np.concatenate([dig, shp]))
    (d / "captions.json").write_text(json.dumps(records, indent=0) + "\n")
    return {"num_digits": len(dig), "num_shapes": len(shp),
            "train": sum(r["split"] == "train" for r in records),
            "valid": sum(r["split"] == "valid" for r in records),
            "image_size": sc.image_size}


def _build_audio_text(d: Path, sc: DemoScale, seed: int, progress: bool) -> dict[str, Any]:
    from mdm.demo_data.speech import make_spoken_words, write_wav
    waves, records = make_spoken_words(DIGIT_WORDS, sc.renderings_per_word, seed,
                                       sc.sample_rate, sc.clip_seconds, progress=progress)
    np.save(d / "audio.npy", waves)
    (d / "transcripts.json").write_text(json.dumps(records, indent=0) + "\n")
    ex = d / "examples"
    ex.mkdir()
    seen: set[str] = set()
    for i, r in enumerate(records):
        if r["split"] == "valid" and r["text"] not in seen:
            seen.add(r["text"])
            write_wav(ex / f"{i:04d}_{r['text']}_{r['speaker']}.wav", waves[i], sc.sample_rate)
    return {"num_clips": len(records), "train": sum(r["split"] == "train" for r in records),
            "valid": sum(r["split"] == "valid" for r in records),
            "speakers": len({r["speaker"] for r in records}), "sample_rate": sc.sample_rate,
            "clip_seconds": sc.clip_seconds, "words": list(DIGIT_WORDS)}


# --- tokenizer stages -------------------------------------------------------------------------
def _build_text_tokenizer(d: Path, root: Path, sc: DemoScale) -> dict[str, Any]:
    from mdm.tokenizers.text import TextTokenizer
    ds = DemoDataset(root, {})
    train_docs = ds.text("train")
    _, caps = ds.image_text("train")
    _, trans = ds.audio_text("train")
    corpus = train_docs + [r["caption"] for r in caps] + [r["text"] for r in trans]
    t0 = time.perf_counter()
    tok = TextTokenizer.train(corpus, vocab_size=sc.text_vocab)
    seconds = time.perf_counter() - t0
    valid = ds.text("valid")
    enc = tok.encode_batch(valid)
    exact = all(tok.decode(e) == s for e, s in zip(enc, valid))
    n_tok = int(sum(len(e) for e in enc))
    n_bytes = sum(len(s.encode("utf-8")) for s in valid)
    tok.save(d)
    return {"train_seconds": seconds, "vocab_size": tok.vocab_size,
            "valid_roundtrip_exact": exact, "valid_tokens": n_tok,
            "valid_bytes_per_token": n_bytes / max(1, n_tok)}


def _build_image_tokenizer(d: Path, root: Path, sc: DemoScale, seed: int,
                           progress: bool) -> dict[str, Any]:
    from mdm.tokenizers.image import ImageTokenizer
    ds = DemoDataset(root, {})
    train, _ = ds.image_text("train")
    valid, recs = ds.image_text("valid")
    settings = dataclasses.replace(sc.image_train, seed=seed)
    tok = ImageTokenizer.train(train, sc.image_tokenizer, settings, progress=progress)
    digits = np.asarray([r["source"] == "digit" for r in recs])
    held = {"all": tok.evaluate(valid)}
    if digits.any():
        held["digits"] = tok.evaluate(valid[digits])
    if (~digits).any():
        held["shapes"] = tok.evaluate(valid[~digits])
    tok.train_log["heldout"] = held
    tok.save(d)
    return {"train_seconds": tok.train_log["train_seconds"], "heldout": held,
            "num_params": tok.num_params()}


def _build_audio_tokenizer(d: Path, root: Path, sc: DemoScale, seed: int,
                           progress: bool) -> dict[str, Any]:
    from mdm.tokenizers.audio import AudioTokenizer
    ds = DemoDataset(root, {})
    train, _ = ds.audio_text("train")
    valid, _ = ds.audio_text("valid")
    settings = dataclasses.replace(sc.audio_train, seed=seed)
    tok = AudioTokenizer.train(train, sc.audio_tokenizer, settings,
                               crop_seconds=sc.audio_crop_seconds, heldout=valid,
                               progress=progress)
    tok.save(d)
    return {"train_seconds": tok.train_log["train_seconds"],
            "heldout": tok.train_log["heldout"], "num_params": tok.num_params()}


# --- checkers and end-to-end evaluation -------------------------------------------------------
def _build_checkers(d: Path, root: Path, sc: DemoScale) -> dict[str, Any]:
    from mdm.demo_data.audio_checker import AudioChecker
    from mdm.demo_data.image_checker import ImageChecker
    from mdm.demo_data.speech import write_wav
    from mdm.tokenizers import load_tokenizer
    ds = DemoDataset(root, {})
    report: dict[str, Any] = {}

    # Image: digit reader trained on train digits; everything scored on the held-out split,
    # as rendered and after an image-tokenizer round trip.
    imgs, recs = ds.image_text("train")
    dig = [i for i, r in enumerate(recs) if r["source"] == "digit"]
    ick = ImageChecker.train(imgs[dig], np.asarray([recs[i]["label"] for i in dig]))
    ick.save(d / IMAGE_CHECKER_FILE)
    vimgs, vrecs = ds.image_text("valid")
    itok = load_tokenizer(root / "tokenizers" / "image")
    vdec = itok.reconstruct(vimgs)
    report["image"] = {"real_valid": ick.check(vimgs, vrecs),
                       "decoded_valid": ick.check(vdec, vrecs), "chance_digit": 0.1}
    _save_reconstruction_grid(d / "reconstructions.png", vimgs, vdec)

    # Audio: word recogniser trained on train speakers; scored on held-out voices, as
    # synthesised and after a speech-codec round trip.
    waves, trecs = ds.audio_text("train")
    ack = AudioChecker.train(waves, np.asarray([r["label"] for r in trecs]), DIGIT_WORDS)
    ack.save(d / AUDIO_CHECKER_FILE)
    vwaves, vtrecs = ds.audio_text("valid")
    vlabels = np.asarray([r["label"] for r in vtrecs])
    atok = load_tokenizer(root / "tokenizers" / "audio")
    vwdec = atok.reconstruct(vwaves)
    report["audio"] = {"real_valid": ack.accuracy(vwaves, vlabels),
                       "decoded_valid": ack.accuracy(vwdec, vlabels),
                       "chance": 1.0 / len(DIGIT_WORDS), "num_valid": int(len(vlabels))}
    ex = d / "decoded_examples"
    ex.mkdir()
    seen: set[str] = set()
    for i, r in enumerate(vtrecs):
        if r["text"] not in seen:
            seen.add(r["text"])
            write_wav(ex / f"{r['text']}_{r['speaker']}_real.wav", vwaves[i], sc.sample_rate)
            write_wav(ex / f"{r['text']}_{r['speaker']}_decoded.wav", vwdec[i], sc.sample_rate)
    (d / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def _save_reconstruction_grid(path: Path, real: np.ndarray, decoded: np.ndarray,
                              n: int = 16, zoom: int = 3) -> None:
    """PNG: first row real held-out images, second row their tokenizer reconstructions."""
    from PIL import Image
    if len(real) == 0:
        return
    pick = np.linspace(0, len(real) - 1, min(n, len(real))).astype(int)
    grid = np.concatenate([np.concatenate(list(real[pick]), axis=1),
                           np.concatenate(list(decoded[pick]), axis=1)], axis=0)
    grid = grid.repeat(zoom, axis=0).repeat(zoom, axis=1)
    Image.fromarray(grid).save(path)


# --- summary ----------------------------------------------------------------------------------
def _summarise(root: Path, sc: DemoScale, seed: int, keys: dict[str, str],
               timings: dict[str, float]) -> dict[str, Any]:
    from mdm.tokenizers import load_tokenizer
    info = {name: _stage_info(root, name) for name in keys}
    toks = {kind: load_tokenizer(root / "tokenizers" / kind).describe()
            for kind in MODALITIES}
    img_h = info["tokenizers/image"]["heldout"]
    aud_h = info["tokenizers/audio"]["heldout"]
    chk = info["checkers"]
    return {
        "format": DEMO_FORMAT, "version": DEMO_VERSION, "seed": seed, "root": str(root),
        "scale": sc.to_dict(), "stage_keys": keys,
        "counts": {"text": info["text"], "image_text": info["image_text"],
                   "audio_text": info["audio_text"]},
        "tokenizers": toks,
        "metrics": {
            "text_valid_bytes_per_token": info["tokenizers/text"]["valid_bytes_per_token"],
            "text_valid_roundtrip_exact": info["tokenizers/text"]["valid_roundtrip_exact"],
            "image_psnr_db": {k: v["psnr_db"] for k, v in img_h.items()},
            "audio_snr_db": aud_h["snr_db"],
            "audio_mel_distance_db": aud_h["mel_distance_db"],
            "train_seconds": {kind: info[f"tokenizers/{kind}"]["train_seconds"]
                              for kind in MODALITIES},
        },
        "checkers": chk,
        "timings_seconds": timings,
    }
