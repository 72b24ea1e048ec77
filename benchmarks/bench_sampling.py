"""Sampling speed on this machine: sampled tokens per second and seconds per sample for 16, 64
and 256 steps, the whole loop one compiled program (lax.scan; no Python per step).

    .venv/bin/python benchmarks/bench_sampling.py [--preset small] [--batch 8]

The model is the preset's architecture with random weights (speed does not depend on the
weights); the task is T2I-shaped: a caption prompt and the image positions generated.
"""
from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="small")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--method", default="confidence")
    args = ap.parse_args()
    from absl import flags
    flags.FLAGS.mark_as_parsed()
    from experiments.base import get_config
    from mdm.samplers import Prompt, SamplerConfig, sample
    from mdm.token_space import IMAGE, TokenSpace
    from mdm.assemble import model_config
    from mdm.model import Transformer

    c = get_config(args.preset)
    space = TokenSpace.from_config(c.token_space)
    model = Transformer(model_config(c, space))
    L, B = c.data.seq_len, args.batch
    tok = np.full((B, L), space.pad, np.int32)
    seg = np.zeros((B, L), np.int32)
    n_cap = 8
    tok[:, 0] = space.special("T2I")
    tok[:, 1:1 + n_cap] = space.text_offset + np.arange(n_cap)
    tok[:, 1 + n_cap] = space.special("BOI")
    tok[:, 2 + n_cap:L - 1] = space.mask
    tok[:, L - 1] = space.special("EOI")
    seg[:] = 1
    cond = np.zeros((B, L), bool)
    cond[:, 1:1 + n_cap] = True
    mod = np.asarray(space.modality_of(tok))
    gen = tok == space.mask
    mod[gen] = IMAGE
    prompt = Prompt(jnp.asarray(tok), jnp.asarray(seg), jnp.asarray(cond), jnp.asarray(mod))
    params = model.init(jax.random.PRNGKey(0), prompt.tokens[:1], prompt.segment_ids[:1])
    fn = lambda x, s: model.apply(params, x, s)
    n_gen = int(gen.sum())
    print(f"preset {args.preset}: width {c.model.width} depth {c.model.depth} seq {L}, batch {B}, "
          f"{n_gen // B} generated tokens per sample, method {args.method}")
    for steps in (16, 64, 256):
        cfg = SamplerConfig(method=args.method, steps=steps)
        f = jax.jit(lambda k: sample(fn, prompt, jnp.asarray(gen), space, cfg, k))
        f(jax.random.PRNGKey(0)).block_until_ready()          # compile
        t0 = time.perf_counter()
        reps = 3
        for r in range(reps):
            f(jax.random.PRNGKey(r + 1)).block_until_ready()
        dt = (time.perf_counter() - t0) / reps
        print(f"steps {steps:4d}: {dt:7.3f} s per batch, {dt / B:7.4f} s per sample, "
              f"{n_gen / dt:9.0f} sampled tokens/s")


if __name__ == "__main__":
    main()
