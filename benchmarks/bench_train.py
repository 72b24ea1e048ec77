"""Train-step throughput and MFU on this machine, against its own measured matmul peak.

    .venv/bin/python benchmarks/bench_train.py [--preset small] [--steps 30]

Prints, from one process and in the same run: the jitted 2048^3 matmul throughput (float32 and
bfloat16: the machine's limit), then for the chosen preset the train step's time, tokens/s,
model FLOP/s (6N + 12 l L d per token, mdm.flops) and MFU relative to the float32 matmul peak.
"""
from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np


def matmul_flops(dtype, n: int = 2048, reps: int = 5) -> float:
    a = jnp.ones((n, n), dtype)
    # float32 accumulation, as the model's products (a bf16-result dot runs at the f32 rate)
    f = jax.jit(lambda x: jnp.dot(x, x, preferred_element_type=jnp.float32))
    f(a).block_until_ready()
    best = min(_timed(lambda: f(a).block_until_ready()) for _ in range(reps))
    return 2 * n ** 3 / best


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="small")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--width", type=int, default=0)
    args = ap.parse_args()
    from absl import flags
    flags.FLAGS.mark_as_parsed()
    from experiments.base import get_config
    from mdm.assemble import build, setup_train_step
    from mdm.flops import model_measures
    from mdm.objective import Batch
    from mdm.sharding import mesh_from_config, rules_from_config
    from mdm.train_state import create_state

    peak32 = matmul_flops(jnp.float32)
    peak16 = matmul_flops(jnp.bfloat16)
    print(f"matmul 2048^3: float32 {peak32 / 1e9:.1f} GFLOP/s, bfloat16 {peak16 / 1e9:.1f} GFLOP/s")
    c = get_config(args.preset)
    if args.width:
        c.model.width = args.width
    c.mesh.data = 1
    b = build(c)
    devs = jax.devices()[:1]
    mesh = mesh_from_config(c, devs)
    rules = rules_from_config(c)
    st = setup_train_step(c, b, mesh, rules)          # the trainer's own step
    counts = model_measures(b.model_cfg, c.data.seq_len)
    mc = b.model_cfg
    fpt = counts["flops_per_token"]
    state, _ = create_state(b.model, st.tx, mesh, rules, c.data.seq_len, jax.random.PRNGKey(0),
                            st.ema)
    jstep = st.step
    batches = [Batch(*(jax.device_put(np.asarray(v), st.batch_sharding)
                       for v in (d["tokens"], d["segment_ids"], d["cond"])))
               for d in (b.source.batch(s, b.rows_per_step) for s in range(4))]
    state, m = jstep(state, batches[0])
    m["loss"].block_until_ready()
    times = []
    for s in range(args.steps):
        t0 = time.perf_counter()
        state, m = jstep(state, batches[s % 4])
        m["loss"].block_until_ready()
        times.append(time.perf_counter() - t0)
    dt = float(np.median(times))
    tps = b.tokens_per_step / dt
    print(f"preset {args.preset}: width {mc.width} depth {mc.depth} seq {c.data.seq_len} batch "
          f"{c.train.physical_batch}; {counts['params_non_embedding'] / 1e6:.2f}M non-embedding "
          f"params, {fpt / 1e6:.2f} MFLOP/token")
    print(f"step {dt * 1e3:.1f} ms (median of {args.steps}), {tps:.0f} tokens/s, "
          f"{tps * fpt / 1e9:.1f} GFLOP/s model, MFU {tps * fpt / peak32:.1%} of the float32 "
          f"matmul peak ({tps * fpt / peak16:.1%} of bf16)")


if __name__ == "__main__":
    main()
