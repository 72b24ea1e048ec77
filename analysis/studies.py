"""Small statistics the paper's studies need on top of the fitters: seed intervals, the variance
of the training-loss estimator from a run's per-step log, schedule and arm comparisons, and
where a set of loss curves stops collapsing. Pure numpy / scipy over DataFrames (no JAX).

Seed interval (`seed_interval`) of values x_1..x_n (one per seed):

    mean +- t_{(1+level)/2, n-1} * s / sqrt(n),      s = sample standard deviation (ddof 1);

n = 1 gives the value with an interval of (nan, nan) (no spread measured).

Difference of two arms (`diff_interval`, Welch): d = mean(a) - mean(b),
se = sqrt(s_a^2 / n_a + s_b^2 / n_b), degrees of freedom by Welch-Satterthwaite,
d +- t_{(1+level)/2, df} se.

Loss-estimator variance from a run's per-step training losses l_s (`loss_estimator_variance`):
the estimator l_s = L(theta_s) + e_s with independent noise e_s of variance sigma^2, and a
slowly varying L, gives l_{s+1} - l_s = (L(theta_{s+1}) - L(theta_s)) + e_{s+1} - e_s, so

    sigma^2_hat = Var_s(l_{s+1} - l_s) / 2          (sample variance, ddof 1)

removes a locally linear trend (its mean difference) and is unbiased when the trend's curvature
is negligible over the window. The window is a fraction [start, stop] of the run's steps (the
warm-up and the decay are left out by default). Only consecutive logged steps count
(metrics.jsonl must log every step: logging.every_steps = 1).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from .stats import AnalysisError, require_columns


def seed_interval(values: Sequence[float], level: float = 0.95) -> dict[str, float]:
    """{mean, lo, hi, sd, se, n} of `values` (one per seed; see the module docstring)."""
    x = np.asarray([v for v in values if np.isfinite(v)], float)
    if x.size == 0:
        raise AnalysisError("seed_interval: no finite value")
    if not 0 < level < 1:
        raise AnalysisError(f"seed_interval: level must be in (0, 1), got {level}")
    m = float(x.mean())
    if x.size == 1:
        return {"mean": m, "lo": float("nan"), "hi": float("nan"), "sd": float("nan"),
                "se": float("nan"), "n": 1}
    sd = float(x.std(ddof=1))
    se = sd / np.sqrt(x.size)
    h = float(stats.t.ppf((1 + level) / 2, x.size - 1)) * se
    return {"mean": m, "lo": m - h, "hi": m + h, "sd": sd, "se": float(se), "n": int(x.size)}


def diff_interval(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> dict[str, float]:
    """Welch interval of mean(a) - mean(b): {diff, lo, hi, se, df} (module docstring); with
    fewer than 2 values in either arm the interval is (nan, nan)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.size == 0 or b.size == 0:
        raise AnalysisError("diff_interval: an arm has no value")
    d = float(a.mean() - b.mean())
    if a.size < 2 or b.size < 2:
        return {"diff": d, "lo": float("nan"), "hi": float("nan"), "se": float("nan"),
                "df": float("nan")}
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    se = float(np.sqrt(va + vb))
    if se == 0:
        return {"diff": d, "lo": d, "hi": d, "se": 0.0, "df": float("inf")}
    df = float((va + vb) ** 2 / (va ** 2 / (a.size - 1) + vb ** 2 / (b.size - 1)))
    h = float(stats.t.ppf((1 + level) / 2, df)) * se
    return {"diff": d, "lo": d - h, "hi": d + h, "se": se, "df": df}


def loss_estimator_variance(metrics: pd.DataFrame, loss: str = "loss", step: str = "step",
                            start: float = 0.25, stop: float = 0.8) -> dict[str, float]:
    """sigma^2_hat = Var(l_{s+1} - l_s) / 2 over the steps in [start, stop] x the last step
    (module docstring); one run's metrics. Returns {variance, n_diffs, steps: [lo, hi]}."""
    require_columns(metrics, [step, loss], "loss_estimator_variance")
    if not 0 <= start < stop <= 1:
        raise AnalysisError(f"loss_estimator_variance: need 0 <= start < stop <= 1, got "
                            f"{start}, {stop}")
    d = metrics[[step, loss]].apply(pd.to_numeric, errors="coerce").dropna()
    d = d.drop_duplicates(step, keep="last").sort_values(step)
    last = float(d[step].max()) if len(d) else 0.0
    d = d[(d[step] >= start * last) & (d[step] <= stop * last)]
    s, y = d[step].to_numpy(float), d[loss].to_numpy(float)
    consecutive = np.diff(s) == 1
    diffs = np.diff(y)[consecutive]
    if diffs.size < 2:
        raise AnalysisError(f"loss_estimator_variance: {diffs.size} consecutive step pair(s) in "
                            f"steps [{start * last:g}, {stop * last:g}]; log every step "
                            "(logging.every_steps=1) and train longer")
    return {"variance": float(diffs.var(ddof=1) / 2), "n_diffs": int(diffs.size),
            "steps": [float(s[0]), float(s[-1])]}


def compare_groups(values: Mapping[str, Sequence[float]], lower_is_better: bool = True,
                   level: float = 0.95) -> dict:
    """The best group by seed mean, the runner-up, the margin between them and its Welch
    interval: {groups: {name: seed_interval}, best, runner_up, margin, margin_se,
    margin_interval, resolved} where margin = |mean(best) - mean(runner_up)| and `resolved`
    is True when the margin's interval excludes 0 (None when it cannot be computed)."""
    if len(values) < 2:
        raise AnalysisError(f"compare_groups: need at least 2 groups, got {len(values)}")
    groups = {k: seed_interval(v, level) for k, v in values.items()}
    order = sorted(groups, key=lambda k: groups[k]["mean"], reverse=not lower_is_better)
    best, second = order[0], order[1]
    di = diff_interval(values[second], values[best], level)
    sign = 1.0 if lower_is_better else -1.0
    lo, hi = sorted((sign * di["lo"], sign * di["hi"]))
    resolved = None if not np.isfinite(lo) else bool(lo > 0)
    return {"groups": groups, "best": best, "runner_up": second, "order": order,
            "margin": sign * di["diff"], "margin_se": di["se"], "margin_interval": [lo, hi],
            "resolved": resolved}


def relative_spread(values: Sequence[float]) -> float:
    """std / |mean| (ddof 0) of final losses across a set of runs (e.g. batch sizes)."""
    x = np.asarray(values, float)
    if x.size < 2:
        raise AnalysisError("relative_spread: need at least 2 values")
    return float(x.std() / abs(x.mean()))


def collapse_breakdown(final: Mapping[float, Sequence[float]], ref: float | None = None,
                       z: float = 2.0) -> dict:
    """Where a set of curves at batches B stops collapsing: the smallest batch whose final loss
    exceeds the reference batch's (default: the smallest) by more than `z` standard errors of
    the difference (seeds), or None. `final`: {batch: [final loss per seed]}.
    Returns {ref, breaks_at, judged, excess: {batch: {diff, se, z}}}; with one seed per batch
    there is no standard error: z is nan, breaks_at None and judged False."""
    if len(final) < 2:
        raise AnalysisError("collapse_breakdown: need at least 2 batch sizes")
    bs = sorted(final)
    ref = bs[0] if ref is None else ref
    if ref not in final:
        raise AnalysisError(f"collapse_breakdown: reference batch {ref} not measured")
    r = np.asarray(final[ref], float)
    out, breaks = {}, None
    for b in bs:
        if b <= ref:
            continue
        x = np.asarray(final[b], float)
        d = float(x.mean() - r.mean())
        se = float(np.sqrt((x.var(ddof=1) / x.size if x.size > 1 else 0.0)
                           + (r.var(ddof=1) / r.size if r.size > 1 else 0.0)))
        zz = d / se if se > 0 else float("nan")
        out[b] = {"diff": d, "se": se, "z": zz}
        if breaks is None and se > 0 and zz > z:
            breaks = b
    judged = all(v["se"] > 0 for v in out.values())
    return {"ref": ref, "breaks_at": breaks, "judged": judged, "excess": out, "z": z}


def bootstrap_steps_fit(batch: Sequence[float], steps: Sequence[float], overhead: float = 0.2,
                        B0: float | None = None, n_boot: int = 400, level: float = 0.95,
                        seed: int = 0) -> dict:
    """Fit S(B) = S_min + b / B (batch_size.fit_steps_curve) to runs at several batches (seeds
    repeat a batch), with the critical batch under both definitions,

        B_noise = b / S_min,      B_crit = ((1 + overhead) S(B0) B0 - b) / S_min,

    and percentile intervals from a bootstrap that resamples the runs within each batch (with
    replacement; the batches stay fixed; (nan, nan) when every batch has one run). B0 defaults
    to the smallest batch. Replicates whose fit
    fails are dropped and counted. Returns {S_min, b, B_noise, B_crit, B0, ci: {B_noise, B_crit},
    n_boot, n_failed, rmse_log}."""
    from .batch_size import critical_batch, fit_steps_curve
    B, S = np.asarray(batch, float), np.asarray(steps, float)
    ok = np.isfinite(B) & np.isfinite(S)
    B, S = B[ok], S[ok]
    fit = fit_steps_curve(B, S)
    B0 = float(B.min()) if B0 is None else float(B0)
    out = {"S_min": fit["S_min"], "b": fit["b"], "B_noise": fit["B_noise"],
           "B_crit": float(critical_batch(fit["S_min"], fit["b"], overhead, B0)), "B0": B0,
           "overhead": overhead, "rmse_log": fit["rmse_log"], "n": fit["n"]}
    rng = np.random.default_rng(seed)
    idx = {b: np.flatnonzero(B == b) for b in np.unique(B)}
    reps, failed = [], 0
    for _ in range(n_boot):
        take = np.concatenate([rng.choice(ix, size=ix.size) for ix in idx.values()])
        try:
            f = fit_steps_curve(B[take], S[take])
        except AnalysisError:
            failed += 1
            continue
        reps.append((f["B_noise"], critical_batch(f["S_min"], f["b"], overhead, B0)))
    q = [(1 - level) / 2 * 100, (1 + level) / 2 * 100]
    r = np.asarray(reps, float).reshape(-1, 2)
    resampled = any(ix.size > 1 for ix in idx.values())   # one run per batch: nothing to draw
    out["ci"] = {k: [float(v) for v in np.percentile(r[:, i], q)] if len(r) and resampled
                 else [float("nan")] * 2 for i, k in enumerate(("B_noise", "B_crit"))}
    out.update(n_boot=int(n_boot), n_failed=int(failed), level=level)
    return out


ARMS = ("independent", "complementary")


def antimasking_summary(runs: pd.DataFrame, metrics: pd.DataFrame, level: float = 0.95,
                        modalities: Sequence[str] = ("text", "image", "audio"),
                        start: float = 0.25, stop: float = 0.8) -> dict:
    """The anti-masking study from its finished runs (one row per run: run_id,
    config.objective.complementary, config.seed, bits_<m>, D, D_processed) and their per-step
    metrics (run_id, step, loss):

      * per run, the training-loss estimator variance (`loss_estimator_variance`, steps in
        [start, stop] of the run); per arm, the seed mean with its t-interval;
      * the variance ratio complementary / independent paired by seed: the geometric mean
        exp(mean_s log(v_c(s) / v_i(s))) with the t-interval of the log ratios, exponentiated;
      * per modality, each arm's final eval bits (seed interval) and the Welch interval of
        complementary minus independent.
    """
    require_columns(runs, ["run_id", "config.objective.complementary", "config.seed"],
                    "antimasking_summary")
    arm = np.where(runs["config.objective.complementary"].astype(bool), ARMS[1], ARMS[0])
    seeds = sorted(int(s) for s in runs["config.seed"].unique())
    var: dict[str, dict[int, float]] = {a: {} for a in ARMS}
    for rid, a, s in zip(runs["run_id"], arm, runs["config.seed"].astype(int)):
        v = loss_estimator_variance(metrics[metrics["run_id"] == rid], start=start, stop=stop)
        var[a][int(s)] = v["variance"]
    paired = [s for s in seeds if s in var[ARMS[0]] and s in var[ARMS[1]]]
    if not paired:
        raise AnalysisError("antimasking_summary: no seed has both arms")
    li = seed_interval([np.log(var[ARMS[1]][s] / var[ARMS[0]][s]) for s in paired], level)
    ratio = {k: float(np.exp(li[k])) if np.isfinite(li[k]) else float("nan")
             for k in ("mean", "lo", "hi")} | {"n": li["n"]}
    mods = [m for m in modalities if f"bits_{m}" in runs.columns]
    final = {a: {m: runs.loc[arm == a, f"bits_{m}"].astype(float).tolist() for m in mods}
             for a in ARMS}
    return {
        "seeds": seeds, "runs": int(len(runs)),
        "runs_per_point": int(min((arm == a).sum() for a in ARMS)),
        "variance": {a: {"per_seed": v, **seed_interval(list(v.values()), level)}
                     for a, v in var.items() if v},
        "variance_ratio": ratio, "final_values": final,
        "final": {a: {m: seed_interval(v, level) for m, v in d.items()} for a, d in final.items()
                  if any(d.values())},
        "final_diff": {m: diff_interval(final[ARMS[1]][m], final[ARMS[0]][m], level)
                       for m in mods},
        "tokens_processed": float(runs["D_processed"].iloc[0]) if "D_processed" in runs else
        float("nan"),
        "data_tokens": {a: float(runs.loc[arm == a, "D"].iloc[0]) for a in ARMS
                        if "D" in runs and (arm == a).any()},
        "window": [start, stop], "level": level}


__all__ = ["antimasking_summary", "bootstrap_steps_fit", "seed_interval", "diff_interval", "loss_estimator_variance", "compare_groups",
           "relative_spread", "collapse_breakdown"]
