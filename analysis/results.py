"""JSON-serialisable result objects returned by every fitter.

Each result is a dataclass with a `kind` tag; `to_dict()` gives plain JSON types (numpy scalars
and arrays become floats and lists, NaN becomes null), `to_json()` a string, `save(path)` a file,
and `load_result(path_or_dict)` rebuilds the right class from the tag. Every fit records the run
ids it used (`run_ids`) and the ones it left out with the reason (`excluded`), so a figure or
number can always be traced back to runs.
"""
from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, ClassVar

import numpy as np

_REGISTRY: dict[str, type["Result"]] = {}


def to_jsonable(obj: Any) -> Any:
    """Convert numpy / dataclass / nested containers to plain JSON types (NaN, inf -> None)."""
    if isinstance(obj, Result):
        return obj.to_dict()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        x = float(obj)
        return x if math.isfinite(x) else None
    return obj


EXCLUDED_WARNING = "excluded from the fit"


def excluded_warning(excluded: Any) -> str | None:
    """One line naming every excluded run with its reason, runs grouped by reason:
    "excluded from the fit (3 runs): status damaged (...): r1; N is missing, ...: r2, r3"."""
    groups: dict[str, list[str]] = {}
    for e in excluded or []:
        rid, why = (e.get("run_id"), e.get("reason")) if isinstance(e, dict) else (e, "")
        groups.setdefault(str(why or "no reason given"), []).append(str(rid))
    if not groups:
        return None
    n = sum(len(v) for v in groups.values())
    return (f"{EXCLUDED_WARNING} ({n} run{'s' if n != 1 else ''}): "
            + "; ".join(f"{why}: {', '.join(ids)}" for why, ids in groups.items()))


class Result:
    """Mixin: serialisation for the result dataclasses below.

    A result with `excluded` and `warnings` keeps one warning naming every excluded run and its
    reason (`excluded_warning`), refreshed whenever either field is assigned (also by
    `fit.excluded = more + fit.excluded` after the fit)."""

    kind: ClassVar[str] = "result"

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        _REGISTRY[cls.kind] = cls

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)
        if name in ("excluded", "warnings") and "excluded" in self.__dict__ \
                and "warnings" in self.__dict__:
            kept = [w for w in (self.warnings or [])
                    if not (isinstance(w, str) and w.startswith(EXCLUDED_WARNING))]
            line = excluded_warning(self.excluded)
            object.__setattr__(self, "warnings", kept + ([line] if line else []))

    def to_dict(self) -> dict[str, Any]:
        d = {"kind": self.kind}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            d[f.name] = to_jsonable(getattr(self, f.name))
        return d

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    def save(self, path: str) -> str:
        with open(path, "w", encoding="utf-8") as f:
            f.write(self.to_json())
        return path

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        names = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        kwargs = {}
        for k, v in d.items():
            if k not in names:
                continue
            if v is None and str(names[k].type) in ("float", "<class 'float'>"):
                v = float("nan")  # to_dict writes NaN as null
            kwargs[k] = _restore(names[k].type, v)
        return cls(**kwargs)


def _restore(type_str: Any, value: Any) -> Any:
    """Rebuild nested results (stored as dicts with a 'kind') inside containers."""
    if isinstance(value, dict) and "kind" in value and value["kind"] in _REGISTRY:
        return _REGISTRY[value["kind"]].from_dict(value)
    if isinstance(value, dict):
        return {k: _restore(None, v) for k, v in value.items()}
    if isinstance(value, list):
        return [_restore(None, v) for v in value]
    return value


def load_result(src: str | dict[str, Any]) -> Result:
    """Rebuild a result from a JSON file path, a JSON string or a dict produced by to_dict()."""
    if isinstance(src, str):
        if src.lstrip().startswith("{"):
            d = json.loads(src)
        else:
            with open(src, encoding="utf-8") as f:
                d = json.load(f)
    else:
        d = src
    kind = d.get("kind")
    if kind not in _REGISTRY:
        raise ValueError(f"unknown result kind {kind!r}; known: {sorted(_REGISTRY)}")
    return _REGISTRY[kind].from_dict(d)


def _nan_to_none_float(x: Any) -> float:
    return float("nan") if x is None else float(x)


# --------------------------------------------------------------------------------------------
@dataclasses.dataclass
class PowerLaw(Result):
    """y = coef * x^exponent, fitted by least squares of log y on log x.

    `se_*` are the OLS standard errors (of log coef and of the exponent), `cov` their 2x2
    covariance (log coef first), `ci` the t-based intervals at `ci_level`.
    """

    kind: ClassVar[str] = "power_law"
    coef: float
    exponent: float
    se_log_coef: float
    se_exponent: float
    cov: list
    ci: dict
    ci_level: float
    n: int
    dof: int
    x_name: str = "x"
    y_name: str = "y"
    x_scale: float = 1.0  # x is divided by this before the law is applied
    r2: float = float("nan")
    resid_var: float = float("nan")  # s^2 of the log-space residuals

    def prediction_interval(self, x, level: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Interval for a *new* observation at x: the mean band widened by the residual scatter."""
        from scipy import stats as _st

        level = self.ci_level if level is None else level
        lx = np.log(np.asarray(x, float) / self.x_scale)
        cov = np.asarray(self.cov, float)
        var = cov[0, 0] + 2 * lx * cov[0, 1] + lx ** 2 * cov[1, 1] + self.resid_var
        tq = _st.t.ppf(0.5 + level / 2, self.dof) if self.dof > 0 else np.inf
        center = np.log(self.coef) + self.exponent * lx
        half = tq * np.sqrt(np.maximum(var, 0))
        return np.exp(center - half), np.exp(center + half)

    def predict(self, x) -> np.ndarray:
        return self.coef * (np.asarray(x, float) / self.x_scale) ** self.exponent

    def predict_interval(self, x, level: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Confidence band of the fitted mean (t-based, in log space) at x."""
        from scipy import stats as _st

        level = self.ci_level if level is None else level
        lx = np.log(np.asarray(x, float) / self.x_scale)
        cov = np.asarray(self.cov, float)
        var = cov[0, 0] + 2 * lx * cov[0, 1] + lx ** 2 * cov[1, 1]
        tq = _st.t.ppf(0.5 + level / 2, max(self.dof, 1)) if self.dof > 0 else np.inf
        center = np.log(self.coef) + self.exponent * lx
        half = tq * np.sqrt(np.maximum(var, 0))
        return np.exp(center - half), np.exp(center + half)


@dataclasses.dataclass
class ChinchillaFit(Result):
    """L(N, D) = E + A / N^alpha + B / D^beta fitted with Huber on log loss (LSE form)."""

    kind: ClassVar[str] = "chinchilla"
    params: dict  # E, A, B, alpha, beta, a, b, e  (A = e^a, B = e^b, E = e^e)
    objective: float  # sum_i Huber_delta(LSE - log L_i) at the optimum
    delta: float
    n_points: int
    run_ids: list
    columns: dict  # {"loss": ..., "N": ..., "D": ...}
    optimizer: dict  # starts, iterations, convergence, polish
    se: dict = dataclasses.field(default_factory=dict)  # bootstrap standard errors
    ci: dict = dataclasses.field(default_factory=dict)  # percentile intervals [lo, hi]
    ci_level: float = 0.95
    bootstrap: dict = dataclasses.field(default_factory=dict)  # n, seed, samples (list of rows)
    excluded: list = dataclasses.field(default_factory=list)
    warnings: list = dataclasses.field(default_factory=list)
    label: str = ""

    PARAM_ORDER: ClassVar[tuple[str, ...]] = ("E", "A", "B", "alpha", "beta")

    def predict(self, N, D) -> np.ndarray:
        p = self.params
        return chinchilla_law(N, D, p["E"], p["A"], p["B"], p["alpha"], p["beta"])

    def bootstrap_samples(self) -> np.ndarray:
        """(n_boot, 5) array of (E, A, B, alpha, beta), or an empty (0, 5) array."""
        s = self.bootstrap.get("samples") if self.bootstrap else None
        if not s:
            return np.zeros((0, 5))
        return np.asarray([[_nan_to_none_float(v) for v in row] for row in s], float)

    def predict_interval(self, N, D, level: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Percentile interval of the prediction over the bootstrap refits."""
        level = self.ci_level if level is None else level
        S = self.bootstrap_samples()
        if S.shape[0] == 0:
            raise ValueError("this fit has no bootstrap samples; refit with n_bootstrap > 0")
        N = np.atleast_1d(np.asarray(N, float))
        D = np.atleast_1d(np.asarray(D, float))
        preds = chinchilla_law(N[None, :], D[None, :], S[:, 0:1], S[:, 1:2], S[:, 2:3],
                               S[:, 3:4], S[:, 4:5])
        q = [(1 - level) / 2 * 100, (1 + level) / 2 * 100]
        lo, hi = np.nanpercentile(preds, q, axis=0)
        return lo, hi


def chinchilla_law(N, D, E, A, B, alpha, beta):
    """L = E + A / N^alpha + B / D^beta (broadcasting)."""
    N = np.asarray(N, float)
    D = np.asarray(D, float)
    return E + A * N ** (-alpha) + B * D ** (-beta)


@dataclasses.dataclass
class LeastSquaresFit(Result):
    """L = E + A / (N/n_scale)^alpha + B / (D/d_scale)^beta fitted by least squares in loss."""

    kind: ClassVar[str] = "chinchilla_lsq"
    params: dict  # E, A, B, alpha, beta (A, B in the scaled units)
    se: dict  # asymptotic standard errors from the Jacobian: s^2 (J^T J)^-1
    rss: float
    r2: float
    n_points: int
    run_ids: list
    columns: dict
    n_scale: float
    d_scale: float
    optimizer: dict
    excluded: list = dataclasses.field(default_factory=list)
    warnings: list = dataclasses.field(default_factory=list)

    def predict(self, N, D) -> np.ndarray:
        p = self.params
        return chinchilla_law(np.asarray(N, float) / self.n_scale, np.asarray(D, float) / self.d_scale,
                              p["E"], p["A"], p["B"], p["alpha"], p["beta"])


@dataclasses.dataclass
class IsoFlopFit(Result):
    """Approach 2: per-budget parabolas in log N, their vertices, and power laws in C."""

    kind: ClassVar[str] = "isoflop"
    budgets: list  # one dict per budget: C, n_points, coeffs, N_opt, D_opt, loss_opt, flags
    n_opt_law: PowerLaw  # N*(C) = k_N C^a
    d_opt_law: PowerLaw  # D*(C) = k_D C^b
    run_ids: list
    columns: dict
    flops_per_param_token: float  # the k in C = k N D used to convert when no D column
    excluded: list = dataclasses.field(default_factory=list)
    warnings: list = dataclasses.field(default_factory=list)

    @property
    def a(self) -> float:
        return self.n_opt_law.exponent

    @property
    def b(self) -> float:
        return self.d_opt_law.exponent

    def n_opt(self, C) -> np.ndarray:
        return self.n_opt_law.predict(C)

    def d_opt(self, C) -> np.ndarray:
        return self.d_opt_law.predict(C)


@dataclasses.dataclass
class Allocation(Result):
    """Compute-optimal allocation implied by a fitted L(N, D) under C = k N D.

    N*(C) = G (C/k)^a, D*(C) = G^-1 (C/k)^b, a = beta/(alpha+beta), b = alpha/(alpha+beta),
    G = (alpha A / (beta B))^(1/(alpha+beta)); frontier D*(N) = G_f N^(alpha/beta) with
    G_f = (beta B / (alpha A))^(1/beta).
    """

    kind: ClassVar[str] = "allocation"
    a: float
    b: float
    G: float
    k: float
    frontier_coef: float
    frontier_exponent: float
    table: list  # rows {C, N_opt, D_opt, tokens_per_param, loss_opt}
    source: dict  # the law's parameters
    ci: dict = dataclasses.field(default_factory=dict)  # bootstrap intervals of a, b, G_f, ...
    ci_level: float = 0.95

    def n_opt(self, C) -> np.ndarray:
        return self.G * (np.asarray(C, float) / self.k) ** self.a

    def d_opt(self, C) -> np.ndarray:
        return (np.asarray(C, float) / self.k) ** self.b / self.G

    def frontier(self, N) -> np.ndarray:
        return self.frontier_coef * np.asarray(N, float) ** self.frontier_exponent


@dataclasses.dataclass
class ModalityLaws(Result):
    """Per-modality Chinchilla laws: separate fits and/or one joint fit with shared exponents."""

    kind: ClassVar[str] = "modality_laws"
    mode: str  # "separate" or "joint"
    fits: dict  # modality -> ChinchillaFit (separate) or its parameter dict (joint)
    objective: float
    shared: dict = dataclasses.field(default_factory=dict)  # joint: alpha, beta (+ se)
    run_ids: list = dataclasses.field(default_factory=list)
    optimizer: dict = dataclasses.field(default_factory=dict)
    excluded: list = dataclasses.field(default_factory=list)
    warnings: list = dataclasses.field(default_factory=list)

    def predict(self, modality: str, N, D) -> np.ndarray:
        f = self.fits[modality]
        p = f.params if isinstance(f, ChinchillaFit) else f
        return chinchilla_law(N, D, p["E"], p["A"], p["B"], p["alpha"], p["beta"])


@dataclasses.dataclass
class MixingFit(Result):
    """Loss of one target as a function of mixing ratios r (columns `domains`).

    exponential (Ye et al. 2024): L(r) = c + k exp(sum_j t_j r_j);  linear: L(r) = c + sum_j t_j r_j.
    """

    kind: ClassVar[str] = "mixing"
    law: str
    target: str
    domains: list
    params: dict  # c, k (exponential only), t (list aligned with domains)
    train: dict  # n, rmse, spearman
    run_ids: list
    test: dict = dataclasses.field(default_factory=dict)  # n, rmse, spearman on held-out mixtures
    excluded: list = dataclasses.field(default_factory=list)
    warnings: list = dataclasses.field(default_factory=list)

    def predict(self, ratios) -> np.ndarray:
        R = np.atleast_2d(np.asarray(ratios, float))
        t = np.asarray(self.params["t"], float)
        if self.law == "exponential":
            return self.params["c"] + self.params["k"] * np.exp(R @ t)
        return self.params["c"] + R @ t


@dataclasses.dataclass
class OptimalMixture(Result):
    """argmin over the simplex (with bounds) of sum_m weight_m L_m(r) under fitted mixing laws."""

    kind: ClassVar[str] = "optimal_mixture"
    domains: list
    ratios: dict
    predicted: dict  # target -> predicted loss at the optimum
    objective: float
    weights: dict
    law: str
    bounds: list


@dataclasses.dataclass
class BatchSizeFit(Result):
    """Steps to a target loss vs batch: S(B) = S_min (1 + B_noise / B), fitted in log S.

    Critical batch (definition stated in `definition`): with B0 the reference batch, the batch
    at which the steps exceed perfect linear scaling from B0 by `overhead`:
    S(B) = (1 + overhead) S(B0) B0 / B  =>  B_crit = ((1 + overhead) S(B0) B0 - S_min B_noise) / S_min.
    """

    kind: ClassVar[str] = "batch_size"
    groups: list  # per group: key, S_min, B_noise, b (= S_min B_noise), B_crit, rmse_log, n, batches
    definition: dict  # {"name": "linear_scaling_overhead", "overhead": 0.2, "B0": 256}
    columns: dict
    cbs_law: PowerLaw | None = None  # B_crit vs the group's scale variable (N or D)
    noise_law: PowerLaw | None = None  # B_noise vs the scale variable (McCandlish definition)
    run_ids: list = dataclasses.field(default_factory=list)
    excluded: list = dataclasses.field(default_factory=list)
    warnings: list = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class NoiseScaleEstimate(Result):
    """Gradient noise scale of one run over a step window, from the logged components:

        B_noise = sum_i w_i trS_i / sum_i w_i G2_i      (a ratio of means, not a mean of ratios)

    with w_i the steps behind record i (gns_steps); `ci` is a circular block-bootstrap
    percentile interval over records (blocks of `block` consecutive records). Replicates whose
    mean |G|^2 is <= 0 count as B_noise = +inf (the signal is not resolved there).
    `mean_of_ratios` (the w-weighted mean of the per-record ratios trS_i / G2_i, G2_i != 0)
    is reported as a diagnostic only: it is biased, and unstable when G2_i approaches 0.
    """

    kind: ClassVar[str] = "gradient_noise_scale"
    B_noise: float
    ci: list
    level: float
    se: float            # bootstrap standard deviation of B_noise (finite replicates)
    mean_trace: float
    mean_grad_sq: float
    mean_of_ratios: float
    n_records: int
    n_steps: int
    steps: list          # [first, last] logged step in the window
    block: int
    n_boot: int
    columns: dict
    run_ids: list
    warnings: list = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class CollapseResult(Result):
    """How well loss-vs-tokens curves at different physical batches collapse onto one curve.

    score = mean over a common log-token grid of (std across curves / mean across curves); 0 is
    a perfect collapse. One score per group (e.g. with / without the SDE reparameterization).
    """

    kind: ClassVar[str] = "collapse"
    scores: dict  # group label -> score
    n_curves: dict  # group label -> number of curves
    grid: dict  # group label -> [t_min, t_max, n_grid]
    columns: dict
    run_ids: list
    excluded: list = dataclasses.field(default_factory=list)
    warnings: list = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class AuditResult(Result):
    """Extrapolation audit: fit without the largest scale, predict the held-out runs.

    Each row of `rows`: run_id (or key), actual, predicted, lo, hi, rel_error, inside.
    `coverage` is the fraction of held-out points whose actual value lies in the interval the
    reduced fit claimed; `claimed_level` is the interval's nominal level.
    """

    kind: ClassVar[str] = "audit"
    law: str
    holdout: dict  # what was held out: {"by": "C", "threshold": ..., "n": ...}
    rows: list
    coverage: float
    mean_abs_rel_error: float
    max_abs_rel_error: float
    claimed_level: float
    fit: dict  # the reduced fit, serialised
    warnings: list = dataclasses.field(default_factory=list)
