"""Timings of the analysis fitters on the published data (prints a table).

    .venv/bin/python benchmarks/bench_analysis.py [--validation DIR] [--repeats N] [--reference-starts K]

Main figure: the Chinchilla Huber/LSE fit of Epoch AI's 240 points with the full 4500-start grid
plus 1000 bootstrap refits (resampling runs). For comparison it also times scipy's L-BFGS-B run
start by start with tight explicit tolerances on K starts (default 100) and extrapolates to
4500 starts: the per-start loop the batched solver replaces.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from analysis.batch_size import fit_batch_size  # noqa: E402
from analysis.chinchilla import chinchilla_problem, chinchilla_starts, fit_chinchilla, fit_chinchilla_lsq  # noqa: E402
from analysis.datasets import (default_validation_dir, load_critical_batch, load_epoch_chinchilla,  # noqa: E402
                               load_isoflops, load_regmix)
from analysis.isoflop import fit_isoflop  # noqa: E402
from analysis.loading import load_runs  # noqa: E402
from analysis.mixing import fit_mixing_law  # noqa: E402
from analysis.synthetic import write_synthetic_runs  # noqa: E402


def timed(fn, repeats=1):
    best, out = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--validation", default=default_validation_dir())
    p.add_argument("--repeats", type=int, default=1, help="repeat each timing, keep the best")
    p.add_argument("--reference-starts", type=int, default=100,
                   help="starts timed for the per-start scipy reference (0: skip)")
    a = p.parse_args(argv)
    if not os.path.isdir(a.validation):
        print(f"validation data not found at {a.validation}", file=sys.stderr)
        return 2
    rows = []
    ep = load_epoch_chinchilla(a.validation)
    t, fit = timed(lambda: fit_chinchilla(ep, n_bootstrap=1000, seed=0), a.repeats)
    o = fit.optimizer
    rows.append(("chinchilla Huber/LSE, 240 pts, 4500 starts + 1000 bootstrap (total)", t))
    rows.append(("  of which: grid of 4500 starts", o["seconds_grid"]))
    rows.append(("  of which: 1000 bootstrap refits", fit.bootstrap["seconds"]))
    print(f"objective {fit.objective:.8f}  alpha {fit.params['alpha']:.4f}  beta {fit.params['beta']:.4f}  "
          f"E {fit.params['E']:.4f}  A {fit.params['A']:.1f}  B {fit.params['B']:.1f}")
    print(f"starts at the best optimum {o['n_starts_at_best']}, diverged {o['n_diverged']}, "
          f"mean Newton iterations {o['iterations_mean']:.1f}; bootstrap se alpha {fit.se['alpha']:.4f} "
          f"beta {fit.se['beta']:.4f}")
    t, _ = timed(lambda: fit_chinchilla(ep, n_bootstrap=0, threads=1), a.repeats)
    rows.append(("chinchilla grid only, one thread", t))
    if a.reference_starts:
        from scipy import optimize

        prob = chinchilla_problem(ep["N"].to_numpy(), ep["D"].to_numpy(), ep["loss"].to_numpy(), 1e-3)
        w = np.ones(len(ep))
        S = chinchilla_starts()
        idx = np.random.default_rng(0).choice(len(S), a.reference_starts, replace=False)
        t0 = time.perf_counter()
        for s in S[idx]:
            optimize.minimize(prob.value_and_grad_single, s, args=(w,), jac=True, method="L-BFGS-B",
                              options={"ftol": 1e-15, "gtol": 1e-11, "maxiter": 20000})
        dt = time.perf_counter() - t0
        rows.append((f"reference: scipy L-BFGS-B per start, tight tol, {a.reference_starts} starts", dt))
        rows.append(("reference extrapolated to 4500 starts", dt * len(S) / a.reference_starts))
    sub = ep[ep["C"] < 1e21]
    rows.append(("chinchilla least squares (217 pts, 49 starts)", timed(lambda: fit_chinchilla_lsq(sub), a.repeats)[0]))
    iso = load_isoflops(a.validation)
    rows.append(("IsoFLOP approach 2 (123 pts, 9 budgets)", timed(lambda: fit_isoflop(iso), a.repeats)[0]))
    cb = load_critical_batch(a.validation)
    rows.append(("critical batch (45 runs, 5 models)", timed(lambda: fit_batch_size(
        cb, batch="batch", steps="steps", group="model", scale="N", B0=256, scale_unit=1e6), a.repeats)[0]))
    tr, dom, _ = load_regmix(a.validation, "train")
    rows.append(("RegMix exponential mixing law (512 mixtures x 17 domains)", timed(lambda: fit_mixing_law(
        tr, "metric/the_pile_pile_cc_val_loss", dom), a.repeats)[0]))
    with tempfile.TemporaryDirectory() as d:
        rows.append(("write synthetic runs root (90 runs)", timed(lambda: write_synthetic_runs(os.path.join(d, "r")), 1)[0]))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rows.append(("load synthetic runs root", timed(lambda: load_runs(os.path.join(d, "r")), a.repeats)[0]))
    width = max(len(r[0]) for r in rows)
    print(f"\n{'benchmark':<{width}}  seconds")
    for name, sec in rows:
        print(f"{name:<{width}}  {sec:8.3f}")
    print(f"\n(cpu count {os.cpu_count()}, load average {os.getloadavg()[0]:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
