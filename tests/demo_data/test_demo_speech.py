"""espeak-ng speech: the missing-binary error, determinism, the held-out-voice split, and the
audio checker's accuracy on held-out voices."""
import shutil

import numpy as np
import pytest

from mdm.demo_data import speech
from mdm.demo_data.audio_checker import AudioChecker, utterance_features
from mdm.demo_data.speech import (VALID_VOICES, VOICES, EspeakNotFoundError, Rendering,
                                  make_spoken_words, plan_renderings, require_espeak,
                                  synthesize)
from mdm.demo_data.vocab import DIGIT_WORDS

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                  reason="espeak-ng not installed (apt-get install espeak-ng)")


def test_missing_espeak_raises_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))                    # an empty PATH
    for call in (require_espeak, lambda: synthesize("one"),
                 lambda: make_spoken_words(["one"], 1, progress=False)):
        with pytest.raises(EspeakNotFoundError) as err:
            call()
        assert "apt-get install espeak-ng" in str(err.value)
        assert "espeak-ng was not found" in str(err.value)


def test_plan_cycles_voices_and_is_seeded():
    plan = plan_renderings(DIGIT_WORDS, 14, seed=0)
    assert len(plan) == 140
    assert plan == plan_renderings(DIGIT_WORDS, 14, seed=0)
    assert plan != plan_renderings(DIGIT_WORDS, 14, seed=1)
    for w in DIGIT_WORDS:
        voices = [r.voice for word, r in plan if word == w]
        assert sorted(set(voices)) == sorted(VOICES)
        assert all(voices.count(v) == 2 for v in VOICES)
    assert all(120 <= r.rate <= 190 and 25 <= r.pitch <= 75 for _, r in plan)


def test_postprocess_trims_normalises_and_pads():
    x = np.concatenate([np.zeros(2205), 0.1 * np.sin(np.arange(4410) * 0.3), np.zeros(4410)])
    y = speech.postprocess(x, 22050, 8000, 1.0)
    assert y.shape == (8000,) and y.dtype == np.float32
    assert np.abs(y).max() == pytest.approx(speech.PEAK, rel=1e-3)
    assert np.abs(y[:40]).max() > 0.01                            # leading silence trimmed
    assert np.all(y[2000:] == 0)                                  # padded after ~0.2 s of tone


@needs_espeak
def test_synthesis_is_deterministic_and_normalised(tmp_path):
    r = Rendering("en", "f2", 150, 60)
    a = synthesize("seven", r)
    b = synthesize("seven", r)
    assert a.shape == (8000,) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert np.abs(a).max() == pytest.approx(speech.PEAK, rel=1e-3)
    # every voice and every variant changes the sound
    others = [Rendering(v, "f2", 150, 60) for v in VOICES if v != "en"]
    others += [Rendering("en", v, 150, 60) for v in speech.VARIANTS if v != "f2"]
    for o in others:
        assert not np.array_equal(a, synthesize("seven", o)), o
    speech.write_wav(tmp_path / "a.wav", a, 8000)
    back, rate = speech.read_wav_rate(tmp_path / "a.wav")
    assert rate == 8000
    np.testing.assert_allclose(back, a, atol=1.0 / 16384)


@pytest.fixture(scope="module")
def spoken():
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng not installed")
    return make_spoken_words(DIGIT_WORDS, 14, seed=0, progress=False)


def test_spoken_words_split_by_held_out_voice(spoken):
    waves, recs = spoken
    assert waves.shape == (140, 8000)
    for r in recs:
        assert (r["split"] == "valid") == (r["voice"] in VALID_VOICES)
        assert DIGIT_WORDS[r["label"]] == r["text"]
    assert sum(r["split"] == "valid" for r in recs) == 40


def test_audio_checker_recognises_held_out_voices(spoken, tmp_path):
    waves, recs = spoken
    labels = np.asarray([r["label"] for r in recs])
    tr = np.asarray([r["split"] == "train" for r in recs])
    ck = AudioChecker.train(waves[tr], labels[tr], DIGIT_WORDS)
    acc = ck.accuracy(waves[~tr], labels[~tr])
    assert acc >= 0.8, acc                                         # chance is 0.1
    # silence is not recognised as the right word everywhere
    assert ck.accuracy(np.zeros((10, 8000), np.float32), np.arange(10)) <= 0.2
    p = ck.save(tmp_path / "a.npz")
    loaded = AudioChecker.load(p)
    assert loaded.words == tuple(DIGIT_WORDS)
    np.testing.assert_array_equal(loaded.predict(waves[~tr]), ck.predict(waves[~tr]))
    assert loaded.predict_words(waves[:1])[0] in DIGIT_WORDS
    assert utterance_features(waves[:3]).shape == (3, 10 * 32 + 32 + 1)
