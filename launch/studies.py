"""`make studies`: the paper's four design-space studies, run for real at CPU scale, one report.

    1. build / reuse the demo data set and its token shards (launch.demo.prepare_data)
    2. run four sweeps through the launcher (local executor; finished runs are reused) on the
       demo shards, each an experiment file's CPU kind (experiments/<file>.py, `cpu`;
       `--quick`: `cpu_quick`, a few steps per run, what the tests run):
         batch        experiments/batch_size.py   physical batch 8..128 x SDE off / on x seeds
         schedules    experiments/noise_schedule.py linear / cosine / poly:2 / poly:0.5 x seeds
         mixing       experiments/mixing.py       10 mixtures of the simplex (pure ones included)
         antimasking  experiments/antimasking.py  complementary pairs vs independent masks x seeds
    3. analyse each with the analysis package (analysis.batch_size, analysis.mixing,
       analysis.studies), draw one figure per study, and write
       <out>/studies_report/{report.md, report.json, <study>.png}: per study the figure, the
       fitted numbers with intervals, the seeds and runs per point, and a one-line finding
       whose wording is chosen from the numbers.

    python -m launch.studies [--data data] [--out runs] [--parallel 2] [--quick] [--only batch,mixing]

Every run is a plain run directory under `--out` (recording its study in config.json), so
`mdm-figures <out> --out figs` redraws the batch-size, SDE, mixing, schedule and anti-masking
figures from the runs alone. The loss throughout is the eval ELBO in bits per token on the demo's fixed eval
set (Gauss-Legendre in the mask rate, the same for every training schedule and mixture);
"bits" without a modality is the token-weighted average over the three modalities.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from typing import Any

from mdm.run_contract import MODALITIES as MODS

# study -> (experiment file, full kind, quick kind)
STUDIES: dict[str, tuple[str, str, str]] = {
    "batch": ("experiments/batch_size.py", "cpu", "cpu_quick"),
    "schedules": ("experiments/noise_schedule.py", "cpu", "cpu_quick"),
    "mixing": ("experiments/mixing.py", "cpu", "cpu_quick"),
    "antimasking": ("experiments/antimasking.py", "cpu", "cpu_quick"),
}
LEVEL = 0.95
QUICK_NOTE = "reduced `--quick` version: a few steps per run, the numbers mean nothing"
TARGET_MARGIN = 0.005     # steps-to-target: target = (1 + margin) x the worst run's best loss


def _say(msg: str) -> None:
    print(f"[studies] {msg}", flush=True)


def _fmt_iv(d: dict[str, float], digits: int = 3) -> str:
    """'m [lo, hi]' of a seed_interval-like dict, or 'm (1 seed)'."""
    m, lo, hi = d["mean"], d.get("lo", math.nan), d.get("hi", math.nan)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return f"{m:.{digits}g} (n = {d.get('n', 1)}, no interval)"
    return f"{m:.{digits}g} [{lo:.{digits}g}, {hi:.{digits}g}]"


def _fmt_ci(v: float, ci: list[float], digits: int = 3) -> str:
    """'v [lo, hi]', or 'v (no interval)' when the interval is not finite."""
    if all(isinstance(x, float) and math.isfinite(x) for x in ci):
        return f"{v:.{digits}g} [{ci[0]:.{digits}g}, {ci[1]:.{digits}g}]"
    return f"{v:.{digits}g} (no interval)"


def _runs_of(rs: Any, sweep: str) -> Any:
    """The RunSet of one sweep's finished runs (an error line when none finished)."""
    from analysis.loading import select_done
    sub = rs.sweep(f"^{sweep}$")
    done, _ = select_done(sub.runs)
    if done.empty:
        raise RuntimeError(f"no finished runs in sweep {sweep}; rerun `make studies` to resume")
    return sub.subset(done["run_id"])


# --- 1. batch size and the SDE reparameterization -------------------------------------------

def analyse_batch(rs: Any, seq_len: int) -> dict[str, Any]:
    """Curves, collapse scores, steps-to-target critical batch, gradient noise scale and the
    breakdown batch of the batch-size study (module docstring of analysis.batch_size)."""
    import numpy as np
    import pandas as pd

    from analysis.batch_size import collapse_score, gradient_noise_scale, steps_to_target
    from analysis.stats import AnalysisError
    from analysis.studies import (bootstrap_steps_fit, collapse_breakdown, relative_spread,
                                  seed_interval)
    runs = rs.runs.copy()
    runs["arm"] = np.where(runs["config.sde.enabled"].astype(bool), "sde", "plain")
    runs["batch"] = runs["physical_batch_seqs"].astype(float)
    runs["seed"] = runs["config.seed"].astype(int)
    # at B = B_ref the two arms are the same run (kappa = 1): it belongs to both
    ref = runs[(runs["arm"] == "sde") & (runs["batch"] == runs["config.sde.ref_batch"])]
    R = pd.concat([runs, ref.assign(arm="plain")], ignore_index=True)
    ref_batch = float(ref["batch"].iloc[0]) if len(ref) else float("nan")
    curves = rs.evals[["run_id", "step", "tokens", "bits"]].dropna()
    seeds = sorted(R["seed"].unique())
    batches = sorted(R["batch"].unique())
    final = curves.sort_values("step").groupby("run_id")["bits"].last()
    R["final_bits"] = R["run_id"].map(final)
    out: dict[str, Any] = {"batches": batches, "seeds": seeds, "ref_batch": ref_batch,
                           "runs": int(runs["run_id"].nunique()),
                           "runs_per_point": int(R.groupby(["arm", "batch"]).size().min())}

    # steps to the target loss, per arm: S(B) = S_min + b / B, B_noise and B_crit
    steps_rows, fits, fit_err = [], {}, {}
    for arm in ("plain", "sde"):
        A = R[R["arm"] == arm]
        best = curves[curves["run_id"].isin(A["run_id"])].groupby("run_id")["bits"].min()
        target = float(best.max() * (1 + TARGET_MARGIN))
        st = steps_to_target(curves[curves["run_id"].isin(A["run_id"])], target, loss="bits")
        st = st.merge(A[["run_id", "batch", "seed"]], on="run_id")
        st["arm"] = arm
        steps_rows.append(st)
        try:
            fits[arm] = bootstrap_steps_fit(st["batch"], st["steps"], B0=min(batches),
                                            level=LEVEL)
            fits[arm]["target_bits"] = target
        except AnalysisError as e:
            fit_err[arm] = str(e)
    steps = pd.concat(steps_rows, ignore_index=True)
    out["steps_fit"], out["steps_fit_errors"] = fits, fit_err
    out["steps"] = steps[["arm", "batch", "seed", "steps", "target"]].to_dict("records")

    # gradient noise scale, per run over its steps (after the first 10%), in sequences
    gns_rows = []
    for rid in runs["run_id"]:
        m = rs.metrics[rs.metrics["run_id"] == rid]
        if "gns_trace" not in m.columns or m["gns_trace"].notna().sum() < 2:
            continue
        try:
            g = gradient_noise_scale(m, start=0.1 * float(m["step"].max()))
        except AnalysisError:
            continue
        last = m.sort_values("step").iloc[-1]
        content = sum(float(last[f"tokens_{k}"]) for k in MODS) / float(last["tokens"])
        gns_rows.append({"run_id": rid, "B_noise_tokens": g.B_noise,
                         "content_per_seq": content * seq_len,
                         "B_noise_seqs": g.B_noise / (content * seq_len)})
    # a positive scale: the interval is taken on log B_noise (geometric mean over runs);
    # runs whose estimate is not positive and finite (|G|^2 unresolved) are counted, not used
    gns = [r["B_noise_seqs"] for r in gns_rows
           if math.isfinite(r["B_noise_seqs"]) and r["B_noise_seqs"] > 0]
    gi = None
    if gns:
        li = seed_interval([math.log(x) for x in gns], LEVEL)
        gi = {k: (math.exp(li[k]) if math.isfinite(li[k]) else math.nan)
              for k in ("mean", "lo", "hi")} | {"n": li["n"]}
    out["gns"] = {"per_run": gns_rows, "seqs": gi, "unresolved": len(gns_rows) - len(gns)}

    # collapse of the loss-vs-tokens curves across batches, per arm and seed, over all batches
    # and over those below the critical batch: the gradient-noise-scale estimate (measured
    # directly), else the SDE arm's steps-to-target B_noise
    b_c = gi["mean"] if gi else fits.get("sde", {}).get("B_noise", float("nan"))
    out["critical_for_split"] = {"value": b_c, "source": "gradient noise scale" if gi else
                                 "steps-to-target B_noise (SDE arm)"}
    below = [b for b in batches if b <= b_c] if math.isfinite(b_c) else []
    coll: dict[str, dict[str, Any]] = {}
    for arm in ("plain", "sde"):
        per: dict[str, list[float]] = {"all": [], "below": [], "spread_all": [], "spread_below": []}
        for s in seeds:
            A = R[(R["arm"] == arm) & (R["seed"] == s)].sort_values("batch")
            cs = [(curves.loc[curves["run_id"] == r, "tokens"].to_numpy(),
                   curves.loc[curves["run_id"] == r, "bits"].to_numpy()) for r in A["run_id"]]
            if len(cs) >= 2:
                per["all"].append(collapse_score(cs)[0])
                per["spread_all"].append(relative_spread(A["final_bits"]))
            Ab = A[A["batch"].isin(below)]
            if len(Ab) >= 2:
                cb = [(curves.loc[curves["run_id"] == r, "tokens"].to_numpy(),
                       curves.loc[curves["run_id"] == r, "bits"].to_numpy()) for r in Ab["run_id"]]
                per["below"].append(collapse_score(cb)[0])
                per["spread_below"].append(relative_spread(Ab["final_bits"]))
        coll[arm] = {k: (seed_interval(v, LEVEL) if v else None) for k, v in per.items()}
        coll[arm]["per_seed"] = per
    out["collapse"], out["below_batches"] = coll, below
    # where the SDE arm's collapse breaks down: final loss above the smallest batch's
    sde_final = {b: R[(R["arm"] == "sde") & (R["batch"] == b)]["final_bits"].tolist()
                 for b in batches}
    out["breakdown"] = collapse_breakdown({b: v for b, v in sde_final.items() if v})
    out["final"] = {arm: {str(b): seed_interval(R[(R["arm"] == arm) & (R["batch"] == b)]
                                                ["final_bits"], LEVEL)
                          for b in batches if ((R["arm"] == arm) & (R["batch"] == b)).any()}
                    for arm in ("plain", "sde")}
    out["_frames"] = (curves, R, steps)
    out["finding"] = _batch_finding(out)
    return out


def _batch_finding(o: dict[str, Any]) -> str:
    from analysis.studies import diff_interval
    c = o["collapse"]
    key = "below" if c["sde"].get("below") and c["plain"].get("below") else "all"
    where = (f"batches {min(o['below_batches']):g}-{max(o['below_batches']):g} (<= the "
             f"critical batch by the {o['critical_for_split']['source']}, "
             f"{o['critical_for_split']['value']:.3g})" if key == "below" else
             f"all batches {min(o['batches']):g}-{max(o['batches']):g}")
    s, p = c["sde"][key], c["plain"][key]
    d = diff_interval(c["sde"]["per_seed"][key], c["plain"]["per_seed"][key], LEVEL)
    sk = "spread_" + key
    ds = diff_interval(c["sde"]["per_seed"][sk], c["plain"]["per_seed"][sk], LEVEL)
    spread = (f"final-loss spread across batches (std/mean) {c['sde'][sk]['mean']:.3g} with SDE "
              f"vs {c['plain'][sk]['mean']:.3g} without (difference {ds['diff']:+.3g}, "
              f"[{ds['lo']:.3g}, {ds['hi']:.3g}]: "
              + ("less with SDE" if ds["hi"] < 0 else "more with SDE" if ds["lo"] > 0 else
                 "not resolved by the seeds" if math.isfinite(ds["lo"]) else "no interval")
              + ")")
    if not math.isfinite(d["lo"]):
        verdict = (f"collapse {'better' if s['mean'] < p['mean'] else 'no better'} with SDE "
                   "(one seed per arm: no interval, not a conclusion)")
    elif d["hi"] < 0:
        verdict = "collapse better with SDE"
    elif d["lo"] > 0:
        verdict = "collapse worse with SDE"
    elif s["mean"] < p["mean"]:
        verdict = "collapse better with SDE on average, but not beyond the seed noise"
    else:
        verdict = "no better collapse with SDE"
    bd = o["breakdown"]
    br = bd["breaks_at"]
    brk = (f"the SDE arm's final loss departs from B={bd['ref']:g}'s at B={br:g} "
           f"(> {bd['z']:g} s.e.)" if br is not None else
           f"the SDE arm's final loss stays within {bd['z']:g} s.e. of "
           f"B={bd['ref']:g}'s up to B={max(o['batches']):g}" if bd["judged"] else
           "where the collapse breaks down is not judged (one seed: no standard error)")
    f = o["steps_fit"].get("sde")
    bc = (f"steps-to-target B_noise (SDE arm) = {_fmt_ci(f['B_noise'], f['ci']['B_noise'])} "
          "sequences" + (f" (beyond the largest batch measured, {max(o['batches']):g}: "
                         "extrapolated; steps still fall ~1/B there)"
                         if f["B_noise"] > max(o["batches"]) else "")
          if f else "steps-to-target fit failed")
    g = o["gns"]["seqs"]
    gn = f", gradient noise scale {_fmt_iv(g)} sequences (geometric mean over runs)" if g else ""
    return (f"{verdict}: collapse score over {where} {s['mean']:.3g} with SDE vs "
            f"{p['mean']:.3g} without (difference {d['diff']:+.3g}, 95% interval "
            f"[{d['lo']:.3g}, {d['hi']:.3g}]); {spread}; {bc}{gn}; {brk}.")


# --- 2. noise schedules ---------------------------------------------------------------------

def analyse_schedules(rs: Any) -> dict[str, Any]:
    """Per modality, each schedule's final eval bits over seeds, the winner and its margin."""
    from analysis.studies import compare_groups
    runs = rs.runs
    sched = runs["config.objective.schedule.text"].astype(str)
    out: dict[str, Any] = {"schedules": sorted(sched.unique()),
                           "seeds": sorted(runs["config.seed"].astype(int).unique()),
                           "runs": int(len(runs)),
                           "runs_per_point": int(sched.value_counts().min()), "per_modality": {}}
    for m in MODS:
        vals = {s: runs.loc[sched == s, f"bits_{m}"].astype(float).tolist()
                for s in out["schedules"]}
        out["per_modality"][m] = compare_groups(vals, lower_is_better=True, level=LEVEL)
    parts = []
    for m, c in out["per_modality"].items():
        lo, hi = c["margin_interval"]
        noise = c["groups"][c["best"]]["sd"]
        verdict = ("resolved" if c["resolved"] else "within the seed noise"
                   if c["resolved"] is False else "no interval (1 seed)")
        ratio = (f", {c['margin'] / noise:.1f}x the best schedule's seed s.d."
                 if math.isfinite(noise) and noise > 0 else "")
        parts.append(f"{m}: {c['best']} beats {c['runner_up']} by {c['margin']:.3g} bits "
                     f"[{lo:.3g}, {hi:.3g}]{ratio} ({verdict})")
    out["finding"] = "; ".join(parts) + "."
    return out


# --- 3. mixing ------------------------------------------------------------------------------

def analyse_mixing(rs: Any) -> dict[str, Any]:
    """Exponential mixing law per modality, leave-one-out prediction error, the optimal
    mixture for equal weights (and its range over the leave-one-out refits)."""
    import numpy as np

    from analysis.mixing import fit_mixing_law, optimal_mixture
    from analysis.report import MIX_DOMAINS
    from analysis.stats import AnalysisError
    runs = rs.runs.reset_index(drop=True)
    doms = list(MIX_DOMAINS)
    targets = [f"bits_{m}" for m in MODS]
    fits = {t: fit_mixing_law(runs, t, doms) for t in targets}
    lin = {t: fit_mixing_law(runs, t, doms, law="linear") for t in targets}
    opt = optimal_mixture(fits)
    loo: dict[str, dict[str, list[float]]] = {t: {"exp": [], "linear": []} for t in targets}
    opt_loo, failed = [], 0
    for i in range(len(runs)):
        train, test = runs.drop(index=i), runs.iloc[[i]]
        try:
            f_i = {t: fit_mixing_law(train, t, doms) for t in targets}
            opt_loo.append(optimal_mixture(f_i).ratios)
        except AnalysisError:
            failed += 1
            continue
        R = test[doms].to_numpy(float)
        for t in targets:
            y = float(test[t].iloc[0])
            loo[t]["exp"].append(float(f_i[t].predict(R)[0]) - y)
            loo[t]["linear"].append(float(fit_mixing_law(train, t, doms, law="linear")
                                          .predict(R)[0]) - y)
    loo_stats = {t: {k: {"rmse": float(np.sqrt(np.mean(np.square(v)))) if v else math.nan,
                         "max_abs": float(np.max(np.abs(v))) if v else math.nan,
                         "n": len(v)} for k, v in d.items()} for t, d in loo.items()}
    opt_range = {d: [min(o[d] for o in opt_loo), max(o[d] for o in opt_loo)] if opt_loo else
                 [math.nan] * 2 for d in doms}
    out = {"mixtures": runs[doms].round(4).values.tolist(), "runs": int(len(runs)),
           "seeds": sorted(runs["config.seed"].astype(int).unique()),
           "runs_per_point": 1, "fits": fits, "linear": lin, "optimal": opt, "loo": loo_stats,
           "optimal_loo_range": opt_range, "loo_failed": failed, "_runs": runs}
    r = opt.ratios
    worst = max(targets, key=lambda t: loo_stats[t]["exp"]["rmse"])
    better = [t.split("_")[1] for t in targets
              if loo_stats[t]["exp"]["rmse"] < loo_stats[t]["linear"]["rmse"]]
    rng = ", ".join(f"{d.rsplit('.', 1)[1]} {opt_range[d][0]:.2f}-{opt_range[d][1]:.2f}"
                    for d in doms)
    out["finding"] = (
        "equal-weight optimum " + " / ".join(f"{d.rsplit('.', 1)[1]} {r[d]:.2f}" for d in doms)
        + f" (range over leave-one-out refits: {rng}); leave-one-out RMSE of the exponential "
        "law " + ", ".join(f"{t.split('_')[1]} {loo_stats[t]['exp']['rmse']:.3g}" for t in targets)
        + f" bits (worst: {worst.split('_')[1]}); the exponential law predicts held-out mixtures "
        + (f"better than the linear baseline for {', '.join(better)}" if better else
           "no better than the linear baseline for any modality") + ".")
    return out


# --- 4. anti-masking ------------------------------------------------------------------------

def analyse_antimasking(rs: Any) -> dict[str, Any]:
    """analysis.studies.antimasking_summary (estimator variance, paired variance ratio, final
    eval bits per arm) and its finding."""
    from analysis.studies import antimasking_summary
    out = antimasking_summary(rs.runs, rs.metrics, LEVEL, MODS)
    out["_final"] = out.pop("final_values")
    ratio = out["variance_ratio"]
    rv = ("lower" if math.isfinite(ratio["hi"]) and ratio["hi"] < 1 else "higher"
          if math.isfinite(ratio["lo"]) and ratio["lo"] > 1 else "not measurably different")
    diffs = []
    for m, d in out["final_diff"].items():
        tag = ("better" if d["hi"] < 0 else "worse" if d["lo"] > 0 else "no resolved change") \
            if math.isfinite(d["lo"]) else "no interval"
        diffs.append(f"{m} {d['diff']:+.3g} [{d['lo']:.3g}, {d['hi']:.3g}] ({tag})")
    out["finding"] = (
        f"at equal compute, the training-loss estimator variance with complementary pairs is "
        f"{rv} (ratio complementary / independent {ratio['mean']:.3g} [{ratio['lo']:.3g}, {ratio['hi']:.3g}], paired over "
        f"{ratio['n']} seeds); final eval bits, complementary minus independent: "
        + "; ".join(diffs) + ".")
    return out


# --- the report -----------------------------------------------------------------------------

def draw_figures(results: dict[str, Any], out: str) -> dict[str, str]:
    import numpy as np

    from analysis import figures as F
    made: dict[str, str] = {}
    if "batch" in results:
        b = results["batch"]
        curves, R, steps = b["_frames"]
        g = b["gns"]["seqs"]
        with np.errstate(all="ignore"):
            fig = F.plot_batch_study(curves, R, steps, b["steps_fit"],
                                     gns_seqs=g["mean"] if g else None)
        made["batch"] = F.save_figure(fig, out, "batch_sde", formats=("png",))[0]
    if "schedules" in results:
        fig = F.plot_group_intervals(results["schedules"]["per_modality"],
                                     title="noise schedules: final eval bits (seed mean, 95% CI)")
        made["schedules"] = F.save_figure(fig, out, "schedules", formats=("png",))[0]
    if "mixing" in results:
        m = results["mixing"]
        fig = F.plot_mixing(m["_runs"], m["fits"], m["optimal"], baseline=m["linear"])
        made["mixing"] = F.save_figure(fig, out, "mixing", formats=("png",))[0]
    if "antimasking" in results:
        a = results["antimasking"]
        fig = F.plot_antimasking({k: list(v["per_seed"].values())
                                  for k, v in a["variance"].items()}, a["_final"])
        made["antimasking"] = F.save_figure(fig, out, "antimasking", formats=("png",))[0]
    return made


def _batch_md(b: dict[str, Any]) -> list[str]:
    L = ["## 1. Batch size and the SDE reparameterization", "",
         f"Finding: **{b['finding']}**", "", "![batch size and SDE](batch_sde.png)", "",
         f"{b['runs']} runs: physical batches {', '.join(f'{x:g}' for x in b['batches'])} "
         f"sequences x SDE off / on x seeds {', '.join(map(str, b['seeds']))} "
         f"({b['runs_per_point']} run(s) per point); the same model and token budget; at "
         f"B_ref = {b['ref_batch']:g} the two arms are one run (kappa = 1). SDE: kappa = B / "
         "B_ref (same horizon), lr x sqrt(kappa), beta1, beta2 ^ kappa, eps / sqrt(kappa) "
         "(mdm/optim.py); the plain arm keeps the reference values at every batch.", "",
         "| arm | collapse score, all batches | collapse score, below the critical batch | "
         "final-loss spread (std/mean), all | below the critical batch |", "|---|---|---|---|---|"]
    for arm in ("plain", "sde"):
        c = b["collapse"][arm]
        cell = [(_fmt_iv(c[k]) if c.get(k) else "-") for k in ("all", "below", "spread_all",
                                                             "spread_below")]
        L.append(f"| {arm} | " + " | ".join(cell) + " |")
    L += ["", "Collapse score (analysis.batch_size.collapse_score): the loss-vs-tokens curves "
          "of one arm and seed, interpolated on a common log-token grid, mean over the grid "
          "of std / mean across batches (0 = the curves coincide); mean over seeds with a 95% "
          "t-interval. Below the critical batch (the "
          f"{b['critical_for_split']['source']}, {b['critical_for_split']['value']:.3g}): "
          f"batches {', '.join(f'{x:g}' for x in b['below_batches']) or '-'}.",
          "", "| arm | " + " | ".join(f"B={x:g}" for x in b["batches"]) + " |",
          "|---|" + "---|" * len(b["batches"])]
    for arm in ("plain", "sde"):
        L.append(f"| {arm} final bits | " + " | ".join(
            _fmt_iv(b["final"][arm][str(x)], 4) if str(x) in b["final"][arm] else "-"
            for x in b["batches"]) + " |")
    L += ["", "Critical batch, two definitions (sequences):", ""]
    for arm, f in b["steps_fit"].items():
        L.append(f"- steps to target ({arm} arm; target {f['target_bits']:.4g} bits = "
                 f"{1 + TARGET_MARGIN:g} x the worst run's best eval): S(B) = S_min + b / B with "
                 f"S_min = {f['S_min']:.3g}, b = {f['b']:.3g}; **B_noise = b / S_min = "
                 f"{_fmt_ci(f['B_noise'], f['ci']['B_noise'])}** "
                 f"(the batch at twice the minimum steps); B_crit (steps {f['overhead']:.0%} over "
                 f"linear scaling from B0 = {f['B0']:g}) = "
                 f"{_fmt_ci(f['B_crit'], f['ci']['B_crit'])} (95% bootstrap over "
                 f"the runs within each batch, {f['n_boot']} refits, {f['n_failed']} failed)")
    for arm, e in b["steps_fit_errors"].items():
        L.append(f"- steps to target ({arm} arm): not fitted ({e})")
    g = b["gns"]["seqs"]
    if g:
        L.append(f"- gradient noise scale B_noise = tr(Sigma) / |G|^2 (McCandlish et al.; "
                 f"per run the ratio of its window means over the steps after the first 10%, "
                 "analysis.batch_size.gradient_noise_scale; converted from loss tokens to "
                 f"sequences by the content tokens per sequence), geometric mean over "
                 f"{g['n']} runs (95% t-interval on the logs; {b['gns']['unresolved']} runs with "
                 f"an unresolved estimate left out): **{_fmt_iv(g)}**")
    br = b["breakdown"]
    L += ["", "Where the collapse breaks down (SDE arm, final bits minus those at "
          f"B = {br['ref']:g}, in standard errors of the difference over seeds): " + ", ".join(
              f"B={k:g}: {v['diff']:+.3g} ({v['z']:.1f} s.e.)" for k, v in br["excess"].items())
          + f"; breaks down at: {br['breaks_at'] if br['breaks_at'] is not None else '-'} "
          f"(first batch more than {br['z']:g} s.e. above)."]
    return L


def _schedules_md(s: dict[str, Any]) -> list[str]:
    L = ["", "## 2. Noise schedules", "", f"Finding: **{s['finding']}**", "",
         "![noise schedules](schedules.png)", "",
         f"{s['runs']} runs: schedules {', '.join(s['schedules'])} (one per run, shared by "
         f"the three modalities) x seeds {', '.join(map(str, s['seeds']))} "
         f"({s['runs_per_point']} runs per point). Every run is scored by the same "
         "schedule-independent evaluation (the ELBO by Gauss-Legendre quadrature in the mask "
         "rate, the same fixed examples and masks). Final eval bits per token, seed mean "
         "[95% t-interval]:", "",
         "| schedule | " + " | ".join(MODS) + " |", "|---|" + "---|" * len(MODS)]
    for sch in s["schedules"]:
        L.append(f"| {sch} | " + " | ".join(_fmt_iv(s["per_modality"][m]["groups"][sch], 4)
                                           for m in MODS) + " |")
    L += ["", "Margin = runner-up minus winner (seed means); its interval is Welch's over the "
          "seeds of the two schedules."]
    return L


def _mixing_md(m: dict[str, Any]) -> list[str]:
    L = ["", "## 3. Modality mixing", "", f"Finding: **{m['finding']}**", "",
         "![mixing](mixing.png)", "",
         f"{m['runs']} runs, one per mixture (seed {', '.join(map(str, m['seeds']))}; "
         f"{m['runs_per_point']} run per point), a simplex lattice of text / image / audio "
         "shares of every batch's sequences, the three pure mixtures included: "
         + ", ".join("/".join(f"{v:.2f}" for v in r) for r in m["mixtures"])
         + ". Exponential law per modality L_m(r) = c + exp(t . r) "
         "(analysis.mixing.fit_mixing_law; on the simplex k is absorbed into t):", "",
         "| modality | c | t_text | t_image | t_audio | train RMSE | leave-one-out RMSE "
         "(exp) | max abs error (exp) | leave-one-out RMSE (linear) |",
         "|---|---|---|---|---|---|---|---|---|"]
    for t, f in m["fits"].items():
        lo = m["loo"][t]
        L.append(f"| {t.split('_')[1]} | {f.params['c']:.3g} | "
                 + " | ".join(f"{v:.3g}" for v in f.params["t"])
                 + f" | {f.train['rmse']:.3g} | {lo['exp']['rmse']:.3g} | "
                 f"{lo['exp']['max_abs']:.3g} | {lo['linear']['rmse']:.3g} |")
    o = m["optimal"]
    L += ["", "Predicted best mixture for equal weights on the three losses "
          "(analysis.mixing.optimal_mixture): " + ", ".join(
              f"{d.rsplit('.', 1)[1]} {o.ratios[d]:.3f} (leave-one-out range "
              f"{m['optimal_loo_range'][d][0]:.3f}-{m['optimal_loo_range'][d][1]:.3f})"
              for d in o.ratios)
          + "; predicted bits " + ", ".join(f"{k.split('_')[1]} {v:.3f}"
                                            for k, v in o.predicted.items()) + "."]
    return L


def _antimasking_md(a: dict[str, Any]) -> list[str]:
    L = ["", "## 4. Anti-masking (complementary mask pairs)", "", f"Finding: **{a['finding']}**",
         "", "![anti-masking](antimasking.png)", "",
         f"{a['runs']} runs: complementary pairs on / off x seeds "
         f"{', '.join(map(str, a['seeds']))} ({a['runs_per_point']} runs per point). Equal "
         f"compute: both arms process {a['tokens_processed']:.3g} tokens in the same number of "
         "steps of the same physical batch; with pairs each data row appears with a mask and "
         f"its complement, so that arm sees {a['data_tokens']['complementary']:.3g} distinct "
         f"data tokens against {a['data_tokens']['independent']:.3g}.", "",
         "Variance of the training-loss estimator: from every step's logged training loss l_s, "
         "Var(l_{s+1} - l_s) / 2 over the steps in 25-80% of the run (removes a locally linear "
         "trend; analysis.studies.loss_estimator_variance), per run; the ratio is paired by "
         "seed (geometric mean, 95% t-interval on the log ratio).", "",
         "| arm | estimator variance (nats^2) | " + " | ".join(f"final {m} bits" for m in MODS)
         + " |", "|---|---|" + "---|" * len(MODS)]
    for arm in ("independent", "complementary"):
        L.append(f"| {arm} | {_fmt_iv(a['variance'][arm])} | "
                 + " | ".join(_fmt_iv(a["final"][arm][m], 4) for m in MODS) + " |")
    r = a["variance_ratio"]
    L += ["", f"Variance ratio complementary / independent: {r['mean']:.3g} "
          f"[{r['lo']:.3g}, {r['hi']:.3g}]."]
    return L


def write_report(out: str, results: dict[str, Any], figures: dict[str, str],
                 info: dict[str, Any], timings: dict[str, float]) -> str:
    L = ["# The paper's studies at CPU scale", "",
         f"Data: the demo set (`{info['shards']}`), sequences of {info['seq_len']} tokens, "
         f"micro models of experiments/ladder.py on the demo token space "
         f"({QUICK_NOTE if info['quick'] else 'CPU scale'}). "
         f"Runs: `{info['runs_root']}/<sweep>/<run id>/` (sweeps "
         f"{', '.join(info['sweeps'].values())}); `mdm-figures {info['runs_root']} --out figs` "
         "redraws the batch-size, SDE, mixing, schedule and anti-masking figures from them. "
         "Losses are final eval bits per token on the demo's fixed eval set; intervals are "
         "95%.", ""]
    if info.get("failed_runs") or info.get("not_analysed"):
        L += ["**Incomplete:** " + "; ".join(
            [f"{k}: runs failed ({', '.join(v)}; see <sweep>/.launch/logs)"
             for k, v in info.get("failed_runs", {}).items()]
            + [f"{k}: not analysed ({v})" for k, v in info.get("not_analysed", {}).items()])
            + ". The numbers below use the runs that finished.", ""]
    L += ["## Findings", ""]
    for k in results:
        L.append(f"- **{k}**: {results[k]['finding']}")
    L.append("")
    sections = {"batch": _batch_md, "schedules": _schedules_md, "mixing": _mixing_md,
                "antimasking": _antimasking_md}
    for k, r in results.items():
        L += sections[k](r)
    total = sum(timings.values())
    rt = info.get("run_seconds", {})
    L += ["", "## Time", "", "This invocation: " + ", ".join(f"{k} {v:.0f} s"
                                                            for k, v in timings.items())
          + f"; total {total / 60:.1f} min (a rerun reuses every finished run).",
          "", "The runs themselves (summary.json wall time, start-up included, summed over each "
          "study's runs; with `--parallel 2` two run at once): " + ", ".join(
              f"{k} {v['runs']} runs, {v['seconds'] / 60:.1f} min" for k, v in rt.items())
          + (f"; total {sum(v['seconds'] for v in rt.values()) / 60:.1f} min." if rt else "."),
          "",
          "## Files", "", "- figures: " + ", ".join(f"`{os.path.basename(p)}`"
                                                    for p in figures.values()),
          "- numbers: `report.json`"]
    path = os.path.join(out, "report.md")
    with open(path, "w") as f:
        f.write("\n".join(L) + "\n")
    js = {k: _jsonable({kk: vv for kk, vv in v.items() if not kk.startswith("_")})
          for k, v in results.items()}
    with open(os.path.join(out, "report.json"), "w") as f:
        json.dump({"info": info, "studies": js, "figures": figures, "timings_s": timings,
                   "elapsed_s": total}, f, indent=1, default=str)
    return path


def _jsonable(x: Any) -> Any:
    """Result objects (fits) to plain JSON-able values; NaN / inf become None."""
    import numpy as np

    from analysis.results import to_jsonable
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else None
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (str, int, bool)) or x is None:
        return x
    return _jsonable(to_jsonable(x))


ANALYSES = {"batch": "analyse_batch", "schedules": "analyse_schedules",
            "mixing": "analyse_mixing", "antimasking": "analyse_antimasking"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m launch.studies",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", default="small", help="demo data scale: small | tiny")
    ap.add_argument("--data", default="data", help="cache directory for data and shards")
    ap.add_argument("--demo_dir", default="", help="use an already built demo data set")
    ap.add_argument("--out", default="runs",
                    help="runs root (the report goes to <out>/studies_report)")
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--quick", action="store_true",
                    help="the reduced sweeps (cpu_quick: a few steps per run) the tests run")
    ap.add_argument("--only", default="", help=f"comma-separated subset of {', '.join(STUDIES)}")
    a = ap.parse_args(argv)
    only = [s.strip() for s in a.only.split(",") if s.strip()] or list(STUDIES)
    bad = [s for s in only if s not in STUDIES]
    if bad:
        print(f"error: --only: unknown studies {', '.join(bad)}; choose from "
              f"{', '.join(STUDIES)}", file=sys.stderr)
        return 2
    if a.parallel < 1:
        print(f"error: --parallel: must be >= 1, got {a.parallel}", file=sys.stderr)
        return 2
    from experiments.demo import SEQ_LEN
    from launch.demo import Laps, launch_sweep, load_demo_data, quiet_absl
    quiet_absl()
    lap = Laps()
    timings = lap.timings
    os.makedirs(a.out, exist_ok=True)
    _say(f"1/3 demo data ({a.scale}) and token shards (cached)")
    data = load_demo_data(a.data, a.scale, SEQ_LEN, a.demo_dir)
    if data is None:
        return 2
    _, shards, manifest = data
    lap("data")
    sweeps: dict[str, str] = {}
    failed_runs: dict[str, list[str]] = {}
    for i, study in enumerate(only):
        exp, full, quick = STUDIES[study]
        kind = quick if a.quick else full
        _say(f"2/3 study {i + 1}/{len(only)} {study}: {exp} sweep {kind} (local executor, "
             f"{a.parallel} at a time; finished runs reused)")
        try:
            sr = launch_sweep(a.out, shards, manifest, kind, a.parallel, experiment=exp)
        except KeyboardInterrupt:
            _say("interrupted: runs were asked to checkpoint; run the same command to resume")
            return 130
        if not sr.ok:
            failed_runs[study] = sr.failed
            _say(f"{len(sr.failed)} run(s) of {sr.name} failed (logs: {a.out}/{sr.name}/"
                 ".launch/logs); analysing what finished")
        sweeps[study] = sr.name
        lap(study)
    _say("3/3 analysis, figures and report")
    import warnings

    import numpy as np

    import analysis as A
    rs = A.load_runs(a.out, warn=False)
    results: dict[str, Any] = {}
    failures: dict[str, str] = {}
    for study, sweep in sweeps.items():
        fn = globals()[ANALYSES[study]]
        try:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore", RuntimeWarning)
                sub = _runs_of(rs, sweep)
                results[study] = fn(sub, SEQ_LEN) if study == "batch" else fn(sub)
        except (RuntimeError, A.AnalysisError, KeyError, ValueError) as e:
            failures[study] = f"{type(e).__name__}: {e}"
            _say(f"{study}: not analysed ({failures[study]})")
    out = os.path.join(a.out, "studies_report")
    os.makedirs(out, exist_ok=True)
    with np.errstate(all="ignore"):
        figures = draw_figures(results, out)
    lap("analysis")
    run_seconds = {}
    for study, sweep in sweeps.items():
        r = rs.sweep(f"^{sweep}$").runs
        if len(r) and "wall_s" in r.columns:
            run_seconds[study] = {"runs": int(len(r)),
                                  "seconds": float(r["wall_s"].astype(float).sum())}
    info = {"runs_root": a.out, "shards": shards, "seq_len": SEQ_LEN, "quick": a.quick,
            "sweeps": sweeps, "not_analysed": failures, "failed_runs": failed_runs,
            "run_seconds": run_seconds}
    path = write_report(out, results, figures, info, timings)
    for k, r in results.items():
        _say(f"{k}: {r['finding']}")
    print(path)
    if failed_runs:
        _say("runs that failed: " + "; ".join(f"{k}: {', '.join(v)}"
                                              for k, v in failed_runs.items()))
    return 1 if failures or failed_runs else 0


if __name__ == "__main__":
    sys.exit(main())
