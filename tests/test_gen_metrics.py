"""Generation metrics against closed forms and real demo speech."""
import numpy as np
import pytest

from mdm.gen_metrics import cer, dtw_mean_distance, levenshtein, mcd_dtw, speech_duration, text_statistics


def test_levenshtein_and_cer():
    assert levenshtein("kitten", "sitting") == 3
    assert levenshtein("", "abc") == 3 and levenshtein("abc", "abc") == 0
    assert cer("seven", "seven") == 0 and cer("sevn", "seven") == pytest.approx(0.2)


def test_dtw_ignores_time_stretching():
    a = np.sin(np.linspace(0, 6, 40))[:, None]
    b = np.repeat(a, 2, axis=0)                   # the same trajectory, twice as slow
    assert dtw_mean_distance(a, b) < 1e-12
    a2 = np.concatenate([a, np.zeros_like(a)], 1)
    b2 = np.concatenate([a, np.ones_like(a)], 1)   # offset orthogonal to the trajectory
    assert dtw_mean_distance(a2, b2) == pytest.approx(1.0)


def test_speech_duration_of_a_tone_burst():
    sr = 8000
    w = np.zeros(sr)
    w[2000:6000] = np.sin(np.arange(4000) * 0.3)
    assert speech_duration(w, sr) == pytest.approx(0.5, abs=0.02)


def test_text_statistics():
    s = text_statistics([[1, 2, 3, 4]], [[1, 2, 3, 4]])
    assert s["unigram_js"] == 0 and s["bigram_js"] == 0 and s["repetition_rate"] == 0
    s = text_statistics([[1, 1, 1, 1]], [[2, 3]])
    assert s["unigram_js"] == pytest.approx(np.log(2)) and s["repetition_rate"] == pytest.approx(2 / 3)


@pytest.mark.slow
def test_mcd_separates_words_on_real_demo_speech(tiny_demo):
    waves, recs = tiny_demo.audio_text()
    sr = tiny_demo.sample_rate
    by_word = {}
    for w, r in zip(waves, recs):
        by_word.setdefault(r["text"], []).append(w)
    assert mcd_dtw(waves[0], waves[0], sr) == pytest.approx(0.0, abs=1e-9)
    same, diff = [], []
    words = sorted(by_word)
    for i, a in enumerate(words):
        same.append(mcd_dtw(by_word[a][0], by_word[a][1], sr))
        diff.append(mcd_dtw(by_word[a][0], by_word[words[(i + 1) % len(words)]][1], sr))
    # measured on the tiny demo: same word ~21 dB, different words ~41 dB, 10 of 10 pairs
    assert np.mean(same) < 0.75 * np.mean(diff)
    assert sum(s < d for s, d in zip(same, diff)) >= 8
    noise = np.random.default_rng(0).normal(0, 0.1, sr)
    assert mcd_dtw(noise, waves[0], sr) > np.mean(same)


# --- 95% intervals over prompts -------------------------------------------------------------------
@pytest.mark.parametrize("k,n", [(0, 10), (3, 10), (10, 10), (47, 100), (1, 200)])
def test_wilson_interval_matches_scipy(k, n):
    from scipy.stats import binomtest

    from mdm.gen_metrics import wilson_interval
    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    lo, hi = wilson_interval(k, n)
    assert lo == pytest.approx(ci.low, abs=1e-9) and hi == pytest.approx(ci.high, abs=1e-9)
    assert lo <= k / n <= hi


def test_mean_interval_covers_like_the_normal_interval_for_a_large_sample():
    """The bootstrap of a mean of 2000 values ~ the normal interval mean +- 1.96 s / sqrt(n)."""
    from mdm.gen_metrics import mean_interval
    x = np.random.default_rng(0).exponential(size=2000)
    lo, hi = mean_interval(x)
    half = 1.959964 * x.std(ddof=1) / np.sqrt(len(x))
    assert lo == pytest.approx(x.mean() - half, abs=0.2 * half)
    assert hi == pytest.approx(x.mean() + half, abs=0.2 * half)
    # NaN entries are "not applicable" and dropped; 0/1 values take the Wilson interval
    assert mean_interval([1, 0, np.nan, 1], binary=True) == pytest.approx(
        __import__("mdm.gen_metrics", fromlist=["x"]).wilson_interval(2, 3))


def test_vectorised_text_intervals_equal_the_plain_bootstrap():
    """text_statistics_interval (one matrix product per resample set) = bootstrap_interval of
    text_statistics itself, resample for resample."""
    from mdm.gen_metrics import bootstrap_interval, text_statistics, text_statistics_interval
    rng = np.random.default_rng(1)
    gen = [list(rng.integers(0, 50, rng.integers(2, 30))) for _ in range(40)]
    ref = [list(rng.integers(0, 60, 40)) for _ in range(30)]
    fast = text_statistics_interval(gen, ref, n_boot=150, seed=3)
    for k in ("unigram_js", "bigram_js", "repetition_rate"):
        slow = bootstrap_interval(gen, lambda s, k=k: text_statistics(s, ref)[k], n_boot=150,
                                  seed=3, method="normal")
        assert fast[k] == pytest.approx(slow, abs=1e-9), k
