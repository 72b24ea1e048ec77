"""Reconstruction metrics of the learned tokenizers (numpy; averaged per example, then over the
batch).

    PSNR(x, y)  = 10 log10(MAX^2 / mean((x - y)^2))            per image, dB (MAX = 255 for uint8)
    SNR(x, y)   = 10 log10(sum x^2 / sum (x - y)^2)            per clip, dB (x the reference)
    mel distance = mean_{f,m} |10 log10(M_x + floor) - 10 log10(M_y + floor)|   per clip, dB
"""
from __future__ import annotations

import numpy as np

from mdm.tokenizers.spectral import mel_power


def psnr(reference: np.ndarray, estimate: np.ndarray, max_value: float = 255.0) -> float:
    """Mean per-image PSNR in dB of two [N, H, W, C] (or [H, W, C]) arrays on the same scale."""
    r = np.asarray(reference, np.float64)
    e = np.asarray(estimate, np.float64)
    if r.shape != e.shape:
        raise ValueError(f"psnr: shapes differ {r.shape} vs {e.shape}")
    if r.ndim == 3:
        r, e = r[None], e[None]
    mse = np.mean((r - e) ** 2, axis=tuple(range(1, r.ndim)))
    mse = np.maximum(mse, 1e-10)
    return float(np.mean(10.0 * np.log10(max_value ** 2 / mse)))


def snr_db(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Mean per-clip SNR in dB of two [N, T] (or [T]) waveforms."""
    r = np.atleast_2d(np.asarray(reference, np.float64))
    e = np.atleast_2d(np.asarray(estimate, np.float64))
    if r.shape != e.shape:
        raise ValueError(f"snr_db: shapes differ {r.shape} vs {e.shape}")
    sig = np.sum(r ** 2, axis=-1)
    err = np.maximum(np.sum((r - e) ** 2, axis=-1), 1e-12)
    return float(np.mean(10.0 * np.log10(np.maximum(sig, 1e-12) / err)))


def mel_distance_db(reference: np.ndarray, estimate: np.ndarray, sample_rate: int,
                    n_fft: int = 256, hop: int = 80, n_mels: int = 40,
                    floor: float = 1e-5) -> float:
    """Mean absolute log-mel difference in dB of two [N, T] waveforms (lower is better)."""
    r = np.atleast_2d(np.asarray(reference, np.float32))
    e = np.atleast_2d(np.asarray(estimate, np.float32))
    if r.shape != e.shape:
        raise ValueError(f"mel_distance_db: shapes differ {r.shape} vs {e.shape}")
    mr = 10.0 * np.log10(mel_power(r, sample_rate, n_fft, hop, n_mels) + floor)
    me = 10.0 * np.log10(mel_power(e, sample_rate, n_fft, hop, n_mels) + floor)
    return float(np.mean(np.abs(mr - me)))
