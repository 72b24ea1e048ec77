"""analysis/studies.py against independent computations, and the `make studies` findings'
wording following their numbers (launch/studies.py analyses on synthetic run frames)."""
import math
import types

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis.batch_size import critical_batch
from analysis.stats import AnalysisError
from analysis.studies import (bootstrap_steps_fit, collapse_breakdown, compare_groups,
                              diff_interval, loss_estimator_variance, relative_spread,
                              seed_interval)


def test_seed_interval_is_the_student_t_interval():
    x = [3.1, 2.9, 3.4, 3.0]
    r = seed_interval(x)
    lo, hi = stats.t.interval(0.95, len(x) - 1, loc=np.mean(x), scale=stats.sem(x))
    assert r["mean"] == pytest.approx(np.mean(x))
    assert (r["lo"], r["hi"]) == pytest.approx((lo, hi))
    assert r["n"] == 4 and r["sd"] == pytest.approx(np.std(x, ddof=1))
    one = seed_interval([2.0])
    assert one["mean"] == 2.0 and math.isnan(one["lo"]) and math.isnan(one["hi"])
    with pytest.raises(AnalysisError):
        seed_interval([float("nan")])
    with pytest.raises(AnalysisError):
        seed_interval([1.0, 2.0], level=1.5)


def test_diff_interval_is_welchs():
    a, b = [1.0, 1.3, 0.8, 1.1], [0.2, 0.9, 0.4]
    r = diff_interval(a, b)
    ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert r["diff"] == pytest.approx(np.mean(a) - np.mean(b))
    assert (r["lo"], r["hi"]) == pytest.approx((ci.low, ci.high))
    assert math.isnan(diff_interval([1.0], b)["lo"])


def test_loss_estimator_variance_recovers_the_noise_under_a_trend():
    rng = np.random.default_rng(0)
    s = np.arange(1, 40001)
    sigma = 0.3
    loss = 5.0 - 1e-4 * s + sigma * rng.standard_normal(s.size)   # linear trend + white noise
    r = loss_estimator_variance(pd.DataFrame({"step": s, "loss": loss}), start=0.0, stop=1.0)
    assert r["variance"] == pytest.approx(sigma ** 2, rel=0.03)
    assert r["n_diffs"] == s.size - 1
    # only consecutive steps count: logging every 2 steps leaves no pair
    with pytest.raises(AnalysisError, match="every_steps=1"):
        loss_estimator_variance(pd.DataFrame({"step": s[::2], "loss": loss[::2]}))
    with pytest.raises(AnalysisError, match="start < stop"):
        loss_estimator_variance(pd.DataFrame({"step": s, "loss": loss}), start=0.9, stop=0.1)


def test_compare_groups_names_the_winner_and_whether_the_margin_is_resolved():
    c = compare_groups({"a": [1.00, 1.01, 0.99], "b": [1.20, 1.21, 1.19], "c": [1.5, 1.5, 1.6]})
    assert c["best"] == "a" and c["runner_up"] == "b" and c["order"] == ["a", "b", "c"]
    assert c["margin"] == pytest.approx(0.2)
    assert c["resolved"] is True and c["margin_interval"][0] > 0
    c = compare_groups({"a": [1.0, 1.3, 0.8], "b": [1.05, 1.2, 0.9]})
    assert c["resolved"] is False and c["margin_interval"][0] < 0 < c["margin_interval"][1]
    assert compare_groups({"a": [1.0], "b": [2.0]})["resolved"] is None
    hi = compare_groups({"a": [1.0, 1.1], "b": [2.0, 2.1]}, lower_is_better=False)
    assert hi["best"] == "b" and hi["margin"] == pytest.approx(1.0)


def test_relative_spread_and_collapse_breakdown():
    assert relative_spread([1.0, 3.0]) == pytest.approx(0.5)
    final = {8: [3.00, 3.02], 16: [3.01, 3.03], 32: [3.30, 3.32]}
    r = collapse_breakdown(final)
    assert r["ref"] == 8 and r["breaks_at"] == 32 and r["judged"]
    se = math.sqrt(np.var([3.30, 3.32], ddof=1) / 2 + np.var([3.00, 3.02], ddof=1) / 2)
    assert r["excess"][32]["z"] == pytest.approx(0.30 / se)
    one = collapse_breakdown({8: [3.0], 16: [4.0]})
    assert one["breaks_at"] is None and not one["judged"] and math.isnan(one["excess"][16]["z"])


def test_bootstrap_steps_fit_recovers_the_curve_and_both_critical_batches():
    S_min, b = 200.0, 6400.0                       # B_noise = 32
    B = np.array([8, 16, 32, 64, 128], float)
    exact = bootstrap_steps_fit(B, S_min + b / B, n_boot=20)
    assert exact["S_min"] == pytest.approx(S_min, rel=1e-6)
    assert exact["B_noise"] == pytest.approx(32.0, rel=1e-6)
    # B_crit by hand: S(B) = 1.2 S(B0) B0 / B  with B0 = 8
    hand = (1.2 * (S_min + b / 8) * 8 - b) / S_min
    assert exact["B_crit"] == pytest.approx(hand, rel=1e-6)
    assert exact["B_crit"] == pytest.approx(critical_batch(S_min, b, 0.2, 8.0), rel=1e-9)
    assert all(math.isnan(v) for v in exact["ci"]["B_noise"])   # one run per batch
    rng = np.random.default_rng(1)
    BB = np.repeat(B, 3)
    noisy = (S_min + b / BB) * np.exp(0.05 * rng.standard_normal(BB.size))
    r = bootstrap_steps_fit(BB, noisy, n_boot=200)
    lo, hi = r["ci"]["B_noise"]
    assert lo < r["B_noise"] < hi and lo < 32 < hi


def _rs(runs, metrics=None, evals=None):
    return types.SimpleNamespace(runs=runs, metrics=metrics, evals=evals)


def test_schedule_finding_follows_the_numbers():
    from launch.studies import analyse_schedules
    rows = []
    for sched, shift in (("linear", 0.0), ("cosine", -0.2), ("poly:2", 0.001)):
        for seed, eps in enumerate((0.0, 0.004, -0.004)):
            rows.append({"config.objective.schedule.text": sched, "config.seed": seed,
                         "bits_text": 5.0 + shift + eps,            # cosine wins, resolved
                         "bits_image": 4.0 + (0.3 * eps if sched != "poly:2" else 40 * eps),
                         "bits_audio": 3.0 + (0.001 if sched == "linear" else 0.0) + 50 * eps})
    r = analyse_schedules(_rs(pd.DataFrame(rows)))
    assert r["per_modality"]["text"]["best"] == "cosine"
    assert "text: cosine beats" in r["finding"]
    text_part = r["finding"].split(";")[0]
    assert "(resolved)" in text_part and f"{0.2:.3g} bits" in text_part
    audio_part = r["finding"].split(";")[2]
    assert "within the seed noise" in audio_part
    assert r["runs_per_point"] == 3 and r["seeds"] == [0, 1, 2]


def test_antimasking_finding_follows_the_numbers():
    from launch.studies import analyse_antimasking
    rng = np.random.default_rng(0)
    runs, mets = [], []
    for comp in (False, True):
        for seed in (0, 1, 2):
            rid = f"{'c' if comp else 'i'}{seed}"
            runs.append({"run_id": rid, "config.objective.complementary": comp,
                         "config.seed": seed, "bits_text": 5.0 - 0.01 * comp + 1e-4 * seed,
                         "bits_image": 4.0, "bits_audio": 3.0 + 1e-4 * seed,
                         "D": 1000.0 / (1 + comp), "D_processed": 1000.0})
            sd = 0.1 if comp else 0.3                       # pairs cut the noise 9x in variance
            s = np.arange(1, 2001)
            mets.append(pd.DataFrame({"run_id": rid, "step": s,
                                      "loss": 4 - 1e-4 * s + sd * rng.standard_normal(s.size)}))
    r = analyse_antimasking(_rs(pd.DataFrame(runs), pd.concat(mets)))
    assert r["variance_ratio"]["mean"] == pytest.approx(1 / 9, rel=0.15)
    assert r["variance_ratio"]["hi"] < 1
    assert "estimator variance with complementary pairs is lower" in r["finding"]
    assert "text -0.01" in r["finding"] and "(better)" in r["finding"]
    assert r["data_tokens"] == {"independent": 1000.0, "complementary": 500.0}
