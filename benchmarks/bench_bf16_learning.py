"""Equal learning at bfloat16: the same run in float32 and in the default bf16 compute.

    python benchmarks/bench_bf16_learning.py [--preset small] [--tokens 2e6] [--seeds 0]

Trains experiments/base.py:<preset> (the synthetic Markov source: a structured source with a
known entropy rate) with `python -m mdm.train`, once with model.dtype=float32 and once with the
default bfloat16 (float32 master weights, optimizer and loss), same seed, same tokens, and
prints the final evaluation loss of both (bits per token, the run's fixed eval set), their
relative difference, and each run's training tokens/s. The performance issue's bar: the bf16
run's eval loss within 1% of the float32 run's.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)


def run(preset: str, tokens: float, dtype: str, seed: int, workdir: str) -> dict:
    from mdm import run_contract as rc
    cmd = [sys.executable, "-m", "mdm.train", "--config", f"experiments/base.py:{preset}",
           "--workdir", workdir, "--progress=false", f"--config.model.dtype={dtype}",
           f"--config.train.total_tokens={tokens}", f"--config.seed={seed}",
           "--config.checkpoint.enabled=false"]
    subprocess.run(cmd, cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    evals, _ = rc.read_jsonl(os.path.join(workdir, rc.EVAL_FILE))
    metrics, _ = rc.read_jsonl(os.path.join(workdir, rc.METRICS_FILE))
    last = evals[-1]
    tps = [m["tokens_per_s"] for m in metrics[len(metrics) // 2:] if "tokens_per_s" in m]
    return dict(dtype=dtype, seed=seed, eval_bits=last["bits"], eval_se=last["bits_se"],
                step=last["step"],
                tokens_per_s=sorted(tps)[len(tps) // 2] if tps else float("nan"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="small")
    ap.add_argument("--tokens", type=float, default=2e6)
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="bf16_learning_")
    rows = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        pair = {d: run(args.preset, args.tokens, d, seed, os.path.join(work, f"{d}_{seed}"))
                for d in ("float32", "bfloat16")}
        rel = pair["bfloat16"]["eval_bits"] / pair["float32"]["eval_bits"] - 1
        rows.append(dict(seed=seed, rel=rel, **{f"{d}_{k}": v[k] for d, v in pair.items()
                                                 for k in ("eval_bits", "tokens_per_s")}))
        print(f"{args.preset}, {args.tokens:.3g} tokens, seed {seed}: eval loss float32 "
              f"{pair['float32']['eval_bits']:.4f} bits/token (SE {pair['float32']['eval_se']:.4f}), "
              f"bfloat16 {pair['bfloat16']['eval_bits']:.4f} ({rel:+.2%}); train tokens/s float32 "
              f"{pair['float32']['tokens_per_s']:.0f}, bfloat16 "
              f"{pair['bfloat16']['tokens_per_s']:.0f}", flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
