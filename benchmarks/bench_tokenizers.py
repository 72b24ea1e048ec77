"""Benchmark the three tokenizers: training speed, encode / decode throughput and, given a built
demo data set, held-out quality (PSNR, SNR, mel distance, checker accuracy on decoded data).

    python benchmarks/bench_tokenizers.py                       # throughput, fresh weights
    python benchmarks/bench_tokenizers.py --demo demo_out/data  # + quality of the demo's tokenizers
    python benchmarks/bench_tokenizers.py --build-tiny          # build a tiny demo first (tmp)

Timings exclude compilation (one warm-up call first) and are medians of --repeats runs. The
machine may be shared: compare numbers from one run, not across runs.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def timed(fn: Callable[[], Any], repeats: int) -> float:
    """Median wall seconds of fn() after one warm-up call."""
    fn()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


def bench_text(repeats: int, vocab: int) -> dict[str, Any]:
    from mdm.demo_data.text import pydoc_documents
    from mdm.tokenizers.text import TextTokenizer
    docs = pydoc_documents()
    n_bytes = sum(len(d.encode()) for d in docs)
    t0 = time.perf_counter()
    tok = TextTokenizer.train(docs, vocab_size=vocab)
    train_s = time.perf_counter() - t0
    ids = tok.encode_batch(docs)
    n_tok = sum(len(i) for i in ids)
    enc = timed(lambda: tok.encode_batch(docs), repeats)
    dec = timed(lambda: tok.decode_batch(ids), repeats)
    exact = all(tok.decode(i) == d for i, d in zip(ids, docs))
    return {"vocab_size": tok.vocab_size, "corpus_bytes": n_bytes, "train_seconds": train_s,
            "bytes_per_token": n_bytes / n_tok, "encode_MB_per_s": n_bytes / enc / 1e6,
            "decode_MB_per_s": n_bytes / dec / 1e6, "roundtrip_exact": exact}


def bench_learned(kind: str, tok: Any, batch: np.ndarray, train_data: np.ndarray,
                  train_steps: int, repeats: int) -> dict[str, Any]:
    """Throughput of encode / decode on `batch` and of `train_steps` training steps."""
    import dataclasses

    from mdm.tokenizers.training import TrainSettings
    codes = tok.encode(batch)
    enc = timed(lambda: tok.encode(batch), repeats)
    dec = timed(lambda: tok.decode(codes), repeats)
    out: dict[str, Any] = {"num_params": tok.num_params(), "vocab_size": tok.vocab_size,
                           "batch": int(len(batch)), "encode_items_per_s": len(batch) / enc,
                           "decode_items_per_s": len(batch) / dec}
    if train_steps > 0:
        cls = type(tok)
        bs = 32 if kind == "image" else 16
        settings = TrainSettings(steps=train_steps, batch_size=bs, log_every=train_steps)
        short = dataclasses.replace(settings, steps=2, log_every=2)
        t0 = time.perf_counter()
        cls.train(train_data, tok.cfg, short, progress=False)        # includes compilation
        compile_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        res = cls.train(train_data, tok.cfg, settings, progress=False)
        total = time.perf_counter() - t0
        steps_s = res.train_log["train_seconds"]
        out.update({"train_batch": bs, "train_steps": train_steps,
                    "train_step_seconds": steps_s / train_steps,
                    "train_examples_per_s": bs * train_steps / steps_s,
                    "compile_and_2_steps_seconds": compile_s, "train_total_seconds": total})
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--demo", type=Path, help="a built demo data set directory")
    p.add_argument("--build-tiny", action="store_true",
                   help="build a tiny demo data set in a temp dir and use it")
    p.add_argument("--train-steps", type=int, default=20)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--text-vocab", type=int, default=4096)
    p.add_argument("--out", type=Path, help="write the results as JSON here")
    args = p.parse_args(argv)

    import jax
    from mdm.tokenizers.audio import AudioTokenizer, AudioTokenizerConfig
    from mdm.tokenizers.image import ImageTokenizer, ImageTokenizerConfig

    results: dict[str, Any] = {"jax_backend": jax.default_backend(),
                               "devices": len(jax.devices())}
    demo_dir = args.demo
    tmp = None
    if args.build_tiny:
        from mdm.demo_data import build_demo_dataset
        tmp = tempfile.TemporaryDirectory(prefix="mdm_bench_demo_")
        t0 = time.perf_counter()
        build_demo_dataset(tmp.name, seed=0, scale="tiny", progress=True)
        results["tiny_build_seconds"] = time.perf_counter() - t0
        demo_dir = Path(tmp.name)

    print("text ...", flush=True)
    results["text"] = bench_text(args.repeats, args.text_vocab)

    if demo_dir is not None:
        from mdm.demo_data.build import DemoDataset
        ds = DemoDataset(demo_dir.absolute(), json.loads((demo_dir / "summary.json").read_text()))
        img_tok, aud_tok = ds.tokenizer("image"), ds.tokenizer("audio")
        img_train, _ = ds.image_text("train")
        img_valid, img_recs = ds.image_text("valid")
        aud_train, _ = ds.audio_text("train")
        aud_valid, aud_recs = ds.audio_text("valid")
    else:
        from mdm.demo_data.digits import make_digits
        from mdm.demo_data.shapes import make_shapes
        d, _, _ = make_digits(32, limit=256)
        s, _, _ = make_shapes(256, 32)
        img_train = img_valid = np.concatenate([d, s])
        img_tok = ImageTokenizer(ImageTokenizerConfig(),
                                 ImageTokenizer.init_params(ImageTokenizerConfig()))
        rng = np.random.default_rng(0)
        aud_train = aud_valid = (0.1 * rng.standard_normal((64, 8000))).astype(np.float32)
        aud_tok = AudioTokenizer(AudioTokenizerConfig(),
                                 AudioTokenizer.init_params(AudioTokenizerConfig()))

    print("image ...", flush=True)
    results["image"] = bench_learned("image", img_tok, img_valid[:256], img_train,
                                     args.train_steps, args.repeats)
    print("audio ...", flush=True)
    results["audio"] = bench_learned("audio", aud_tok, aud_valid[:64], aud_train,
                                     args.train_steps, args.repeats)
    results["audio"]["encode_realtime_factor"] = (
        results["audio"]["encode_items_per_s"] * aud_valid.shape[1] / aud_tok.sample_rate)
    results["audio"]["decode_realtime_factor"] = (
        results["audio"]["decode_items_per_s"] * aud_valid.shape[1] / aud_tok.sample_rate)

    if demo_dir is not None:
        print("quality on the demo's held-out split ...", flush=True)
        results["image"]["heldout"] = img_tok.evaluate(img_valid)
        results["audio"]["heldout"] = aud_tok.evaluate(aud_valid)
        ick, ack = ds.image_checker(), ds.audio_checker()
        labels = np.asarray([r["label"] for r in aud_recs])
        results["checkers"] = {
            "image_real": ick.check(img_valid, img_recs),
            "image_decoded": ick.check(img_tok.reconstruct(img_valid), img_recs),
            "audio_real": ack.accuracy(aud_valid, labels),
            "audio_decoded": ack.accuracy(aud_tok.reconstruct(aud_valid), labels),
            "audio_chance": 1.0 / len(ack.words)}
        results["demo_summary_timings"] = ds.summary.get("timings_seconds")

    text = json.dumps(results, indent=2, default=float)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
