"""`make demo`: a real mini scaling study, end to end, on the embedded tri-modal demo data.

    1. build the demo data set and train its three tokenizers (cached: data/demo/)
    2. tokenize it into token shards (cached: data/demo_shards_L<seq_len>/)
    3. launch the `experiments/demo.py` grid (model sizes x token budgets, tri-modal) with the
       local executor: a progress bar over the grid, per-run logs; finished runs are skipped,
       interrupted ones resume from their checkpoints
    4. fit per-modality scaling laws L(N, D) (bits per token, bootstrap intervals) and the
       compute-optimal frontier; draw the figures
    5. sample from the best run: T2I images, T2S clips, captions, transcripts and text, scored
       by the demo checkers and metrics
    6. write a one-page report (markdown + PNGs) and print its path

    python -m launch.demo [--scale small|tiny] [--quick] [--parallel 2] [--out runs]

Ctrl-C stops the runs at a checkpoint; running the same command again resumes. A pipeline over
the lab's Python APIs: the launcher's `run_sweep` (launch.api), the analysis package's fits and
figures, and the library's Generator / generation_eval for the samples.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from typing import Any

from mdm.run_contract import MODALITIES as MODS


def _say(msg: str) -> None:
    print(f"[demo] {msg}", flush=True)


def prepare_data(data_root: str, scale: str, seq_len: int, demo_dir: str = ""
                 ) -> tuple[Any, str, dict[str, Any]]:
    from mdm.data.shards import OtherDataSet, load_manifest
    from mdm.data.tokenize import raw_from_demo, tokenize
    from mdm.demo_data.build import build_demo_dataset
    demo = build_demo_dataset(demo_dir or os.path.join(data_root, f"demo_{scale}"), scale=scale)
    shards = os.path.join(data_root, f"demo_{scale}_shards_L{seq_len}")
    toks = {k: demo.tokenizer(k) for k in MODS}
    raw = raw_from_demo(demo)
    try:
        tokenize(raw, toks, shards, seq_len)
    except OtherDataSet:   # the demo's own cache, from an older demo data set: rebuild it
        _say(f"{shards} holds shards of an older demo data set; re-tokenizing")
        shutil.rmtree(shards)
        tokenize(raw, toks, shards, seq_len)
    return demo, shards, load_manifest(shards)


def launch_grid(runs_root: str, shards: str, manifest: dict[str, Any], seq_len: int,
                sweep_arg: str, parallel: int) -> Any:
    """Run the demo grid with the local executor (launch.api.run_sweep); returns its SweepRun."""
    from launch.api import run_sweep
    ts = manifest["token_space"]
    sets = {"data.seq_len": str(seq_len), "token_space.text_vocab": str(ts["text_vocab"]),
            "token_space.image_vocab": str(ts["image_vocab"]),
            "token_space.audio_vocab": str(ts["audio_vocab"]), "token_space.pad_vocab_to": "128"}
    expr = f"experiments/demo.py:{sweep_arg},source=shards,path={os.path.abspath(shards)}"
    return run_sweep(expr, runs_root, sets, executor="local", parallel=parallel)


def fit_and_plot(runs_root: str, sweep: str, out: str) -> dict[str, Any]:
    """Per-modality laws, compute-optimal allocations and figures for the demo sweep, through
    analysis.make_all_figures (the study table's "laws" entry)."""
    import warnings

    import numpy as np

    import analysis as A
    rs = A.load_runs(runs_root, warn=False)
    runs = rs.sweep(f"^{sweep}$").done()
    if len(runs) < 5:
        raise RuntimeError(f"only {len(runs)} finished runs in {runs_root}/{sweep}; the law needs "
                           "at least 5 (rerun `make demo` to finish the grid)")
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        # degenerate bootstrap refits (an exponent ~ 0 on a tiny grid) overflow harmlessly
        warnings.simplefilter("ignore", RuntimeWarning)
        made = A.make_all_figures(rs, out, sweeps={"scaling": f"^{sweep}$"}, studies=("laws",),
                                  n_bootstrap=200)
    res = made["results"]
    if "laws" not in res:
        raise RuntimeError(f"the scaling laws could not be fitted: {made['skipped']}")
    allocs = {m: a for m, a in (res.get("allocation") or {}).items() if a is not None}
    for m in res["laws"].fits:
        if m not in allocs:
            _say(f"no compute-optimal allocation for {m}: "
                 f"{made['skipped'].get(f'allocation_{m}', 'degenerate law')}")
    return {"runs": runs, "laws": res["laws"], "allocs": allocs, "figures": made["figures"],
            "fits_json": os.path.join(out, "fits.json")}


def best_run(runs: Any) -> str:
    """The run with the lowest mean bits per token over the three modalities."""
    cols = [f"bits_{m}" for m in MODS if f"bits_{m}" in runs.columns]
    i = runs[cols].mean(axis=1).idxmin()
    return str(runs.loc[i, "run_dir"]) if "run_dir" in runs.columns else str(runs.loc[i, "path"])


def sample_best(run_dir: str, demo: Any, out: str, num: int) -> dict[str, Any]:
    from mdm.generation import Generator
    from mdm.generation_eval import evaluate_task
    from mdm.generation_tasks import DEFAULTS, TASKS
    g = Generator(run_dir)
    results = {}
    for task in TASKS:
        cfg = DEFAULTS[task]
        t0 = time.perf_counter()
        metrics, outputs, prompts = evaluate_task(g, demo, task, cfg, num=num)
        d = g.save(task, outputs, prompts or ["(unconditional)"] * len(outputs), cfg, 0, metrics,
                   out_dir=os.path.join(out, "samples", task))
        results[task] = {"metrics": metrics, "dir": d, "seconds": time.perf_counter() - t0,
                         "sampler": cfg.__dict__, "outputs": outputs, "prompts": prompts}
    _image_grid(results["t2i"]["outputs"], results["t2i"]["prompts"],
                os.path.join(out, "t2i_samples.png"))
    return results


def _image_grid(images: Any, captions: list[str], path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    n = len(images)
    cols = min(4, n)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(2.4 * cols, 2.6 * rows))
    for i in range(n):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.imshow(images[i])
        ax.set_title(captions[i], fontsize=7)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def _fmt_ci(f: Any, p: str) -> str:
    v = f.params[p]
    ci = f.ci.get(p)
    return f"{v:.3g} [{ci[0]:.3g}, {ci[1]:.3g}]" if ci else f"{v:.3g}"


def startup_lines(runs: Any) -> list[str]:
    """One line on the runs' start-up to their first step (summary.json "startup", written by
    the trainer at its latest start), medians over the runs; [] for runs that lack it."""
    import numpy as np
    pre = "summary.startup.phases_s."
    cols = [c for c in runs.columns if c.startswith(pre)]
    if "summary.startup_s" not in runs.columns or not cols:
        return []
    med = {c[len(pre):]: float(np.nanmedian(runs[c].astype(float))) for c in cols}
    order = ("imports", "build", "setup", "state", "eval_setup", "eval_at_start", "first_batch",
             "first_step")
    phases = ", ".join(f"{k.replace('_', ' ')} {med[k]:.1f}" for k in order if k in med)
    hits = runs.get("summary.startup.compile.cache_hits")
    progs = runs.get("summary.startup.compile.programs")
    cache = (f"; {int(np.nansum(hits))} of {int(np.nansum(progs))} compiled programs came from "
             "the compilation cache" if hits is not None and progs is not None else "")
    return ["", f"Start-up to the first finished step, median over the runs: "
            f"{np.nanmedian(runs['summary.startup_s'].astype(float)):.1f} s ({phases} s){cache}."]


def write_report(out: str, info: dict[str, Any], fits: dict[str, Any], samples: dict[str, Any],
                 elapsed: float) -> str:
    runs, laws, allocs = fits["runs"], fits["laws"], fits["allocs"]
    L = ["# Demo report: a mini tri-modal scaling study", ""]
    L += [f"Data: the embedded demo set ({info['scale']} scale) tokenized to sequences of "
          f"{info['seq_len']} tokens (`{info['shards']}`); runs under `{info['runs_root']}/"
          f"{info['sweep']}`; total wall time {elapsed / 60:.1f} min.", ""]
    L += ["## Runs", "", "| run | N (non-emb.) | tokens D | FLOPs C | text bits | image bits | "
          "audio bits | start-up s |", "|---|---|---|---|---|---|---|---|"]
    for _, r in runs.sort_values(["N", "D"]).iterrows():
        L.append(f"| {r['run_id']} | {r['N']:.3g} | {r['D']:.3g} | {r['C']:.3g} | "
                 + " | ".join(f"{r.get(f'bits_{m}', float('nan')):.3f}" for m in MODS)
                 + f" | {r.get('summary.startup_s', float('nan')):.1f} |")
    L += startup_lines(runs)
    L += ["", "## Fitted laws: bits per token L(N, D) = E + A / N^alpha + B / D^beta", "",
          "Huber (delta 1e-3) on log loss, 4500-start grid, 200 bootstrap refits over runs "
          "(95% percentile intervals in brackets).", "",
          "| modality | E | A | alpha | B | beta | points |", "|---|---|---|---|---|---|---|"]
    unresolved = []
    for m, f in laws.fits.items():
        L.append(f"| {m} | {_fmt_ci(f, 'E')} | {_fmt_ci(f, 'A')} | {_fmt_ci(f, 'alpha')} | "
                 f"{_fmt_ci(f, 'B')} | {_fmt_ci(f, 'beta')} | {f.n_points} |")
        for p in ("alpha", "beta"):
            if not 0.02 < f.params[p] < 3.0:
                unresolved.append(f"{m} {p} = {f.params[p]:.3g}")
    if unresolved:
        L += ["", f"**Not resolved on this grid:** {', '.join(unresolved)}. An exponent near 0 "
              "or far above 1 means the term is flat (or a step) over the sampled range: the "
              "runs are too short or too close in size for that axis to matter, so the law "
              "cannot separate it. Longer runs and a wider size range (the same experiment "
              "file, larger sizes and budgets) resolve it."]
    if allocs:
        L += ["", "Compute-optimal allocation (C = FLOPs per token x D): N* ~ C^a, D* ~ C^b.", "",
              "| modality | a | b | tokens per parameter (at C) |", "|---|---|---|---|"]
        for m, a in allocs.items():
            row = a.table[len(a.table) // 2] if a.table else None
            tpp = f"{row['tokens_per_param']:.3g} (C = {row['C']:.2g})" if row else "-"
            L.append(f"| {m} | {a.a:.3f} | {a.b:.3f} | {tpp} |")
    L += ["", "![loss vs compute](loss_vs_compute.png)", ""]
    if "frontier" in fits["figures"]:
        L += ["![frontier](frontier.png)", ""]
    L += ["## Samples from the best run", "", f"Best run: `{info['best']}`.", "",
          "| task | sampler | metrics |", "|---|---|---|"]
    for task, r in samples.items():
        s = r["sampler"]
        desc = f"{s['method']}, {s['steps']} steps, T={s['temperature']}, w={s['guidance']}"
        met = ", ".join(f"{k} {v:.3g}" for k, v in r["metrics"].items())
        L.append(f"| {task} | {desc} | {met} |")
    L += ["", "![T2I samples](t2i_samples.png)", "",
          "Outputs with their prompts and settings: `samples/<task>/` (PNG, WAV, text).", "",
          "## What the numbers mean", "",
          "Bits per token are the evaluation ELBO on held-out data (fixed quadrature grid, fixed "
          "masks) per modality, normalised by that modality's own token count; they upper-bound "
          "the true per-token code length. alpha and beta are the exponents of model size and "
          "data: on a grid this small (three CPU-sized models, a few thousand steps in all) they "
          "are indicative only, and the intervals say how far. The checkers score what a model "
          "of this size can do after a minute of training: expect chance-level T2I attributes "
          "and noisy speech; the same study at scale is the same experiment file with a larger "
          "size family (see README).", "",
          "## Files", "", f"- fits: `{os.path.relpath(fits['fits_json'], out)}` (laws with "
          "bootstrap intervals, allocations)", "- figures: `loss_vs_compute.png/pdf`, `frontier.png/pdf`",
          f"- runs: `{info['runs_root']}/{info['sweep']}/<run id>/` (config.json, metrics.jsonl, "
          "eval.jsonl, summary.json, checkpoints/)"]
    path = os.path.join(out, "report.md")
    with open(path, "w") as f:
        f.write("\n".join(L) + "\n")
    with open(os.path.join(out, "report.json"), "w") as f:
        json.dump({"info": info, "samples": {k: {"metrics": v["metrics"], "sampler": v["sampler"],
                                                  "dir": v["dir"]} for k, v in samples.items()},
                   "elapsed_s": elapsed}, f, indent=2, default=str)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m launch.demo", description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", default="small", help="demo data scale: small | tiny")
    ap.add_argument("--data", default="data", help="cache directory for data and shards")
    ap.add_argument("--out", default="runs", help="runs root (the report goes to <out>/demo_report)")
    ap.add_argument("--seq_len", type=int, default=128)
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--quick", action="store_true",
                    help="a reduced grid (2 sizes x 3 budgets) for tests")
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--demo_dir", default="", help="use an already built demo data set")
    a = ap.parse_args(argv)
    from absl import flags, logging as absl_logging
    flags.FLAGS.mark_as_parsed()
    absl_logging.set_verbosity(absl_logging.WARNING)
    from mdm.startup import enable_compilation_cache
    enable_compilation_cache()        # this process samples; the trainers it spawns do the same
    t0 = time.perf_counter()
    os.makedirs(a.out, exist_ok=True)
    _say(f"1-2/6 demo data ({a.scale}) and token shards (cached after the first run)")
    from mdm.demo_data.speech import EspeakNotFoundError
    from mdm.demo_data.text import TextCorpusTooSmallError
    try:
        demo, shards, manifest = prepare_data(a.data, a.scale, a.seq_len, a.demo_dir)
    except (EspeakNotFoundError, TextCorpusTooSmallError) as e:   # what is missing, and the fix
        print(f"error: {e}", file=sys.stderr)
        return 2
    sweep_arg = "grid,sizes=s0+s1,tokens=1e4+2e4+4e4" if a.quick else "grid"
    sweep = "demo"
    _say(f"3/6 the scaling grid ({sweep_arg}) with the local executor")
    try:
        grid = launch_grid(a.out, shards, manifest, a.seq_len, sweep_arg, a.parallel)
    except KeyboardInterrupt:
        _say("interrupted: runs were asked to checkpoint; run the same command again to resume")
        return 130
    if not grid.ok:
        _say("some runs did not finish (see the per-run logs under "
             f"{a.out}/{sweep}/.launch/logs); fitting what finished")
    out = os.path.join(a.out, "demo_report")
    os.makedirs(out, exist_ok=True)
    _say("4/6 fitting per-modality scaling laws and the compute-optimal frontier")
    fits = fit_and_plot(a.out, sweep, out)
    best = best_run(fits["runs"])
    _say(f"5/6 sampling from the best run {os.path.basename(best)}")
    samples = sample_best(best, demo, out, a.samples)
    info = {"scale": a.scale, "seq_len": a.seq_len, "shards": shards, "runs_root": a.out,
            "sweep": sweep, "best": best}
    path = write_report(out, info, fits, samples, time.perf_counter() - t0)
    _say(f"6/6 report: {path}")
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
