"""Metrics for generated outputs (numpy / scipy only).

  * character error rate: Levenshtein distance(hyp, ref) / len(ref); exact match.
  * mel-cepstral distortion with dynamic time warping: c = DCT-II(ln |mel amplitude|)[1:1+K]
    per frame (25 ms windows, 10 ms hop, 40 mel bands floored 40 dB below the utterance's
    loudest band, K = 13), silence trimmed; DTW aligns the two sequences
    under the Euclidean frame distance, and
        MCD = (10 / ln 10) * sqrt(2) * mean over the aligned path of ||c_a - c_b||_2   (dB).
  * speech duration: frames within 35 dB of the loudest frame (10 ms hop), in seconds.
  * text statistics: unigram / bigram Jensen-Shannon divergence (nats) between generated and
    held-out token streams, and the repetition rate 1 - distinct bigrams / bigrams.
"""
from __future__ import annotations

import collections
import math
from typing import Iterable, Sequence

import numpy as np
from scipy.fft import dct
from scipy.signal import stft
from scipy.special import ndtri


def levenshtein(a: Sequence, b: Sequence) -> int:
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def cer(hyp: str, ref: str) -> float:
    return levenshtein(hyp, ref) / max(len(ref), 1)


def mel_filterbank(sr: int, n_fft: int, n_mels: int = 40) -> np.ndarray:
    """[n_mels, n_fft // 2 + 1] triangular filters on the HTK mel scale."""
    mel = lambda f: 2595 * np.log10(1 + f / 700)
    inv = lambda m: 700 * (10 ** (m / 2595) - 1)
    pts = inv(np.linspace(mel(0), mel(sr / 2), n_mels + 2))
    bins = np.fft.rfftfreq(n_fft, 1 / sr)
    fb = np.zeros((n_mels, len(bins)))
    for i in range(n_mels):
        lo, c, hi = pts[i], pts[i + 1], pts[i + 2]
        fb[i] = np.clip(np.minimum((bins - lo) / (c - lo), (hi - bins) / (hi - c)), 0, None)
    return fb


def mel_cepstrum(wave: np.ndarray, sr: int, n_coef: int = 13) -> np.ndarray:
    """[frames, n_coef] mel cepstra (c0 dropped)."""
    win, hop = int(0.025 * sr), int(0.010 * sr)
    n_fft = 1 << (win - 1).bit_length()
    _, _, z = stft(np.asarray(wave, np.float64), sr, nperseg=win, noverlap=win - hop, nfft=n_fft,
                   boundary=None, padded=False)
    power = np.abs(z) ** 2                                               # [bins, frames]
    mel = mel_filterbank(sr, n_fft) @ power                              # [mels, frames]
    mel = np.maximum(mel, mel.max() * 1e-4 + 1e-20)                      # 40 dB floor
    logmel = 0.5 * np.log(mel)                                           # ln amplitude
    return dct(logmel, type=2, axis=0, norm="ortho")[1:1 + n_coef].T


def dtw_mean_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Mean Euclidean frame distance along the optimal DTW path."""
    d = np.linalg.norm(a[:, None] - b[None], axis=-1)
    n, m = d.shape
    acc = np.full((n + 1, m + 1), np.inf)
    steps = np.zeros((n + 1, m + 1), np.int64)
    acc[0, 0] = 0.0
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            choices = (acc[i - 1, j - 1], acc[i - 1, j], acc[i, j - 1])
            k = int(np.argmin(choices))
            prev = [(i - 1, j - 1), (i - 1, j), (i, j - 1)][k]
            acc[i, j] = d[i - 1, j - 1] + choices[k]
            steps[i, j] = steps[prev] + 1
    return float(acc[n, m] / steps[n, m])


def mcd_dtw(wave: np.ndarray, reference: np.ndarray, sr: int) -> float:
    a, b = mel_cepstrum(trim(wave, sr), sr), mel_cepstrum(trim(reference, sr), sr)
    if len(a) == 0 or len(b) == 0:
        return math.inf
    return 10.0 / math.log(10.0) * math.sqrt(2.0) * dtw_mean_distance(a, b)


def _frame_db(wave: np.ndarray, sr: int) -> np.ndarray:
    hop = int(0.010 * sr)
    n = len(wave) // hop
    frames = np.asarray(wave[: n * hop], np.float64).reshape(n, hop)
    return 10 * np.log10((frames ** 2).mean(1) + 1e-12)


def speech_duration(wave: np.ndarray, sr: int, floor_db: float = 35.0) -> float:
    db = _frame_db(wave, sr)
    if len(db) == 0:
        return 0.0
    return float((db > db.max() - floor_db).sum() * 0.010)


def trim(wave: np.ndarray, sr: int, floor_db: float = 35.0) -> np.ndarray:
    db = _frame_db(wave, sr)
    hop = int(0.010 * sr)
    on = np.flatnonzero(db > db.max() - floor_db) if len(db) else np.array([], int)
    if len(on) == 0:
        return np.asarray(wave)
    return np.asarray(wave)[on[0] * hop:(on[-1] + 1) * hop]


def _js(p: collections.Counter, q: collections.Counter) -> float:
    keys = set(p) | set(q)
    sp, sq = sum(p.values()) or 1, sum(q.values()) or 1
    out = 0.0
    for k in keys:
        a, b = p[k] / sp, q[k] / sq
        m = (a + b) / 2
        out += (a * math.log(a / m) if a else 0.0) + (b * math.log(b / m) if b else 0.0)
    return out / 2


def text_statistics(generated: Iterable[Sequence[int]], held_out: Iterable[Sequence[int]]
                    ) -> dict[str, float]:
    gen, ref = [list(g) for g in generated], [list(r) for r in held_out]
    uni = lambda seqs: collections.Counter(t for s in seqs for t in s)
    bi = lambda seqs: collections.Counter(b for s in seqs for b in zip(s, s[1:]))
    reps = [1 - len(set(zip(s, s[1:]))) / max(len(s) - 1, 1) for s in gen if len(s) > 1]
    return {"unigram_js": _js(uni(gen), uni(ref)), "bigram_js": _js(bi(gen), bi(ref)),
            "repetition_rate": float(np.mean(reps)) if reps else 0.0}


# --- 95% intervals over prompts ------------------------------------------------------------------
Z95 = 1.959963984540054        # the standard normal's 97.5% quantile


def wilson_interval(successes: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion p = k / n:
        (p + z^2/2n -/+ z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n);
    unlike the normal interval it stays inside [0, 1] and is not empty at p = 0 or 1."""
    if n <= 0:
        return (math.nan, math.nan)
    p = successes / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    # the interval always holds p (at p = 0 or 1 rounding would put p a hair outside)
    return (min(p, max(0.0, mid - half)), max(p, min(1.0, mid + half)))


def bootstrap_interval(items: Sequence, statistic, n_boot: int = 1000, seed: int = 0,
                       level: float = 0.95, method: str = "percentile") -> tuple[float, float]:
    """Bootstrap interval of `statistic(items)`: the items (one per prompt) are resampled with
    replacement `n_boot` times with a fixed seed, so the interval is reproducible; NaN when
    fewer than 2 items. `method`: "percentile", the (q_lo, q_hi) quantiles of the resampled
    statistics; "normal", s -/+ z sd of them (s = the statistic on the items): for a plug-in
    statistic that resampling itself shifts (a divergence between token distributions rises
    when samples repeat), the percentile interval need not hold s, while s -/+ z sd states the
    statistic's sampling spread at this sample size around the value reported."""
    n = len(items)
    if n < 2:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    stats = np.asarray([statistic([items[i] for i in rng.integers(0, n, n)])
                        for _ in range(n_boot)], np.float64)
    stats = stats[np.isfinite(stats)]
    if len(stats) == 0:
        return (math.nan, math.nan)
    a = (1 - level) / 2
    if method == "normal":
        s, z = float(statistic(list(items))), float(ndtri(1 - a))
        return (s - z * float(stats.std(ddof=1)), s + z * float(stats.std(ddof=1)))
    if method != "percentile":
        raise ValueError(f"method must be 'percentile' or 'normal', got {method!r}")
    return (float(np.quantile(stats, a)), float(np.quantile(stats, 1 - a)))


def mean_interval(values: Sequence[float], binary: bool = False, seed: int = 0
                  ) -> tuple[float, float]:
    """95% interval of the mean of per-prompt values (NaN entries are not applicable and
    dropped): Wilson when the values are 0/1 outcomes, else the percentile bootstrap of the
    mean (vectorised: the mean's bootstrap needs no Python loop)."""
    x = np.asarray(values, np.float64)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return (math.nan, math.nan)
    if binary:
        return wilson_interval(float(x.sum()), len(x))
    if len(x) < 2:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), (2000, len(x)))].mean(axis=1)
    return (float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975)))


def _js_rows(counts: np.ndarray, q: np.ndarray) -> np.ndarray:
    """JS divergence (nats) between each row of `counts` [R, K] (normalised) and q [K], where
    q may put mass outside the K keys (1 - q.sum(): those keys have no count in any row)."""
    p = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    m = (p + q) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        tp = np.where(p > 0, p * np.log(p / m), 0.0)
        tq = np.where(q > 0, q * np.log(q / m), 0.0)
    outside = max(0.0, 1.0 - float(q.sum()))        # keys only q has: q log(q / (q/2))
    return (tp.sum(axis=1) + tq.sum(axis=1) + outside * math.log(2.0)) / 2


def text_statistics_interval(generated: Sequence[Sequence[int]],
                             held_out: Iterable[Sequence[int]], n_boot: int = 1000,
                             seed: int = 0) -> dict[str, tuple[float, float]]:
    """Normal bootstrap intervals (bootstrap_interval(..., method="normal"), the same
    resamples) of text_statistics' unigram_js, bigram_js and repetition_rate over the generated
    samples (s -/+ 1.96 sd of the resampled statistic),
    vectorised: each sample's unigram and bigram counts are one row of a matrix, a resample is
    a row of multiplicities, and the JS divergence of every resample is one matrix product."""
    gen = [list(g) for g in generated]
    n = len(gen)
    if n < 2:
        return {k: (math.nan, math.nan) for k in ("unigram_js", "bigram_js", "repetition_rate")}
    ref = [list(r) for r in held_out]
    point = text_statistics(gen, ref)
    rng = np.random.default_rng(seed)
    mult = np.zeros((n_boot, n))
    for b in range(n_boot):                         # the draws bootstrap_interval makes
        np.add.at(mult[b], rng.integers(0, n, n), 1.0)
    out = {}
    for key, grams in (("unigram_js", lambda s: s), ("bigram_js", lambda s: list(zip(s, s[1:])))):
        index: dict = {}
        rows = []
        for s in gen:
            c = collections.Counter(grams(s))
            rows.append({index.setdefault(k, len(index)): v for k, v in c.items()})
        counts = np.zeros((n, len(index)))
        for i, r in enumerate(rows):
            counts[i, list(r)] = list(r.values())
        refc = collections.Counter(g for s in ref for g in grams(s))
        total = sum(refc.values()) or 1
        q = np.zeros(len(index))
        for k, i in index.items():
            q[i] = refc.get(k, 0) / total
        stats = _js_rows(mult @ counts, q)
        out[key] = stats
    reps = np.asarray([1 - len(set(zip(s, s[1:]))) / max(len(s) - 1, 1) if len(s) > 1 else np.nan
                       for s in gen])
    ok = np.isfinite(reps)
    out["repetition_rate"] = (mult[:, ok] @ reps[ok]) / np.maximum(mult[:, ok].sum(axis=1), 1)
    z = float(ndtri(0.975))
    return {k: (float(point[k] - z * stats.std(ddof=1)), float(point[k] + z * stats.std(ddof=1)))
            for k, stats in out.items()}
