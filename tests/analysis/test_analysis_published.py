"""The fitters against published data and the numbers shared/validation-data/README.md pins."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import optimize

from analysis.batch_size import critical_batch, fit_batch_size
from analysis.chinchilla import chinchilla_problem, fit_chinchilla, fit_chinchilla_arrays, fit_chinchilla_lsq
from analysis.datasets import load_critical_batch, load_epoch_chinchilla, load_isoflops, load_regmix
from analysis.isoflop import fit_isoflop
from analysis.mixing import fit_mixing_law
from analysis.stats import spearman

MIN_OBJECTIVE = 0.00101827


@pytest.fixture(scope="module")
def epoch(validation_dir):
    return load_epoch_chinchilla(validation_dir)


@pytest.fixture(scope="module")
def epoch_fit(epoch):
    """Huber/LSE fit, full 4500-start grid, 1000 bootstrap refits (resampling the 240 runs)."""
    return fit_chinchilla(epoch, loss="loss", n="N", d="D", n_bootstrap=1000, seed=0)


def test_epoch_data_shape(epoch, validation_dir):
    raw = pd.read_csv(f"{validation_dir}/epoch_chinchilla/svg_extracted_data.csv")
    assert len(raw) == 245 and len(epoch) == 240
    # the five dropped rows are the five highest losses
    assert epoch["loss"].max() < raw["loss"].nlargest(5).min()
    np.testing.assert_allclose(epoch["D"], epoch["C"] / (6 * epoch["N"]))


def test_epoch_huber_point_estimates(epoch_fit):
    p = epoch_fit.params
    assert abs(epoch_fit.objective - MIN_OBJECTIVE) < 1e-8
    assert 0.3473 - 0.002 <= p["alpha"] <= 0.3478 + 0.002
    assert 0.3659 - 0.002 <= p["beta"] <= 0.3672 + 0.002
    assert 1.8169 - 0.001 <= p["E"] <= 1.8172 + 0.001
    assert 478 * 0.97 <= p["A"] <= 482 * 1.03
    assert 2085 * 0.97 <= p["B"] <= 2143 * 1.03
    assert abs(p["beta"] / (p["alpha"] + p["beta"]) - 0.513) < 0.02
    # LSE parameterisation is consistent: A = e^a etc.
    assert np.isclose(p["A"], np.exp(p["a"])) and np.isclose(p["E"], np.exp(p["e"]))
    assert epoch_fit.n_points == 240 and len(epoch_fit.run_ids) == 240
    assert epoch_fit.optimizer["n_starts"] == 4500
    assert epoch_fit.optimizer["grad_inf_norm"] < 1e-8


def test_epoch_objective_is_independent_sum_of_huber(epoch, epoch_fit):
    """Recompute the objective at the reported optimum with plain numpy."""
    p = epoch_fit.params
    N, D, L = epoch["N"].to_numpy(), epoch["D"].to_numpy(), epoch["loss"].to_numpy()
    r = np.log(p["E"] + p["A"] / N ** p["alpha"] + p["B"] / D ** p["beta"]) - np.log(L)
    d = 1e-3
    hub = np.where(np.abs(r) <= d, 0.5 * r ** 2, d * (np.abs(r) - d / 2))
    assert hub.sum() == pytest.approx(epoch_fit.objective, rel=1e-9)


def test_epoch_bootstrap_standard_errors_and_intervals(epoch_fit):
    se = epoch_fit.se
    published = {"A": 124.5, "B": 1293.0, "E": 0.0257, "alpha": 0.0154, "beta": 0.0206}
    for k, v in published.items():
        # "within about 10%"; B is the heavy-tailed flat direction of the law: 15%
        tol = 0.15 if k == "B" else 0.10
        assert abs(se[k] / v - 1) < tol, (k, se[k], v)
    ci = epoch_fit.ci
    pub_ci = {"A": (285, 744), "B": (1042, 5810), "E": (1.769, 1.871), "alpha": (0.317, 0.373),
              "beta": (0.331, 0.415)}
    for k, (lo, hi) in pub_ci.items():
        assert ci[k][0] == pytest.approx(lo, rel=0.1), (k, ci[k])
        assert ci[k][1] == pytest.approx(hi, rel=0.1), (k, ci[k])
    assert epoch_fit.bootstrap["n"] == 1000 and epoch_fit.bootstrap["resample"] == "runs"
    assert epoch_fit.bootstrap["n_converged"] == 1000
    # the point estimate lies inside every interval
    for k in pub_ci:
        assert ci[k][0] <= epoch_fit.params[k] <= ci[k][1]


def test_default_scipy_tolerances_stop_early_but_the_fitter_does_not(epoch):
    """The trap: L-BFGS-B at scipy's default tolerances on the mean Huber objective stops within
    a few iterations far from the minimum; our fitter from the same start reaches it."""
    N, D, L = epoch["N"].to_numpy(), epoch["D"].to_numpy(), epoch["loss"].to_numpy()
    prob = chinchilla_problem(N, D, L, 1e-3)
    w = np.ones(len(N))
    start = np.array([0.0, 0.0, -1.0, 1.0, 1.0])  # (a, b, e, alpha, beta): a grid start

    def mean_obj(th):
        f, g = prob.value_and_grad_single(th, w)
        return f / len(N), g / len(N)

    res = optimize.minimize(mean_obj, start, jac=True, method="L-BFGS-B")
    assert res.nit <= 5
    assert res.fun * len(N) > 10 * MIN_OBJECTIVE
    ours = fit_chinchilla_arrays(N, D, L, starts=start[None, :], n_bootstrap=0)
    assert abs(ours.objective - MIN_OBJECTIVE) < 1e-8
    assert ours.optimizer["grad_inf_norm"] < 1e-8


def test_epoch_all_245_points(validation_dir):
    df = load_epoch_chinchilla(validation_dir, drop_outliers=0)
    fit = fit_chinchilla(df, n_bootstrap=0)
    assert fit.n_points == 245
    assert 0.349 <= fit.params["alpha"] <= 0.353
    assert 0.453 <= fit.params["beta"] <= 0.456


def test_epoch_least_squares_variant(epoch):
    sub = epoch[epoch["C"] < 1e21]
    assert len(sub) == 217
    fit = fit_chinchilla_lsq(sub, n_scale=1e6, d_scale=1e9)
    expected = {"E": 1.9051, "A": 4.0005, "B": 1.0509, "alpha": 0.3511, "beta": 0.4587}
    for k, v in expected.items():
        assert fit.params[k] == pytest.approx(v, rel=1e-3), k
    assert fit.rss == pytest.approx(0.062414, rel=1e-3)
    assert fit.r2 == pytest.approx(0.996040, rel=1e-3)
    # independent check: RSS recomputed from the parameters
    Ns, Ds, L = sub["N"] / 1e6, sub["D"] / 1e9, sub["loss"]
    p = fit.params
    rss = float(((p["E"] + p["A"] * Ns ** -p["alpha"] + p["B"] * Ds ** -p["beta"] - L) ** 2).sum())
    assert rss == pytest.approx(fit.rss, rel=1e-9)


def test_chinchilla_isoflop_exponent(validation_dir):
    df = load_isoflops(validation_dir, "epochai_chinchilla")
    assert len(df) == 123 and df["C"].nunique() == 9
    # Policy 1: all 123 points (no outlier removal)
    fit = fit_isoflop(df, loss="loss", n="N", d="D", budget="C")
    assert abs(fit.a - 0.495) < 0.03
    assert float(fit.n_opt(5.76e23)) == pytest.approx(60e9, rel=0.05)
    assert fit.n_opt_law.ci["exponent"][0] < 0.49 < fit.n_opt_law.ci["exponent"][1]
    # the 1e20 budget's vertex is outside its sampled N range: flagged, not hidden
    b20 = next(b for b in fit.budgets if np.isclose(b["C"], 1e20))
    assert "unbracketed" in b20["flags"] and any("1e+20" in w for w in fit.warnings)
    # independent vertex computation for one budget
    g = df[df["C"] == 6e20]
    c2, c1, _ = np.polyfit(np.log10(g["N"]), g["loss"], 2)
    b = next(b for b in fit.budgets if np.isclose(b["C"], 6e20))
    assert b["N_opt"] == pytest.approx(10 ** (-c1 / (2 * c2)), rel=1e-9)
    # Policy 2: only the points not flagged as outliers (85 points, 7 budgets)
    clean = df[~df["outlier"].astype(bool)]
    fit2 = fit_isoflop(clean, loss="loss", n="N", d="D", budget="C")
    assert len(clean) == 85 and len(fit2.budgets) == 7
    assert fit2.a == pytest.approx(0.541, abs=0.005)
    assert float(fit2.n_opt(5.76e23)) == pytest.approx(97e9, rel=0.05)


def test_critical_batch_size_runs(validation_dir):
    df = load_critical_batch(validation_dir)
    assert len(df) == 45
    fit = fit_batch_size(df, batch="batch", steps="steps", group="model", scale="N",
                         overhead=0.2, B0=256, scale_unit=1e6)
    got = {g["key"]: g for g in fit.groups}
    S_min = dict(zip(["85M", "151M", "302M", "604M", "1.2B"], [1293.8, 1752.4, 2095.3, 2459.9, 3897.3]))
    b = dict(zip(S_min, [2.834e6, 5.677e6, 1.138e7, 1.945e7, 4.338e7]))
    cbs = dict(zip(S_min, [745.3, 955.2, 1393.7, 1888.5, 2533.4]))
    for m in S_min:
        assert got[m]["S_min"] == pytest.approx(S_min[m], rel=1e-3)
        assert got[m]["b"] == pytest.approx(b[m], rel=1e-3)
        assert got[m]["B_crit"] == pytest.approx(cbs[m], rel=1e-3)
        # McCandlish's B_noise is a different, larger quantity: both are reported, labelled
        assert got[m]["B_noise"] > 2.5 * got[m]["B_crit"]
    assert fit.cbs_law.coef == pytest.approx(93.1968, rel=1e-3)
    assert fit.cbs_law.exponent == pytest.approx(0.46828, rel=1e-3)
    assert fit.definition["name"] == "linear_scaling_overhead" and fit.definition["B0"] == 256
    # independent: B_crit solves S(B) = 1.2 S(B0) B0 / B by root finding
    g = got["302M"]
    S = lambda B: g["S_min"] + g["b"] / B
    root = optimize.brentq(lambda B: S(B) - 1.2 * S(256) * 256 / B, 257, 1e6)
    assert g["B_crit"] == pytest.approx(root, rel=1e-9)
    assert critical_batch(g["S_min"], g["b"], 0.2, 256) == pytest.approx(root, rel=1e-9)


def test_regmix_exponential_beats_linear(validation_dir):
    train, domains, losses = load_regmix(validation_dir, "train")
    test, _, _ = load_regmix(validation_dir, "test")
    assert len(train) == 512 and len(test) == 256 and len(domains) == 17
    target = "metric/the_pile_pile_cc_val_loss"
    exp = fit_mixing_law(train, target, domains, law="exponential", test=test)
    lin = fit_mixing_law(train, target, domains, law="linear", test=test)
    assert exp.test["spearman"] >= 0.95
    assert 0.85 <= lin.test["spearman"] <= 0.93
    assert exp.test["spearman"] > lin.test["spearman"] and exp.test["rmse"] < lin.test["rmse"]
    # independent Spearman: rank correlation recomputed from the predictions
    pred = exp.predict(test[domains].to_numpy(float))
    ranks = lambda v: pd.Series(v).rank().to_numpy()
    rho = np.corrcoef(ranks(pred), ranks(test[target].to_numpy()))[0, 1]
    assert exp.test["spearman"] == pytest.approx(rho, rel=1e-9)
    assert spearman(pred, test[target]) == pytest.approx(rho, rel=1e-9)


def test_audits_on_published_data(validation_dir):
    from analysis.audit import audit_batch_size, audit_isoflop

    iso = audit_isoflop(load_isoflops(validation_dir))
    assert iso.holdout["value"] == pytest.approx(3e21) and iso.holdout["n_heldout"] == 8
    assert [r["key"] for r in iso.rows] == ["N_opt", "D_opt"]
    for r in iso.rows:
        assert r["lo"] < r["predicted"] < r["hi"]
        assert r["rel_error"] == pytest.approx((r["predicted"] - r["actual"]) / r["actual"])
    assert iso.coverage == 1.0  # the 3e21 vertex lies inside the 95 % prediction interval
    cb = audit_batch_size(load_critical_batch(validation_dir), batch="batch", steps="steps",
                          group="model", scale="N", B0=256, scale_unit=1e6)
    row = cb.rows[0]
    assert row["key"] == "1.2B" and row["actual"] == pytest.approx(2533.4, rel=1e-3)
    assert abs(row["rel_error"]) < 0.1 and row["inside"]


@pytest.mark.slow
def test_chinchilla_audit_on_epoch(epoch):
    from analysis.audit import audit_chinchilla

    a = audit_chinchilla(epoch, by="C", n_bootstrap=200)
    assert a.holdout["n_heldout"] == 5 and a.holdout["n_train"] == 235
    assert any("held out the 5 rows" in w for w in a.warnings)
    assert a.mean_abs_rel_error < 0.05
    assert 0.0 <= a.coverage <= 1.0 and len(a.rows) == 5
