"""Compute-optimal allocation and the frontier D*(N), from a fitted L(N, D).

Minimising L(N, D) = E + A N^-alpha + B D^-beta subject to C = k N D (k = 6 for the usual
6 N D count; use the measured FLOPs per parameter-token of the runs otherwise) gives, with
a = beta / (alpha + beta), b = alpha / (alpha + beta) and G = (alpha A / (beta B))^(1/(alpha+beta)):

    N*(C) = G (C/k)^a,      D*(C) = G^-1 (C/k)^b,      tokens per parameter D*/N*,

and eliminating C, the frontier  D*(N) = G_f N^(alpha/beta)  with  G_f = (beta B / (alpha A))^(1/beta)
(from the first-order condition alpha A / N^alpha = beta B / D^beta).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .results import Allocation, ChinchillaFit, IsoFlopFit, LeastSquaresFit, PowerLaw, chinchilla_law
from .stats import AnalysisError, percentile_interval, power_law_fit


def allocation_terms(E, A, B, alpha, beta, k: float = 6.0):
    """(a, b, G, G_f, frontier exponent) for the law; broadcasts over arrays of parameters."""
    A, B, alpha, beta = (np.asarray(v, float) for v in (A, B, alpha, beta))
    a = beta / (alpha + beta)
    b = alpha / (alpha + beta)
    G = (alpha * A / (beta * B)) ** (1.0 / (alpha + beta))
    Gf = (beta * B / (alpha * A)) ** (1.0 / beta)
    return a, b, G, Gf, alpha / beta


def compute_optimal(fit: ChinchillaFit | LeastSquaresFit | dict, C: Sequence[float] | None = None,
                    k: float = 6.0, level: float = 0.95) -> Allocation:
    """N*(C), D*(C), tokens per parameter and the frontier from a fitted law (see module doc).

    `fit` is a ChinchillaFit (bootstrap samples, if any, give intervals on a, b, G, G_f and on
    N*, D* at each C), a LeastSquaresFit (its N, D scales are undone) or a dict with
    E, A, B, alpha, beta. `C` defaults to 1e18 ... 1e25 FLOPs.
    """
    if isinstance(fit, (ChinchillaFit, LeastSquaresFit)):
        p = dict(fit.params)
    elif isinstance(fit, dict):
        p = dict(fit)
    else:
        raise AnalysisError(f"compute_optimal: expected a fitted law or a parameter dict, got {type(fit).__name__}")
    missing = [x for x in ("E", "A", "B", "alpha", "beta") if x not in p]
    if missing:
        raise AnalysisError(f"compute_optimal: parameters {missing} missing")
    if p["alpha"] <= 0 or p["beta"] <= 0 or p["A"] <= 0 or p["B"] <= 0:
        raise AnalysisError(f"compute_optimal: need A, B, alpha, beta > 0, got {p}")
    if isinstance(fit, LeastSquaresFit):
        # A (N/ns)^-alpha = (A ns^alpha) N^-alpha
        p["A"] = p["A"] * fit.n_scale ** p["alpha"]
        p["B"] = p["B"] * fit.d_scale ** p["beta"]
    C = np.logspace(18, 25, 15) if C is None else np.asarray(C, float)
    a, b, G, Gf, fe = (float(v) for v in allocation_terms(p["E"], p["A"], p["B"], p["alpha"], p["beta"], k))
    Nopt = G * (C / k) ** a
    Dopt = (C / k) ** b / G
    Lopt = chinchilla_law(Nopt, Dopt, p["E"], p["A"], p["B"], p["alpha"], p["beta"])
    table = [{"C": float(c), "N_opt": float(nn), "D_opt": float(dd), "tokens_per_param": float(dd / nn),
              "loss_opt": float(ll)} for c, nn, dd, ll in zip(C, Nopt, Dopt, Lopt)]
    ci = {}
    if isinstance(fit, ChinchillaFit) and fit.bootstrap_samples().shape[0] > 1:
        S = fit.bootstrap_samples()
        aa, bb, GG, GGf, ffe = allocation_terms(S[:, 0], S[:, 1], S[:, 2], S[:, 3], S[:, 4], k)
        for name, v in (("a", aa), ("b", bb), ("G", GG), ("frontier_coef", GGf), ("frontier_exponent", ffe)):
            lo, hi = percentile_interval(np.asarray(v), level)
            ci[name] = [float(lo), float(hi)]
        Nb = GG[:, None] * (C[None, :] / k) ** aa[:, None]
        Db = (C[None, :] / k) ** bb[:, None] / GG[:, None]
        nlo, nhi = percentile_interval(Nb, level)
        dlo, dhi = percentile_interval(Db, level)
        for i, row in enumerate(table):
            row.update(N_opt_ci=[float(nlo[i]), float(nhi[i])], D_opt_ci=[float(dlo[i]), float(dhi[i])])
    return Allocation(a=a, b=b, G=G, k=float(k), frontier_coef=Gf, frontier_exponent=fe, table=table,
                      source={kk: float(p[kk]) for kk in ("E", "A", "B", "alpha", "beta")}, ci=ci,
                      ci_level=level)


def frontier_from_isoflop(fit: IsoFlopFit, level: float = 0.95) -> PowerLaw:
    """The frontier D*(N) = G N^e fitted directly to the IsoFLOP vertices (N*, D*) of each budget."""
    good = [b for b in fit.budgets if not b.get("dropped")]
    if len(good) < 2:
        raise AnalysisError("frontier_from_isoflop: need at least 2 budgets with vertices")
    return power_law_fit([b["N_opt"] for b in good], [b["D_opt"] for b in good], level,
                         x_name="N_opt", y_name="D_opt")


__all__ = ["compute_optimal", "allocation_terms", "frontier_from_isoflop"]
