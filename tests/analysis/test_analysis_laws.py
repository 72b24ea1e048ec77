"""Synthetic recovery (data from known laws plus noise) and formula checks against independent
computations."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import optimize

from analysis.batch_size import collapse_score, critical_batch, fit_batch_size, fit_steps_curve, steps_to_target
from analysis.chinchilla import chinchilla_starts, fit_chinchilla, fit_chinchilla_arrays
from analysis.frontier import allocation_terms, compute_optimal
from analysis.isoflop import assign_budgets, fit_isoflop
from analysis.lse_huber import LSEHuberProblem, huber
from analysis.mixing import fit_mixing_law, optimal_mixture
from analysis.modality import fit_modality_laws
from analysis.results import chinchilla_law, load_result
from analysis.stats import AnalysisError, bootstrap_weights, power_law_fit

TRUE = {"E": 1.7, "A": 400.0, "B": 1100.0, "alpha": 0.34, "beta": 0.31}


def _law_data(seed=0, sigma=0.01, nN=8, nD=8, law=TRUE):
    rng = np.random.default_rng(seed)
    N = np.repeat(np.geomspace(1e7, 3e9, nN), nD)
    D = np.tile(np.geomspace(1e9, 3e11, nD), nN)
    L = chinchilla_law(N, D, **law) * np.exp(rng.normal(0, sigma, N.size))
    return pd.DataFrame({"run_id": [f"r{i}" for i in range(N.size)], "N": N, "D": D, "loss": L})


def test_huber_and_gradient_match_finite_differences():
    rng = np.random.default_rng(1)
    n, P = 30, 5
    terms = [rng.normal(size=(n, P)) for _ in range(3)]
    prob = LSEHuberProblem(terms, rng.normal(size=n) * 0.01, delta=0.05)
    th = rng.normal(size=P) * 0.1
    w = rng.integers(0, 3, n).astype(float)
    f, g, H = prob.value_grad_hess(th[None], w[None])
    # independent objective: numpy logsumexp + Huber
    u = np.stack([t @ th for t in terms], 1)
    r = np.log(np.exp(u).sum(1)) - prob.y
    assert f[0] == pytest.approx(float((w * huber(r, 0.05)).sum()), rel=1e-12)
    eps = 1e-6
    num_g = np.array([(prob.value((th + eps * e)[None], w[None])[0] - prob.value((th - eps * e)[None], w[None])[0])
                      / (2 * eps) for e in np.eye(P)])
    np.testing.assert_allclose(g[0], num_g, rtol=1e-5, atol=1e-9)
    num_H = np.array([(prob.value_grad_hess((th + eps * e)[None], w[None])[1][0]
                       - prob.value_grad_hess((th - eps * e)[None], w[None])[1][0]) / (2 * eps) for e in np.eye(P)])
    np.testing.assert_allclose(H[0], num_H, rtol=1e-4, atol=1e-7)
    # the Gauss-Newton matrix is positive semi-definite
    _, _, _, G = prob.value_grad_hess(th[None], w[None], gauss_newton=True)
    assert np.linalg.eigvalsh(G[0]).min() > -1e-12


def test_start_grid_is_the_literature_grid():
    S = chinchilla_starts()
    assert S.shape == (4500, 5)
    assert sorted(set(S[:, 3])) == [0.0, 0.5, 1.0, 1.5, 2.0]
    assert sorted(set(S[:, 0])) == [0.0, 5.0, 10.0, 15.0, 20.0, 25.0]
    assert sorted(set(S[:, 2])) == [-1.0, -0.5, 0.0, 0.5, 1.0]


def test_noiseless_law_is_recovered_exactly():
    df = _law_data(sigma=0.0)
    fit = fit_chinchilla(df, n_bootstrap=0)
    for k, v in TRUE.items():
        assert fit.params[k] == pytest.approx(v, rel=1e-5), k
    assert fit.objective < 1e-14


def test_synthetic_recovery_within_confidence_intervals():
    df = _law_data(seed=3, sigma=0.01)
    fit = fit_chinchilla(df, n_bootstrap=300, seed=0)
    for k, v in TRUE.items():
        lo, hi = fit.ci[k]
        assert lo <= v <= hi, (k, v, fit.ci[k])
        assert fit.se[k] > 0
    # bootstrap resamples runs: a run with 3 rows moves as one
    lo, hi = fit.predict_interval([1e8], [1e10])
    assert lo[0] < chinchilla_law(1e8, 1e10, **TRUE) < hi[0]


def test_bootstrap_weights_resample_runs_not_rows():
    rng = np.random.default_rng(0)
    groups = ["a", "a", "a", "b", "c", "c"]
    W = bootstrap_weights(groups, 500, rng)
    assert W.shape == (500, 6)
    np.testing.assert_array_equal(W[:, 0], W[:, 1])
    np.testing.assert_array_equal(W[:, 4], W[:, 5])
    # each replicate draws 3 runs
    np.testing.assert_array_equal(W[:, [0, 3, 4]].sum(1), 3)
    assert 0.9 < W[:, 0].mean() < 1.1


def test_compute_optimal_matches_numerical_minimisation():
    alloc = compute_optimal(TRUE, C=[1e19, 1e21, 1e23], k=6.0)
    for row in alloc.table:
        C = row["C"]
        # minimise L(N, C / 6N) over log N numerically
        res = optimize.minimize_scalar(lambda x: chinchilla_law(np.exp(x), C / (6 * np.exp(x)), **TRUE),
                                       bounds=(np.log(1e5), np.log(1e14)), method="bounded",
                                       options={"xatol": 1e-10})
        assert row["N_opt"] == pytest.approx(np.exp(res.x), rel=1e-5)
        assert row["D_opt"] == pytest.approx(C / (6 * row["N_opt"]), rel=1e-9)
        assert row["tokens_per_param"] == pytest.approx(row["D_opt"] / row["N_opt"])
        # the frontier passes through the optimum
        assert alloc.frontier(row["N_opt"]) == pytest.approx(row["D_opt"], rel=1e-9)
    a = TRUE["beta"] / (TRUE["alpha"] + TRUE["beta"])
    assert alloc.a == pytest.approx(a) and alloc.b == pytest.approx(1 - a)
    assert alloc.frontier_exponent == pytest.approx(TRUE["alpha"] / TRUE["beta"])
    aa, bb, G, Gf, fe = allocation_terms(TRUE["E"], TRUE["A"], TRUE["B"], TRUE["alpha"], TRUE["beta"])
    assert Gf == pytest.approx(alloc.frontier_coef)
    with pytest.raises(AnalysisError, match=r"parameters \['beta'\] missing"):
        compute_optimal({"E": 1, "A": 1, "B": 1, "alpha": 0.3})
    with pytest.raises(AnalysisError, match="need A, B, alpha, beta > 0"):
        compute_optimal({"E": 1, "A": 1, "B": 1, "alpha": 0.3, "beta": -0.1})


def test_isoflop_recovers_the_allocation_exponent():
    rng = np.random.default_rng(5)
    rows = []
    a_true = TRUE["beta"] / (TRUE["alpha"] + TRUE["beta"])
    for C in (1e18, 3e18, 1e19, 3e19, 1e20, 3e20):
        nstar = compute_optimal(TRUE, C=[C]).table[0]["N_opt"]
        for off in np.linspace(-0.6, 0.6, 9):
            N = nstar * 10 ** off
            D = C / (6 * N)
            rows.append({"N": N, "D": D, "C": C * np.exp(rng.normal(0, 0.01)),
                         "loss": chinchilla_law(N, D, **TRUE) * np.exp(rng.normal(0, 0.002))})
    df = pd.DataFrame(rows)
    fit = fit_isoflop(df)
    assert len(fit.budgets) == 6  # budgets grouped despite the jittered C
    lo, hi = fit.n_opt_law.ci["exponent"]
    assert lo <= a_true <= hi
    assert abs(fit.a - a_true) < 0.02
    # the N*-power law equals an independent log-log polyfit of the vertices
    slope = np.polyfit(np.log([b["C"] for b in fit.budgets]), np.log([b["N_opt"] for b in fit.budgets]), 1)[0]
    assert fit.a == pytest.approx(slope, rel=1e-10)


def test_isoflop_warnings_and_errors():
    N = np.geomspace(1e6, 1e9, 7)
    base = pd.DataFrame({"N": N, "D": 1e19 / (6 * N), "C": 1e19})
    # vertex near the low edge of the grid -> off_centre / unbracketed flags
    df = base.assign(loss=(np.log10(N) - 6.2) ** 2 + 2.0)
    df2 = pd.DataFrame({"N": N, "D": 1e20 / (6 * N), "C": 1e20, "loss": (np.log10(N) - 7.5) ** 2 + 1.9})
    fit = fit_isoflop(pd.concat([df, df2]), max_span_decades=4)
    flags = {round(np.log10(b["C"])): b["flags"] for b in fit.budgets}
    assert "off_centre" in flags[19] and flags[20] == []
    wide = fit_isoflop(pd.concat([df, df2]), max_span_decades=1.5)
    assert all("too_wide" in b["flags"] for b in wide.budgets)
    with pytest.raises(AnalysisError, match="at least 2 usable budgets"):
        fit_isoflop(df)
    with pytest.raises(AnalysisError, match="empty"):
        fit_isoflop(df.iloc[:0])
    with pytest.raises(AnalysisError, match=r"missing column\(s\) \['loss'\]"):
        fit_isoflop(base)
    np.testing.assert_allclose(assign_budgets([1e19, 1.05e19, 3e19, 2.9e19, 1e20]),
                               [np.sqrt(1e19 * 1.05e19)] * 2 + [np.sqrt(3e19 * 2.9e19)] * 2 + [1e20])


def test_isoflop_cubic_check_ignores_rounding_noise_and_sees_real_curvature():
    """Exact parabolas plus a 1e-12 cubic-shaped wobble (what another CPU's BLAS rounding can
    look like): residual sums ~1e-24, whose ratio says nothing -> not too_wide. A real cubic
    term (0.05 per decade^3) over the same 1-decade grid -> too_wide."""
    N = np.geomspace(1e7, 1e8, 7)
    x = np.log10(N) - 7.5
    rows = []
    for C, wob in ((1e19, 1e-12), (1e20, -1e-12)):
        rows.append(pd.DataFrame({"N": N, "D": C / (6 * N), "C": C,
                                  "loss": x ** 2 + 2.0 + wob * x ** 3}))
    fit = fit_isoflop(pd.concat(rows))
    assert all(b["flags"] == [] and b["cubic_rss_ratio"] == 1.0 for b in fit.budgets)
    curved = pd.concat(r.assign(loss=r["loss"] + 0.05 * (np.log10(r["N"]) - 7.5) ** 3 * 8)
                       for r in rows)
    fit = fit_isoflop(curved)
    assert all("too_wide" in b["flags"] and b["cubic_rss_ratio"] < 0.5 for b in fit.budgets)


def test_chinchilla_input_errors():
    with pytest.raises(AnalysisError, match="empty"):
        fit_chinchilla(pd.DataFrame({"N": [], "D": [], "loss": []}))
    with pytest.raises(AnalysisError, match="at least 6 points"):
        fit_chinchilla_arrays([1e6] * 3, [1e9] * 3, [3.0] * 3)
    df = _law_data(sigma=0.0).iloc[:10].copy()
    df.loc[df.index[0], "loss"] = np.nan
    fit = fit_chinchilla(df, n_bootstrap=0, starts=chinchilla_starts(a=(5.0,), b=(5.0,)))
    assert fit.excluded == [{"run_id": "r0", "reason": "loss is missing, non-finite or <= 0"}]
    assert fit.n_points == 9


def test_steps_curve_and_critical_batch_recovered():
    rng = np.random.default_rng(0)
    rows = []
    for N, smin, bn in ((1e8, 1000.0, 300.0), (4e8, 1500.0, 600.0), (1.6e9, 2200.0, 1200.0), (6.4e9, 3300.0, 2400.0)):
        for B in (32, 64, 128, 256, 512, 1024, 2048, 4096):
            rows.append({"N": N, "batch": B, "steps": smin * (1 + bn / B) * np.exp(rng.normal(0, 0.01))})
    df = pd.DataFrame(rows)
    fit = fit_batch_size(df, group="N", B0=64, scale_unit=1e6)
    for g, (smin, bn) in zip(fit.groups, ((1000, 300), (1500, 600), (2200, 1200), (3300, 2400))):
        assert g["S_min"] == pytest.approx(smin, rel=0.05)
        assert g["B_noise"] == pytest.approx(bn, rel=0.08)
        assert g["B_crit"] == pytest.approx(critical_batch(g["S_min"], g["b"], 0.2, 64))
    # B_noise grows as N^0.5 here
    lo, hi = fit.noise_law.ci["exponent"]
    assert lo <= 0.5 <= hi
    one = fit_steps_curve([1, 2, 4, 8], [10 + 40 / 1, 10 + 40 / 2, 10 + 40 / 4, 10 + 40 / 8])
    assert one["S_min"] == pytest.approx(10, rel=1e-8) and one["b"] == pytest.approx(40, rel=1e-8)
    with pytest.raises(AnalysisError, match="3 distinct batch sizes"):
        fit_steps_curve([1, 2], [3, 2])


def test_steps_to_target_interpolates_in_log_steps():
    steps = np.geomspace(1, 1e4, 30)
    loss = 2 + 10 * steps ** -0.5  # reaches 2.1 at step 1e4 exactly; 2.2 at 2500
    curves = pd.DataFrame({"run_id": "a", "step": steps, "bits_text": loss})
    out = steps_to_target(pd.concat([curves, curves.assign(run_id="b", bits_text=loss + 1)]), 2.2)
    a = out.set_index("run_id")
    assert a.loc["a", "reached"] and a.loc["a", "steps"] == pytest.approx(2500, rel=0.02)
    assert not a.loc["b", "reached"] and np.isnan(a.loc["b", "steps"])  # kept, not dropped


def test_collapse_score_matches_hand_computation():
    t = np.geomspace(1e3, 1e6, 50)
    same = [(t, 3 + 0 * t), (t, 3 + 0 * t)]
    assert collapse_score(same)[0] == pytest.approx(0.0, abs=1e-15)
    two = [(t, np.full_like(t, 2.0)), (t, np.full_like(t, 4.0))]
    # std over curves (ddof 0) = 1, mean = 3 -> 1/3 at every grid point
    assert collapse_score(two)[0] == pytest.approx(1 / 3)
    with pytest.raises(AnalysisError, match="do not overlap"):
        collapse_score([(np.array([1.0, 2.0]), np.ones(2)), (np.array([3.0, 4.0]), np.ones(2))])


def test_power_law_fit_matches_polyfit():
    rng = np.random.default_rng(0)
    x = np.geomspace(1, 1e4, 12)
    y = 3.0 * x ** 0.7 * np.exp(rng.normal(0, 0.05, x.size))
    pl = power_law_fit(x, y)
    slope, icpt = np.polyfit(np.log(x), np.log(y), 1)
    assert pl.exponent == pytest.approx(slope, rel=1e-12)
    assert pl.coef == pytest.approx(np.exp(icpt), rel=1e-12)
    lo, hi = pl.prediction_interval(100.0)
    mlo, mhi = pl.predict_interval(100.0)
    assert lo < mlo < pl.predict(100.0) < mhi < hi


def test_mixing_law_recovery_and_optimal_mixture():
    rng = np.random.default_rng(0)
    R = rng.dirichlet(np.ones(3), size=40)
    truth = {"bits_text": (2.0, [-1.5, 0.3, 0.1]), "bits_image": (3.0, [0.2, -2.0, 0.1])}
    df = pd.DataFrame(R, columns=["r_text", "r_image", "r_audio"])
    for t, (c, tt) in truth.items():
        df[t] = c + np.exp(R @ np.array(tt))
    fits = {t: fit_mixing_law(df, t, ["r_text", "r_image", "r_audio"]) for t in truth}
    for t, (c, tt) in truth.items():
        assert fits[t].params["c"] == pytest.approx(c, abs=1e-6)
        np.testing.assert_allclose(fits[t].params["t"], tt, atol=1e-5)
        assert fits[t].train["rmse"] < 1e-8
    opt = optimal_mixture(fits, bounds=[(0.05, 1.0)] * 3)
    # independent: brute force over a fine simplex grid
    g = np.linspace(0.05, 0.9, 171)
    best = (np.inf, None)
    for a in g:
        for b in g:
            r = np.array([a, b, 1 - a - b])
            if r[2] < 0.05 - 1e-12:
                continue
            v = sum(f.predict(r[None])[0] for f in fits.values())
            best = min(best, (v, tuple(r)), key=lambda z: z[0])
    assert opt.objective <= best[0] + 1e-9
    np.testing.assert_allclose(list(opt.ratios.values()), best[1], atol=0.01)
    lin = fit_mixing_law(df, "bits_text", ["r_text", "r_image", "r_audio"], law="linear")
    assert lin.train["rmse"] > fits["bits_text"].train["rmse"]
    with pytest.raises(AnalysisError, match="unknown mixing law"):
        fit_mixing_law(df, "bits_text", ["r_text", "r_image"], law="cubic")


def test_joint_modality_law_shares_exponents():
    rng = np.random.default_rng(2)
    base = _law_data(sigma=0.0, nN=6, nD=6)
    runs = base[["run_id", "N", "D"]].copy()
    consts = {"text": (1.7, 400.0, 1100.0), "image": (2.6, 250.0, 1500.0)}
    for m, (E, A, B) in consts.items():
        runs[f"bits_{m}"] = chinchilla_law(runs["N"], runs["D"], E, A, B, 0.34, 0.31) * np.exp(
            rng.normal(0, 0.005, len(runs)))
    joint = fit_modality_laws(runs, mode="joint", n_bootstrap=100)
    sep = fit_modality_laws(runs, mode="separate", n_bootstrap=0)
    lo, hi = joint.shared["ci"]["alpha"]
    assert lo <= 0.34 <= hi
    lo, hi = joint.shared["ci"]["beta"]
    assert lo <= 0.31 <= hi
    for m, (E, A, B) in consts.items():
        assert joint.fits[m]["alpha"] == joint.shared["alpha"]
        assert joint.fits[m]["E"] == pytest.approx(E, rel=0.05)
    # sharing exponents can only cost objective
    assert joint.objective >= sep.objective - 1e-12
    assert joint.optimizer["separate_objective_sum"] == pytest.approx(sep.objective)
    assert set(sep.fits) == {"text", "image"}
    pred = joint.predict("text", 1e8, 1e10)
    assert pred == pytest.approx(chinchilla_law(1e8, 1e10, *consts["text"], 0.34, 0.31), rel=0.02)


def test_results_round_trip_through_json():
    df = _law_data(seed=1)
    fit = fit_chinchilla(df, n_bootstrap=50)
    text = fit.to_json()
    json.loads(text)  # strict JSON (no NaN)
    back = load_result(text)
    assert back.params == fit.params and back.run_ids == fit.run_ids
    np.testing.assert_allclose(back.bootstrap_samples(), fit.bootstrap_samples())
    lo, hi = back.predict_interval([1e8], [1e10])
    assert lo[0] < back.predict(1e8, 1e10) < hi[0]
    alloc = compute_optimal(fit)
    assert load_result(alloc.to_dict()).frontier_coef == alloc.frontier_coef
    assert "a" in alloc.ci and alloc.ci["a"][0] < alloc.a < alloc.ci["a"][1]


def test_batched_minimiser_is_thread_count_independent():
    from analysis.chinchilla import chinchilla_problem
    from analysis.lse_huber import minimize_batched

    df = _law_data(seed=4)
    prob = chinchilla_problem(df["N"].to_numpy(), df["D"].to_numpy(), df["loss"].to_numpy(), 1e-3)
    S = chinchilla_starts(a=(0.0, 10.0, 20.0), b=(0.0, 10.0, 20.0))
    r1 = minimize_batched(prob, S, threads=1)
    r2 = minimize_batched(prob, S, threads=2)
    assert r1.f.min() == pytest.approx(r2.f.min(), rel=1e-10)
    ok = r1.converged & r2.converged
    np.testing.assert_allclose(r1.f[ok], r2.f[ok], rtol=1e-6, atol=1e-14)
