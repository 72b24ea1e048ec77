"""Small statistics helpers shared by the fitters: power laws in log space, bootstrap weights,
percentile intervals, rank correlation, and the checks that give clear errors on bad input."""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import pandas as pd
from scipy import stats as st

from .results import PowerLaw


class AnalysisError(ValueError):
    """Input a fitter cannot use: the message names the frame, column or count at fault."""


def require_columns(df: pd.DataFrame, cols: Iterable[str], what: str = "frame") -> None:
    """Raise AnalysisError if `df` is empty or lacks any of `cols`."""
    if not isinstance(df, pd.DataFrame):
        raise AnalysisError(f"{what}: expected a pandas DataFrame, got {type(df).__name__}")
    if df.empty:
        raise AnalysisError(f"{what}: the DataFrame is empty (no runs or points to fit)")
    missing = [c for c in cols if c not in df.columns]
    if missing:
        near = [c for c in df.columns if any(m.split(".")[-1] in str(c) for m in missing)][:8]
        hint = f"; similar columns: {near}" if near else ""
        raise AnalysisError(f"{what}: missing column(s) {missing}{hint}")


def clean_rows(df: pd.DataFrame, cols: Sequence[str], positive: Sequence[str] = (),
               run_id: str = "run_id") -> tuple[pd.DataFrame, list[dict]]:
    """Drop rows with non-finite values in `cols` or non-positive values in `positive`.

    Returns (kept frame, excluded list of {"run_id", "reason"}): nothing is dropped silently.
    """
    excluded: list[dict] = []
    keep = np.ones(len(df), bool)
    for c in cols:
        v = pd.to_numeric(df[c], errors="coerce").to_numpy(dtype=float)
        bad = ~np.isfinite(v)
        if c in positive:
            bad |= ~(v > 0)
        for i in np.flatnonzero(bad & keep):
            rid = df[run_id].iloc[i] if run_id in df.columns else df.index[i]
            excluded.append({"run_id": str(rid), "reason": f"{c} is missing, non-finite"
                             + (" or <= 0" if c in positive else "")})
        keep &= ~bad
    return df.loc[keep], excluded


def power_law_fit(x, y, level: float = 0.95, x_scale: float = 1.0, x_name: str = "x",
                  y_name: str = "y") -> PowerLaw:
    """Fit y = coef * (x / x_scale)^exponent by ordinary least squares of log y on log x.

    Standard errors are the usual OLS ones with n - 2 degrees of freedom.
    """
    x = np.asarray(x, float) / x_scale
    y = np.asarray(y, float)
    if x.shape != y.shape or x.ndim != 1:
        raise AnalysisError(f"power_law_fit: x and y must be 1-D of equal length, got {x.shape}, {y.shape}")
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    x, y = x[ok], y[ok]
    n = x.size
    if n < 2 or np.unique(x).size < 2:
        raise AnalysisError(f"power_law_fit({y_name} vs {x_name}): need at least 2 distinct positive "
                            f"x values, got {n} points")
    lx, ly = np.log(x), np.log(y)
    X = np.column_stack([np.ones(n), lx])
    beta, *_ = np.linalg.lstsq(X, ly, rcond=None)
    resid = ly - X @ beta
    dof = n - 2
    s2 = float(resid @ resid / dof) if dof > 0 else float("nan")
    cov = s2 * np.linalg.inv(X.T @ X) if dof > 0 else np.full((2, 2), np.nan)
    se = np.sqrt(np.diag(cov))
    tq = st.t.ppf(0.5 + level / 2, dof) if dof > 0 else float("nan")
    sst = float(((ly - ly.mean()) ** 2).sum())
    r2 = 1 - float(resid @ resid) / sst if sst > 0 else float("nan")
    return PowerLaw(coef=float(np.exp(beta[0])), exponent=float(beta[1]),
                    se_log_coef=float(se[0]), se_exponent=float(se[1]), cov=cov.tolist(),
                    ci={"exponent": [float(beta[1] - tq * se[1]), float(beta[1] + tq * se[1])],
                        "coef": [float(np.exp(beta[0] - tq * se[0])), float(np.exp(beta[0] + tq * se[0]))]},
                    ci_level=level, n=int(n), dof=int(dof), x_name=x_name, y_name=y_name,
                    x_scale=float(x_scale), r2=r2, resid_var=s2)


def bootstrap_weights(groups: Sequence, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Weights (n_boot, n_rows) for a bootstrap that resamples *groups* (runs) with replacement.

    Each replicate draws as many groups as there are, uniformly with replacement; a row's weight
    is the number of times its group was drawn (so all rows of a run move together).
    """
    codes, uniques = pd.factorize(pd.Series(list(groups)), sort=False)
    G = len(uniques)
    draws = rng.integers(0, G, size=(n_boot, G))
    counts = np.zeros((n_boot, G))
    np.add.at(counts, (np.repeat(np.arange(n_boot), G), draws.ravel()), 1.0)
    return counts[:, codes]


def percentile_interval(samples: np.ndarray, level: float = 0.95, axis: int = 0):
    q = [(1 - level) / 2 * 100, (1 + level) / 2 * 100]
    return np.nanpercentile(samples, q, axis=axis)


def spearman(x, y) -> float:
    """Spearman rank correlation (scipy.stats.spearmanr)."""
    return float(st.spearmanr(np.asarray(x, float), np.asarray(y, float)).statistic)
