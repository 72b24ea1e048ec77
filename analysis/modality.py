"""Per-modality scaling laws: L_m(N, D) for text, image and audio bits per token.

* separate: one `fit_chinchilla` per modality m on the runs that have a finite loss for m
  (default column bits_<m>); each has its own E_m, A_m, B_m, alpha_m, beta_m.
* joint: one fit with shared exponents and per-modality constants,

      L_m(N, D) = E_m + A_m / N^alpha + B_m / D^beta,

  i.e. log L_m = LSE(a_m - alpha log N, b_m - beta log D, e_m), minimising the sum over
  modalities and runs of Huber_delta(log L_hat - log L) with the same batched Newton method.
  Starts: every separate fit's (alpha, beta) and their mean, plus a grid of (alpha, beta), each
  with the separate fits' (a_m, b_m, e_m). The bootstrap resamples runs (all modalities of a
  run move together). The result also reports the separate fits' summed objective, so the
  cost of sharing the exponents is visible (joint objective >= separate sum, always).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from mdm.run_contract import MODALITIES

from .chinchilla import fit_chinchilla
from .lse_huber import LSEHuberProblem, Tolerances, minimize_batched, polish
from .results import ModalityLaws
from .stats import AnalysisError, bootstrap_weights, clean_rows, percentile_interval, require_columns


def _stack_modalities(df: pd.DataFrame, modalities: Sequence[str], loss: str, n: str, d: str,
                      run_id: str):
    parts, excluded = [], []
    for m in modalities:
        lc, dc = loss.format(m=m), d.format(m=m)
        if lc not in df.columns:
            excluded.append({"run_id": "*", "reason": f"modality {m}: no column {lc}"})
            continue
        require_columns(df, [n, dc], f"fit_modality_laws({m})")
        kept, ex = clean_rows(df, [n, dc, lc], positive=[n, dc, lc], run_id=run_id)
        excluded += [dict(e, reason=f"{m}: {e['reason']}") for e in ex]
        parts.append(pd.DataFrame({"m": m, "run_id": kept[run_id].astype(str).to_numpy(),
                                   "N": kept[n].to_numpy(float), "D": kept[dc].to_numpy(float),
                                   "L": kept[lc].to_numpy(float)}))
    if not parts:
        raise AnalysisError(f"fit_modality_laws: none of {list(modalities)} has a loss column "
                            f"({loss})")
    return pd.concat(parts, ignore_index=True), excluded


def fit_modality_laws(runs: pd.DataFrame, modalities: Sequence[str] | None = None, mode: str = "separate",
                      loss: str = "bits_{m}", n: str = "N", d: str = "D", run_id: str = "run_id",
                      delta: float = 1e-3, n_bootstrap: int = 200, seed: int = 0,
                      ci_level: float = 0.95, tol: Tolerances = Tolerances(),
                      threads: int | None = None, separate: ModalityLaws | None = None) -> ModalityLaws:
    """Fit per-modality laws, `mode` "separate" or "joint" (shared alpha, beta).

    `loss` and `d` are templates with {m} (e.g. d="tokens_{m}" to use each modality's own
    tokens). `modalities` defaults to those with any finite loss column. For the joint fit,
    `separate` (a previous separate fit on the same runs) saves refitting the starts.
    """
    if mode not in ("separate", "joint"):
        raise AnalysisError(f"mode must be 'separate' or 'joint', got {mode!r}")
    require_columns(runs, [n], "fit_modality_laws")
    if run_id not in runs.columns:
        runs = runs.assign(**{run_id: [str(i) for i in runs.index]})
    if modalities is None:
        modalities = [m for m in MODALITIES if loss.format(m=m) in runs.columns
                      and pd.to_numeric(runs[loss.format(m=m)], errors="coerce").notna().any()]
    if not modalities:
        raise AnalysisError(f"fit_modality_laws: no modality has a {loss} column with values")
    seps, excluded, warnings = {}, [], []
    if separate is not None and mode == "joint":
        if separate.mode != "separate" or not set(modalities) <= set(separate.fits):
            raise AnalysisError("`separate` must be a separate-mode fit covering the modalities")
        seps = {m: separate.fits[m] for m in modalities}
        excluded = list(separate.excluded)
    for m in (m for m in modalities if m not in seps):
        lc, dc = loss.format(m=m), d.format(m=m)
        if lc not in runs.columns:
            warnings.append(f"modality {m}: no column {lc}; skipped")
            continue
        seps[m] = fit_chinchilla(runs, loss=lc, n=n, d=dc, run_id=run_id, delta=delta,
                                 n_bootstrap=n_bootstrap if mode == "separate" else 0, seed=seed,
                                 ci_level=ci_level, tol=tol, threads=threads, label=m)
        excluded += [dict(e, reason=f"{m}: {e['reason']}") for e in seps[m].excluded]
    sep_obj = float(sum(f.objective for f in seps.values()))
    if mode == "separate":
        return ModalityLaws(mode="separate", fits=seps, objective=sep_obj,
                            run_ids=sorted({r for f in seps.values() for r in f.run_ids}),
                            optimizer={"separate_objective_sum": sep_obj}, excluded=excluded,
                            warnings=warnings + [w for f in seps.values() for w in f.warnings])

    data, _ = _stack_modalities(runs, list(seps), loss, n, d, run_id)
    mods = list(seps)
    M = len(mods)
    P = 2 + 3 * M
    code = data["m"].map({m: i for i, m in enumerate(mods)}).to_numpy()
    npts = len(data)
    onehot = np.zeros((npts, M))
    onehot[np.arange(npts), code] = 1.0
    lN, lD = np.log(data["N"].to_numpy()), np.log(data["D"].to_numpy())
    # theta = (alpha, beta, a_1, b_1, e_1, ..., a_M, b_M, e_M)
    T1, T2, T3 = (np.zeros((npts, P)) for _ in range(3))
    T1[:, 0] = -lN
    T2[:, 1] = -lD
    for i in range(M):
        T1[:, 2 + 3 * i] = onehot[:, i]
        T2[:, 3 + 3 * i] = onehot[:, i]
        T3[:, 4 + 3 * i] = onehot[:, i]
    prob = LSEHuberProblem([T1, T2, T3], np.log(data["L"].to_numpy()), delta)
    abe = np.concatenate([[seps[m].params["a"], seps[m].params["b"], seps[m].params["e"]] for m in mods])
    ab_pairs = [(seps[m].params["alpha"], seps[m].params["beta"]) for m in mods]
    ab_pairs.append(tuple(np.mean(ab_pairs, axis=0)))
    ab_pairs += [(a_, b_) for a_ in (0.2, 0.4, 0.7) for b_ in (0.2, 0.4, 0.7)]
    starts = np.array([np.r_[a_, b_, abe] for a_, b_ in ab_pairs])
    res = minimize_batched(prob, starts, tol=tol, threads=1)
    best = int(np.nanargmin(res.f))
    theta, fbest, pinfo = polish(prob, res.theta[best], tol=tol)

    def unpack(th):
        out = {}
        for i, m in enumerate(mods):
            a_, b_, e_ = th[..., 2 + 3 * i], th[..., 3 + 3 * i], th[..., 4 + 3 * i]
            out[m] = np.stack([np.exp(e_), np.exp(a_), np.exp(b_), th[..., 0], th[..., 1]], -1)
        return out

    point = unpack(theta)
    fits = {m: dict(zip(("E", "A", "B", "alpha", "beta"), map(float, point[m]))) for m in mods}
    shared = {"alpha": float(theta[0]), "beta": float(theta[1])}
    if n_bootstrap > 0:
        W = bootstrap_weights(data["run_id"].tolist(), n_bootstrap, np.random.default_rng(seed))
        bres = minimize_batched(prob, np.tile(theta, (n_bootstrap, 1)), W, tol=tol, threads=threads)
        samples = unpack(bres.theta)
        for m in mods:
            lo, hi = percentile_interval(samples[m], ci_level)
            fits[m]["se"] = dict(zip(("E", "A", "B"), map(float, np.std(samples[m][:, :3], 0, ddof=1))))
            fits[m]["ci"] = {k: [float(lo[j]), float(hi[j])] for j, k in enumerate(("E", "A", "B"))}
        lo, hi = percentile_interval(bres.theta[:, :2], ci_level)
        shared["se"] = {"alpha": float(np.std(bres.theta[:, 0], ddof=1)),
                        "beta": float(np.std(bres.theta[:, 1], ddof=1))}
        shared["ci"] = {"alpha": [float(lo[0]), float(hi[0])], "beta": [float(lo[1]), float(hi[1])]}
    if fbest < sep_obj - 1e-9:
        warnings.append("joint objective below the separate fits' sum: a separate fit did not reach "
                        "its minimum")
    return ModalityLaws(mode="joint", fits=fits, objective=float(fbest), shared=shared,
                        run_ids=sorted(set(data["run_id"])),
                        optimizer={"separate_objective_sum": sep_obj, "n_starts": int(len(starts)),
                                   "n_points": int(npts), **pinfo},
                        excluded=excluded, warnings=warnings)


__all__ = ["fit_modality_laws"]
