"""Side-by-side throughput against google-deepmind/md4 (the peer kit in ../shared/peers/md4).

    python benchmarks/bench_vs_md4.py [--peer /tmp/md4peer] [--rounds 2] [--sizes a,b,c]
                                      [--lab-set model.dtype=float32 ...] [--out bench.json]

Builds the peer with its own setup.sh into --peer when missing (about 2 minutes), then for each
round and size runs one process per side, alternating md4 / lab (md4_side.py and
benchmarks/project_side.py: the same shapes, the same measurements), plus the sampler at size a
(batch 8, seq 256, 64 ancestral steps). Each process measures the machine's jitted 2048^3
matmul rate (f32 and bf16, float32 accumulation) at its start and end; MFU is each process's
model FLOP/s (6N + attention per token, XLA's count agrees within 1%) over its own measured
rates. One process at a time: never run two timing jobs at once on this machine.

Prints one table (and writes the JSON): md4 tokens/s, the lab's tokens/s with its defaults
(what `mdm.train` does without flags), the ratio, and both sides' MFU against f32 and bf16.
It is a benchmark, not a test: nothing here asserts a timing.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
PEER_KIT = os.path.join(os.path.dirname(REPO), "shared", "peers", "md4")
SIZES = ("a", "b", "c")


def ensure_peer(peer: str) -> str:
    py = os.path.join(peer, "md4venv", "bin", "python")
    if not os.path.exists(os.path.join(peer, "md4_side.py")) or not os.path.exists(py):
        setup = os.path.join(PEER_KIT, "setup.sh")
        if not os.path.exists(setup):
            sys.exit(f"bench_vs_md4: the peer kit is missing ({setup}); it ships in ../shared")
        print(f"building the md4 peer into {peer} (about 2 minutes) ...", flush=True)
        subprocess.run(["bash", setup, peer], check=True, stdout=subprocess.DEVNULL)
    return py


def run_side(cmd: list[str], out: str) -> dict:
    env = dict(os.environ, PROC_T0=f"{time.time():.6f}")
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    for line in proc.stdout.splitlines() + proc.stderr.splitlines():
        if line.startswith("[") and ("md4" in line[:6] or "lab" in line[:6]):
            print("   ", line, flush=True)
    if proc.returncode != 0:
        sys.exit(f"bench_vs_md4: {' '.join(cmd[:3])} failed:\n{proc.stderr[-2000:]}")
    with open(out) as f:
        return normalise(json.load(f))


def normalise(res: dict) -> dict:
    """Both sides' JSON -> tokens_per_s, flops_per_token, startup_s, mm_f32 / mm_bf16 (GFLOP/s,
    the mean of the process's start and end measurements) and sampler {tokens_per_s, pass_ms}."""
    if res["side"] == "md4":
        t = res["train"]
        mms = [{m["dtype"]: m["gflops"] for m in res[k]} for k in ("matmul_start", "matmul_end")]
        out = dict(tokens_per_s=t["tokens_per_s"], flops_per_token=t["flops_per_token"],
                   startup_s=t["startup_s"])
        if "sample" in res:
            s = res["sample"]
            out["sampler"] = dict(tokens_per_s=s["tokens_per_s"],
                                  pass_ms=s["median_s"] / s["forward_passes"] * 1e3)
    else:
        mms = [{d: res[k][d]["gflops"] for d in res[k]} for k in ("matmul_start", "matmul_end")]
        out = dict(tokens_per_s=res["tokens_per_s"], flops_per_token=res["flops_per_token"],
                   startup_s=res["startup_s"])
        if "sampler" in res:
            out["sampler"] = dict(tokens_per_s=res["sampler"]["tokens_per_s"],
                                  pass_ms=res["sampler"]["per_pass_ms"])
    out["mm_f32"] = statistics.mean(m["float32"] for m in mms)
    out["mm_bf16"] = statistics.mean(m["bfloat16"] for m in mms)
    out["raw"] = res
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--peer", default=os.path.join(tempfile.gettempdir(), "md4peer"))
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--sizes", default="a,b,c")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--lab-set", action="append", default=[], metavar="KEY=VALUE",
                    help="config overrides for the lab side (default: none = its defaults)")
    ap.add_argument("--no-sample", action="store_true")
    ap.add_argument("--sample_reps", type=int, default=4, help="timed sampler calls per side")
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    peer_py = ensure_peer(args.peer)
    sizes = [s for s in args.sizes.split(",") if s]
    results: dict = {"md4": {}, "lab": {}, "lab_overrides": args.lab_set}
    work = tempfile.mkdtemp(prefix="bench_vs_md4_")
    for r in range(args.rounds):
        for size in sizes:
            sample = size == "a" and not args.no_sample
            for side in ("md4", "lab"):
                out = os.path.join(work, f"{side}_{size}_{r}.json")
                if side == "md4":
                    cmd = [peer_py, os.path.join(args.peer, "md4_side.py"), "--size", size,
                           "--out", out, "--steps", str(args.steps)]
                else:
                    cmd = [sys.executable, os.path.join(HERE, "project_side.py"), "--size", size,
                           "--out", out, "--steps", str(args.steps)]
                    for kv in args.lab_set:
                        cmd += ["--set", kv]
                if sample:
                    cmd += ["--sample", "--sample_reps", str(args.sample_reps)]
                print(f"round {r + 1}/{args.rounds} size {size} {side}", flush=True)
                results[side].setdefault(size, []).append(run_side(cmd, out))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1, default=str)
    print_table(results, sizes)


def print_table(results: dict, sizes: list[str]) -> None:
    lab_desc = ", ".join(results["lab_overrides"]) or "defaults"
    print(f"\nside by side (lab: {lab_desc}); per round: md4 / lab / ratio; MFU = model FLOP/s "
          "over the same process's measured matmul rate")
    print(f"{'size':4s} {'round':5s} {'md4 tok/s':>9s} {'lab tok/s':>9s} {'ratio':>6s} "
          f"{'md4 MFU f32 / bf16':>19s} {'lab MFU f32 / bf16':>19s} {'start-up s md4/lab':>19s}")
    for size in sizes:
        for r, (m, lab) in enumerate(zip(results["md4"][size], results["lab"][size])):
            # model FLOP/s on each side's own count (the same 6N + 12 l L d formula)
            mg = m["tokens_per_s"] * m["flops_per_token"] / 1e9
            lg = lab["tokens_per_s"] * lab["flops_per_token"] / 1e9
            print(f"{size:4s} {r + 1:5d} {m['tokens_per_s']:9.0f} {lab['tokens_per_s']:9.0f} "
                  f"{lab['tokens_per_s'] / m['tokens_per_s']:5.2f}x "
                  f"{mg / m['mm_f32']:8.0%} / {mg / m['mm_bf16']:6.1%} "
                  f"{lg / lab['mm_f32']:8.0%} / {lg / lab['mm_bf16']:6.1%} "
                  f"{m['startup_s']:10.1f} / {lab['startup_s']:.1f}")
    if "a" in sizes and "sampler" in results["lab"]["a"][0]:
        print("\nsampler, size a, batch 8, seq 256, 64 ancestral steps: generated tokens/s")
        for r, (m, lab) in enumerate(zip(results["md4"]["a"], results["lab"]["a"])):
            ms, ls = m["sampler"], lab["sampler"]
            print(f"round {r + 1}: md4 {ms['tokens_per_s']:.0f} ({ms['pass_ms']:.0f} ms per "
                  f"pass), lab {ls['tokens_per_s']:.0f} ({ls['pass_ms']:.0f} ms per pass): "
                  f"{ls['tokens_per_s'] / ms['tokens_per_s']:.2f}x")


if __name__ == "__main__":
    main()
