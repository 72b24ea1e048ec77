"""IsoFLOP profiles (Hoffmann et al. 2022, approach 2).

For each compute budget C (runs of equal training FLOPs, different N), fit a parabola of the
final loss in x = log10 N,

    L(x) = c2 x^2 + c1 x + c0,     vertex x* = -c1 / (2 c2),   N*(C) = 10^x*,

and likewise in log10 D when a tokens column is given (otherwise D*(C) = C / (k N*) with
C = k N D, k = 6 by default). Then fit the power laws N*(C) = k_N C^a and D*(C) = k_D C^b by
least squares in log-log space (t-based intervals).

Quality flags per budget (each also a warning naming the budget):
  * `no_minimum`: c2 <= 0 (the profile is not convex): the budget is dropped;
  * `unbracketed`: the vertex lies outside the sampled range of N (extrapolated vertex);
  * `off_centre`: the vertex lies in the outer `off_centre` fraction of the sampled log-range
    (default 0.2): the grid should be re-centred on it;
  * `too_wide`: the grid spans more than `max_span_decades` decades of N (default 1.5), or the
    parabola leaves systematic curvature that a cubic removes (cubic RSS < half the parabola's,
    with at least 6 points): the quadratic approximation of L(log N) is poor across the grid.
    A parabola whose RMS residual is below `perfect_rtol` (default 1e-6) times the spread of
    the budget's losses counts as a perfect fit (cubic_rss_ratio = 1): both residual sums are
    then rounding noise (~1e-26 on exact data) and their ratio would depend on the BLAS.
Budgets with fewer than `min_points` (default 3) runs are dropped with a warning; fewer than
two usable budgets is an error. Flagged budgets are kept unless `drop_flagged` lists the flag.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from .results import IsoFlopFit
from .stats import AnalysisError, clean_rows, power_law_fit, require_columns


def assign_budgets(C, rtol: float = 0.1) -> np.ndarray:
    """Group compute values into budgets: sorted values closer than a factor (1 + rtol) in a
    chain share a budget, labelled by the group's geometric mean. Returns one label per value."""
    C = np.asarray(C, float)
    if C.size == 0:
        return C
    order = np.argsort(C)
    lc = np.log(C[order])
    breaks = np.flatnonzero(np.diff(lc) > np.log1p(rtol))
    labels = np.empty_like(C)
    start = 0
    for end in list(breaks + 1) + [C.size]:
        idx = order[start:end]
        labels[idx] = float(np.exp(np.mean(np.log(C[idx]))))
        start = end
    return labels


def _parabola_vertex(x: np.ndarray, y: np.ndarray):
    coeffs = np.polyfit(x, y, 2)
    c2, c1, c0 = coeffs
    if c2 <= 0:
        return coeffs, float("nan"), float("nan"), float(np.sum((np.polyval(coeffs, x) - y) ** 2))
    xv = -c1 / (2 * c2)
    return coeffs, float(xv), float(np.polyval(coeffs, xv)), float(np.sum((np.polyval(coeffs, x) - y) ** 2))


def fit_isoflop(df: pd.DataFrame, loss: str = "loss", n: str = "N", d: str | None = "D",
                budget: str = "C", run_id: str = "run_id", *, budget_rtol: float = 0.1,
                k: float = 6.0, min_points: int = 3, off_centre: float = 0.2,
                max_span_decades: float = 1.5, drop_flagged: Sequence[str] = (),
                level: float = 0.95, perfect_rtol: float = 1e-6) -> IsoFlopFit:
    """Approach-2 fit over a frame with one row per run (see the module docstring).

    Args:
      loss, n, d, budget: column names (d=None: D* = C / (k N*)).
      budget_rtol: runs whose `budget` values chain within a factor 1 + rtol form one budget
        (exact nominal budgets are grouped as they are).
      drop_flagged: flags ("unbracketed", "off_centre", "too_wide") whose budgets are excluded.
    """
    cols = [loss, n, budget] + ([d] if d else [])
    require_columns(df, cols, "fit_isoflop")
    if run_id not in df.columns:
        df = df.assign(**{run_id: [str(i) for i in df.index]})
    kept, excluded = clean_rows(df, cols, positive=[n, budget] + ([d] if d else []), run_id=run_id)
    kept = kept.assign(_budget=assign_budgets(kept[budget].to_numpy(float), budget_rtol))
    warnings: list[str] = []
    rows, used = [], []
    for C, g in kept.groupby("_budget", sort=True):
        label = f"budget C={C:.3g}"
        if len(g) < min_points:
            warnings.append(f"{label}: only {len(g)} run(s) (< {min_points}); budget dropped")
            excluded += [{"run_id": str(r), "reason": f"{label} has < {min_points} runs"} for r in g[run_id]]
            continue
        x = np.log10(g[n].to_numpy(float))
        y = g[loss].to_numpy(float)
        if np.unique(x).size < 3:
            warnings.append(f"{label}: fewer than 3 distinct model sizes; budget dropped")
            excluded += [{"run_id": str(r), "reason": f"{label}: < 3 distinct N"} for r in g[run_id]]
            continue
        coeffs, xv, lv, rss2 = _parabola_vertex(x, y)
        flags = []
        if not np.isfinite(xv):
            flags.append("no_minimum")
            warnings.append(f"{label}: the loss is not convex in log N (no minimum); budget dropped")
            excluded += [{"run_id": str(r), "reason": f"{label}: no parabola minimum"} for r in g[run_id]]
            continue
        lo, hi = x.min(), x.max()
        pos = (xv - lo) / (hi - lo)
        span = hi - lo
        cubic_ratio = float("nan")
        if len(g) >= 6:
            spread = float(np.ptp(y))
            if rss2 <= len(g) * (perfect_rtol * spread) ** 2:   # RMS residual <= rtol * spread
                cubic_ratio = 1.0
            else:
                c3 = np.polyfit(x, y, 3)
                rss3 = float(np.sum((np.polyval(c3, x) - y) ** 2))
                cubic_ratio = rss3 / rss2
        if pos < 0 or pos > 1:
            flags.append("unbracketed")
            warnings.append(f"{label}: vertex N*={10 ** xv:.3g} lies outside the sampled N range "
                            f"[{10 ** lo:.3g}, {10 ** hi:.3g}] (extrapolated)")
        elif pos < off_centre or pos > 1 - off_centre:
            flags.append("off_centre")
            warnings.append(f"{label}: vertex at {pos:.0%} of the sampled log N range (off-centre; "
                            "re-centre the grid)")
        if span > max_span_decades or (np.isfinite(cubic_ratio) and cubic_ratio < 0.5):
            flags.append("too_wide")
            warnings.append(f"{label}: grid spans {span:.2f} decades of N (max {max_span_decades}); "
                            f"cubic/parabola RSS ratio {cubic_ratio:.2f}: parabola may be biased")
        row = {"C": float(C), "n_points": int(len(g)), "coeffs": [float(c) for c in coeffs],
               "N_opt": float(10 ** xv), "loss_opt": lv, "log10N_range": [float(lo), float(hi)],
               "vertex_position": float(pos), "span_decades": float(span),
               "cubic_rss_ratio": cubic_ratio, "flags": flags,
               "run_ids": [str(r) for r in g[run_id]]}
        if d:
            xd = np.log10(g[d].to_numpy(float))
            cd, xdv, _, _ = _parabola_vertex(xd, y)
            row["coeffs_D"] = [float(c) for c in cd]
            row["D_opt"] = float(10 ** xdv) if np.isfinite(xdv) else float(C / (k * 10 ** xv))
            if not np.isfinite(xdv):
                warnings.append(f"{label}: no minimum in log D; D* = C / ({k} N*) used")
        else:
            row["D_opt"] = float(C / (k * 10 ** xv))
        if set(flags) & set(drop_flagged):
            excluded += [{"run_id": str(r), "reason": f"{label}: flagged {flags}"} for r in g[run_id]]
            row["dropped"] = True
        else:
            row["dropped"] = False
            used += row["run_ids"]
        rows.append(row)
    good = [r for r in rows if not r["dropped"]]
    if len(good) < 2:
        raise AnalysisError(f"fit_isoflop: need at least 2 usable budgets, got {len(good)} "
                            f"(budgets found: {kept['_budget'].nunique()}); warnings: {warnings}")
    Cs = np.array([r["C"] for r in good])
    n_law = power_law_fit(Cs, [r["N_opt"] for r in good], level, x_name="C", y_name="N_opt")
    d_law = power_law_fit(Cs, [r["D_opt"] for r in good], level, x_name="C", y_name="D_opt")
    if len(good) < 3:
        warnings.append("only 2 budgets: the exponents have no error estimate")
    return IsoFlopFit(budgets=rows, n_opt_law=n_law, d_opt_law=d_law, run_ids=sorted(used),
                      columns={"loss": loss, "N": n, "D": d, "budget": budget},
                      flops_per_param_token=float(k), excluded=excluded, warnings=warnings)


__all__ = ["fit_isoflop", "assign_budgets"]
