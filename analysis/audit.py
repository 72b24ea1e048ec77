"""Extrapolation audits: refit each law without its largest scale and predict what was held out.

For every law the held-out set is the largest compute budget (or the largest model size), the
fit uses everything else, and each held-out value is compared with the interval the reduced fit
claimed for it:

  * Chinchilla law (`audit_chinchilla`): hold out the runs of the largest budget (budgets
    grouped as in `isoflop.assign_budgets`) or the largest N; predict their loss; interval =
    bootstrap percentile interval of the prediction (parameter uncertainty only, which is what
    the fit claims; coverage below the nominal level says the claim is too narrow).
  * IsoFLOP (`audit_isoflop`): hold out the largest budget; predict its N* and D* from the
    power laws of the others; interval = t-based prediction interval (mean band widened by the
    scatter of the vertices about the law); actual = the held-out budget's own parabola vertex.
  * Critical batch (`audit_batch_size`): hold out the largest group (N); predict its B_crit
    from the power law of the others (prediction interval, as above).
  * Mixing law (`audit_mixing`): a mixing law has no scale axis, so it is audited where it
    extrapolates in mixture space: hold out the `holdout_frac` of mixtures farthest (L2) from
    the centroid of the mixtures, refit, predict; interval = bootstrap (over runs) percentile
    interval of the prediction.
Each audit reports per held-out item: actual, predicted, lo, hi, relative error, inside; and
overall: coverage, mean and max absolute relative error.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from .batch_size import fit_batch_size
from .chinchilla import fit_chinchilla
from .isoflop import assign_budgets, fit_isoflop
from .mixing import fit_mixing_law
from .results import AuditResult
from .stats import AnalysisError, percentile_interval, require_columns


def _summarise(law, holdout, rows, level, fit, warnings) -> AuditResult:
    rel = np.array([r["rel_error"] for r in rows], float)
    inside = np.array([r["inside"] for r in rows], bool)
    return AuditResult(law=law, holdout=holdout, rows=rows,
                       coverage=float(inside.mean()) if len(rows) else float("nan"),
                       mean_abs_rel_error=float(np.mean(np.abs(rel))) if len(rows) else float("nan"),
                       max_abs_rel_error=float(np.max(np.abs(rel))) if len(rows) else float("nan"),
                       claimed_level=float(level), fit=fit.to_dict(), warnings=list(warnings))


def _row(key, actual, pred, lo, hi, **extra) -> dict:
    return {"key": str(key), "actual": float(actual), "predicted": float(pred), "lo": float(lo),
            "hi": float(hi), "rel_error": float((pred - actual) / actual),
            "inside": bool(lo <= actual <= hi), **extra}


def _largest_split(df: pd.DataFrame, by: str, rtol: float = 0.1, min_heldout: int = 5):
    """(train mask, held-out mask, threshold, note): the largest `by` group (values chained
    within a factor 1 + rtol, as budgets); when that group has fewer than `min_heldout` rows
    (continuous C or N, e.g. approach-3 data), the `min_heldout` largest rows instead."""
    v = df[by].to_numpy(float)
    labels = assign_budgets(v, rtol)
    top = np.nanmax(labels)
    hold = labels == top
    note = None
    if hold.sum() < min_heldout and len(v) > 2 * min_heldout:
        thr = np.sort(v)[-min_heldout]
        hold = v >= thr
        top = float(thr)
        note = (f"the largest {by} group had fewer than {min_heldout} rows: held out the "
                f"{int(hold.sum())} rows with {by} >= {thr:.4g}")
    if hold.all():
        raise AnalysisError(f"audit: every row has the same {by}; nothing to extrapolate to")
    return ~hold, hold, float(top), note


def audit_chinchilla(df: pd.DataFrame, loss: str = "loss", n: str = "N", d: str = "D",
                     by: str = "C", run_id: str = "run_id", level: float = 0.95,
                     n_bootstrap: int = 200, min_heldout: int = 5, **fit_kwargs) -> AuditResult:
    """Fit the Chinchilla law without the largest `by` (C or N) group; predict it (see module doc).

    When the largest group has fewer than `min_heldout` runs, the `min_heldout` largest are held
    out (and a warning says so)."""
    require_columns(df, [loss, n, d, by], "audit_chinchilla")
    if run_id not in df.columns:
        df = df.assign(**{run_id: [str(i) for i in df.index]})
    df = df[np.isfinite(pd.to_numeric(df[by], errors="coerce"))]
    train_mask, hold_mask, top, note = _largest_split(df, by, min_heldout=min_heldout)
    train, hold = df[train_mask], df[hold_mask]
    fit = fit_chinchilla(train, loss=loss, n=n, d=d, run_id=run_id, n_bootstrap=n_bootstrap,
                         ci_level=level, **fit_kwargs)
    Nh, Dh, Lh = (hold[c].to_numpy(float) for c in (n, d, loss))
    pred = fit.predict(Nh, Dh)
    lo, hi = fit.predict_interval(Nh, Dh, level)
    rows = [_row(r, a, p, l, h, N=float(nn), D=float(dd))
            for r, a, p, l, h, nn, dd in zip(hold[run_id], Lh, pred, lo, hi, Nh, Dh)]
    return _summarise("chinchilla", {"by": by, "value": top, "n_heldout": len(hold),
                                     "n_train": len(train)}, rows, level, fit,
                      fit.warnings + ([note] if note else []))


def audit_isoflop(df: pd.DataFrame, loss: str = "loss", n: str = "N", d: str | None = "D",
                  budget: str = "C", run_id: str = "run_id", level: float = 0.95,
                  **fit_kwargs) -> AuditResult:
    """Fit approach 2 without the largest budget; predict its N*, D* (see module doc)."""
    full = fit_isoflop(df, loss=loss, n=n, d=d, budget=budget, run_id=run_id, level=level, **fit_kwargs)
    good = [b for b in full.budgets if not b.get("dropped")]
    if len(good) < 4:
        raise AnalysisError(f"audit_isoflop: need at least 4 usable budgets (3 to fit with an error "
                            f"estimate, 1 to hold out), got {len(good)}")
    top = max(good, key=lambda b: b["C"])
    hold_ids = set(top["run_ids"])
    if run_id not in df.columns:
        df = df.assign(**{run_id: [str(i) for i in df.index]})
    reduced = fit_isoflop(df[~df[run_id].astype(str).isin(hold_ids)], loss=loss, n=n, d=d,
                          budget=budget, run_id=run_id, level=level, **fit_kwargs)
    rows = []
    for name, law, actual in (("N_opt", reduced.n_opt_law, top["N_opt"]),
                              ("D_opt", reduced.d_opt_law, top["D_opt"])):
        lo, hi = law.prediction_interval(top["C"], level)
        rows.append(_row(name, actual, law.predict(top["C"]), lo, hi, C=top["C"]))
    return _summarise("isoflop", {"by": "budget", "value": top["C"], "n_heldout": len(hold_ids)},
                      rows, level, reduced, reduced.warnings)


def audit_batch_size(df: pd.DataFrame, batch: str = "batch", steps: str = "steps", group: str = "N",
                     scale: str | None = None, level: float = 0.95, **fit_kwargs) -> AuditResult:
    """Fit the critical-batch power law without the largest group; predict its B_crit."""
    full = fit_batch_size(df, batch=batch, steps=steps, group=group, scale=scale, level=level, **fit_kwargs)
    if full.cbs_law is None or len(full.groups) < 4:
        raise AnalysisError(f"audit_batch_size: need a numeric scale and at least 4 groups, got "
                            f"{len(full.groups)}")
    top = max(full.groups, key=lambda g: g["scale"])
    keys = [g["key"] for g in full.groups if g is not top]
    reduced = fit_batch_size(df[df[group].isin(keys)], batch=batch, steps=steps, group=group,
                             scale=scale, level=level, **fit_kwargs)
    law = reduced.cbs_law
    lo, hi = law.prediction_interval(top["scale"], level)
    rows = [_row(top["key"], top["B_crit"], law.predict(top["scale"]), lo, hi, scale=top["scale"])]
    return _summarise("critical_batch", {"by": full.columns["scale"], "value": top["scale"],
                                         "n_heldout": len(top["run_ids"])}, rows, level, reduced,
                      reduced.warnings)


def audit_mixing(df: pd.DataFrame, target: str, domains: Sequence[str], law: str = "exponential",
                 holdout_frac: float = 0.2, run_id: str = "run_id", level: float = 0.95,
                 n_bootstrap: int = 100, seed: int = 0) -> AuditResult:
    """Hold out the mixtures farthest from the centroid; refit; predict them (see module doc)."""
    require_columns(df, list(domains) + [target], "audit_mixing")
    if run_id not in df.columns:
        df = df.assign(**{run_id: [str(i) for i in df.index]})
    df = df.dropna(subset=list(domains) + [target])
    R = df[list(domains)].to_numpy(float)
    dist = np.linalg.norm(R - R.mean(axis=0), axis=1)
    k = max(1, int(round(holdout_frac * len(df))))
    if len(df) - k < len(domains) + 3:
        raise AnalysisError(f"audit_mixing: {len(df)} mixtures are too few to hold out {k}")
    order = np.argsort(-dist)
    hold = np.zeros(len(df), bool)
    hold[order[:k]] = True
    train, test = df[~hold], df[hold]
    fit = fit_mixing_law(train, target, domains, law=law, run_id=run_id)
    Rt = test[list(domains)].to_numpy(float)
    pred = fit.predict(Rt)
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_bootstrap):
        idx = rng.integers(0, len(train), len(train))
        try:
            boots.append(fit_mixing_law(train.iloc[idx].assign(**{run_id: np.arange(len(idx)).astype(str)}),
                                        target, domains, law=law, run_id=run_id).predict(Rt))
        except AnalysisError:
            continue
    warnings = list(fit.warnings)
    if len(boots) < max(10, n_bootstrap // 2):
        raise AnalysisError(f"audit_mixing: only {len(boots)} bootstrap refits succeeded")
    lo, hi = percentile_interval(np.array(boots), level)
    rows = [_row(r, a, p, l, h) for r, a, p, l, h in
            zip(test[run_id], test[target].to_numpy(float), pred, lo, hi)]
    return _summarise(f"mixing_{law}", {"by": "distance_from_centroid", "value": float(dist[order[k - 1]]),
                                        "n_heldout": int(k)}, rows, level, fit, warnings)


__all__ = ["audit_chinchilla", "audit_isoflop", "audit_batch_size", "audit_mixing"]
