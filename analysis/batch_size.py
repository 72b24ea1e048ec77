"""Batch-size curves, the critical batch size, and the SDE collapse of loss curves.

Steps to a target loss vs batch B (McCandlish et al. 2018):

    S(B) = S_min (1 + B_noise / B) = S_min + b / B,      b = S_min B_noise,

fitted per group (a model size, or a token horizon) by least squares in log S:
min over (log S_min, log b) of sum_i (log(S_min + b / B_i) - log S_i)^2 (Levenberg-Marquardt,
tolerances 1e-15), which keeps both constants positive.

Critical batch: two definitions, always labelled.
  * "linear_scaling_overhead" (Zhang et al. 2024, "How does critical batch size scale in
    pre-training?"): the batch at which the steps exceed perfect linear scaling from a small
    reference batch B0 by a fraction `overhead` (default 20 %):
        S(B) = (1 + overhead) S(B0) B0 / B   =>   B_crit = ((1 + overhead) S(B0) B0 - b) / S_min.
  * "B_noise" (McCandlish et al.): B_noise = b / S_min, the batch at which S = 2 S_min.
The power law B_crit = k X^e (X = N, or D, rescaled by `scale_unit`) is fitted in log space.

Gradient noise scale from the training logs (`gradient_noise_scale`): the trainer writes, per
metrics record i, the window means trS_i ("gns_trace") and G2_i ("gns_grad_sq") of the unbiased
per-step estimates of tr(Sigma) and |G|^2 (mdm.train_step) and the steps behind them w_i
("gns_steps"). Over a step window,

    B_noise = sum_i w_i trS_i / sum_i w_i G2_i      (tokens)

i.e. the ratio of the mean components (McCandlish et al. 2018 average numerator and
denominator separately): consistent as the window grows, whereas the mean of per-step ratios
E[trS / G2] != E[trS] / E[G2] is biased and heavy tailed (G2 is a noisy difference, often near
0 or negative). Interval: circular moving-block bootstrap over records (blocks of `block`
consecutive records, default ceil(n^(1/3)), to keep short-range correlation between
neighbouring steps), percentile interval of the replicate ratios.

SDE collapse: loss-vs-tokens curves of runs at different physical batches are interpolated
(linearly in log tokens) on a common log-spaced grid over the overlap of their token ranges;
the collapse score of a group of curves is the mean over the grid of std_across_curves / mean
across curves (a coefficient of variation; 0 = perfect collapse). It is computed per group
(default: with and without the SDE reparameterization, `config.train.sde.enabled`).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from scipy import optimize

from .results import BatchSizeFit, CollapseResult, NoiseScaleEstimate
from .stats import AnalysisError, clean_rows, power_law_fit, require_columns


def fit_steps_curve(B, S) -> dict:
    """Fit S(B) = S_min + b / B in log space for one group; returns S_min, b, B_noise, rmse_log."""
    B, S = np.asarray(B, float), np.asarray(S, float)
    ok = np.isfinite(B) & np.isfinite(S) & (B > 0) & (S > 0)
    B, S = B[ok], S[ok]
    if np.unique(B).size < 3:
        raise AnalysisError(f"steps-vs-batch fit: need at least 3 distinct batch sizes, got {np.unique(B).size}")
    lS = np.log(S)

    def res(x):
        return np.logaddexp(x[0], x[1] - np.log(B)) - lS

    def jac(x):
        u1, u2 = x[0], x[1] - np.log(B)
        m = np.maximum(u1, u2)
        p1 = np.exp(u1 - m) / (np.exp(u1 - m) + np.exp(u2 - m))
        return np.column_stack([p1, 1 - p1])

    best = None
    for s0, b0 in ((S.min(), (S * B).min()), (S.min() * 0.5, np.median(S * B)), (S.min() * 0.9, (S * B).max())):
        sol = optimize.least_squares(res, [np.log(s0), np.log(b0)], jac=jac, method="lm",
                                     xtol=1e-15, ftol=1e-15, gtol=1e-15, max_nfev=10000)
        rss = float(sol.fun @ sol.fun)
        if best is None or rss < best[0]:
            best = (rss, sol.x)
    rss, x = best
    S_min, b = float(np.exp(x[0])), float(np.exp(x[1]))
    return {"S_min": S_min, "b": b, "B_noise": b / S_min, "rmse_log": float(np.sqrt(rss / B.size)),
            "n": int(B.size), "batches": sorted(map(float, np.unique(B)))}


def critical_batch(S_min: float, b: float, overhead: float = 0.2, B0: float = 256.0) -> float:
    """B_crit at `overhead` over perfect linear scaling from B0 (see module docstring)."""
    return ((1 + overhead) * (S_min + b / B0) * B0 - b) / S_min


def fit_batch_size(df: pd.DataFrame, batch: str = "batch", steps: str = "steps", group: str = "N",
                   scale: str | None = None, *, overhead: float = 0.2, B0: float = 256.0,
                   scale_unit: float = 1.0, run_id: str = "run_id", level: float = 0.95) -> BatchSizeFit:
    """Fit S(B) per group, the critical batch per group, and its power law in `scale`.

    Args:
      batch, steps: columns (batch in sequences, or tokens: B_crit comes out in the same unit).
      group: the column identifying a curve (e.g. N, or a model name).
      scale: the numeric column for the power law (default: `group` when numeric).
      scale_unit: divide the scale by this before the power law (1e6: N in millions).
      overhead, B0: the critical-batch definition (Zhang et al.: 0.2 and 256 sequences).
    """
    require_columns(df, [batch, steps, group], "fit_batch_size")
    if run_id not in df.columns:
        df = df.assign(**{run_id: [str(i) for i in df.index]})
    kept, excluded = clean_rows(df, [batch, steps], positive=[batch, steps], run_id=run_id)
    scale = scale or (group if pd.api.types.is_numeric_dtype(df[group]) else None)
    groups, warnings = [], []
    for key, g in kept.groupby(group, sort=False):
        try:
            r = fit_steps_curve(g[batch], g[steps])
        except AnalysisError as e:
            warnings.append(f"group {key!r}: {e}; group skipped")
            excluded += [{"run_id": str(x), "reason": f"group {key!r}: {e}"} for x in g[run_id]]
            continue
        r["B_crit"] = float(critical_batch(r["S_min"], r["b"], overhead, B0))
        if not (min(r["batches"]) <= B0 <= max(r["batches"])):
            warnings.append(f"group {key!r}: B0={B0} outside the measured batches; S(B0) extrapolated")
        if r["B_crit"] > max(r["batches"]):
            warnings.append(f"group {key!r}: B_crit={r['B_crit']:.4g} beyond the largest batch measured")
        r["key"] = key.item() if hasattr(key, "item") else key
        if scale is not None:
            r["scale"] = float(g[scale].iloc[0])
        r["run_ids"] = g[run_id].astype(str).tolist()
        groups.append(r)
    if not groups:
        raise AnalysisError(f"fit_batch_size: no group could be fitted; {warnings}")
    cbs_law = noise_law = None
    if scale is not None and len({g["scale"] for g in groups}) >= 2:
        xs = [g["scale"] for g in groups]
        cbs_law = power_law_fit(xs, [g["B_crit"] for g in groups], level, x_scale=scale_unit,
                                x_name=scale, y_name="B_crit")
        noise_law = power_law_fit(xs, [g["B_noise"] for g in groups], level, x_scale=scale_unit,
                                  x_name=scale, y_name="B_noise")
    elif scale is None:
        warnings.append("no numeric scale column: no power law for the critical batch")
    return BatchSizeFit(groups=groups,
                        definition={"name": "linear_scaling_overhead", "overhead": float(overhead),
                                    "B0": float(B0), "also": "B_noise = b / S_min (McCandlish)"},
                        columns={"batch": batch, "steps": steps, "group": group, "scale": scale,
                                 "scale_unit": scale_unit},
                        cbs_law=cbs_law, noise_law=noise_law,
                        run_ids=sorted({r for g in groups for r in g["run_ids"]}),
                        excluded=excluded, warnings=warnings)


def steps_to_target(curves: pd.DataFrame, target: float | dict, loss: str = "bits_text",
                    x: str = "step", run_id: str = "run_id") -> pd.DataFrame:
    """First x (step) at which each run's loss curve reaches `target`, interpolated linearly in
    (log x, loss) between the two eval points that bracket it.

    `target` is one value, or a dict {run_id: value}. Runs that never reach it get reached=False
    and steps=NaN (kept, not dropped). Returns columns run_id, target, steps, reached.
    """
    require_columns(curves, [run_id, x, loss], "steps_to_target")
    out = []
    for rid, g in curves.groupby(run_id, sort=False):
        g = g[[x, loss]].dropna().sort_values(x)
        g = g[g[x] > 0]
        tgt = target.get(rid, np.nan) if isinstance(target, dict) else float(target)
        xs, ys = g[x].to_numpy(float), g[loss].to_numpy(float)
        hit = np.flatnonzero(ys <= tgt)
        if hit.size == 0 or not np.isfinite(tgt):
            out.append({run_id: rid, "target": tgt, "steps": np.nan, "reached": False})
            continue
        i = hit[0]
        if i == 0:
            s = xs[0]
        else:
            x0, x1, y0, y1 = np.log(xs[i - 1]), np.log(xs[i]), ys[i - 1], ys[i]
            s = float(np.exp(x0 + (tgt - y0) * (x1 - x0) / (y1 - y0))) if y1 != y0 else xs[i]
        out.append({run_id: rid, "target": tgt, "steps": float(s), "reached": True})
    return pd.DataFrame(out)


def collapse_score(curves: Sequence[tuple[np.ndarray, np.ndarray]], n_grid: int = 64,
                   skip_frac: float = 0.1) -> tuple[float, list[float]]:
    """Collapse score of curves [(tokens, loss), ...] (see module docstring).

    The grid spans the overlap of the curves' token ranges in log space, after skipping the
    first `skip_frac` of that log range (warm-up transients). Returns (score, [t_lo, t_hi]).
    """
    if len(curves) < 2:
        raise AnalysisError(f"collapse_score: need at least 2 curves, got {len(curves)}")
    cs = []
    for t, y in curves:
        t, y = np.asarray(t, float), np.asarray(y, float)
        ok = np.isfinite(t) & np.isfinite(y) & (t > 0)
        o = np.argsort(t[ok])
        cs.append((np.log(t[ok][o]), y[ok][o]))
    lo = max(c[0][0] for c in cs)
    hi = min(c[0][-1] for c in cs)
    if not hi > lo:
        raise AnalysisError("collapse_score: the curves' token ranges do not overlap")
    lo = lo + skip_frac * (hi - lo)
    grid = np.linspace(lo, hi, n_grid)
    Y = np.stack([np.interp(grid, lt, y) for lt, y in cs])
    score = float(np.mean(Y.std(axis=0) / np.abs(Y.mean(axis=0))))
    return score, [float(np.exp(lo)), float(np.exp(hi))]


def sde_collapse(curves: pd.DataFrame, runs: pd.DataFrame, loss: str = "bits_text",
                 x: str = "tokens", group: str = "config.train.sde.enabled",
                 batch: str = "physical_batch_seqs", run_id: str = "run_id",
                 n_grid: int = 64) -> CollapseResult:
    """Collapse score of loss(tokens) across physical batches, per value of `group`.

    `curves` has one row per eval point (run_id, x, loss); `runs` one row per run (run_id,
    group, batch). Runs lacking the columns or points are excluded with a reason.
    """
    require_columns(curves, [run_id, x, loss], "sde_collapse(curves)")
    require_columns(runs, [run_id, group, batch], "sde_collapse(runs)")
    scores, ncurves, grids, used, excluded, warnings = {}, {}, {}, [], [], []
    for key, g in runs.groupby(group, sort=True):
        label = f"{group}={key}"
        cs = []
        for rid in g[run_id]:
            c = curves[curves[run_id] == rid][[x, loss]].dropna()
            if len(c) < 2:
                excluded.append({"run_id": str(rid), "reason": f"fewer than 2 points of {loss}"})
                continue
            cs.append((rid, c[x].to_numpy(float), c[loss].to_numpy(float)))
        nb = g[g[run_id].isin([c[0] for c in cs])][batch].nunique()
        if len(cs) < 2:
            warnings.append(f"{label}: fewer than 2 curves; no score")
            continue
        if nb < 2:
            warnings.append(f"{label}: all curves share one physical batch; the score says little")
        s, rng = collapse_score([(t, y) for _, t, y in cs], n_grid=n_grid)
        scores[str(key)] = s
        ncurves[str(key)] = len(cs)
        grids[str(key)] = rng + [n_grid]
        used += [str(c[0]) for c in cs]
    if not scores:
        raise AnalysisError(f"sde_collapse: no group of {group} has 2 usable curves; {warnings}")
    return CollapseResult(scores=scores, n_curves=ncurves, grid=grids,
                          columns={"loss": loss, "x": x, "group": group, "batch": batch},
                          run_ids=sorted(used), excluded=excluded, warnings=warnings)


def gradient_noise_scale(metrics: pd.DataFrame, start: float | None = None,
                         stop: float | None = None, *, step: str = "step",
                         trace: str = "gns_trace", grad_sq: str = "gns_grad_sq",
                         weight: str = "gns_steps", block: int | None = None,
                         n_boot: int = 2000, level: float = 0.95, seed: int = 0,
                         run_id: str = "run_id") -> NoiseScaleEstimate:
    """B_noise = sum_i w_i trS_i / sum_i w_i G2_i over records with start <= step <= stop.

    Args:
      metrics: one run's metrics records (e.g. RunSet.metrics filtered to one run_id); rows
        without the components are ignored.
      start, stop: the step window (inclusive; None = open). A record stands for the
        `weight` steps up to its own step.
      weight: steps behind each record (the trainer's window length); when the column is
        missing (older logs: single-step values at logging steps) every record weighs 1.
      block: bootstrap block length in records (default ceil(n^(1/3))); n_boot replicates;
        `level` of the percentile interval; `seed` of the bootstrap.
    """
    require_columns(metrics, [step, trace, grad_sq], "gradient_noise_scale")
    df = metrics
    warnings: list[str] = []
    rids = sorted(map(str, df[run_id].dropna().unique())) if run_id in df.columns else []
    if len(rids) > 1:
        raise AnalysisError(f"gradient_noise_scale: the frame holds {len(rids)} runs "
                            f"({rids[:4]}...); pass one run's metrics")
    cols = [step, trace, grad_sq] + ([weight] if weight in df.columns else [])
    d = df[cols].apply(pd.to_numeric, errors="coerce")
    d = d[np.isfinite(d[trace]) & np.isfinite(d[grad_sq]) & np.isfinite(d[step])]
    if start is not None:
        d = d[d[step] >= start]
    if stop is not None:
        d = d[d[step] <= stop]
    d = d.sort_values(step)
    if len(d) < 2:
        raise AnalysisError(f"gradient_noise_scale: {len(d)} record(s) with {trace} and "
                            f"{grad_sq} in steps [{start}, {stop}]; need at least 2")
    if weight in d.columns:
        w = d[weight].fillna(1.0).to_numpy(float)
    else:
        w = np.ones(len(d))
        warnings.append(f"no {weight!r} column: each record weighs one step (older logs hold "
                        "single-step values at the logging steps only)")
    T, G = d[trace].to_numpy(float), d[grad_sq].to_numpy(float)
    n = len(d)
    block = int(block) if block else int(np.ceil(n ** (1 / 3)))
    if not 1 <= block <= n:
        raise AnalysisError(f"gradient_noise_scale: block must be in [1, {n}], got {block}")

    def ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.inf)

    wT, wG = w * T, w * G
    est = float(ratio(wT.sum(), wG.sum()))
    if not np.isfinite(est):
        warnings.append("mean |G|^2 <= 0 over the window: the gradient signal is not resolved; "
                        "B_noise reported as inf (widen the window)")
    rng = np.random.default_rng(seed)
    n_blocks = -(-n // block)
    starts = rng.integers(0, n, size=(n_boot, n_blocks))
    idx = ((starts[:, :, None] + np.arange(block)) % n).reshape(n_boot, -1)[:, :n]
    reps = ratio(wT[idx].sum(1), wG[idx].sum(1))
    lo, hi = np.percentile(reps, [(1 - level) / 2 * 100, (1 + level) / 2 * 100],
                           method="inverted_cdf")     # no interpolation: inf replicates stay inf
    finite = np.isfinite(reps)
    if not finite.all():
        warnings.append(f"{np.mean(~finite):.1%} of the bootstrap replicates have mean |G|^2 <= 0 "
                        "(counted as B_noise = inf)")
    ok = G != 0                                # the naive per-record ratios, for comparison
    mor = float(np.sum(w[ok] * T[ok] / G[ok]) / w[ok].sum()) if ok.any() else float("nan")
    return NoiseScaleEstimate(
        B_noise=est, ci=[float(lo), float(hi)], level=float(level),
        se=float(reps[finite].std(ddof=1)) if finite.sum() > 1 else float("nan"),
        mean_trace=float(wT.sum() / w.sum()), mean_grad_sq=float(wG.sum() / w.sum()),
        mean_of_ratios=mor, n_records=int(n), n_steps=int(round(w.sum())),
        steps=[float(d[step].iloc[0]), float(d[step].iloc[-1])], block=block, n_boot=int(n_boot),
        columns={"step": step, "trace": trace, "grad_sq": grad_sq, "weight": weight},
        run_ids=rids, warnings=warnings)


__all__ = ["gradient_noise_scale", "fit_batch_size", "fit_steps_curve", "critical_batch", "steps_to_target",
           "collapse_score", "sde_collapse"]
