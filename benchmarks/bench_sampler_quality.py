"""Sampler speed against quality on a trained demo checkpoint: the exact ancestral sampler at
several step counts (with and without logit reuse), MaskGIT confidence, and confidence-threshold
parallel unmasking (Fast-dLLM style), scored by the demo checkers.

    python benchmarks/bench_sampler_quality.py RUN_DIR [--num 32] [--tasks text,t2i,i2t]

RUN_DIR is a run trained on the demo token shards (`make demo` writes them under runs/demo).
For each setting and task: generated tokens per second of the compiled sampler calls
(compilation excluded, mdm.eval_samples' timer), the model passes the setting costs, and the
task's decisive metric from mdm.generation_eval (text: bigram JS to held-out text, lower is
better; t2i: checker attribute accuracy, higher; i2t: CER with the reference length, lower) on
the same `--num` held-out items. Logit reuse is exact: the ancestral rows with and without it
must print the same scores as those without.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SETTINGS = [   # (label, SamplerConfig fields)
    ("ancestral 16", dict(method="ancestral", steps=16)),
    ("ancestral 32", dict(method="ancestral", steps=32)),
    ("ancestral 64", dict(method="ancestral", steps=64)),
    ("ancestral 64, reuse", dict(method="ancestral", steps=64, reuse_logits=True)),
    ("ancestral 256, reuse", dict(method="ancestral", steps=256, reuse_logits=True)),
    ("ancestral 128", dict(method="ancestral", steps=128)),
    ("ancestral 256", dict(method="ancestral", steps=256)),
    ("confidence 32", dict(method="confidence", steps=32)),
    ("threshold 0.9", dict(method="threshold", threshold=0.9)),
    ("threshold 0.7", dict(method="threshold", threshold=0.7)),
    ("threshold 0.5", dict(method="threshold", threshold=0.5)),
]
DECISIVE = {"text": "bigram_js", "t2i": "attribute_accuracy", "i2t": "cer", "s2t": "cer",
            "t2s": "mcd_db"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run_dir")
    ap.add_argument("--num", type=int, default=32)
    ap.add_argument("--tasks", default="text,t2i,i2t")
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    from absl import flags
    flags.FLAGS.mark_as_parsed()
    from mdm.eval_samples import find_demo, task_metrics, timed_generator
    from mdm.generation_eval import evaluate_task
    from mdm.samplers import SamplerConfig
    from mdm.startup import enable_compilation_cache
    enable_compilation_cache()
    gen = timed_generator(args.run_dir, None, 16)
    demo = find_demo(gen.run_config)
    rows = []
    print(f"{'setting':24s} {'task':5s} {'tok/s':>8s} {'metric':>20s}")
    for label, fields in SETTINGS:
        cfg = SamplerConfig(**fields)
        for task in [t for t in args.tasks.split(",") if t]:
            gen.reset_timers()
            metrics, _, _ = evaluate_task(gen, demo, task, cfg, num=args.num, seed=0)
            metrics = task_metrics(task, metrics)     # the sampling study's own definitions
            tps = gen.tokens / gen.sample_s if gen.sample_s else float("nan")
            key = DECISIVE[task]
            rows.append(dict(setting=label, task=task, tokens_per_s=tps, **fields,
                             metric=key, value=metrics.get(key, float("nan")), all=metrics))
            print(f"{label:24s} {task:5s} {tps:8.0f} {key:>12s} {metrics.get(key, float('nan')):7.3f}",
                  flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=1, default=float)


if __name__ == "__main__":
    main()
