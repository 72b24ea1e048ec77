"""`mdm-generate`: sample from a trained run on the command line (mdm.generation.Generator).

    mdm-generate RUN_DIR --task t2i --prompt "a large red circle on the left" --num 4
    mdm-generate RUN_DIR --task t2s --prompt "seven" --steps 64 --guidance 2
    mdm-generate RUN_DIR --task text --num 4 --length 64
    mdm-generate RUN_DIR --task i2t --prompt images.npy --length 12

Tasks: text, infill ('prefix|||suffix'), t2i, t2s, i2t, s2t (caption / asr are accepted as old
names). Outputs go to <run>/samples/<task>-<time>/ with the prompts and sampler settings.
`mdm-sample` is the same command under its old name (kept for one release).
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

from mdm import run_contract as rc
from mdm.generation_tasks import OLD_NAMES
from mdm.samplers import SamplerConfig

TASK_CHOICES = ("text", "infill", "t2i", "t2s", "i2t", "s2t", *OLD_NAMES)


def sampler_from_args(a: argparse.Namespace) -> SamplerConfig:
    return SamplerConfig(method=a.method, steps=a.steps, temperature=a.temperature,
                         top_k=a.top_k, top_p=a.top_p, guidance=a.guidance,
                         guidance_schedule=a.guidance_schedule, time_grid=a.time_grid,
                         threshold=a.threshold, reuse_logits=not a.no_reuse_logits)


def add_sampler_args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--method", default="confidence",
                    help="ancestral (exact), confidence, margin, entropy, or threshold "
                         "(parallel unmasking above --threshold; --steps unused)")
    ap.add_argument("--steps", type=int, default=64)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--top_k", type=int, default=0)
    ap.add_argument("--top_p", type=float, default=1.0)
    ap.add_argument("--guidance", type=float, default=0.0)
    ap.add_argument("--guidance_schedule", default="constant")
    ap.add_argument("--time_grid", default="uniform")
    ap.add_argument("--threshold", type=float, default=0.9)
    ap.add_argument("--no_reuse_logits", action="store_true",
                    help="recompute the denoiser even when no position changed (same output)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="mdm-generate", description="Sample from a trained run.")
    ap.add_argument("run_dir")
    ap.add_argument("--task", required=True, choices=TASK_CHOICES)
    ap.add_argument("--prompt", action="append", default=[],
                    help="caption / transcript / text prompt (repeatable); for infill "
                         "'prefix|||suffix'; for i2t / s2t a .npy of images / waves")
    ap.add_argument("--num", type=int, default=4)
    ap.add_argument("--length", type=int, default=32, help="generated text tokens")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
    add_sampler_args(ap)
    a = ap.parse_args(argv)
    if a.task in OLD_NAMES:
        print(f"note: --task {a.task} is now --task {OLD_NAMES[a.task]}", file=sys.stderr)
        a.task = OLD_NAMES[a.task]
    from absl import flags
    flags.FLAGS.mark_as_parsed()
    if not os.path.exists(os.path.join(a.run_dir, rc.CONFIG_FILE)):
        ap.error(f"{a.run_dir} is not a run directory (no {rc.CONFIG_FILE})")
    try:
        cfg = sampler_from_args(a)
    except ValueError as e:
        ap.error(str(e))
    from mdm.generation import Generator
    from mdm.startup import enable_compilation_cache
    enable_compilation_cache()        # compiled samplers are reused across processes
    g = Generator(a.run_dir, a.step)
    prompts = a.prompt
    if a.task == "text":
        outs = g.text(a.num, a.length, cfg, prompts[0] if prompts else "", a.seed)
    elif a.task == "infill":
        pre, _, suf = (prompts[0] if prompts else "|||").partition("|||")
        outs = g.infill(pre, a.length, suf, cfg, a.num, a.seed)
    elif a.task in ("t2i", "t2s"):
        if not prompts:
            ap.error(f"--task {a.task} needs at least one --prompt")
        outs = (g.t2i if a.task == "t2i" else g.t2s)(prompts, cfg, a.seed)
    else:
        if not prompts or not prompts[0].endswith(".npy"):
            ap.error(f"--task {a.task} needs --prompt FILE.npy (images or waves)")
        data = np.load(prompts[0], allow_pickle=False)
        outs = (g.i2t if a.task == "i2t" else g.s2t)(data, [a.length] * len(data), cfg, a.seed)
    d = g.save(a.task, outs, prompts, cfg, a.seed)
    print(d)
    return 0


if __name__ == "__main__":
    sys.exit(main())
