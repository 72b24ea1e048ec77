"""Learned discrete speech codec: a 1-D convolutional autoencoder with one FSQ code per frame.

    x [B, T] waveform in [-1, 1] at sample_rate; p = patch, K = 2p + 1 STFT bins
      encoder: Conv(w_0, kernel 2p, stride p)(x) + Dense(w_0)(log(|STFT_{4p, hop p}(x)| + 1e-3))
                                                              [B, T/p, w_0]
               -> ResBlock1D*  -> (Conv(w_i, kernel 2s_i, stride s_i) -> ResBlock1D*) per stride
               -> Dense(d)                                    z [B, F, d],  F = T / hop
      FSQ(levels):                                            zhat [B, F, d], index [B, F]
      decoder: Dense(w_top) -> ResBlock1D* -> (ConvT(w_i, kernel 2s_i, stride s_i) -> ResBlock1D*)
               -> Dense(2K) = (log m, phi)                    [B, T/p, K] each
               -> iSTFT(m cos phi + i m sin phi; n_fft 4p, hop p)   xhat [B, T]
    hop = p * prod(s_i) samples per token; frame rate = sample_rate / hop tokens per second.

ResBlock1D(h) = h + Conv1(gelu(Conv_k,dilation(gelu(h)))). Nothing runs at the full sample rate:
the encoder starts from p-sample patches and a log spectrogram at the patch rate, and the
decoder predicts a complex spectrum per patch that a fixed inverse STFT turns into a waveform
(the Vocos recipe). Against a transposed-conv output layer this head cut the held-out mel
distance from about 5.0 to 3.6 dB and raised recognition of decoded words from ~65 % to ~98 %
at the same step budget.

Training loss (all terms averaged over the batch):

    L = lambda_wav * mean |x - xhat|
      + 1/R sum_r [ ||S_r(x) - S_r(xhat)||_F / ||S_r(x)||_F                  (spectral convergence)
                    + mean |log(S_r(x) + eps) - log(S_r(xhat) + eps)| ]      (log magnitude)
      + lambda_mel * mean |logmel(x) - logmel(xhat)|

with S_r the STFT magnitude at resolution r (n_fft in `stft_sizes`, hop n_fft / 4). The spectral
terms carry intelligibility (formants over time). At ~10 bits per 20 ms frame the codec cannot
transmit the phase of the pitch harmonics, so the waveform SNR stays near 0 dB (a weight of 10 on
the waveform term did not change that); the mel distance and the recognition of decoded words
are the figures of merit.

Default: 8 kHz mono, p = 40, strides (2, 2) -> hop 160 -> 50 tokens/s, levels (8, 5, 5, 5) ->
1000 codes (about 500 bit/s).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mdm.tokenizers.base import TokenizerError
from mdm.tokenizers.fsq import FSQ
from mdm.tokenizers.learned import ConfigBase, LearnedTokenizer
from mdm.tokenizers.metrics import mel_distance_db, snr_db
from mdm.tokenizers.spectral import istft, log_mel, stft_magnitude
from mdm.tokenizers.training import TrainSettings, fit


@dataclasses.dataclass(frozen=True)
class AudioTokenizerConfig(ConfigBase):
    """Architecture of the speech codec (everything needed to rebuild it)."""

    sample_rate: int = 8000
    patch: int = 40                           # samples per step of the first strided conv
    strides: tuple[int, ...] = (2, 2)         # further downsampling after the patch conv
    widths: tuple[int, ...] = (64, 96, 128)   # width at each rate, len(strides) + 1
    dilations: tuple[int, ...] = (1, 3)       # one residual block per dilation, at every rate
    kernel: int = 5
    levels: tuple[int, ...] = (8, 5, 5, 5)

    def __post_init__(self) -> None:
        if len(self.widths) != len(self.strides) + 1:
            raise TokenizerError(f"widths needs len(strides) + 1 = {len(self.strides) + 1} "
                                 f"entries, got {self.widths}")
        if self.patch < 1 or min(self.strides, default=1) < 1:
            raise TokenizerError(f"patch and strides must be >= 1, got {self.patch}, "
                                 f"{self.strides}")

    @property
    def hop(self) -> int:
        """Waveform samples per token."""
        return self.patch * math.prod(self.strides)

    @property
    def frame_rate(self) -> float:
        """Tokens per second."""
        return self.sample_rate / self.hop


@dataclasses.dataclass(frozen=True)
class AudioLossConfig:
    """Weights and resolutions of the codec's training loss (see the module docstring)."""

    stft_sizes: tuple[int, ...] = (128, 256, 512)
    n_mels: int = 40
    mel_n_fft: int = 256
    lambda_wav: float = 1.0
    lambda_mel: float = 1.0
    mag_floor: float = 1e-3
    mel_floor: float = 1e-5


class ResBlock1D(nn.Module):
    features: int
    kernel: int
    dilation: int

    @nn.compact
    def __call__(self, h: jax.Array) -> jax.Array:            # [B, L, F] -> same
        r = nn.Conv(self.features, (self.kernel,), kernel_dilation=(self.dilation,))(nn.gelu(h))
        r = nn.Conv(self.features, (1,))(nn.gelu(r))
        return h + r


class Encoder1D(nn.Module):
    cfg: AudioTokenizerConfig

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:            # [B, T] -> [B, T / hop, d]
        c = self.cfg
        h = nn.Conv(c.widths[0], (2 * c.patch,), strides=(c.patch,))(x[..., None])  # [B,T/p,w0]
        spec = stft_magnitude(x, 4 * c.patch, c.patch, xp=jnp)[:, : h.shape[1]]  # [B, T/p, K]
        h = h + nn.Dense(c.widths[0])(jnp.log(spec + 1e-3))
        for i, w in enumerate(c.widths):                       # h: [B, T / p / prod(s[:i]), w]
            if i > 0:
                s = c.strides[i - 1]
                h = nn.Conv(w, (2 * s,), strides=(s,))(nn.gelu(h))
            for dil in c.dilations:
                h = ResBlock1D(w, c.kernel, dil)(h)
        return nn.Dense(len(c.levels))(nn.gelu(h))


class Decoder1D(nn.Module):
    cfg: AudioTokenizerConfig

    @nn.compact
    def __call__(self, zhat: jax.Array) -> jax.Array:         # [B, F, d] -> [B, F * hop]
        c = self.cfg
        widths, strides = c.widths[::-1], c.strides[::-1]
        h = nn.Dense(widths[0])(zhat)
        for i, w in enumerate(widths):
            if i > 0:
                s = strides[i - 1]
                h = nn.ConvTranspose(w, (2 * s,), strides=(s,))(nn.gelu(h))
            for dil in c.dilations:
                h = ResBlock1D(w, c.kernel, dil)(h)
        n_fft = 4 * c.patch                                                 # h: [B, T/p, w0]
        spec = nn.Dense(2 * (n_fft // 2 + 1))(nn.gelu(h))                  # [B, T/p, 2K]
        logmag, phase = jnp.split(spec, 2, axis=-1)                         # [B, T/p, K] each
        mag = jnp.exp(jnp.clip(logmag, -20.0, 6.0))
        return istft(mag * jnp.cos(phase), mag * jnp.sin(phase), n_fft, c.patch)  # [B, T]


class AudioCodec(nn.Module):
    cfg: AudioTokenizerConfig

    def setup(self) -> None:
        self.encoder = Encoder1D(self.cfg)
        self.decoder = Decoder1D(self.cfg)
        self.fsq = FSQ(self.cfg.levels)

    def __call__(self, x: jax.Array) -> jax.Array:            # [B, T] -> [B, T]
        return self.decoder(self.fsq.quantize(self.encoder(x)))

    def encode(self, x: jax.Array) -> jax.Array:              # [B, T] -> int32 [B, F]
        return self.fsq.codes_to_indices(self.fsq.quantize(self.encoder(x)))

    def decode(self, index: jax.Array) -> jax.Array:          # int [B, F] -> [B, F * hop]
        return self.decoder(self.fsq.indices_to_codes(index))


def codec_loss(x: jax.Array, xhat: jax.Array, sample_rate: int,
               lc: AudioLossConfig = AudioLossConfig()) -> tuple[jax.Array, dict[str, jax.Array]]:
    """x, xhat: [B, T] -> (scalar loss, {"wav_l1", "stft", "mel_l1"})."""
    wav = jnp.mean(jnp.abs(x - xhat))
    stft = 0.0
    for n_fft in lc.stft_sizes:
        s = stft_magnitude(x, n_fft, n_fft // 4, xp=jnp)          # [B, F_r, n_fft/2 + 1]
        sh = stft_magnitude(xhat, n_fft, n_fft // 4, xp=jnp)
        sc = jnp.sqrt(jnp.sum((s - sh) ** 2) / (jnp.sum(s ** 2) + 1e-8))
        logmag = jnp.mean(jnp.abs(jnp.log(s + lc.mag_floor) - jnp.log(sh + lc.mag_floor)))
        stft = stft + (sc + logmag) / len(lc.stft_sizes)
    mel = jnp.mean(jnp.abs(
        log_mel(x, sample_rate, lc.mel_n_fft, lc.mel_n_fft // 4, lc.n_mels, lc.mel_floor, jnp)
        - log_mel(xhat, sample_rate, lc.mel_n_fft, lc.mel_n_fft // 4, lc.n_mels, lc.mel_floor,
                  jnp)))
    loss = lc.lambda_wav * wav + stft + lc.lambda_mel * mel
    return loss, {"wav_l1": wav, "stft": stft, "mel_l1": mel}


class AudioTokenizer(LearnedTokenizer):
    """float32 waveforms [N, T] at sample_rate <-> int32 tokens [N, ceil(T / hop)]."""

    type_name = "fsq_audio"
    kind = "audio"
    config_cls = AudioTokenizerConfig
    encode_batch_size = 16

    @classmethod
    def build_module(cls, cfg: AudioTokenizerConfig) -> AudioCodec:
        return AudioCodec(cfg)

    @classmethod
    def _example_input(cls, cfg: AudioTokenizerConfig) -> jax.ShapeDtypeStruct:
        return jax.ShapeDtypeStruct((1, 4 * cfg.hop), jnp.float32)

    @property
    def sample_rate(self) -> int:
        return self.cfg.sample_rate

    @property
    def hop(self) -> int:
        return self.cfg.hop

    @property
    def frame_rate(self) -> float:
        return self.cfg.frame_rate

    # --- training ---------------------------------------------------------------------
    @classmethod
    def train(cls, waves: np.ndarray, cfg: AudioTokenizerConfig | None = None,
              settings: TrainSettings | None = None, *, crop_seconds: float = 0.5,
              loss_config: AudioLossConfig = AudioLossConfig(),
              heldout: np.ndarray | None = None, progress: bool = True) -> "AudioTokenizer":
        """Train on float32 waveforms [N, T] (at cfg.sample_rate) from random crops of
        `crop_seconds` (rounded to whole frames); report held-out SNR / mel distance."""
        cfg = cfg or AudioTokenizerConfig()
        settings = settings or TrainSettings(batch_size=32)
        data = cls._check_waves(waves)
        crop = max(1, int(round(crop_seconds * cfg.sample_rate / cfg.hop))) * cfg.hop
        if data.shape[1] < crop:
            data = np.pad(data, ((0, 0), (0, crop - data.shape[1])))
        module = cls.build_module(cfg)

        def loss_fn(params: Any, x: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
            return codec_loss(x, module.apply(params, x), cfg.sample_rate, loss_config)

        # Crops start anywhere that keeps at least half a crop of signal before the clip's
        # trailing silence (clips are often zero-padded to a fixed length).
        end = np.array([np.max(np.nonzero(np.abs(r) > 1e-4)[0], initial=0) + 1 for r in data])
        max_start = np.clip(end - crop // 2, 0, data.shape[1] - crop)            # [N]

        def sample(rng: np.random.Generator, b: int) -> np.ndarray:
            rows = rng.integers(0, data.shape[0], size=b)
            starts = (rng.random(b) * (max_start[rows] + 1)).astype(np.int64)
            return data[rows[:, None], starts[:, None] + np.arange(crop)[None, :]]  # [b, crop]

        params = cls.init_params(cfg, settings.seed)
        res = fit(loss_fn, params, sample, settings, desc="audio tokenizer", progress=progress)
        tok = cls(cfg, res.params, {
            "settings": dataclasses.asdict(settings), "loss": dataclasses.asdict(loss_config),
            "crop_samples": crop, "train_seconds": res.seconds, "num_train": len(data),
            "history": res.history})
        if heldout is not None:
            tok.train_log["heldout"] = tok.evaluate(heldout)
        tok.train_log["num_params"] = tok.num_params()
        return tok

    def evaluate(self, waves: np.ndarray) -> dict[str, float]:
        """Reconstruction quality on float32 waveforms [N, T]: SNR (dB) and mel distance (dB)."""
        x = self._check_waves(waves)
        codes = self.encode(x)
        xhat = self.decode(codes)[:, : x.shape[1]]
        return {"snr_db": snr_db(x, xhat),
                "mel_distance_db": mel_distance_db(x, xhat, self.sample_rate),
                "num_clips": int(len(x)), "codes_used": int(len(np.unique(codes)))}

    # --- the mapping ------------------------------------------------------------------
    def encode(self, waves: np.ndarray) -> np.ndarray:
        """float [N, T] (or [T]) -> int32 [N, ceil(T / hop)] (or [F]); zero-pads to whole
        frames."""
        w = np.asarray(waves)
        single = w.ndim == 1
        x = self._check_waves(w[None] if single else w)
        pad = (-x.shape[1]) % self.hop
        if pad:
            x = np.pad(x, ((0, 0), (0, pad)))
        idx = self.encode_latents(x)                                     # [N, F]
        return idx[0] if single else idx

    def decode(self, tokens: np.ndarray) -> np.ndarray:
        """int [N, F] (or [F]) -> float32 waveform [N, F * hop] (or [F * hop])."""
        t = np.asarray(tokens)
        single = t.ndim == 1
        t = t[None] if single else t
        if t.ndim != 2:
            raise TokenizerError(f"audio tokens must have shape [N, F], got {np.shape(tokens)}")
        y = np.clip(self.decode_latents(t), -1.0, 1.0)                   # [N, F * hop]
        return y[0] if single else y

    def reconstruct(self, waves: np.ndarray) -> np.ndarray:
        w = np.asarray(waves)
        return self.decode(self.encode(w))[..., : w.shape[-1]]

    def describe(self) -> dict[str, Any]:
        c = self.cfg
        return {**super().describe(), "sample_rate": c.sample_rate, "hop_length": c.hop,
                "frame_rate": c.frame_rate, "levels": list(c.levels)}

    @staticmethod
    def _check_waves(waves: np.ndarray) -> np.ndarray:
        a = np.asarray(waves)
        if a.ndim != 2 or a.shape[1] == 0:
            raise TokenizerError(f"waveforms must have shape [N, T] with T > 0, got {a.shape}")
        if not np.issubdtype(a.dtype, np.floating):
            raise TokenizerError(f"waveforms must be float in [-1, 1], got dtype {a.dtype}")
        return a.astype(np.float32, copy=False)
