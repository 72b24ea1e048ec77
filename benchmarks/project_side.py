"""The project's side of the side-by-side benchmark against md4 (benchmarks/bench_vs_md4.py).

One md4 size per process, built through the trainer's own path (experiments config ->
mdm.assemble.build -> setup_train_step -> create_state -> the jitted, donated step that
`mdm.train` runs), on md4's shapes: vocabulary 1024, width / layers / heads / seq / batch of
md4's sizes a, b, c, AdamW. Prints and writes (--out, JSON) the same fields as the peer's
md4_side.py: the machine's jitted 2048^3 matmul rate (f32, bf16) at start and end, start-up
time (env PROC_T0 = process start, seconds since the epoch) to the first finished step, the
median step time, tokens/s, model FLOPs per token (mdm.flops) and MFU against both matmul
rates; with --sample the ancestral sampler (batch 8, 64 steps) time and generated tokens/s.

    PROC_T0=$(date +%s.%N) .venv/bin/python benchmarks/project_side.py --size a --out a.json \
        [--set model.dtype=float32 --set model.scan_layers=true] [--sample]

`--set key=value` overrides any config field (what a user would pass as --config.key=value),
so the benchmark measures the lab's defaults unless told otherwise.
"""
from __future__ import annotations

import time

_T_IMPORT0 = time.time()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

SIZES = {   # md4's sizes (../shared/peers/md4/README.md)
    "a": dict(width=256, layers=4, heads=4, seq=256, vocab=1024, batch=16),
    "b": dict(width=512, layers=8, heads=8, seq=512, vocab=1024, batch=8),
    "c": dict(width=768, layers=8, heads=12, seq=512, vocab=1024, batch=8),
}
SAMPLE = dict(batch=8, steps=64)   # md4_side.py --sample: size a, batch 8, 64 ancestral steps


def bench_matmul(dtype, n: int = 2048, reps: int = 10) -> dict:
    """The same measurement as md4_side.py: jitted n^3 matmul, float32 accumulation."""
    k1, k2 = jax.random.split(jax.random.key(0))
    a = jax.random.normal(k1, (n, n), jnp.float32).astype(dtype)
    b = jax.random.normal(k2, (n, n), jnp.float32).astype(dtype)
    f = jax.jit(lambda a, b: jnp.dot(a, b, preferred_element_type=jnp.float32))
    for _ in range(3):
        f(a, b).block_until_ready()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        f(a, b).block_until_ready()
        ts.append(time.perf_counter() - t0)
    med = statistics.median(ts)
    return dict(dtype=str(jnp.dtype(dtype)), median_s=med, gflops=2 * n ** 3 / med / 1e9,
                best_gflops=2 * n ** 3 / min(ts) / 1e9)


def md4_shaped_config(size: str, overrides: list[str]):
    """experiments/base.py with md4's shapes: a text-only run on a 1024-id vocabulary."""
    from experiments.base import get_config
    from experiments.sweep import parse_scalar
    s = SIZES[size]
    c = get_config("default")
    c.model.update(width=s["width"], depth=s["layers"], num_heads=s["heads"],
                   base_width=s["width"], base_depth=s["layers"])
    # 16 specials + 1006 text ids + 1 image + 1 audio = 1024 ids (no padding)
    c.token_space.update(text_vocab=s["vocab"] - 18, image_vocab=1, audio_vocab=1,
                         pad_vocab_to=s["vocab"])
    c.data.update(seq_len=s["seq"])
    c.data.mixture.update(text=1.0, image=0.0, audio=0.0)
    c.objective.cond_dropout = 0.0
    c.train.update(physical_batch=s["batch"], total_tokens=s["batch"] * s["seq"] * 1000)
    c.optimizer.update(lr=3e-4, beta1=0.9, beta2=0.999, weight_decay=0.03, grad_clip=0.0,
                       warmup=0.0, decay="constant")
    c.mesh.data = 1
    for kv in overrides:
        key, _, val = kv.partition("=")
        node = c
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = parse_scalar(val, node[leaf], key, "--set")
    return c


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", choices=sorted(SIZES), required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--sample", action="store_true")
    ap.add_argument("--sample_reps", type=int, default=4)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args()
    t_proc0 = float(os.environ.get("PROC_T0", _T_IMPORT0))
    tag = f"[lab {args.size}]"

    from mdm.assemble import build, setup_train_step
    from mdm.flops import model_measures
    from mdm.objective import Batch
    from mdm.sharding import mesh_from_config, rules_from_config
    from mdm.train_state import create_state

    t_mm = time.time()
    mm_start = {d: bench_matmul(getattr(jnp, d)) for d in ("float32", "bfloat16")}
    mm0 = time.time() - t_mm          # left out of the start-up time, as md4_side.py does
    print(f"{tag} matmul start f32 {mm_start['float32']['gflops']:.1f} "
          f"bf16 {mm_start['bfloat16']['gflops']:.1f} GFLOP/s", flush=True)

    t0 = time.time()
    c = md4_shaped_config(args.size, args.set)
    b = build(c)
    mesh = mesh_from_config(c, jax.devices()[:1])
    rules = rules_from_config(c)
    st = setup_train_step(c, b, mesh, rules)
    state, _ = create_state(b.model, st.tx, mesh, rules, c.data.seq_len, jax.random.PRNGKey(0),
                            st.ema)
    t_init = time.time()
    rows = [b.source.batch(i, b.rows_per_step) for i in range(4)]
    batches = [Batch(*(jax.device_put(np.asarray(d[k]), st.batch_sharding)
                       for k in ("tokens", "segment_ids", "cond"))) for d in rows]
    state, m = st.step(state, batches[0])
    loss0 = float(m["loss"])
    t_first = time.time()
    times = []
    for i in range(args.warmup + args.steps):
        ts = time.perf_counter()
        state, m = st.step(state, batches[(i + 1) % 4])
        m["loss"].block_until_ready()
        times.append(time.perf_counter() - ts)
    step_s = statistics.median(times[args.warmup:])
    measures = model_measures(b.model_cfg, c.data.seq_len)
    fpt = measures["flops_per_token"]
    tps = b.tokens_per_step / step_s
    res = dict(side="lab", size=args.size, overrides=args.set,
               dtype=c.model.dtype, scan_layers=c.model.scan_layers,
               params=measures["params_total"], flops_per_token=fpt,
               startup_s=t_first - t_proc0 - mm0, import_s=_T_IMPORT0 - t_proc0 if "PROC_T0" in
               os.environ else None, init_s=t_init - t0, first_step_s=t_first - t_init,
               step_s=step_s, tokens_per_s=tps, model_gflops=tps * fpt / 1e9,
               loss_bits=(loss0 / np.log(2), float(m["loss"]) / np.log(2)),
               step_times=times, matmul_start=mm_start)
    print(f"{tag} {args.set or 'defaults'}: dtype {c.model.dtype} scan {c.model.scan_layers}; "
          f"startup {res['startup_s']:.1f}s median step {step_s:.3f}s {tps:.0f} tok/s "
          f"({res['model_gflops']:.1f} GFLOP/s model)", flush=True)

    if args.sample:
        res["sampler"] = bench_sampler(c, b, state.params, reps=args.sample_reps)
        print(f"{tag} sampler compile {res['sampler']['compile_s']:.1f}s median "
              f"{res['sampler']['median_s']:.2f}s {res['sampler']['tokens_per_s']:.1f} tok/s "
              f"({res['sampler']['per_pass_ms']:.1f} ms per denoiser pass)", flush=True)

    res["matmul_end"] = {d: bench_matmul(getattr(jnp, d)) for d in ("float32", "bfloat16")}
    print(f"{tag} matmul end f32 {res['matmul_end']['float32']['gflops']:.1f} "
          f"bf16 {res['matmul_end']['bfloat16']['gflops']:.1f} GFLOP/s", flush=True)
    with open(args.out, "w") as f:
        json.dump(res, f, indent=1)


def bench_sampler(c, b, params, reps: int = 2) -> dict:
    """Unconditional text with the exact ancestral sampler through mdm.samplers.sample, jitted
    with the parameters as an argument as mdm.generation.Generator.run does: batch 8, the
    whole sequence masked, 64 steps (md4_side.py --sample)."""
    from mdm.samplers import Prompt, SamplerConfig, sample
    from mdm.token_space import TEXT
    n, L = SAMPLE["batch"], c.data.seq_len
    scfg = SamplerConfig(method="ancestral", steps=SAMPLE["steps"])
    prompt = Prompt(jnp.full((n, L), b.space.mask, jnp.int32), jnp.ones((n, L), jnp.int32),
                    jnp.zeros((n, L), bool), jnp.full((n, L), TEXT, jnp.int32))
    gen = jnp.ones((n, L), bool)
    run = jax.jit(lambda p, key: sample(lambda x, s: b.model.apply({"params": p}, x, s),
                                        prompt, gen, b.space, scfg, key))
    t0 = time.perf_counter()
    jax.block_until_ready(run(params, jax.random.PRNGKey(0)))
    first = time.perf_counter() - t0
    ts = []
    for r in range(reps):
        t0 = time.perf_counter()
        jax.block_until_ready(run(params, jax.random.PRNGKey(r + 1)))
        ts.append(time.perf_counter() - t0)
    med = statistics.median(ts)
    return dict(compile_s=first - med, median_s=med, times=ts, tokens_per_s=n * L / med,
                per_pass_ms=med / SAMPLE["steps"] * 1e3)


if __name__ == "__main__":
    main()
