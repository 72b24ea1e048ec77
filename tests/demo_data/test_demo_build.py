"""The demo build end to end at the tiny scale: files, summary, tokenizers, caching by content,
determinism of the raw stages, and the clear error when espeak-ng is missing."""
import dataclasses
import json
import shutil
import time

import numpy as np
import pytest

from mdm.demo_data import build as demo_build
from mdm.demo_data.build import build_demo_dataset
from mdm.demo_data.scales import get_scale
from mdm.demo_data.speech import EspeakNotFoundError

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                reason="espeak-ng not installed (apt-get install espeak-ng)")


@pytest.fixture(scope="module")
def built(tiny_demo):
    """The session's tiny demo build (tests/conftest.py), shared with the other suites."""
    return tiny_demo


@pytest.mark.slow
def test_tiny_build_writes_every_part(built):
    ds = built
    s = ds.summary
    assert json.loads((ds.root / "summary.json").read_text()) == s
    # text
    train, valid = ds.text("train"), ds.text("valid")
    assert s["counts"]["text"]["num_train_docs"] == len(train) > 0 and len(valid) > 0
    # image-text
    imgs, caps = ds.image_text()
    assert imgs.shape == (320, 32, 32, 3) and len(caps) == 320
    assert {c["source"] for c in caps} == {"digit", "shape"}
    assert s["counts"]["image_text"]["valid"] == len(ds.image_text("valid")[1]) == 64
    # audio-text
    waves, trans = ds.audio_text()
    assert waves.shape == (70, 8000) and waves.dtype == np.float32
    assert len(list((ds.root / "audio_text" / "examples").glob("*.wav"))) == 10
    # tokenizers: loadable, described in the summary as a manifest would record them
    for kind in ("text", "image", "audio"):
        tok = ds.tokenizer(kind)
        assert tok.kind == kind
        assert s["tokenizers"][kind]["tokenizer_id"] == tok.tokenizer_id
        assert s["tokenizers"][kind]["path"] == str(ds.root / "tokenizers" / kind)
    assert s["tokenizers"]["audio"]["frame_rate"] == 50.0
    assert s["tokenizers"]["image"]["tokens_per_image"] == 64
    assert s["tokenizers"]["text"]["vocab_size"] <= 512
    text_tok = ds.tokenizer("text")
    assert all(text_tok.decode(text_tok.encode(d)) == d for d in valid)
    assert s["metrics"]["text_valid_roundtrip_exact"] is True
    # checkers and metrics are real numbers from held-out data
    assert s["checkers"]["image"]["real_valid"]["shape_all"] >= 0.95
    assert s["checkers"]["audio"]["real_valid"] >= 0.5           # 50 training clips only
    assert np.isfinite(s["metrics"]["image_psnr_db"]["all"])
    assert np.isfinite(s["metrics"]["audio_mel_distance_db"])
    assert (ds.root / "checkers" / "reconstructions.png").is_file()
    ck = ds.audio_checker()
    v, vrecs = ds.audio_text("valid")
    assert ck.accuracy(v, [r["label"] for r in vrecs]) == s["checkers"]["audio"]["real_valid"]
    ds.image_checker()


@pytest.mark.slow
def test_second_build_returns_from_cache(built):
    ds = built
    t0 = time.perf_counter()
    again = build_demo_dataset(ds.root, seed=0, scale="tiny", progress=False)
    assert time.perf_counter() - t0 < 2.0
    assert again.summary == ds.summary


@pytest.mark.slow
def test_changed_stage_is_rebuilt_and_others_reused(built, tmp_path, monkeypatch):
    copy = tmp_path / "copy"
    shutil.copytree(built.root, copy)
    calls = []
    real = demo_build._run_stage
    monkeypatch.setattr(demo_build, "_run_stage",
                        lambda d, key, fn: (calls.append(d.name), real(d, key, fn)))
    moved = build_demo_dataset(copy, seed=0, scale="tiny", progress=False)
    assert calls == []                                           # a moved build is reused ...
    assert moved.summary["root"] == str(copy)                    # ... with its paths updated
    assert moved.summary["tokenizers"]["audio"]["path"] == str(copy / "tokenizers" / "audio")
    (copy / "text" / "_stage.json").unlink()                     # invalidate one stage
    rebuilt = build_demo_dataset(copy, seed=0, scale="tiny", progress=False)
    assert calls == ["text"]
    assert rebuilt.text("train") == built.text("train")


@pytest.mark.slow
def test_a_build_with_old_pickle_checkers_rebuilds_only_the_checkers(built, tmp_path,
                                                                    monkeypatch):
    """A data set built before the checkers were saved as .npz: its checkers stage has the old
    key and .pkl files. The next build retrains the checkers (nothing else); until then the
    loaders refuse the pickles."""
    copy = tmp_path / "old"
    shutil.copytree(built.root, copy)
    old_key = demo_build._hash({"stage": "checkers", "data": [built.summary["stage_keys"][k]
                                                              for k in ("image_text", "audio_text")],
                                "tok": [built.summary["stage_keys"][k]
                                        for k in ("tokenizers/image", "tokenizers/audio")]})
    for name in ("image_checker", "audio_checker"):
        (copy / "checkers" / f"{name}.npz").unlink()
        (copy / "checkers" / f"{name}.pkl").write_bytes(b"\x80\x04old pickle")
    stage = json.loads((copy / "checkers" / "_stage.json").read_text())
    (copy / "checkers" / "_stage.json").write_text(json.dumps({**stage, "key": old_key}))
    summary = json.loads((copy / "summary.json").read_text())
    summary["stage_keys"]["checkers"] = old_key
    (copy / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(ValueError, match="is a pickle .*rebuild the demo data"):
        demo_build.DemoDataset(copy, summary).image_checker()
    calls = []
    real = demo_build._run_stage
    monkeypatch.setattr(demo_build, "_run_stage",
                        lambda d, key, fn: (calls.append(d.name), real(d, key, fn)))
    ds = build_demo_dataset(copy, seed=0, scale="tiny", progress=False)
    assert calls == ["checkers"]
    assert not (copy / "checkers" / "image_checker.pkl").exists()
    assert ds.summary["checkers"] == built.summary["checkers"]
    v, vrecs = ds.audio_text("valid")
    assert ds.audio_checker().accuracy(v, [r["label"] for r in vrecs]) == \
        ds.summary["checkers"]["audio"]["real_valid"]
    ds.image_checker()


def test_raw_stages_are_deterministic_for_a_seed(tmp_path):
    sc = get_scale("tiny")
    outs = {}
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        d = tmp_path / name
        for stage, fn in (("text", demo_build._build_text),
                          ("image_text", demo_build._build_image_text)):
            (d / stage).mkdir(parents=True)
            fn(d / stage, sc, seed)
        (d / "audio_text").mkdir()
        small = dataclasses.replace(sc, renderings_per_word=2)
        demo_build._build_audio_text(d / "audio_text", small, seed, progress=False)
        outs[name] = {
            "text": (d / "text" / "train.jsonl").read_bytes(),
            "images": np.load(d / "image_text" / "images.npy"),
            "captions": (d / "image_text" / "captions.json").read_text(),
            "audio": np.load(d / "audio_text" / "audio.npy"),
            "transcripts": (d / "audio_text" / "transcripts.json").read_text()}
    a, b, c = outs["a"], outs["b"], outs["c"]
    assert a["text"] == b["text"] and a["captions"] == b["captions"]
    assert a["transcripts"] == b["transcripts"]
    np.testing.assert_array_equal(a["images"], b["images"])
    np.testing.assert_array_equal(a["audio"], b["audio"])
    assert a["text"] != c["text"] and a["captions"] != c["captions"]
    assert not np.array_equal(a["audio"], c["audio"])


def test_build_without_espeak_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty_bin"))
    with pytest.raises(EspeakNotFoundError, match="apt-get install espeak-ng"):
        build_demo_dataset(tmp_path / "demo", seed=0, scale="tiny", progress=False)
    assert not (tmp_path / "demo" / "audio_text").exists()       # no half-written stage


def test_unknown_scale_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="unknown demo scale"):
        build_demo_dataset(tmp_path, scale="huge")
