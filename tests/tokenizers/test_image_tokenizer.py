"""FSQ image tokenizer: shapes and ranges, reconstruction after a short training on tiny data,
save / load equality, errors."""
import json

import numpy as np
import pytest

from mdm.tokenizers import TokenizerError, load_tokenizer
from mdm.tokenizers.image import (ImageTokenizer, ImageTokenizerConfig, depth_to_space,
                                  space_to_depth)
from mdm.tokenizers.metrics import psnr
from mdm.tokenizers.training import TrainSettings

CFG = ImageTokenizerConfig(widths=(16, 32))          # 32x32 RGB -> 8x8 tokens, 1000 codes
STEPS = 150


@pytest.fixture(scope="module")
def data():
    from mdm.demo_data.digits import make_digits
    from mdm.demo_data.shapes import make_shapes
    d, _, _ = make_digits(32, limit=160, seed=0)
    s, _, _ = make_shapes(160, 32, seed=0)
    train = np.concatenate([d[:128], s[:128]])
    valid = np.concatenate([d[128:], s[128:]])
    return train, valid


@pytest.fixture(scope="module")
def tok(data):
    train, valid = data
    return ImageTokenizer.train(train, CFG, TrainSettings(steps=STEPS, batch_size=16,
                                learning_rate=3e-3, log_every=25), heldout=valid,
                                progress=False)


def test_config_geometry():
    assert CFG.downsample == 4 and CFG.grid == 8 and CFG.tokens_per_image == 64
    assert ImageTokenizerConfig(patch=1, widths=(8, 8, 8, 8)).downsample == 8
    with pytest.raises(TokenizerError, match="not divisible"):
        ImageTokenizerConfig(image_size=30)


def test_space_to_depth_roundtrip():
    import jax.numpy as jnp
    x = jnp.arange(2 * 8 * 8 * 3, dtype=jnp.float32).reshape(2, 8, 8, 3)
    y = space_to_depth(x, 2)
    assert y.shape == (2, 4, 4, 12)
    np.testing.assert_array_equal(np.asarray(y[0, 0, 0, :3]), np.asarray(x[0, 0, 0]))
    np.testing.assert_array_equal(np.asarray(depth_to_space(y, 2)), np.asarray(x))


def test_tokens_shape_dtype_range(tok, data):
    _, valid = data
    t = tok.encode(valid)
    assert t.shape == (len(valid), 64) and t.dtype == np.int32
    assert t.min() >= 0 and t.max() < tok.vocab_size == 1000
    one = tok.encode(valid[0])
    np.testing.assert_array_equal(one, t[0])                      # single image == batch row
    assert tok.decode(one).shape == (32, 32, 3)
    rec = tok.decode(t)
    assert rec.shape == valid.shape and rec.dtype == np.uint8


def test_reconstruction_after_short_training(tok, data):
    """Held-out PSNR clearly above the best constant image (the mean), and over 20 dB."""
    _, valid = data
    rec = tok.reconstruct(valid)
    p = psnr(valid, rec)
    baseline = psnr(valid, np.broadcast_to(valid.mean(axis=0).round(), valid.shape))
    assert p > 20.0, p
    assert p > baseline + 6.0, (p, baseline)
    assert tok.train_log["heldout"]["psnr_db"] == pytest.approx(p, abs=1e-6)
    hist = tok.train_log["history"]
    assert hist[-1]["loss"] < 0.5 * hist[0]["loss"]


def test_save_load_same_codes_and_pixels(tok, data, tmp_path):
    _, valid = data
    d = tok.save(tmp_path / "img")
    assert (d / "params").is_dir()
    loaded = load_tokenizer(d)
    assert isinstance(loaded, ImageTokenizer)
    assert loaded.tokenizer_id == tok.tokenizer_id
    assert loaded.cfg == tok.cfg
    codes = tok.encode(valid)
    np.testing.assert_array_equal(loaded.encode(valid), codes)
    np.testing.assert_array_equal(loaded.decode(codes), tok.decode(codes))
    assert loaded.train_log["heldout"]["psnr_db"] == tok.train_log["heldout"]["psnr_db"]
    desc = loaded.describe()
    assert desc["kind"] == "image" and desc["vocab_size"] == 1000
    assert desc["image_size"] == [32, 32, 3] and desc["tokens_per_image"] == 64
    assert desc["path"] == str(d) and desc["levels"] == [8, 5, 5, 5]
    json.dumps(desc)


def test_tokenizer_id_tracks_weights(tok):
    import jax
    other = ImageTokenizer(tok.cfg, jax.tree.map(lambda p: p * 1.001, tok.params))
    assert other.tokenizer_id != tok.tokenizer_id
    same = ImageTokenizer(tok.cfg, jax.tree.map(lambda p: p.copy(), tok.params))
    assert same.tokenizer_id == tok.tokenizer_id


def test_loading_mismatched_weights_fails_clearly(tok, tmp_path):
    d = tok.save(tmp_path / "img")
    meta = json.loads((d / "mdm_tokenizer.json").read_text())
    meta["config"]["widths"] = [16, 48]
    (d / "mdm_tokenizer.json").write_text(json.dumps(meta))
    with pytest.raises(TokenizerError, match="do not match the saved config"):
        load_tokenizer(d)


def test_input_errors(tok):
    with pytest.raises(TokenizerError, match="uint8"):
        tok.encode(np.zeros((2, 32, 32, 3), np.float32))
    with pytest.raises(TokenizerError, match="shape"):
        tok.encode(np.zeros((2, 16, 16, 3), np.uint8))
    with pytest.raises(TokenizerError, match="must lie in"):
        tok.decode(np.full((1, 64), 1000))
    with pytest.raises(TokenizerError, match="shape"):
        tok.decode(np.zeros((1, 63), np.int32))
