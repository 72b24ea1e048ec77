"""FSQ speech codec: frame geometry, reconstruction after a short training on tiny synthetic
speech-like data, save / load equality, errors. (No espeak-ng needed here.)"""
import json

import numpy as np
import pytest

from mdm.tokenizers import TokenizerError, load_tokenizer
from mdm.tokenizers.audio import AudioTokenizer, AudioTokenizerConfig, codec_loss
from mdm.tokenizers.metrics import mel_distance_db, snr_db
from mdm.tokenizers.spectral import istft, stft_magnitude
from mdm.tokenizers.training import TrainSettings

SR = 8000
CFG = AudioTokenizerConfig(widths=(32, 32, 48))      # hop 160 -> 50 tokens / s, 1000 codes
STEPS = 150


def vowel_like(n: int, seconds: float, seed: int) -> np.ndarray:
    """float32 [n, T]: glottal-pulse-like harmonic series (f0 90..220 Hz) through two moving
    formant resonances, with an attack / decay envelope and trailing silence."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    out = np.zeros((n, len(t)), np.float32)
    for i in range(n):
        f0 = rng.uniform(90, 220) * (1 + rng.uniform(-0.15, 0.15) * t / seconds)
        phase = 2 * np.pi * np.cumsum(f0) / SR
        f1 = np.linspace(rng.uniform(300, 800), rng.uniform(300, 800), len(t))
        f2 = np.linspace(rng.uniform(900, 2500), rng.uniform(900, 2500), len(t))
        x = np.zeros_like(t)
        for k in range(1, int(3800 / f0.max())):
            fk = k * f0
            gain = np.exp(-((fk - f1) / 150) ** 2) + 0.6 * np.exp(-((fk - f2) / 200) ** 2) + 0.02
            x += gain * np.sin(k * phase)
        dur = rng.uniform(0.4, 0.8) * seconds
        env = np.clip(t / 0.03, 0, 1) * np.clip((dur - t) / 0.05, 0, 1)
        x = x * env
        out[i] = 0.7 * x / (np.abs(x).max() + 1e-9)
    return out


@pytest.fixture(scope="module")
def data():
    return vowel_like(64, 1.0, seed=0), vowel_like(16, 1.0, seed=1)


@pytest.fixture(scope="module")
def tok(data):
    train, valid = data
    return AudioTokenizer.train(train, CFG, TrainSettings(steps=STEPS, batch_size=8,
                                learning_rate=3e-3, log_every=25), heldout=valid,
                                progress=False)


def test_config_geometry():
    assert CFG.hop == 160 and CFG.frame_rate == 50.0
    assert AudioTokenizerConfig(patch=20, strides=(2, 2, 2), widths=(8, 8, 8, 8)).hop == 160
    with pytest.raises(TokenizerError, match="widths"):
        AudioTokenizerConfig(widths=(8, 8))


def test_istft_inverts_stft():
    import jax.numpy as jnp
    x = np.random.default_rng(0).standard_normal((2, 1600)).astype(np.float32)
    n_fft, hop = 160, 40
    # complex STFT with the same centred Hann frames as spectral.frame
    from mdm.tokenizers.spectral import frame
    spec = np.fft.rfft(frame(x, n_fft, hop), axis=-1)[:, : 1600 // hop]  # [B, F, K]
    y = istft(jnp.asarray(spec.real), jnp.asarray(spec.imag), n_fft, hop)
    assert y.shape == (2, 1600)
    np.testing.assert_allclose(np.asarray(y)[:, n_fft:-n_fft], x[:, n_fft:-n_fft], atol=1e-4)
    assert stft_magnitude(x, n_fft, hop).shape == (2, 1600 // hop + 1, n_fft // 2 + 1)


def test_codec_loss_is_zero_only_for_a_perfect_reconstruction(data):
    import jax.numpy as jnp
    x = jnp.asarray(data[0][:4, :4000])
    zero, aux = codec_loss(x, x, SR)
    assert float(zero) == pytest.approx(0.0, abs=1e-6)
    worse, _ = codec_loss(x, 0.5 * x, SR)
    assert float(worse) > 0.1


def test_tokens_shape_dtype_range(tok, data):
    _, valid = data
    t = tok.encode(valid)
    assert t.shape == (len(valid), 50) and t.dtype == np.int32
    assert t.min() >= 0 and t.max() < tok.vocab_size == 1000
    np.testing.assert_array_equal(tok.encode(valid[0]), t[0])       # 1-D input == batch row
    assert tok.decode(t).shape == valid.shape
    assert tok.decode(t[0]).shape == (8000,)
    # a length that is not a multiple of hop is zero-padded to whole frames
    longer = np.pad(valid[:2], ((0, 0), (0, 100)))                   # 8100 samples
    assert tok.encode(longer).shape == (2, 51)
    assert tok.reconstruct(longer).shape == (2, 8100)


def test_reconstruction_after_short_training(tok, data):
    """Held-out log-mel distance well below the untrained codec's and below 9 dB."""
    _, valid = data
    rec = tok.reconstruct(valid)
    d = mel_distance_db(valid, rec, SR)
    init = AudioTokenizer(CFG, AudioTokenizer.init_params(CFG, seed=0))
    d_init = mel_distance_db(valid, init.reconstruct(valid), SR)
    assert d < 9.0, d
    assert d < 0.6 * d_init, (d, d_init)
    assert np.isfinite(snr_db(valid, rec))
    log = tok.train_log
    assert log["heldout"]["mel_distance_db"] == pytest.approx(d, abs=1e-4)
    assert log["history"][-1]["loss"] < 0.7 * log["history"][0]["loss"]


def test_save_load_same_codes_and_waveform(tok, data, tmp_path):
    _, valid = data
    d = tok.save(tmp_path / "audio")
    loaded = load_tokenizer(d)
    assert isinstance(loaded, AudioTokenizer)
    assert loaded.tokenizer_id == tok.tokenizer_id and loaded.cfg == tok.cfg
    codes = tok.encode(valid)
    np.testing.assert_array_equal(loaded.encode(valid), codes)
    np.testing.assert_array_equal(loaded.decode(codes), tok.decode(codes))
    desc = loaded.describe()
    assert desc["kind"] == "audio" and desc["vocab_size"] == 1000
    assert desc["sample_rate"] == SR and desc["frame_rate"] == 50.0
    assert desc["hop_length"] == 160 and desc["path"] == str(d)
    json.dumps(desc)


@pytest.mark.slow
def test_training_is_deterministic_given_the_seed(data):
    train, _ = data
    settings = TrainSettings(steps=10, batch_size=4, log_every=5)
    a = AudioTokenizer.train(train[:16], CFG, settings, progress=False)
    b = AudioTokenizer.train(train[:16], CFG, settings, progress=False)
    assert a.tokenizer_id == b.tokenizer_id                     # bit-identical weights
    np.testing.assert_array_equal(a.encode(train[16:20]), b.encode(train[16:20]))
    assert a.train_log["history"] == b.train_log["history"]


def test_input_errors(tok):
    with pytest.raises(TokenizerError, match="float"):
        tok.encode(np.zeros((2, 800), np.int16))
    with pytest.raises(TokenizerError, match="shape"):
        tok.encode(np.zeros((2, 3, 800), np.float32))
    with pytest.raises(TokenizerError, match="must lie in"):
        tok.decode(np.full((1, 5), -1))
