"""Data-mixing laws: the loss of a target (a modality, a validation domain) as a function of the
mixing ratios r = (r_1, ..., r_J) of the training mixture.

* exponential (Ye et al. 2024, "Data mixing laws"):  L(r) = c + k exp(sum_j t_j r_j).
  On the simplex (sum_j r_j = 1), k and a common shift of the t_j are the same degree of
  freedom (k e^{t.r} = e^{(t + log k 1).r}), so when every row sums to 1 (within 1e-2) k is
  fixed to 1 and absorbed into t; otherwise log k is fitted too.
  Fit: least squares in loss space (scipy least_squares, trf, tolerances 1e-12), from starts
  that put c at several levels below min L and take t (and log k) from the linear regression
  of log(L - c) on r; the best of the refined starts is kept.
* linear baseline:  L(r) = c + sum_j t_j r_j  (ordinary least squares, minimum-norm).

`optimal_mixture` minimises sum_m w_m L_m(r) over the simplex (with per-domain bounds) under
fitted laws: SLSQP from the simplex vertices, its centre and Dirichlet draws, best kept.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import optimize

from .results import MixingFit, OptimalMixture
from .stats import AnalysisError, clean_rows, require_columns, spearman


def _metrics(y, yhat) -> dict:
    y, yhat = np.asarray(y, float), np.asarray(yhat, float)
    return {"n": int(y.size), "rmse": float(np.sqrt(np.mean((y - yhat) ** 2))),
            "spearman": spearman(y, yhat) if y.size > 2 else float("nan")}


def _prepare(df: pd.DataFrame, target: str, domains: Sequence[str], run_id: str, what: str):
    require_columns(df, list(domains) + [target], what)
    if len(domains) < 2:
        raise AnalysisError(f"{what}: need at least 2 domain (ratio) columns, got {list(domains)}")
    if run_id not in df.columns:
        df = df.assign(**{run_id: [str(i) for i in df.index]})
    kept, excluded = clean_rows(df, list(domains) + [target], run_id=run_id)
    R = kept[list(domains)].to_numpy(float)
    if (R < -1e-12).any():
        raise AnalysisError(f"{what}: negative mixing ratios in {list(domains)}")
    return kept, excluded, R, kept[target].to_numpy(float)


def _exp_fit_arrays(R: np.ndarray, y: np.ndarray, fit_k: bool):
    n, J = R.shape
    if n < J + 2:
        raise AnalysisError(f"exponential mixing law: {J + 1 + fit_k} parameters, only {n} mixtures")
    span = max(float(y.max() - y.min()), 1e-6)

    def unpack(x):
        c, logk, t = x[0], (x[1] if fit_k else 0.0), x[1 + fit_k:]
        return c, logk, t

    def resid(x):
        c, logk, t = unpack(x)
        return c + np.exp(logk + R @ t) - y

    def jac(x):
        c, logk, t = unpack(x)
        e = np.exp(logk + R @ t)
        cols = [np.ones(n)] + ([e] if fit_k else []) + [e[:, None] * R]
        return np.column_stack(cols)

    best = None
    for frac in (0.02, 0.1, 0.3, 1.0, 3.0):
        c0 = float(y.min() - frac * span)
        X = np.column_stack(([np.ones(n)] if fit_k else []) + [R])
        coef, *_ = np.linalg.lstsq(X, np.log(y - c0), rcond=None)
        x0 = np.r_[c0, coef]
        try:
            sol = optimize.least_squares(resid, x0, jac=jac, method="trf", xtol=1e-12, ftol=1e-12,
                                         gtol=1e-12, max_nfev=5000)
        except (ValueError, FloatingPointError):
            continue
        rss = float(sol.fun @ sol.fun)
        if np.isfinite(rss) and (best is None or rss < best[0]):
            best = (rss, sol.x)
    if best is None:
        raise AnalysisError("exponential mixing law: the fit failed from every start")
    c, logk, t = unpack(best[1])
    return {"c": float(c), "k": float(np.exp(logk)), "t": [float(v) for v in t],
            "k_fitted": bool(fit_k)}


def fit_mixing_law(df: pd.DataFrame, target: str, domains: Sequence[str], law: str = "exponential",
                   run_id: str = "run_id", test: pd.DataFrame | None = None) -> MixingFit:
    """Fit L_target(r) over mixtures (one row per run); `test` (same columns) scores held-out mixtures.

    law: "exponential" (Ye et al. 2024) or "linear". Scores: RMSE and Spearman rank correlation
    between observed and predicted losses, on the training mixtures and on `test`.
    """
    if law not in ("exponential", "linear"):
        raise AnalysisError(f"unknown mixing law {law!r}; use 'exponential' or 'linear'")
    kept, excluded, R, y = _prepare(df, target, domains, run_id, f"fit_mixing_law({target})")
    warnings = []
    sums = R.sum(axis=1)
    on_simplex = bool(np.all(np.abs(sums - 1) < 1e-2))
    if not on_simplex:
        warnings.append("mixing ratios do not all sum to 1; k (exponential) / c (linear) fitted freely")
    if law == "exponential":
        params = _exp_fit_arrays(R, y, fit_k=not on_simplex)
    else:
        X = np.column_stack([np.ones(len(y)), R])
        coef, *_ = np.linalg.lstsq(X, y, rcond=None)
        params = {"c": float(coef[0]), "t": [float(v) for v in coef[1:]]}
    fit = MixingFit(law=law, target=target, domains=list(domains), params=params, train={},
                    run_ids=kept[run_id].astype(str).tolist(), excluded=excluded, warnings=warnings)
    fit.train = _metrics(y, fit.predict(R))
    if test is not None:
        tk, _, Rt, yt = _prepare(test, target, domains, run_id, f"fit_mixing_law({target}) test")
        fit.test = _metrics(yt, fit.predict(Rt))
    return fit


def fit_linear_mixing(df: pd.DataFrame, target: str, domains: Sequence[str], **kwargs) -> MixingFit:
    """The linear baseline L(r) = c + t . r (see fit_mixing_law)."""
    return fit_mixing_law(df, target, domains, law="linear", **kwargs)


def fit_mixing_laws(df: pd.DataFrame, targets: Sequence[str], domains: Sequence[str],
                    law: str = "exponential", **kwargs) -> dict[str, MixingFit]:
    """One mixing law per target (e.g. bits_text, bits_image, bits_audio); rows missing a target
    are excluded from that target's fit only."""
    return {t: fit_mixing_law(df, t, domains, law=law, **kwargs) for t in targets}


def optimal_mixture(fits: Mapping[str, MixingFit], weights: Mapping[str, float] | None = None,
                    bounds: Sequence[tuple[float, float]] | None = None, n_random: int = 32,
                    seed: int = 0) -> OptimalMixture:
    """argmin_r sum_m w_m L_m(r) subject to sum_j r_j = 1 and bounds (default [0, 1] each).

    Every fit must share the same domains; weights default to 1 for each target.
    """
    if not fits:
        raise AnalysisError("optimal_mixture: no fitted laws given")
    fl = list(fits.values())
    domains = fl[0].domains
    for f in fl[1:]:
        if f.domains != domains:
            raise AnalysisError(f"optimal_mixture: fits have different domains: {domains} vs {f.domains}")
    J = len(domains)
    w = {t: 1.0 for t in fits} if weights is None else dict(weights)
    missing = [t for t in fits if t not in w]
    if missing:
        raise AnalysisError(f"optimal_mixture: no weight for targets {missing}")
    bnds = [(0.0, 1.0)] * J if bounds is None else [tuple(map(float, b)) for b in bounds]
    if len(bnds) != J:
        raise AnalysisError(f"optimal_mixture: {len(bnds)} bounds for {J} domains")
    lo = np.array([b[0] for b in bnds])
    hi = np.array([b[1] for b in bnds])
    if lo.sum() > 1 + 1e-12 or hi.sum() < 1 - 1e-12:
        raise AnalysisError(f"optimal_mixture: bounds {bnds} admit no mixture summing to 1")

    def obj(r):
        return float(sum(w[t] * f.predict(r[None, :])[0] for t, f in fits.items()))

    rng = np.random.default_rng(seed)
    starts = [np.full(J, 1.0 / J)] + list(np.eye(J)) + list(rng.dirichlet(np.ones(J), size=n_random))
    cons = [{"type": "eq", "fun": lambda r: r.sum() - 1.0, "jac": lambda r: np.ones_like(r)}]
    best = None
    for s in starts:
        s = np.clip(s, lo, hi)
        sol = optimize.minimize(obj, s, method="SLSQP", bounds=bnds, constraints=cons,
                                options={"ftol": 1e-12, "maxiter": 500})
        r = np.clip(sol.x, lo, hi)
        if abs(r.sum() - 1) > 1e-6:
            continue
        v = obj(r)
        if best is None or v < best[0]:
            best = (v, r)
    if best is None:
        raise AnalysisError("optimal_mixture: the optimiser found no feasible mixture")
    v, r = best
    return OptimalMixture(domains=list(domains), ratios=dict(zip(domains, map(float, r))),
                          predicted={t: float(f.predict(r[None, :])[0]) for t, f in fits.items()},
                          objective=float(v), weights={t: float(x) for t, x in w.items()},
                          law=fl[0].law, bounds=[list(b) for b in bnds])


__all__ = ["fit_mixing_law", "fit_linear_mixing", "fit_mixing_laws", "optimal_mixture"]
