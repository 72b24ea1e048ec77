"""Batched minimisation of Huber losses on log-sum-exp models (the Chinchilla-form objective).

The model for point i (of n) under parameter vector theta (of P) is

    log L_hat_i(theta) = LSE_j u_ij(theta),   u_ij = T_j[i] . theta  (j = 1..J terms),

so that L_hat = sum_j exp(u_ij). For the Chinchilla law L = E + A/N^alpha + B/D^beta with
theta = (a, b, e, alpha, beta), A = e^a, B = e^b, E = e^e, the J = 3 terms are
u_i1 = a - alpha log N_i, u_i2 = b - beta log D_i, u_i3 = e. The objective of problem k is

    f_k(theta) = sum_i w_ki Huber_delta(r_i),   r_i = LSE_j u_ij - log L_i,
    Huber_delta(r) = r^2 / 2 if |r| <= delta else delta (|r| - delta / 2),

with integer weights w_ki (all ones for a plain fit, bootstrap multiplicities for a resample).
Its derivatives, with p_ij = softmax_j(u_ij), psi = clip(r, -delta, delta), psi' = 1{|r|<=delta},
grad r_i = sum_j p_ij T_j[i]:

    g = sum_i w_i psi(r_i) grad r_i
    H = sum_i w_i [ (psi'(r_i) - psi(r_i)) grad r_i grad r_i^T + psi(r_i) sum_j p_ij T_j[i] T_j[i]^T ]

(the last two terms are the Hessian of the LSE, sum_j p_j T_j T_j^T - grad r grad r^T).

K problems (a grid of starts, or bootstrap resamples, or both) are minimised together by a
damped Newton / Gauss-Newton method. At each iteration, for each problem:
  * where H is positive definite, the Levenberg-damped Newton step solves
    (H + lambda * max eig(H) I) step = -g (quadratic convergence near a minimum);
  * elsewhere (the Huber terms make H indefinite far from a fit, where the objective is nearly
    an L1 norm of the residuals), the Gauss-Newton / IRLS step solves
    (G + lambda diag(G)) step = -g with G = sum_i w_i (psi(r_i)/r_i) grad r_i grad r_i^T,
    the curvature of Huber's quadratic majoriser (psi(r)/r = min(1, delta/|r|)).
The step is accepted only if f does not increase; lambda shrinks by 5 on success and grows by
10 on failure. Every array operation is over all still-active problems at once, mostly as
matrix products with the sparse term outer products, which is what makes a 4500-start grid
plus 1000 bootstrap refits take seconds in numpy.

Stopping is explicit (see `Tolerances`): a problem stops when an accepted step lowers f by
at most `ftol` *relative to f itself* (not to max(f, 1) as scipy's L-BFGS-B does, whose
default ftol stops after a few iterations on this objective, since f ~ 1e-3 here) and moves
no parameter by more than `xtol`; or when lambda exceeds `lambda_max` (no decrease is possible
at machine precision: a stationary point); or, reported as diverged, when a parameter runs
past `theta_bound` (a degenerate direction such as a -> -inf, alpha -> inf where one term of
the law vanishes); or after `maxiter` iterations (reported as not converged).
"""
from __future__ import annotations

import contextlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import optimize


@dataclass(frozen=True)
class Tolerances:
    """Stopping rules of the batched Newton method (all explicit; see the module docstring)."""

    ftol: float = 1e-12  # relative decrease of f per accepted step
    xtol: float = 1e-8  # largest absolute parameter change per accepted step
    maxiter: int = 600  # Newton iterations per problem
    lambda_max: float = 1e10  # damping beyond which the point is declared stationary
    theta_bound: float = 1e3  # |parameter| beyond which a start is declared divergent
    max_step: float = float('inf')  # largest change of any parameter in one step (a trust region)
    polish_ftol: float = 1e-15  # L-BFGS-B ftol for the final polish of the best start
    polish_gtol: float = 1e-11  # L-BFGS-B projected-gradient tolerance for the polish
    polish_maxiter: int = 20000


def huber(r: np.ndarray, delta: float) -> np.ndarray:
    """Huber_delta(r) = r^2/2 for |r| <= delta, delta (|r| - delta/2) otherwise (elementwise)."""
    a = np.abs(r)
    return np.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))


class LSEHuberProblem:
    """The data of one LSE-Huber fit: J term matrices T_j (n, P), targets y = log L (n,).

    Args:
      terms: sequence of J arrays of shape (n, P); u_ij = terms[j][i] @ theta.
      y: log of the observed losses, shape (n,).
      delta: the Huber threshold (on log loss).
    """

    def __init__(self, terms: Sequence[np.ndarray], y: np.ndarray, delta: float):
        self.terms = [np.ascontiguousarray(t, dtype=np.float64) for t in terms]
        self.y = np.asarray(y, dtype=np.float64)
        if self.y.ndim != 1:
            raise ValueError(f"y must be 1-D, got shape {self.y.shape}")
        n = self.y.shape[0]
        shapes = {t.shape for t in self.terms}
        if len(shapes) != 1 or next(iter(shapes))[0] != n:
            raise ValueError(f"every term must have shape (n={n}, P); got {sorted(shapes)}")
        if not np.all(np.isfinite(self.y)):
            raise ValueError("log losses must be finite (losses must be > 0)")
        self.n = n
        self.J = len(self.terms)
        self.P = self.terms[0].shape[1]
        self.delta = float(delta)
        # T_j[i] T_l[i]^T flattened to (n, P*P), keeping only the columns that are not all zero
        # (the Chinchilla terms are sparse: 4 of 25), for the Hessian products.
        self._outer: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
        for j in range(self.J):
            for l in range(j, self.J):
                o = np.einsum("np,nq->npq", self.terms[j], self.terms[l]).reshape(n, -1)
                cols = np.flatnonzero(np.any(o != 0, axis=0))
                self._outer[(j, l)] = (cols, np.ascontiguousarray(o[:, cols]))
        self._tcols = []
        for t in self.terms:
            cols = np.flatnonzero(np.any(t != 0, axis=0))
            self._tcols.append((cols, np.ascontiguousarray(t[:, cols])))

    # -- objective -------------------------------------------------------------------------------
    def _forward(self, theta: np.ndarray):
        u = [theta @ t.T for t in self.terms]  # J x (K, n)
        umax = u[0].copy()
        for uj in u[1:]:
            np.maximum(umax, uj, out=umax)
        e = [np.exp(uj - umax) for uj in u]
        s = e[0].copy()
        for ej in e[1:]:
            s += ej
        r = umax + np.log(s) - self.y
        return r, e, s

    def value(self, theta: np.ndarray, w: np.ndarray, return_forward: bool = False):
        """f_k for theta of shape (K, P) and weights (K, n) or (n,); returns (K,)."""
        theta = np.atleast_2d(theta)
        fwd = self._forward(theta)
        f = (w * huber(fwd[0], self.delta)).sum(axis=1)
        return (f, fwd) if return_forward else f

    def value_grad_hess(self, theta: np.ndarray, w: np.ndarray, forward=None, gauss_newton: bool = False):
        """(f, g, H) with shapes (K,), (K, P), (K, P, P); `forward` reuses `_forward(theta)`.

        With gauss_newton=True also returns G (K, P, P), the Gauss-Newton / IRLS matrix
        G = sum_i w_i (psi(r_i) / r_i) grad r_i grad r_i^T (positive semi-definite).
        """
        theta = np.atleast_2d(theta)
        K = theta.shape[0]
        d = self.delta
        r, e, s = self._forward(theta) if forward is None else forward
        a = np.abs(r)
        inside = a <= d
        f = (w * np.where(inside, 0.5 * r * r, d * (a - 0.5 * d))).sum(axis=1)
        inv_s = 1.0 / s
        p = [ej * inv_s for ej in e]
        wpsi = w * np.clip(r, -d, d)
        c1 = w * inside - wpsi  # w (psi' - psi)
        if gauss_newton:  # stack the GN coefficients under the exact ones: one product for both
            cg = w * np.minimum(1.0, d / np.maximum(a, 1e-300))  # w psi(r) / r
            c1 = np.concatenate([c1, cg])
        K2 = c1.shape[0]
        PP = self.P * self.P
        g = np.zeros((K, self.P))
        H = np.zeros((K2, PP))
        for j in range(self.J):
            q = wpsi * p[j]
            cols, tj = self._tcols[j]
            g[:, cols] += q @ tj
            pj = np.concatenate([p[j], p[j]]) if gauss_newton else p[j]
            cpj = c1 * pj
            for l in range(j, self.J):
                cols, o = self._outer[(j, l)]
                if l == j:
                    coef = cpj * pj
                    coef[:K] += q  # psi p_j T_j T_j^T (exact Hessian only)
                    H[:, cols] += coef @ o
                else:
                    pl = np.concatenate([p[l], p[l]]) if gauss_newton else p[l]
                    Hjl = np.zeros((K2, PP))
                    Hjl[:, cols] = (cpj * pl) @ o
                    Hjl = Hjl.reshape(K2, self.P, self.P)
                    H += (Hjl + Hjl.transpose(0, 2, 1)).reshape(K2, PP)
        H = H.reshape(K2, self.P, self.P)
        if gauss_newton:
            return f, g, H[:K], H[K:]
        return f, g, H

    def value_and_grad_single(self, theta: np.ndarray, w: np.ndarray):
        """Scalar f and gradient (P,) for scipy."""
        f, g, _ = self.value_grad_hess(theta[None, :], w[None, :])
        return float(f[0]), g[0]


@dataclass
class BatchResult:
    theta: np.ndarray  # (K, P) final parameters
    f: np.ndarray  # (K,) final objective
    grad_norm: np.ndarray  # (K,) infinity norm of the final gradient
    nit: np.ndarray  # (K,) Newton iterations used
    converged: np.ndarray  # (K,) bool: stopped by a tolerance, not by maxiter
    diverged: np.ndarray  # (K,) bool: a parameter ran past theta_bound (a degenerate direction)


@contextlib.contextmanager
def single_threaded_blas():
    """Limit BLAS to one thread (threadpoolctl, when installed): the products here are small and
    wide, and on a few shared cores BLAS threads slow them down several times."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def default_threads() -> int:
    """Threads for `minimize_batched` when none is given: the MDM_ANALYSIS_THREADS environment
    variable, else 1 (on a small shared machine, extra threads measured slower; each problem's
    result does not depend on the number of threads)."""
    return max(1, int(os.environ.get("MDM_ANALYSIS_THREADS", "1")))


def minimize_batched(problem: LSEHuberProblem, starts: np.ndarray, weights: np.ndarray | None = None,
                     tol: Tolerances = Tolerances(), threads: int | None = None) -> BatchResult:
    """Minimise K problems at once from `starts` (K, P) with `weights` (K, n) or (n,) or None.

    The K problems are independent; with `threads` > 1 they are split into that many chunks run
    in parallel threads (numpy releases the GIL in its array loops).
    """
    theta = np.array(starts, dtype=np.float64, copy=True)
    if theta.ndim != 2 or theta.shape[1] != problem.P:
        raise ValueError(f"starts must have shape (K, {problem.P}), got {theta.shape}")
    K = theta.shape[0]
    if weights is None:
        weights = np.ones(problem.n)
    w = np.ascontiguousarray(np.broadcast_to(np.asarray(weights, np.float64), (K, problem.n)))
    threads = default_threads() if threads is None else max(1, int(threads))
    threads = min(threads, max(1, K // 64))
    with single_threaded_blas():
        if threads == 1:
            return _minimize_chunk(problem, theta, w, tol)
        chunks = np.array_split(np.arange(K), threads)
        with ThreadPoolExecutor(max_workers=threads) as ex:
            parts = list(ex.map(lambda ix: _minimize_chunk(problem, theta[ix], w[ix], tol), chunks))
    return BatchResult(theta=np.concatenate([p.theta for p in parts]),
                       f=np.concatenate([p.f for p in parts]),
                       grad_norm=np.concatenate([p.grad_norm for p in parts]),
                       nit=np.concatenate([p.nit for p in parts]),
                       converged=np.concatenate([p.converged for p in parts]),
                       diverged=np.concatenate([p.diverged for p in parts]))


def _solve_each(A: np.ndarray, g: np.ndarray, dg: np.ndarray) -> np.ndarray:
    """-A^-1 g for a stack; a singular member (rare) gets the diagonally scaled gradient step
    alone, so that no problem's path depends on which others share its batch."""
    try:
        return -np.linalg.solve(A, g[..., None])[..., 0]
    except np.linalg.LinAlgError:
        out = np.empty_like(g)
        for i in range(A.shape[0]):
            try:
                out[i] = -np.linalg.solve(A[i], g[i])
            except np.linalg.LinAlgError:
                out[i] = -g[i] / dg[i]
        return out


def _minimize_chunk(problem: LSEHuberProblem, theta: np.ndarray, w: np.ndarray,
                    tol: Tolerances) -> BatchResult:
    K, P = theta.shape
    eye = np.eye(P)
    f, g, H, G = problem.value_grad_hess(theta, w, gauss_newton=True)
    lam = np.full(K, 1e-3)
    active = np.isfinite(f)
    converged = np.zeros(K, bool)
    diverged = ~active
    nit = np.zeros(K, int)
    for _ in range(tol.maxiter):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        li = lam[idx]
        # Newton where the exact Hessian is positive definite, Gauss-Newton (IRLS) elsewhere.
        ev, V = np.linalg.eigh(H[idx])
        pd_ = ev[:, 0] > 0
        step = np.empty((idx.size, P))
        if pd_.any():
            gv = np.einsum("kpq,kp->kq", V[pd_], g[idx[pd_]])
            step[pd_] = -np.einsum("kpq,kq->kp", V[pd_], gv / (ev[pd_] + li[pd_, None] * ev[pd_, -1:]))
        if (~pd_).any():
            Gi = G[idx[~pd_]]
            dg = np.maximum(np.einsum("kii->ki", Gi), 1e-300)
            A = Gi + li[~pd_, None, None] * dg[:, :, None] * eye
            step[~pd_] = _solve_each(A, g[idx[~pd_]], dg)
        big = np.abs(step).max(axis=1, keepdims=True)
        if np.isfinite(tol.max_step):  # optional trust-region cap
            step *= np.minimum(1.0, tol.max_step / np.maximum(big, 1e-300))
        trial = theta[idx] + step
        with np.errstate(over="ignore", invalid="ignore"):
            fn, (r_t, e_t, s_t) = problem.value(trial, w[idx], return_forward=True)
        ok = np.isfinite(fn) & (fn <= f[idx])
        dec = f[idx] - fn
        small = (dec <= tol.ftol * np.abs(f[idx])) & (np.abs(step).max(axis=1) <= tol.xtol)
        stuck = ~ok & (li * 10.0 > tol.lambda_max)
        acc = idx[ok]
        if acc.size:
            fa, ga, Ha, Ga = problem.value_grad_hess(
                trial[ok], w[acc], forward=(r_t[ok], [e[ok] for e in e_t], s_t[ok]), gauss_newton=True)
            theta[acc], f[acc], g[acc], H[acc], G[acc] = trial[ok], fa, ga, Ha, Ga
            lam[acc] = np.maximum(lam[acc] * 0.2, 1e-12)
        lam[idx[~ok]] *= 10.0
        nit[idx] += 1
        done = idx[(ok & small) | stuck]
        converged[done] = True
        active[done] = False
        # runaway along a flat direction (e.g. a term vanishing: a -> -inf, alpha -> inf)
        runaway = idx[np.abs(theta[idx]).max(axis=1) > tol.theta_bound]
        diverged[runaway] = True
        active[runaway] = False
    return BatchResult(theta=theta, f=f, grad_norm=np.abs(g).max(axis=1), nit=nit, converged=converged,
                       diverged=diverged)


def polish(problem: LSEHuberProblem, theta0: np.ndarray, weights: np.ndarray | None = None,
           tol: Tolerances = Tolerances()) -> tuple[np.ndarray, float, dict]:
    """Refine one solution with scipy L-BFGS-B at explicit tight tolerances.

    Returns (theta, f, info); the input is returned unchanged when the polish does not lower f.
    """
    w = np.ones(problem.n) if weights is None else np.asarray(weights, np.float64)
    f0, _ = problem.value_and_grad_single(theta0, w)
    res = optimize.minimize(problem.value_and_grad_single, theta0, args=(w,), jac=True,
                            method="L-BFGS-B",
                            options={"ftol": tol.polish_ftol, "gtol": tol.polish_gtol,
                                     "maxiter": tol.polish_maxiter, "maxcor": 30, "maxls": 50})
    info = {"polish_method": "L-BFGS-B", "polish_nit": int(res.nit),
            "polish_message": str(res.message), "polish_improvement": float(f0 - res.fun)}
    if np.isfinite(res.fun) and res.fun < f0:
        return np.asarray(res.x), float(res.fun), info
    return np.asarray(theta0, np.float64), f0, info
