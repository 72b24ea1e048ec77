"""The demo checkers are saved as arrays (.npz + JSON header), never pickled: a save / load round
trip predicts exactly what the scikit-learn model predicted, and a pickle (the old format, or a
planted one) is refused without being unpickled."""
import io
import json
import os
import pickle

import numpy as np
import pytest

from mdm.demo_data import build as demo_build
from mdm.demo_data.array_file import ArrayFileError, write_arrays
from mdm.demo_data.audio_checker import AudioChecker, utterance_features
from mdm.demo_data.build import DemoDataset
from mdm.demo_data.digits import make_digits
from mdm.demo_data.image_checker import ImageChecker, digit_features
from mdm.demo_data.vocab import DIGIT_WORDS


class _Planted:
    """Unpickling this runs a shell command that creates `marker`."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _planted_pickle(marker) -> bytes:
    return pickle.dumps({"format": "mdm-image-checker", "version": 1,
                         "digit_model": _Planted(marker)})


@pytest.fixture(scope="module")
def digits():
    imgs, _, attrs = make_digits(32, limit=300, seed=0)
    return imgs, np.asarray([a["label"] for a in attrs])


@pytest.fixture(scope="module")
def clips():
    """Synthetic 'words': tones whose pitch and length depend on the label, with noise."""
    rng = np.random.default_rng(0)
    labels = np.arange(60) % 10
    t = np.arange(8000) / 8000.0
    waves = []
    for y in labels:
        n = 2000 + 400 * (y % 5)
        w = np.zeros(8000, np.float32)
        w[1000:1000 + n] = 0.5 * np.sin(2 * np.pi * (200 + 60 * y) * t[:n])
        waves.append(w + 0.01 * rng.standard_normal(8000).astype(np.float32))
    return np.stack(waves), labels


def test_image_checker_round_trip_predicts_what_sklearn_predicted(digits, tmp_path):
    from sklearn.pipeline import make_pipeline
    from sklearn.svm import SVC
    imgs, labels = digits
    ref = make_pipeline(SVC(C=10.0, gamma=0.001)).fit(digit_features(imgs[:200]), labels[:200])
    ck = ImageChecker.train(imgs[:200], labels[:200])
    p = ck.save(tmp_path / "image_checker.npz")
    with np.load(p, allow_pickle=False) as z:                     # plain arrays + a JSON header
        header = json.loads(z["header"].tobytes())
        assert all(z[k].dtype != object for k in z.files)
    assert header["format"] == "mdm-image-checker" and header["version"] == 2
    assert header["class_names"] == list(DIGIT_WORDS)
    loaded = ImageChecker.load(p)
    rng = np.random.default_rng(0)
    noisy = np.clip(imgs[200:] + rng.integers(-60, 60, imgs[200:].shape), 0, 255).astype(np.uint8)
    for x in (imgs[200:], noisy, imgs[:50]):
        want = ref.predict(digit_features(x))
        np.testing.assert_array_equal(ck.read_digits(x), want)
        np.testing.assert_array_equal(loaded.read_digits(x), want)


def test_audio_checker_round_trip_predicts_what_sklearn_predicted(clips, tmp_path):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    waves, labels = clips
    ref = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=5000))
    ref.fit(utterance_features(waves[:40]), labels[:40])
    ck = AudioChecker.train(waves[:40], labels[:40], DIGIT_WORDS)
    loaded = AudioChecker.load(ck.save(tmp_path / "audio_checker.npz"))
    assert loaded.words == tuple(DIGIT_WORDS) and loaded.cfg == ck.cfg
    rng = np.random.default_rng(1)
    noisy = waves + 0.2 * rng.standard_normal(waves.shape).astype(np.float32)
    for x in (waves, noisy):
        want = ref.predict(utterance_features(x))
        np.testing.assert_array_equal(ck.predict(x), want)
        np.testing.assert_array_equal(loaded.predict(x), want)


@pytest.mark.parametrize("name", ["image_checker.pkl", "image_checker.npz", "ck"])
def test_a_planted_pickle_is_refused_and_never_unpickled(tmp_path, name):
    marker = tmp_path / "MARKER"
    p = tmp_path / name
    p.write_bytes(_planted_pickle(marker))
    for load in (ImageChecker.load, AudioChecker.load):
        with pytest.raises(ArrayFileError, match="refusing to load it") as e:
            load(p)
        assert "\n" not in str(e.value) and "rebuild the demo data" in str(e.value)
    assert not marker.exists()


def test_an_old_demo_build_is_refused_with_one_line_saying_rebuild(tmp_path):
    marker = tmp_path / "MARKER"
    (tmp_path / "checkers").mkdir()
    (tmp_path / "checkers" / "image_checker.pkl").write_bytes(_planted_pickle(marker))
    (tmp_path / "checkers" / "audio_checker.pkl").write_bytes(_planted_pickle(marker))
    ds = DemoDataset(tmp_path, {})
    for get in (ds.image_checker, ds.audio_checker):
        with pytest.raises(ArrayFileError, match=r"\.pkl is a pickle \(the old format\).*"
                                                 r"rebuild the demo data") as e:
            get()
        assert "\n" not in str(e.value)
    assert not marker.exists()
    os.remove(tmp_path / "checkers" / "image_checker.pkl")
    with pytest.raises(ArrayFileError, match="no image checker file here; build"):
        ds.image_checker()


def test_the_header_is_checked_before_the_arrays_are_used(digits, tmp_path):
    imgs, labels = digits
    good = ImageChecker.train(imgs[:100], labels[:100]).save(tmp_path / "good.npz")
    with np.load(good, allow_pickle=False) as z:
        header = json.loads(z["header"].tobytes())
        arrays = {k: z[k] for k in z.files if k != "header"}

    def write(name, hdr, arrs):
        buf = io.BytesIO()
        np.savez(buf, header=np.frombuffer(json.dumps(hdr).encode(), np.uint8), **arrs)
        (tmp_path / name).write_bytes(buf.getvalue())
        return tmp_path / name

    # an extra object array (its pickle would create the marker) not named in the header
    marker = tmp_path / "MARKER"
    evil = np.empty(1, object)
    evil[0] = _Planted(marker)
    with pytest.raises(ArrayFileError, match="do not match the header"):
        ImageChecker.load(write("extra.npz", header, {**arrays, "evil": evil}))
    # ... or named in it
    hdr = json.loads(json.dumps(header))
    hdr["arrays"]["evil"] = {"shape": [1], "dtype": "|O"}
    with pytest.raises(ArrayFileError, match="header entry for array 'evil' is invalid"):
        ImageChecker.load(write("named.npz", hdr, {**arrays, "evil": evil}))
    assert not marker.exists()
    # shapes that differ from the header, another format or version, a bad gamma
    hdr = json.loads(json.dumps(header))
    hdr["arrays"]["intercept"]["shape"] = [3]
    with pytest.raises(ArrayFileError, match="array 'intercept' is"):
        ImageChecker.load(write("shape.npz", hdr, arrays))
    with pytest.raises(ArrayFileError, match="not an mdm image checker"):
        ImageChecker.load(write("fmt.npz", {**header, "format": "x"}, arrays))
    with pytest.raises(ArrayFileError, match="version 1, this code reads version 2"):
        ImageChecker.load(write("ver.npz", {**header, "version": 1}, arrays))
    with pytest.raises(ArrayFileError, match="gamma"):
        ImageChecker.load(write("gamma.npz", {**header, "gamma": "scale"}, arrays))
    # an audio checker file is not an image checker
    with pytest.raises(ArrayFileError, match="not an mdm audio checker"):
        AudioChecker.load(good)
    with pytest.raises(ArrayFileError, match="numeric arrays only"):
        write_arrays(tmp_path / "o.npz", "f", 1, {"evil": evil})


def test_checkers_stage_is_rebuilt_when_its_npz_files_are_missing(tmp_path):
    sc = demo_build.get_scale("tiny")
    keys = demo_build._stage_keys(sc, 0)
    d = tmp_path / "checkers"
    d.mkdir()
    (d / demo_build.STAGE_FILE).write_text(json.dumps({"key": keys["checkers"], "info": {}}))
    (d / "image_checker.pkl").write_bytes(b"\x80old")             # an old build's files
    (d / "audio_checker.pkl").write_bytes(b"\x80old")
    assert not demo_build._stage_current(tmp_path, "checkers", keys["checkers"])
    for f in (demo_build.IMAGE_CHECKER_FILE, demo_build.AUDIO_CHECKER_FILE):
        (d / f).write_bytes(b"")
    assert demo_build._stage_current(tmp_path, "checkers", keys["checkers"])
    # the checkers' key names their file versions, so an old build's key no longer matches
    assert keys["checkers"] != demo_build._hash(
        {"stage": "checkers", "data": [keys["image_text"], keys["audio_text"]],
         "tok": [keys["tokenizers/image"], keys["tokenizers/audio"]]})
