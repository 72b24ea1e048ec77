"""Speech synthesised with Debian's `espeak-ng` (formant synthesis: deterministic, offline).

A rendering is (text, speaker, rate, pitch), where a speaker is an espeak-ng voice plus a voice
variant ("en-gb-scotland+f3"). espeak-ng writes 22.05 kHz 16-bit mono WAV; we convert to float32,
resample to the codec's rate with a polyphase filter (scipy.signal.resample_poly, up/down =
sr / 22050 reduced by their gcd), trim leading / trailing silence (frames below -40 dB of the
clip's peak), normalise the peak to `PEAK`, and pad or cut to a fixed clip length, left-aligned.
"""
from __future__ import annotations

import dataclasses
import math
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

ESPEAK = "espeak-ng"
ESPEAK_RATE = 22050
PEAK = 0.7
# English voices of espeak-ng 1.51 (Debian 12). "en" is British English: its alias "en-gb"
# silently ignores a "+variant" suffix, and "en-us-nyc" renders most words exactly like "en-us",
# so neither is used. Speakers are voice+variant pairs; the demo holds out whole voices
# (VALID_VOICES, below) for its validation split.
VOICES: tuple[str, ...] = ("en", "en-us", "en-gb-scotland", "en-gb-x-rp", "en-029",
                           "en-gb-x-gbclan", "en-gb-x-gbcwmd")
VARIANTS: tuple[str, ...] = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4",
                             "f5")


class EspeakNotFoundError(RuntimeError):
    """espeak-ng is not installed or not on PATH."""


def require_espeak() -> str:
    """Path of the espeak-ng executable, or a clear error telling how to install it."""
    exe = shutil.which(ESPEAK)
    if exe is None:
        raise EspeakNotFoundError(
            "espeak-ng was not found on PATH; the audio-text demo synthesises its speech with "
            "it. Install it with `apt-get install espeak-ng` (Debian/Ubuntu; `make` installs "
            "it), or `brew install espeak-ng` on macOS, then run again.")
    return exe


@dataclasses.dataclass(frozen=True)
class Rendering:
    """One way of saying a text: espeak-ng voice+variant, words per minute, pitch (0..99)."""

    voice: str = "en-us"
    variant: str = "m1"
    rate: int = 150
    pitch: int = 50

    @property
    def speaker(self) -> str:
        return f"{self.voice}+{self.variant}"


def synthesize(text: str, rendering: Rendering = Rendering(), sample_rate: int = 8000,
               clip_seconds: float | None = 1.0) -> np.ndarray:
    """float32 [T] waveform of `text` at `sample_rate` (T = clip_seconds * sample_rate, or the
    trimmed length when clip_seconds is None)."""
    exe = require_espeak()
    with tempfile.TemporaryDirectory(prefix="mdm_espeak_") as tmp:
        wav = Path(tmp) / "out.wav"
        cmd = [exe, "-v", rendering.speaker, "-s", str(int(rendering.rate)), "-p",
               str(int(rendering.pitch)), "-w", str(wav), "--", text]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60,
                              env={**os.environ, "LC_ALL": "C.UTF-8"})
        if proc.returncode != 0 or not wav.is_file():
            raise RuntimeError(f"espeak-ng failed ({proc.returncode}) for {text!r} with "
                               f"{rendering}: {proc.stderr.strip()}")
        x = read_wav(wav)
    return postprocess(x, ESPEAK_RATE, sample_rate, clip_seconds)


def read_wav(path: str | os.PathLike) -> np.ndarray:
    """float32 [T] mono waveform in [-1, 1] (also returns the rate via `read_wav_rate`)."""
    return read_wav_rate(path)[0]


def read_wav_rate(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    from scipy.io import wavfile
    rate, x = wavfile.read(str(path))
    if x.ndim == 2:
        x = x.mean(axis=1)
    if np.issubdtype(x.dtype, np.integer):
        x = x.astype(np.float32) / float(np.iinfo(x.dtype).max + 1)
    return x.astype(np.float32), int(rate)


def write_wav(path: str | os.PathLike, x: np.ndarray, sample_rate: int) -> None:
    """Write float [T] in [-1, 1] as 16-bit PCM WAV."""
    from scipy.io import wavfile
    pcm = np.clip(np.round(np.asarray(x, np.float64) * 32767.0), -32768, 32767)
    wavfile.write(str(path), int(sample_rate), pcm.astype(np.int16))


def postprocess(x: np.ndarray, in_rate: int, sample_rate: int,
                clip_seconds: float | None) -> np.ndarray:
    """Resample, trim silence, normalise the peak, pad / cut to the clip length."""
    from scipy.signal import resample_poly
    g = math.gcd(int(sample_rate), int(in_rate))
    y = resample_poly(np.asarray(x, np.float64), sample_rate // g, in_rate // g)
    y = trim_silence(y, frame=max(1, sample_rate // 100))
    peak = np.max(np.abs(y)) if y.size else 0.0
    if peak > 0:
        y = y * (PEAK / peak)
    if clip_seconds is not None:
        n = int(round(clip_seconds * sample_rate))
        y = np.pad(y[:n], (0, max(0, n - len(y))))
    return y.astype(np.float32)


def trim_silence(x: np.ndarray, frame: int, threshold_db: float = -40.0) -> np.ndarray:
    """Drop leading / trailing frames whose RMS is below `threshold_db` of the loudest frame."""
    if x.size < frame:
        return x
    n = len(x) // frame
    rms = np.sqrt(np.mean(x[: n * frame].reshape(n, frame) ** 2, axis=1) + 1e-20)
    keep = np.nonzero(20 * np.log10(rms / rms.max()) > threshold_db)[0]
    if keep.size == 0:
        return x[:0]
    return x[keep[0] * frame: (keep[-1] + 1) * frame]


VALID_VOICES: tuple[str, ...] = ("en-029", "en-gb-x-gbcwmd")  # held-out accents


def plan_renderings(words: Sequence[str], renderings_per_word: int, seed: int = 0,
                    rate_range: tuple[int, int] = (120, 190),
                    pitch_range: tuple[int, int] = (25, 75)) -> list[tuple[str, Rendering]]:
    """(word, rendering) pairs: for each word, renderings cycle through VOICES (so every voice
    says every word about equally often) with a seeded variant, rate and pitch."""
    rng = np.random.default_rng(seed)
    plan = []
    for word in words:
        for r in range(renderings_per_word):
            plan.append((word, Rendering(
                voice=VOICES[r % len(VOICES)],
                variant=VARIANTS[int(rng.integers(len(VARIANTS)))],
                rate=int(rng.integers(rate_range[0], rate_range[1] + 1)),
                pitch=int(rng.integers(pitch_range[0], pitch_range[1] + 1)))))
    return plan


def make_spoken_words(words: Sequence[str], renderings_per_word: int, seed: int = 0,
                      sample_rate: int = 8000, clip_seconds: float = 1.0, workers: int = 2,
                      progress: bool = True) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Synthesise every planned rendering.

    Returns float32 waveforms [N, clip_seconds * sample_rate] and one record per clip:
    {"text", "label" (index into words), "voice", "variant", "speaker", "rate", "pitch",
    "split" ("valid" for the VALID_VOICES, else "train")}. Deterministic for a given seed;
    synthesis runs in `workers` threads (espeak-ng is a subprocess) in a fixed order.
    """
    from concurrent.futures import ThreadPoolExecutor

    from tqdm.auto import tqdm
    require_espeak()
    plan = plan_renderings(words, renderings_per_word, seed)

    def run(item: tuple[str, Rendering]) -> np.ndarray:
        return synthesize(item[0], item[1], sample_rate, clip_seconds)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        waves = list(tqdm(pool.map(run, plan), total=len(plan), desc="espeak-ng",
                          disable=not progress, leave=False))
    index = {w: i for i, w in enumerate(words)}
    records = [{"text": w, "label": index[w], "voice": r.voice, "variant": r.variant,
                "speaker": r.speaker, "rate": r.rate, "pitch": r.pitch,
                "split": "valid" if r.voice in VALID_VOICES else "train"} for w, r in plan]
    n = int(round(clip_seconds * sample_rate))
    arr = np.stack(waves) if waves else np.zeros((0, n), np.float32)
    return arr, records
