"""Input pipeline vs train step: can the data sources feed the trainer?

    .venv/bin/python benchmarks/bench_input.py [--demo DIR] [--work /tmp/mdm_bench_input]
        [--seconds 3] [--steps 6] [--only demo|md4a]

Two shapes: the demo grid's (experiments/demo.py size s1: batch 16 x seq 128, tri-modal) and
md4's size a (batch 16 x seq 256, width 256, 4 layers, text only; benchmarks/project_side.py).
For each, in this one process:

  shards     the token-shard source as the trainer reads it: ShardSource.iterate (a grain
             MapDataset indexed by step, read ahead by grain's threads), batches / s and
             data tokens / s over `--seconds` after the first batch;
  shards/raw the same batches from ShardSource.batch called in a loop (no grain), to tell the
             source's cost from grain's;
  synthetic  the synthetic source (SyntheticSource.iterate) at the same shape;
  train      the trainer's own step (mdm.assemble.setup_train_step, as benchmarks/bench_train.py)
             on one device: median step time over `--steps` steps, in batches / s and tokens / s;

and prints each source's ratio to the train step (batches delivered per batch consumed; the
target is >= 20x, so the input never shows in a step's time). Tokens are data tokens
(rows x seq_len; with complementary pairs the step processes each row twice).

The shards: token shards of the embedded demo data set at seq_len 128 and 256, tokenized into
`--work` on first use (cached there) from `--demo DIR` (a built demo data set, read only; e.g.
data/demo_small after `make demo`) or, without it, from the tiny demo set built into `--work`.
md4's train step uses its own 1024-id vocabulary; its input side reads the demo shards at
seq 256 (the pipeline's cost depends on the shape, not on the ids).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402
import numpy as np  # noqa: E402

TARGET = 20.0


def demo_dataset(demo_dir: str, work: str):
    from mdm.demo_data.build import DemoDataset, build_demo_dataset
    if demo_dir:   # read only: no lock file, no rebuild
        from pathlib import Path
        root = Path(demo_dir)
        return DemoDataset(root, json.loads((root / "summary.json").read_text()))
    return build_demo_dataset(os.path.join(work, "demo_tiny"), scale="tiny", progress=False)


def shards(demo_dir: str, work: str, seq_len: int, cache: dict) -> str:
    """Demo token shards at seq_len (tokenized into work/ once)."""
    from mdm.data.shards import ShardError, load_manifest
    path = os.path.join(work, f"shards_L{seq_len}" + ("_given" if demo_dir else "_tiny"))
    try:
        load_manifest(path)             # complete: reuse
        return path
    except ShardError:
        pass
    from mdm.data.tokenize import raw_from_demo, tokenize
    if "demo" not in cache:
        cache["demo"] = demo_dataset(demo_dir, work)
    demo = cache["demo"]
    print(f"tokenizing the demo data set into {path} (seq {seq_len}) ...", flush=True)
    tokenize(raw_from_demo(demo), {k: demo.tokenizer(k) for k in ("text", "image", "audio")},
             path, seq_len, progress=False)
    return path


def use_shards(cfg, path: str) -> None:
    from mdm.data.shards import load_manifest
    ts = load_manifest(path)["token_space"]
    cfg.token_space.update(text_vocab=ts["text_vocab"], image_vocab=ts["image_vocab"],
                           audio_vocab=ts["audio_vocab"], pad_vocab_to=ts["pad_vocab_to"])
    cfg.data.update(source="shards", path=path)


def configs(args, cache: dict) -> dict[str, tuple]:
    """name -> (train config, shard config, synthetic config): same shape in all three."""
    from experiments.demo import get_config as demo_config
    from project_side import md4_shaped_config
    out = {}
    if args.only in ("", "demo"):
        train = demo_config("size=s1,tokens=1e5")
        train.data.seq_len = 128
        sh = demo_config("size=s1,tokens=1e5")
        sh.data.seq_len = 128
        use_shards(sh, shards(args.demo, args.work, 128, cache))
        use_shards(train, sh.data.path)          # the demo grid trains on the shards' ids
        out["demo s1 (16 x 128, tri-modal)"] = (train, sh, demo_config("size=s1,tokens=1e5"))
    if args.only in ("", "md4a"):
        train = md4_shaped_config("a", [])
        sh = md4_shaped_config("a", [])
        use_shards(sh, shards(args.demo, args.work, 256, cache))
        out["md4 a (16 x 256, text)"] = (train, sh, md4_shaped_config("a", []))
    for t, s, y in out.values():
        for c in (t, s, y):
            c.mesh.data = 1
            c.logging.progress = False
    return out


def rate(it, seconds: float) -> tuple[float, int]:
    """Batches / s of an iterator over `seconds` after its first batch (which starts it)."""
    next(it)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        next(it)
        n += 1
    return n / (time.perf_counter() - t0), n


def input_rates(cfg, seconds: float) -> dict[str, float]:
    from mdm.assemble import build
    b = build(cfg)
    out = {}
    steps = 10 ** 6
    out["iterate"] = rate(b.source.iterate(0, steps, b.rows_per_step), seconds)[0]
    if cfg.data.source == "shards":
        out["raw"] = rate((b.source.batch(s, b.rows_per_step) for s in range(steps)), seconds)[0]
    return out


def train_rate(cfg, steps: int) -> float:
    """Train steps / s of the trainer's step on one device (median step time)."""
    from mdm.assemble import build, setup_train_step
    from mdm.objective import Batch
    from mdm.sharding import mesh_from_config, rules_from_config
    from mdm.train_state import create_state
    b = build(cfg)
    devs = jax.devices()[:1]
    mesh, rules = mesh_from_config(cfg, devs), rules_from_config(cfg)
    st = setup_train_step(cfg, b, mesh, rules)
    state, _ = create_state(b.model, st.tx, mesh, rules, cfg.data.seq_len,
                            jax.random.PRNGKey(0), st.ema, st.shardings)
    batches = [Batch(*(jax.device_put(np.asarray(d[k]), st.batch_sharding)
                       for k in ("tokens", "segment_ids", "cond")))
               for d in (b.source.batch(s, b.rows_per_step) for s in range(2))]
    state, m = st.step(state, batches[0])
    jax.block_until_ready(m)
    times = []
    for i in range(steps):
        t0 = time.perf_counter()
        state, m = st.step(state, batches[(i + 1) % 2])
        jax.block_until_ready(m)
        times.append(time.perf_counter() - t0)
    return 1.0 / statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--demo", default="", help="a built demo data set (read only)")
    ap.add_argument("--work", default="/tmp/mdm_bench_input", help="shards cache directory")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--only", default="", choices=("", "demo", "md4a"))
    args = ap.parse_args()
    from absl import flags
    flags.FLAGS.mark_as_parsed()
    from mdm.startup import enable_compilation_cache
    enable_compilation_cache()
    os.makedirs(args.work, exist_ok=True)
    cache: dict = {}
    for name, (train, sh, syn) in configs(args, cache).items():
        tokens = train.train.physical_batch * train.data.seq_len
        rows = sh.train.physical_batch // (2 if sh.objective.complementary else 1)
        data_tokens = rows * sh.data.seq_len
        step_rate = train_rate(train, args.steps)
        r_sh = input_rates(sh, args.seconds)
        r_syn = input_rates(syn, args.seconds)
        print(f"\n{name}: {rows} rows x {sh.data.seq_len} tokens per batch", flush=True)
        print(f"  train step    {step_rate:8.2f} batches/s {step_rate * data_tokens:10.0f} "
              f"tokens/s (data; {step_rate * tokens:.0f} processed)")
        for label, r in (("shards", r_sh["iterate"]), ("shards/raw", r_sh["raw"]),
                         ("synthetic", r_syn["iterate"])):
            ratio = r / step_rate
            flag = "ok" if ratio >= TARGET else f"BELOW {TARGET:.0f}x"
            print(f"  {label:13s} {r:8.1f} batches/s {r * data_tokens:10.0f} tokens/s   "
                  f"{ratio:7.1f}x the train step  {flag}", flush=True)


if __name__ == "__main__":
    main()
