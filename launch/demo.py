"""`make demo`: a real mini scaling study, end to end, on the embedded tri-modal demo data.

    1. build the demo data set and train its three tokenizers (cached: data/demo_<scale>/)
    2. tokenize it into token shards (cached: data/demo_<scale>_shards_L128/)
    3. launch the `experiments/demo.py` grid with the local executor: micro model sizes x
       compute budgets, one warmup-stable-decay run per size with cooldown branches at the
       smaller budgets (mdm.cooldown); a progress bar over the grid, per-run logs; finished
       runs are skipped, interrupted ones resume from their checkpoints
    4. fit per-modality laws L(N, D) (bits per token, bootstrap intervals), IsoFLOP profiles
       and the compute-optimal frontier; draw the figures
    5. the held-out check: at `--heldout_factor` (3) x the largest fitted compute, train the
       size the laws call compute-optimal, and compare its measured bits with the prediction
    6. sample from the held-out run: T2I images, T2S clips, captions, transcripts and text,
       scored by the demo checkers and metrics
    7. write a report (markdown + PNGs + report.json) whose headline is the held-out line

    python -m launch.demo [--scale small|tiny] [--quick] [--parallel 2] [--out runs]

Ctrl-C stops the runs at a checkpoint; running the same command again resumes, and a finished
demo reruns in well under a minute (every run is reused). A pipeline over the lab's Python
APIs: the launcher's `run_sweep` (launch.api), the analysis package's fits and figures, and the
library's Generator / generation_eval for the samples.
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


def load_demo_data(data_root: str, scale: str, seq_len: int, demo_dir: str = ""
                   ) -> tuple[Any, str, dict[str, Any]] | None:
    """prepare_data, or None after one `error:` line on stderr when what the demo data needs
    is missing (espeak-ng, the Debian text packages): the message names the fix."""
    from mdm.demo_data.speech import EspeakNotFoundError
    from mdm.demo_data.text import TextCorpusTooSmallError
    try:
        return prepare_data(data_root, scale, seq_len, demo_dir)
    except (EspeakNotFoundError, TextCorpusTooSmallError) as e:
        print(f"error: {e}", file=sys.stderr)
        return None


def quiet_absl() -> None:
    """absl flags marked parsed (grain reads them) and absl logging at WARNING: what a
    pipeline that trains or samples in-process needs before it starts."""
    from absl import flags, logging as absl_logging
    flags.FLAGS.mark_as_parsed()
    absl_logging.set_verbosity(absl_logging.WARNING)


class Laps:
    """Wall time of a pipeline's consecutive stages: `laps(name)` records under `name` the
    seconds since the previous call (or since construction); `laps.timings` holds them."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self._t0 = time.perf_counter()

    def __call__(self, name: str) -> None:
        now = time.perf_counter()
        self.timings[name] = now - self._t0
        self._t0 = now


def launch_sweep(runs_root: str, shards: str, manifest: dict[str, Any], sweep_arg: str,
                 parallel: int, experiment: str = "experiments/demo.py",
                 env: dict[str, str] | None = None) -> Any:
    """Run a sweep of `experiment` (default experiments/demo.py; any experiment file whose sweep
    takes source= and path=) on the demo shards with the local executor
    (launch.api.run_sweep); returns its SweepRun."""
    from launch.api import run_sweep
    ts = manifest["token_space"]
    sets = {f"token_space.{k}": str(ts[k]) for k in ("text_vocab", "image_vocab", "audio_vocab")}
    expr = f"{experiment}:{sweep_arg},source=shards,path={os.path.abspath(shards)}"
    return run_sweep(expr, runs_root, sets, executor="local", parallel=parallel, env=env)


def cpu_devices_env(devices: int) -> dict[str, str]:
    """The environment for a run that splits this machine's CPUs into `devices` XLA host devices
    (the trainer's mesh is data-parallel over all devices): one micro run alone trains about 2x
    faster on 2 devices than on one process-wide device (demo w32: 163k vs 95k tokens/s
    unpinned, 69k pinned to one core; w16 203k vs 115k; benchmarks, same sitting). Any other
    XLA flag in the caller's environment is kept."""
    flags = [f for f in os.environ.get("XLA_FLAGS", "").split()
             if not f.startswith("--xla_force_host_platform_device_count")]
    flags.append(f"--xla_force_host_platform_device_count={max(1, int(devices))}")
    return {"XLA_FLAGS": " ".join(flags)}


def fit_and_plot(runs_root: str, sweep: str, out: str, n_bootstrap: int = 400) -> dict[str, Any]:
    """Per-modality laws with bootstrap intervals, IsoFLOP profiles and the frontier for the
    demo sweep, through analysis.make_all_figures (the study table's laws and isoflop)."""
    import warnings

    import numpy as np

    import analysis as A
    rs = A.load_runs(runs_root, warn=False)
    runs = rs.sweep(f"^{sweep}$").done()
    if len(runs) < 6:
        raise RuntimeError(f"only {len(runs)} finished runs in {runs_root}/{sweep}; the law needs "
                           "at least 6 (rerun `make demo` to finish the grid)")
    pattern = f"^{sweep}$"
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        made = A.make_all_figures(rs, out, sweeps={"scaling": pattern, "isoflop": pattern},
                                  studies=("laws", "isoflop"), n_bootstrap=n_bootstrap)
    res = made["results"]
    if "laws" not in res:
        raise RuntimeError(f"the scaling laws could not be fitted: {made['skipped']}")
    allocs = {m: a for m, a in (res.get("allocation") or {}).items() if a is not None}
    return {"runs": runs, "laws": res["laws"], "allocs": allocs, "isoflop": res.get("isoflop") or {},
            "figures": made["figures"], "skipped": made["skipped"],
            "fits_json": os.path.join(out, "fits.json")}


# widths the held-out run may take (experiments/ladder.py "w<width>" names)
HELDOUT_SIZES = ("w8", "w16", "w32", "w48", "w64", "w96", "w128", "w160", "w192", "w256")


def plan_heldout(laws: Any, grid_runs: Any, factor: float) -> dict[str, Any]:
    """The held-out run: compute C_h = factor x the largest fitted compute, at the size the
    fitted laws call compute-optimal for the equal-weight sum of the modalities' bits,

        size* = argmin_size  sum_m L_m(N(size), C_h / F(size))      (F = FLOPs per token),

    over HELDOUT_SIZES, with each modality's predicted bits and its bootstrap interval there."""
    from experiments import demo as X
    from experiments import ladder
    C = factor * float(grid_runs["C"].max())
    cands = []
    for size in HELDOUT_SIZES:
        cfg = X.get_config(f"size={size}")
        n = float(ladder.param_counts(cfg)["params_non_embedding"])
        d = X.budget_tokens(size, C)
        total = sum(float(f.predict(n, d)) for f in laws.fits.values())
        cands.append((total if math.isfinite(total) else math.inf, size, n, d))
    total, size, n, d = min(cands)
    pred = {}
    for m, f in laws.fits.items():
        lo, hi = f.predict_interval(n, d)
        pred[m] = {"predicted": float(f.predict(n, d)), "interval": [float(lo[0]), float(hi[0])]}
    return {"size": size, "compute": C, "factor": factor, "N": n, "D": d,
            "largest_fitted_compute": float(grid_runs["C"].max()), "predicted": pred,
            "candidates": [{"size": s, "N": nn, "D": dd, "predicted_sum_bits": t}
                           for t, s, nn, dd in sorted(cands, key=lambda c: c[2])]}


def score_heldout(runs_root: str, sweep: str, plan: dict[str, Any]) -> dict[str, Any]:
    """{modality: {predicted, interval, measured, measured_se, rel_error, inside}} of the
    held-out run (rel_error = measured / predicted - 1)."""
    import analysis as A
    runs = A.load_runs(runs_root, warn=False).sweep(f"^{sweep}$").done()
    runs = runs[(runs["N"] == plan["N"]) & (runs["D"] == plan["D"])]   # this plan's run only
    if runs.empty:
        raise RuntimeError(f"the held-out run ({plan['size']}, {plan['D']:.3g} tokens) in "
                           f"{runs_root}/{sweep} did not finish; rerun `make demo` to resume it")
    r = runs.iloc[0]
    out = {}
    for m, p in plan["predicted"].items():
        meas = float(r[f"bits_{m}"])
        se = float(r.get(f"bits_se_{m}", float("nan")))
        lo, hi = p["interval"]
        out[m] = {"predicted": p["predicted"], "interval": p["interval"], "measured": meas,
                  "measured_se": se, "rel_error": meas / p["predicted"] - 1.0,
                  "inside": bool(lo <= meas <= hi)}
    return {"run": str(r.get("run_dir", r.get("path", ""))), "N": float(r["N"]),
            "D": float(r["D"]), "C": float(r["C"]), "modalities": out}


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


def _law_rows(laws: Any) -> tuple[list[str], list[str]]:
    """The law table's rows and the list of what is not resolved (issue-15 criteria: alpha and
    beta intervals inside (0.05, 1.5) and no wider than 0.3; E's interval above 0 and below the
    lowest loss observed)."""
    rows, unresolved = [], []
    for m, f in laws.fits.items():
        rows.append(f"| {m} | {_fmt_ci(f, 'E')} | {_fmt_ci(f, 'A')} | {_fmt_ci(f, 'alpha')} | "
                    f"{_fmt_ci(f, 'B')} | {_fmt_ci(f, 'beta')} | {f.n_points} |")
        for p in ("alpha", "beta"):
            lo, hi = f.ci.get(p, (float("nan"),) * 2)
            if not (0.05 < lo and hi < 1.5 and hi - lo <= 0.3):
                unresolved.append(f"{m} {p} = {f.params[p]:.3g} [{lo:.3g}, {hi:.3g}]")
        lo, hi = f.ci.get("E", (float("nan"),) * 2)
        if not (lo > 0 and hi < f.min_loss):
            unresolved.append(f"{m} E = {f.params['E']:.3g} [{lo:.3g}, {hi:.3g}] (lowest loss "
                              f"{f.min_loss:.3g})")
    return rows, unresolved


def write_report(out: str, info: dict[str, Any], fits: dict[str, Any], heldout: dict[str, Any],
                 plan: dict[str, Any], samples: dict[str, Any], timings: dict[str, float]) -> str:
    runs, laws, allocs = fits["runs"], fits["laws"], fits["allocs"]
    for m, f in laws.fits.items():
        f.min_loss = float(runs[f"bits_{m}"].min())
    elapsed = sum(timings.values())
    L = ["# Demo report: a mini tri-modal scaling study", ""]
    # the headline: the held-out prediction
    worst = max(abs(v["rel_error"]) for v in heldout["modalities"].values())
    L += ["## Held-out prediction", "",
          f"After fitting, one run no fit has seen: `{os.path.basename(heldout['run'])}`, "
          f"{plan['size']} (N = {plan['N']:.3g}, the laws' compute-optimal size among "
          f"{', '.join(HELDOUT_SIZES)} for the sum of the three modalities' bits) trained on "
          f"D = {plan['D']:.3g} tokens, C = {heldout['C']:.3g} FLOPs = "
          f"{heldout['C'] / plan['largest_fitted_compute']:.2f} x the largest fitted compute. "
          f"Largest |relative error|: **{100 * worst:.2f}%**.", "",
          "| modality | predicted bits [95% interval] | measured bits (± s.e.) | relative error |",
          "|---|---|---|---|"]
    for m, v in heldout["modalities"].items():
        lo, hi = v["interval"]
        L.append(f"| {m} | {v['predicted']:.3f} [{lo:.3f}, {hi:.3f}] | {v['measured']:.3f} "
                 f"(± {v['measured_se']:.3f}) | {100 * v['rel_error']:+.2f}% |")
    L += ["", "![held-out prediction](loss_vs_compute.png)", ""]
    # the laws
    rows, unresolved = _law_rows(laws)
    L += ["## Fitted laws: bits per token L(N, D) = E + A / N^alpha + B / D^beta", "",
          f"Huber (delta 1e-3) on log loss, 4500-start grid, "
          f"{laws.fits[next(iter(laws.fits))].bootstrap.get('n', 0)} bootstrap refits over the "
          "grid's points (95% percentile intervals in brackets). N = non-embedding parameters "
          "(transformer + output head), D = training tokens.", "",
          "| modality | E | A | alpha | B | beta | points |", "|---|---|---|---|---|---|---|"]
    L += rows
    if unresolved:
        L += ["", f"**Not resolved on this grid:** {'; '.join(unresolved)}. An interval that "
              "reaches 0 or far past 1 means that axis barely moves the loss over the sampled "
              "range: widen the sizes or budgets (the same experiment file, larger arguments)."]
    if allocs:
        L += ["", "Compute-optimal allocation from the laws (C = FLOPs per token x D): "
              "N* ~ C^a, D* ~ C^b.", "",
              "| modality | a | b | tokens per parameter (at C) |", "|---|---|---|---|"]
        for m, a in allocs.items():
            row = a.table[len(a.table) // 2] if a.table else None
            tpp = f"{row['tokens_per_param']:.3g} (C = {row['C']:.2g})" if row else "-"
            L.append(f"| {m} | {a.a:.3f} | {a.b:.3f} | {tpp} |")
    L += _isoflop_lines(fits)
    L += _grid_lines(runs, info)
    L += ["", "## What the laws mean, and how far to trust them", "", _trust_paragraph(
        laws, heldout, runs, unresolved)]
    L += ["", "## Samples from the held-out run", "",
          f"Run: `{info['best']}` (sampling settings: mdm.generation_tasks.DEFAULTS).", "",
          "| task | sampler | metrics |", "|---|---|---|"]
    for task, r in samples.items():
        sm = r["sampler"]
        desc = f"{sm['method']}, {sm['steps']} steps, T={sm['temperature']}, w={sm['guidance']}"
        m = r["metrics"]
        met = ", ".join(f"{k} {v:.3g}" + (f" [{m[k + '_lo']:.3g}, {m[k + '_hi']:.3g}]"
                                           if k + "_lo" in m else "")
                        for k, v in m.items() if not k.endswith(("_lo", "_hi")))
        L.append(f"| {task} | {desc} | {met} |")
    L += ["", "![T2I samples](t2i_samples.png)", "",
          "Outputs with their prompts and settings: `samples/<task>/` (PNG, WAV, text). Models "
          "of 10^4-10^5 parameters trained for minutes: expect the checkers near chance; "
          "`make showcase` trains the model that does the tasks.", "",
          "## Time", "", ", ".join(f"{k} {v:.0f} s" for k, v in timings.items())
          + f"; total {elapsed / 60:.1f} min.", "",
          "## Files", "", f"- fits: `{os.path.relpath(fits['fits_json'], out)}` (laws with "
          "bootstrap intervals, IsoFLOP profiles, allocations); `report.json` (this page's "
          "numbers, `heldout` included)",
          "- figures: " + ", ".join(f"`{k}.png`" for k in fits["figures"]),
          f"- runs: `{info['runs_root']}/{info['sweep']}/<run id>/` and "
          f"`{info['runs_root']}/{info['heldout_sweep']}/` (config.json, metrics.jsonl, "
          "eval.jsonl, summary.json, checkpoints/)",
          f"- regenerate the figures from the runs alone: `mdm-figures {info['runs_root']} "
          "--out figs`"]
    path = os.path.join(out, "report.md")
    with open(path, "w") as f:
        f.write("\n".join(L) + "\n")
    laws_json = {m: {"params": {k: f.params[k] for k in ("E", "A", "B", "alpha", "beta")},
                     "ci": f.ci, "n_points": f.n_points, "min_loss": f.min_loss}
                 for m, f in laws.fits.items()}
    with open(os.path.join(out, "report.json"), "w") as f:
        json.dump({"info": info, "heldout": heldout["modalities"],
                   "heldout_run": {k: v for k, v in heldout.items() if k != "modalities"},
                   "heldout_plan": plan, "laws": laws_json, "unresolved": unresolved,
                   "isoflop": _isoflop_json(fits),
                   "samples": {k: {"metrics": v["metrics"], "sampler": v["sampler"],
                                   "dir": v["dir"]} for k, v in samples.items()},
                   "timings_s": timings, "elapsed_s": elapsed}, f, indent=2, default=str)
    return path


def _isoflop_json(fits: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for m, iso in fits["isoflop"].items():
        out[m] = {"budgets": [{k: b.get(k) for k in ("C", "N_opt", "D_opt", "flags", "n_points")}
                              for b in iso.budgets],
                  "a": iso.a, "a_ci": iso.n_opt_law.ci.get("exponent"),
                  "b": iso.b, "b_ci": iso.d_opt_law.ci.get("exponent"), "warnings": iso.warnings}
    return out


def _isoflop_lines(fits: dict[str, Any]) -> list[str]:
    iso = fits["isoflop"]
    if not iso:
        why = "; ".join(f"{m}: {fits['skipped'].get(f'isoflop_{m}', 'no usable budget')}"
                        for m in MODS)
        return ["", "## IsoFLOP profiles", "", f"Not fitted ({why})."]
    L = ["", "## IsoFLOP profiles", "",
         "Per compute budget, a parabola of the final bits in log N; its vertex is N*(C), and "
         "N*(C) = k C^a, D*(C) = k' C^b are fitted across budgets (95% intervals).", "",
         "| modality | budget C | N* | D* | flags |", "|---|---|---|---|---|"]
    for m, f in iso.items():
        for b in f.budgets:
            flags = ", ".join(b.get("flags") or []) or "bracketed"
            L.append(f"| {m} | {b['C']:.3g} | {b['N_opt']:.3g} | {b['D_opt']:.3g} | {flags} |")
    for m in MODS:
        if m not in iso:
            L.append(f"| {m} | - | - | - | not fitted: "
                     f"{fits['skipped'].get(f'isoflop_{m}', 'no usable budget')} |")
    L += ["", "| modality | N* ~ C^a | D* ~ C^b |", "|---|---|---|"]
    for m, f in iso.items():
        L.append(f"| {m} | {_fmt_pl(f.n_opt_law, 'a')} | {_fmt_pl(f.d_opt_law, 'b')} |")
    L += ["", "![IsoFLOP profiles](isoflop.png) ![frontier](frontier.png)"]
    return L


def _fmt_pl(pl: Any, name: str) -> str:
    """A fitted power law's exponent `name` with its interval: 'a = 0.596 [0.517, 0.676]'."""
    if pl is None:
        return "-"
    ci = pl.ci.get("exponent") if getattr(pl, "ci", None) else None
    e = pl.exponent
    return f"{name} = {e:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else f"{name} = {e:.3f}"


def _grid_lines(runs: Any, info: dict[str, Any]) -> list[str]:
    L = ["", "## The grid", "",
         f"Data: the embedded demo set ({info['scale']} scale) tokenized to sequences of "
         f"{info['seq_len']} tokens (`{info['shards']}`); text from {info['text_sources']}. "
         "One warmup-stable-decay run per size to the largest budget, a 20% cooldown branch at "
         "each smaller one (mdm.cooldown).", "",
         "| run | N | transformer params | tokens D | FLOPs C | text bits | image bits | "
         "audio bits |", "|---|---|---|---|---|---|---|---|"]
    for _, r in runs.sort_values(["N", "D"]).iterrows():
        tp = r.get("params_non_embedding", float("nan")) - r.get("params_head", 0.0)
        L.append(f"| {r['run_id']} | {r['N']:.3g} | {tp:.3g} | {r['D']:.3g} | {r['C']:.3g} | "
                 + " | ".join(f"{r.get(f'bits_{m}', float('nan')):.3f}" for m in MODS) + " |")
    tps = (runs["params_non_embedding"] - runs.get("params_head", 0.0)).astype(float)
    L += ["", f"Transformer parameters (without embeddings and head) span "
          f"{tps.max() / tps.min():.1f}x ({tps.min():.3g} to {tps.max():.3g})."]
    L += startup_lines(runs)
    return L


def _trust_paragraph(laws: Any, heldout: dict[str, Any], runs: Any,
                     unresolved: list[str]) -> str:
    """One paragraph: what the laws say, on what evidence, and how far the held-out run and
    the intervals let a reader trust them (the verdict follows the numbers)."""
    import numpy as np
    ex = {m: (f.params["alpha"], f.params["beta"], f.params["E"]) for m, f in laws.fits.items()}
    worst = max(abs(v["rel_error"]) for v in heldout["modalities"].values())
    parts = ", ".join(f"{m} alpha {a:.2f} / beta {b:.2f} (E {e:.2f} bits)"
                      for m, (a, b, e) in ex.items())
    rel_se = [float(np.nanmedian(runs[f"bits_se_{m}"] / runs[f"bits_{m}"]))
              for m in ex if f"bits_se_{m}" in runs.columns]
    se = f"{100 * max(rel_se):.1f}%" if rel_se else "not recorded"
    text = (f"Each law says how a modality's held-out bits per token fall with parameters and "
            f"with data: {parts}. E is the loss at infinite N and D (the data's entropy under "
            f"this tokenizer, plus what the model family cannot express); the exponents say "
            f"which of N or D buys more at the margin. They rest on {len(runs)} points spanning "
            f"{runs['C'].max() / runs['C'].min():.0f}x in compute, one seed per point, every "
            f"run scored on the same evaluation tokens, masks and t (a run's standard error is "
            f"at most {se} of its bits, median over runs; differences between runs are tighter, "
            f"the evaluation being shared). The held-out run, "
            f"{heldout['C'] / runs['C'].max():.1f}x beyond the largest fitted compute, lands "
            f"within {100 * worst:.1f}% of its prediction. ")
    if not unresolved and worst <= 0.03:
        return text + ("Trust the laws to interpolate, and to extrapolate a few-fold in compute, "
                       "on this data and model family; not to predict another tokenizer, "
                       "mixture or architecture, nor orders of magnitude out, where the "
                       "exponents' intervals compound.")
    mods = heldout["modalities"]
    better = [m for m, v in mods.items() if v["rel_error"] < -0.03]
    worse = [m for m, v in mods.items() if v["rel_error"] > 0.03]

    def _errs(ms: list[str]) -> str:
        return ", ".join(f"{m} ({100 * mods[m]['rel_error']:+.1f}%"
                         + ("" if mods[m]["inside"] else ", outside its interval") + ")"
                         for m in ms)
    why = ""
    if better:
        why += (f"The held-out run is better than predicted for {_errs(better)}: either the "
                "law's form misses how the loss falls at these budgets, or seed-to-seed "
                "variation (one seed per point and for the held-out run) moved the points; "
                "more seeds per point tell the two apart. ")
    if worse:
        why += (f"It is worse than predicted for {_errs(worse)}: the law promises more than the "
                "run delivers (or seed variation, as above). ")
    if unresolved:
        why += (f"With {int(np.median([f.n_points for f in laws.fits.values()]))} points for "
                "5 parameters per modality the bootstrap cannot pin every parameter. ")
    return text + ("Do not trust these exponents: " + ("the intervals above are not resolved "
                   f"({len(unresolved)} of them), " if unresolved else "")
                   + ("the held-out error exceeds 3%, " if worst > 0.03 else "")
                   + "so the grid does not pin the law down. " + why
                   + "Larger budgets and more points per law (the same experiment file with "
                   "larger `budgets=`, more `sizes=` or common `tokens=`) are what would "
                   "resolve it.")


def _text_sources(demo: Any) -> str:
    src = demo.summary.get("counts", {}).get("text", {}).get("sources", {})
    found = [f"{k} ({v['bytes'] / 1e6:.2f} MB)" for k, v in src.items() if v.get("found")]
    return ", ".join(found) or "the standard library"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m launch.demo", description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", default="small", help="demo data scale: small | tiny")
    ap.add_argument("--data", default="data", help="cache directory for data and shards")
    ap.add_argument("--out", default="runs", help="runs root (the report goes to <out>/demo_report)")
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--quick", action="store_true",
                    help="a reduced grid (3 sizes x 2 small budgets) for tests")
    ap.add_argument("--heldout_factor", type=float, default=3.0,
                    help="the held-out run's compute, in multiples of the largest fitted")
    ap.add_argument("--bootstrap", type=int, default=400, help="bootstrap refits per law")
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--demo_dir", default="", help="use an already built demo data set")
    a = ap.parse_args(argv)
    quiet_absl()
    from mdm.startup import enable_compilation_cache
    enable_compilation_cache()        # this process samples; the trainers it spawns do the same
    from experiments.demo import SEQ_LEN
    lap = Laps()
    timings = lap.timings
    os.makedirs(a.out, exist_ok=True)
    _say(f"1-2/7 demo data ({a.scale}) and token shards (cached after the first run)")
    data = load_demo_data(a.data, a.scale, SEQ_LEN, a.demo_dir)
    if data is None:
        return 2
    demo, shards, manifest = data
    lap("data")
    sweep_arg = ("grid,sizes=w8+w16+w32,budgets=5e9+1e10,tokens=-1,band=0+0" if a.quick
                 else "grid")
    sweep = "demo"
    _say(f"3/7 the scaling grid ({sweep_arg}) with the local executor")
    try:
        grid = launch_sweep(a.out, shards, manifest, sweep_arg, a.parallel)
    except KeyboardInterrupt:
        _say("interrupted: runs were asked to checkpoint; run the same command again to resume")
        return 130
    if not grid.ok:
        _say("some runs did not finish (see the per-run logs under "
             f"{a.out}/{sweep}/.launch/logs); fitting what finished")
    lap("grid")
    out = os.path.join(a.out, "demo_report")
    os.makedirs(out, exist_ok=True)
    _say("4/7 fitting per-modality laws, IsoFLOP profiles and the compute-optimal frontier")
    fits = fit_and_plot(a.out, sweep, out, a.bootstrap)
    plan = plan_heldout(fits["laws"], fits["runs"], a.heldout_factor)
    lap("fits")
    hsweep = "demo-heldout"
    _say(f"5/7 the held-out run: {plan['size']} at C = {plan['compute']:.3g} FLOPs "
         f"({a.heldout_factor:g} x the largest fitted), D = {plan['D']:.3g} tokens")
    try:
        # one run: data-parallel over the machine's cores (a device per core) rather than one
        # process-wide device
        from launch.local import usable_cpus
        launch_sweep(a.out, shards, manifest, f"heldout,size={plan['size']},"
                     f"compute={plan['compute']:.6g}", 1,
                     env=cpu_devices_env(min(a.parallel, len(usable_cpus()))))
    except KeyboardInterrupt:
        _say("interrupted: run the same command again to resume the held-out run")
        return 130
    heldout = score_heldout(a.out, hsweep, plan)
    _draw_heldout(fits, heldout, out)
    lap("heldout")
    _say(f"6/7 sampling from the held-out run {os.path.basename(heldout['run'])}")
    samples = sample_best(heldout["run"], demo, out, a.samples)
    lap("samples")
    info = {"scale": a.scale, "seq_len": SEQ_LEN, "shards": shards, "runs_root": a.out,
            "sweep": sweep, "heldout_sweep": hsweep, "best": heldout["run"],
            "text_sources": _text_sources(demo)}
    path = write_report(out, info, fits, heldout, plan, samples, timings)
    _say(f"7/7 report: {path}")
    for m, v in heldout["modalities"].items():
        _say(f"held-out {m}: predicted {v['predicted']:.3f}, measured {v['measured']:.3f} "
             f"bits ({100 * v['rel_error']:+.2f}%)")
    print(path)
    return 0


def _draw_heldout(fits: dict[str, Any], heldout: dict[str, Any], out: str) -> None:
    """loss_vs_compute.png again, with the held-out run: predicted (interval) and measured."""
    import numpy as np

    from analysis.figures import plot_loss_vs_compute, save_figure
    with np.errstate(all="ignore"):
        fig = plot_loss_vs_compute(fits["runs"], fits["laws"], heldout=heldout)
    fits["figures"]["loss_vs_compute"] = save_figure(fig, out, "loss_vs_compute")


if __name__ == "__main__":
    sys.exit(main())
