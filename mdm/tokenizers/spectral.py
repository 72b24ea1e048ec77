"""Short-time Fourier transform, mel filterbank and log-mel features, written once for numpy and
JAX (pass `xp=np` or `xp=jnp`): the audio codec's training loss, its evaluation metrics and the
demo's speech checker all use these same definitions.

    frames_f[n]   = x[f * hop + n - n_fft // 2] * hann[n]       (zero padded, centred frames)
    S[f, k]       = | sum_n frames_f[n] exp(-2 pi i k n / n_fft) |,  k in [0, n_fft // 2]
    M[f, m]       = sum_k S[f, k]^2 W[k, m]                      (triangular mel filters, HTK mel)
    logmel[f, m]  = log(M[f, m] + floor)

`istft` (JAX) inverts a centred Hann STFT by weighted overlap-add; the speech codec's decoder
ends with it.
"""
from __future__ import annotations

import functools
from typing import Any

import numpy as np


def hz_to_mel(f: np.ndarray | float) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def mel_to_hz(m: np.ndarray | float) -> np.ndarray:
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


@functools.lru_cache(maxsize=32)
def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float = 0.0,
                   fmax: float | None = None) -> np.ndarray:
    """[n_fft // 2 + 1, n_mels] float32 triangular filters, equally spaced on the mel scale."""
    fmax = sample_rate / 2.0 if fmax is None else fmax
    freqs = np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1)               # [K]
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))  # [M + 2]
    lo, ctr, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]        # [M, 1]
    up = (freqs[None] - lo) / np.maximum(ctr - lo, 1e-9)
    down = (hi - freqs[None]) / np.maximum(hi - ctr, 1e-9)
    w = np.clip(np.minimum(up, down), 0.0, None)                              # [M, K]
    return np.ascontiguousarray(w.T.astype(np.float32))                       # [K, M]


@functools.lru_cache(maxsize=32)
def _hann(n_fft: int) -> np.ndarray:
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32)


def frame(x: Any, n_fft: int, hop: int, xp: Any = np) -> Any:
    """[..., T] -> [..., F, n_fft] centred, zero-padded, Hann-windowed frames; F = T // hop + 1."""
    t = x.shape[-1]
    pad = [(0, 0)] * (x.ndim - 1) + [(n_fft // 2, n_fft // 2)]
    xp_ = xp.pad(x, pad)
    n_frames = t // hop + 1
    idx = np.arange(n_frames)[:, None] * hop + np.arange(n_fft)[None, :]     # [F, n_fft]
    return xp_[..., idx] * _hann(n_fft)


def stft_magnitude(x: Any, n_fft: int, hop: int, xp: Any = np) -> Any:
    """[..., T] -> [..., F, n_fft // 2 + 1] magnitude spectrogram."""
    return xp.abs(xp.fft.rfft(frame(x, n_fft, hop, xp), axis=-1))


def mel_power(x: Any, sample_rate: int, n_fft: int, hop: int, n_mels: int,
              xp: Any = np) -> Any:
    """[..., T] -> [..., F, n_mels] mel-filtered power spectrogram."""
    s = stft_magnitude(x, n_fft, hop, xp)
    return (s * s) @ mel_filterbank(sample_rate, n_fft, n_mels)


def log_mel(x: Any, sample_rate: int, n_fft: int = 256, hop: int = 80, n_mels: int = 40,
            floor: float = 1e-5, xp: Any = np) -> Any:
    """[..., T] -> [..., F, n_mels] natural-log mel power."""
    return xp.log(mel_power(x, sample_rate, n_fft, hop, n_mels, xp) + floor)


def istft(real: Any, imag: Any, n_fft: int, hop: int) -> Any:
    """Inverse of the centred Hann-window STFT by weighted overlap-add (JAX).

    real, imag: [B, F, n_fft // 2 + 1], n_fft = k * hop  ->  waveform [B, F * hop]:
        y[t] = sum_f w[t - f hop + n_fft/2] irfft(X_f)[.] / sum_f w[t - f hop + n_fft/2]^2
    """
    import jax.numpy as jnp
    if n_fft % hop:
        raise ValueError(f"istft needs n_fft to be a multiple of hop, got {n_fft}, {hop}")
    b, f, _ = real.shape
    k = n_fft // hop
    win = _hann(n_fft)
    frames = jnp.fft.irfft(real + 1j * imag, n=n_fft, axis=-1) * win      # [B, F, n_fft]
    chunks = frames.reshape(b, f, k, hop)                                  # [B, F, k, hop]
    total = (f + k - 1) * hop
    y = sum(jnp.pad(chunks[:, :, j].reshape(b, f * hop), ((0, 0), (j * hop, total - (f + j) * hop)))
            for j in range(k))                                             # [B, (F + k - 1) hop]
    env = _ola_envelope(n_fft, hop, f)                                     # [(F + k - 1) hop]
    start = n_fft // 2
    return y[:, start: start + f * hop] / env[start: start + f * hop]


@functools.lru_cache(maxsize=32)
def _ola_envelope(n_fft: int, hop: int, n_frames: int) -> np.ndarray:
    """sum_f w^2[t - f hop], floored at 1e-3 (only the first / last half-frame are small)."""
    env = np.zeros((n_frames + n_fft // hop - 1) * hop, np.float32)
    w2 = _hann(n_fft) ** 2
    for i in range(n_frames):
        env[i * hop: i * hop + n_fft] += w2
    return np.maximum(env, 1e-3)
