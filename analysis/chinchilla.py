"""The Chinchilla-form law L(N, D) = E + A / N^alpha + B / D^beta.

Two fitters, as in the replication literature (Hoffmann et al. 2022, approach 3; Besiroglu et
al. 2024, "Chinchilla scaling: a replication attempt"):

`fit_chinchilla` -- the robust fit. With A = e^a, B = e^b, E = e^e the law is
    log L_hat(N, D) = LSE(a - alpha log N, b - beta log D, e),
and the objective is  sum_i Huber_delta(log L_hat(N_i, D_i) - log L_i)  with delta = 1e-3,
minimised from every point of a grid of starts (default: alpha, beta in {0, 0.5, ..., 2},
e in {-1, -0.5, ..., 1}, a, b in {0, 5, ..., 25}: 4500 starts) by the batched damped Newton
(Newton / Gauss-Newton-IRLS) method of `lse_huber` with explicit tolerances; the best start is polished with L-BFGS-B at
tight tolerances. Confidence intervals come from a bootstrap over *runs*: each replicate draws
the runs with replacement (a run's rows move together) and refits, warm-started from the
full-data optimum (and, with `bootstrap_starts` > 1, also from the next-best distinct local
optima of the grid), keeping the best; standard errors are the replicates' standard
deviations, intervals their percentiles.

`fit_chinchilla_lsq` -- the plain variant: least squares in loss space,
    min sum_i (E + A / (N_i/n_scale)^alpha + B / (D_i/d_scale)^beta - L_i)^2,
with N and D rescaled (default: millions and billions) so the problem is well conditioned.
Starts: for each (alpha, beta) on a grid, (E, A, B) solve the then-linear least squares
(variable projection), and scipy's Levenberg-Marquardt refines all five with tolerances 1e-15.
"""
from __future__ import annotations

import time
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import optimize

from .lse_huber import LSEHuberProblem, Tolerances, minimize_batched, polish
from .results import ChinchillaFit, LeastSquaresFit, chinchilla_law
from .stats import AnalysisError, bootstrap_weights, clean_rows, percentile_interval, require_columns

DEFAULT_GRID = {
    "alpha": tuple(np.arange(0.0, 2.01, 0.5)),
    "beta": tuple(np.arange(0.0, 2.01, 0.5)),
    "e": tuple(np.arange(-1.0, 1.01, 0.5)),
    "a": tuple(np.arange(0.0, 25.01, 5.0)),
    "b": tuple(np.arange(0.0, 25.01, 5.0)),
}
PARAMS = ("E", "A", "B", "alpha", "beta")


def chinchilla_starts(alpha: Sequence[float] = DEFAULT_GRID["alpha"],
                      beta: Sequence[float] = DEFAULT_GRID["beta"],
                      e: Sequence[float] = DEFAULT_GRID["e"],
                      a: Sequence[float] = DEFAULT_GRID["a"],
                      b: Sequence[float] = DEFAULT_GRID["b"]) -> np.ndarray:
    """The Cartesian grid of starts, shape (K, 5), columns (a, b, e, alpha, beta)."""
    mesh = np.meshgrid(a, b, e, alpha, beta, indexing="ij")
    return np.stack([m.ravel() for m in mesh], axis=1).astype(float)


def chinchilla_problem(N: np.ndarray, D: np.ndarray, L: np.ndarray, delta: float) -> LSEHuberProblem:
    """LSE terms for theta = (a, b, e, alpha, beta): u1 = a - alpha log N, u2 = b - beta log D, u3 = e."""
    n = len(N)
    z, o = np.zeros(n), np.ones(n)
    terms = [np.stack([o, z, z, -np.log(N), z], 1),
             np.stack([z, o, z, z, -np.log(D)], 1),
             np.stack([z, z, o, z, z], 1)]
    return LSEHuberProblem(terms, np.log(L), delta)


def _theta_to_params(theta: np.ndarray) -> np.ndarray:
    """(..., 5) (a, b, e, alpha, beta) -> (..., 5) (E, A, B, alpha, beta)."""
    theta = np.asarray(theta, float)
    return np.stack([np.exp(theta[..., 2]), np.exp(theta[..., 0]), np.exp(theta[..., 1]),
                     theta[..., 3], theta[..., 4]], axis=-1)


def _distinct_optima(theta: np.ndarray, f: np.ndarray, k: int, decimals: int = 3) -> np.ndarray:
    order = np.argsort(f)
    seen, out = set(), []
    for i in order:
        if not np.isfinite(f[i]):
            continue
        key = tuple(np.round(theta[i], decimals))
        if key in seen:
            continue
        seen.add(key)
        out.append(theta[i])
        if len(out) >= k:
            break
    return np.array(out)


def fit_chinchilla_arrays(N, D, L, run_ids: Sequence | None = None, *, delta: float = 1e-3,
                          starts: np.ndarray | None = None, n_bootstrap: int = 1000, seed: int = 0,
                          ci_level: float = 0.95, tol: Tolerances = Tolerances(),
                          bootstrap_starts: int = 1, threads: int | None = None,
                          keep_samples: bool = True, columns: dict | None = None,
                          label: str = "") -> ChinchillaFit:
    """Fit L = E + A/N^alpha + B/D^beta to arrays (Huber on log loss, LSE form). See module doc.

    Args:
      N, D, L: parameters, tokens and losses (all > 0), one entry per point.
      run_ids: the run of each point (bootstrap resamples runs); defaults to one run per point.
      delta: Huber threshold on log loss.
      starts: (K, 5) starts in (a, b, e, alpha, beta) order; default `chinchilla_starts()`.
      n_bootstrap: bootstrap replicates (0: none).
      bootstrap_starts: starts per replicate (the best distinct grid optima).
    """
    N, D, L = (np.asarray(v, float).ravel() for v in (N, D, L))
    if not (N.size == D.size == L.size):
        raise AnalysisError(f"N, D, L must have the same length, got {N.size}, {D.size}, {L.size}")
    bad = ~(np.isfinite(N) & np.isfinite(D) & np.isfinite(L) & (N > 0) & (D > 0) & (L > 0))
    if bad.any():
        raise AnalysisError(f"{int(bad.sum())} point(s) have a non-finite or non-positive N, D or L")
    n = N.size
    if n < 6:
        raise AnalysisError(f"the Chinchilla law has 5 parameters; need at least 6 points, got {n}")
    run_ids = [str(i) for i in range(n)] if run_ids is None else [str(r) for r in run_ids]
    if len(run_ids) != n:
        raise AnalysisError(f"run_ids has {len(run_ids)} entries for {n} points")
    warnings: list[str] = []
    if n < 20:
        warnings.append(f"only {n} points for a 5-parameter law: expect wide intervals")
    if np.unique(N).size < 3 or np.unique(D).size < 3:
        warnings.append("fewer than 3 distinct N or D values: alpha or beta is not identified")

    prob = chinchilla_problem(N, D, L, delta)
    starts = chinchilla_starts() if starts is None else np.atleast_2d(np.asarray(starts, float))
    t0 = time.perf_counter()
    res = minimize_batched(prob, starts, tol=tol, threads=threads)
    t_grid = time.perf_counter() - t0
    best = int(np.nanargmin(res.f))
    theta, fbest, pinfo = polish(prob, res.theta[best], tol=tol)
    t_polish = time.perf_counter() - t0 - t_grid
    at_best = int(np.sum(res.f <= fbest + max(1e-9, 1e-6 * abs(fbest))))
    _, g_final, _ = prob.value_grad_hess(theta[None], np.ones((1, n)))
    optimizer = {
        "method": "batched damped Newton / Gauss-Newton-IRLS (lse_huber), then L-BFGS-B polish",
        "n_starts": int(starts.shape[0]), "n_starts_at_best": at_best,
        "n_converged": int(res.converged.sum()), "n_diverged": int(res.diverged.sum()),
        "iterations_mean": float(res.nit.mean()),
        "iterations_max": int(res.nit.max()), "grad_inf_norm": float(np.abs(g_final).max()),
        "tolerances": {"ftol": tol.ftol, "xtol": tol.xtol, "maxiter": tol.maxiter,
                       "polish_ftol": tol.polish_ftol, "polish_gtol": tol.polish_gtol},
        "seconds_grid": t_grid, "seconds_polish": t_polish, **pinfo,
    }
    if not res.converged[best]:
        warnings.append("the best start hit maxiter before its tolerances")
    p = _theta_to_params(theta)
    params = dict(zip(PARAMS, map(float, p)))
    params.update(a=float(theta[0]), b=float(theta[1]), e=float(theta[2]))
    if params["alpha"] <= 0 or params["beta"] <= 0:
        warnings.append(f"degenerate optimum: alpha={params['alpha']:.3g}, beta={params['beta']:.3g}")

    se, ci, boot = {}, {}, {}
    if n_bootstrap > 0:
        t1 = time.perf_counter()
        rng = np.random.default_rng(seed)
        W = bootstrap_weights(run_ids, n_bootstrap, rng)
        cand = [theta] + list(_distinct_optima(res.theta, res.f, bootstrap_starts + 1)[1:])
        cand = np.array(cand[:max(1, bootstrap_starts)])
        S = cand.shape[0]
        bstarts = np.tile(cand, (n_bootstrap, 1))
        bw = np.repeat(W, S, axis=0)
        bres = minimize_batched(prob, bstarts, bw, tol=tol, threads=threads)
        fb = bres.f.reshape(n_bootstrap, S)
        pick = np.nanargmin(fb, axis=1)
        tb = bres.theta.reshape(n_bootstrap, S, 5)[np.arange(n_bootstrap), pick]
        samples = _theta_to_params(tb)
        lo, hi = percentile_interval(samples, ci_level)
        se = dict(zip(PARAMS, map(float, np.nanstd(samples, axis=0, ddof=1))))
        ci = {k: [float(lo[i]), float(hi[i])] for i, k in enumerate(PARAMS)}
        conv = bres.converged.reshape(n_bootstrap, S)[np.arange(n_bootstrap), pick]
        boot = {"n": int(n_bootstrap), "seed": int(seed), "resample": "runs",
                "n_runs": int(len(set(run_ids))), "starts_per_replicate": int(S),
                "n_converged": int(conv.sum()), "seconds": time.perf_counter() - t1,
                "samples": samples.tolist() if keep_samples else []}
        if conv.mean() < 0.99:
            warnings.append(f"{int((~conv).sum())} bootstrap refits hit maxiter")
    return ChinchillaFit(params=params, objective=float(fbest), delta=float(delta), n_points=int(n),
                         run_ids=sorted(set(run_ids)), columns=columns or {}, optimizer=optimizer,
                         se=se, ci=ci, ci_level=ci_level, bootstrap=boot, warnings=warnings,
                         label=label)


def fit_chinchilla(df: pd.DataFrame, loss: str = "loss", n: str = "N", d: str = "D",
                   run_id: str = "run_id", **kwargs) -> ChinchillaFit:
    """Fit the Chinchilla law to a DataFrame (one row per run, or per point with a run id).

    Rows with a missing / non-positive N, D or loss are excluded and listed in
    `result.excluded`. Keyword arguments go to `fit_chinchilla_arrays` (delta, starts,
    n_bootstrap, seed, ci_level, tol, bootstrap_starts, threads).
    Example: fit_chinchilla(runs[runs.status == "done"], loss="bits_text")
    """
    require_columns(df, [loss, n, d], "fit_chinchilla")
    if run_id not in df.columns:
        df = df.assign(**{run_id: [str(i) for i in df.index]})
    kept, excluded = clean_rows(df, [n, d, loss], positive=[n, d, loss], run_id=run_id)
    if kept.empty:
        raise AnalysisError(f"fit_chinchilla: no row has a finite positive {n}, {d} and {loss}")
    fit = fit_chinchilla_arrays(kept[n].to_numpy(float), kept[d].to_numpy(float),
                                kept[loss].to_numpy(float), kept[run_id].astype(str).tolist(),
                                columns={"loss": loss, "N": n, "D": d}, **kwargs)
    fit.excluded = excluded
    return fit


# --------------------------------------------------------------------------------------------
def _lsq_residual_and_jac(x, Ns, Ds, L):
    E, A, B, al, be = x
    na, db = Ns ** (-al), Ds ** (-be)
    r = E + A * na + B * db - L
    J = np.column_stack([np.ones_like(L), na, db, -A * na * np.log(Ns), -B * db * np.log(Ds)])
    return r, J


def fit_chinchilla_lsq_arrays(N, D, L, run_ids: Sequence | None = None, *, n_scale: float = 1e6,
                              d_scale: float = 1e9,
                              alpha_grid: Sequence[float] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 1.0),
                              beta_grid: Sequence[float] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 1.0),
                              columns: dict | None = None) -> LeastSquaresFit:
    """Least squares in loss space of L = E + A/(N/n_scale)^alpha + B/(D/d_scale)^beta."""
    N, D, L = (np.asarray(v, float).ravel() for v in (N, D, L))
    n = N.size
    if n < 6:
        raise AnalysisError(f"the Chinchilla law has 5 parameters; need at least 6 points, got {n}")
    if not np.all((N > 0) & (D > 0) & np.isfinite(L)):
        raise AnalysisError("N and D must be > 0 and L finite")
    Ns, Ds = N / n_scale, D / d_scale
    best = None
    n_starts = 0
    for al in alpha_grid:
        for be in beta_grid:
            X = np.column_stack([np.ones(n), Ns ** (-al), Ds ** (-be)])
            lin, *_ = np.linalg.lstsq(X, L, rcond=None)
            x0 = np.r_[lin, al, be]
            n_starts += 1
            try:
                sol = optimize.least_squares(lambda x: _lsq_residual_and_jac(x, Ns, Ds, L)[0], x0,
                                             jac=lambda x: _lsq_residual_and_jac(x, Ns, Ds, L)[1],
                                             method="lm", xtol=1e-15, ftol=1e-15, gtol=1e-15,
                                             max_nfev=20000)
            except (ValueError, np.linalg.LinAlgError):
                continue
            rss = float(sol.fun @ sol.fun)
            if np.isfinite(rss) and (best is None or rss < best[0]):
                best = (rss, sol)
    if best is None:
        raise AnalysisError("least-squares Chinchilla fit failed from every start")
    rss, sol = best
    r, J = _lsq_residual_and_jac(sol.x, Ns, Ds, L)
    dof = n - 5
    s2 = rss / dof if dof > 0 else float("nan")
    try:
        cov = s2 * np.linalg.inv(J.T @ J)
        se_v = np.sqrt(np.maximum(np.diag(cov), 0))
    except np.linalg.LinAlgError:
        se_v = np.full(5, np.nan)
    sst = float(((L - L.mean()) ** 2).sum())
    run_ids = [str(i) for i in range(n)] if run_ids is None else [str(x) for x in run_ids]
    return LeastSquaresFit(params=dict(zip(PARAMS, map(float, sol.x))),
                           se=dict(zip(PARAMS, map(float, se_v))), rss=rss,
                           r2=1 - rss / sst if sst > 0 else float("nan"), n_points=n,
                           run_ids=sorted(set(run_ids)), columns=columns or {},
                           n_scale=float(n_scale), d_scale=float(d_scale),
                           optimizer={"method": "variable-projection starts + scipy least_squares "
                                                "(lm, xtol=ftol=gtol=1e-15)",
                                      "n_starts": n_starts, "nfev": int(sol.nfev),
                                      "status": int(sol.status)})


def fit_chinchilla_lsq(df: pd.DataFrame, loss: str = "loss", n: str = "N", d: str = "D",
                       run_id: str = "run_id", **kwargs) -> LeastSquaresFit:
    """DataFrame front end of `fit_chinchilla_lsq_arrays` (same exclusion rules as fit_chinchilla)."""
    require_columns(df, [loss, n, d], "fit_chinchilla_lsq")
    if run_id not in df.columns:
        df = df.assign(**{run_id: [str(i) for i in df.index]})
    kept, excluded = clean_rows(df, [n, d, loss], positive=[n, d], run_id=run_id)
    fit = fit_chinchilla_lsq_arrays(kept[n], kept[d], kept[loss], kept[run_id].tolist(),
                                    columns={"loss": loss, "N": n, "D": d}, **kwargs)
    fit.excluded = excluded
    return fit


__all__ = ["fit_chinchilla", "fit_chinchilla_arrays", "fit_chinchilla_lsq",
           "fit_chinchilla_lsq_arrays", "chinchilla_starts", "chinchilla_law", "chinchilla_problem",
           "DEFAULT_GRID"]
