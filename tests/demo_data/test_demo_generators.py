"""Demo generators (digits, shapes) and the image checker: determinism, captions that state the
attributes, and checker accuracy on held-out real data. The text corpus: test_demo_text.py."""
import numpy as np
import pytest

from mdm.demo_data.digits import make_digits
from mdm.demo_data.image_checker import ImageChecker, read_shape
from mdm.demo_data.shapes import make_shapes, render_shape, shape_caption
from mdm.demo_data.vocab import COLOURS, DIGIT_WORDS, POSITIONS, SHAPES, SIZES


# --- digits -----------------------------------------------------------------------------------
def test_digits_images_and_captions():
    imgs, caps, attrs = make_digits(32, limit=50, seed=3)
    assert imgs.shape == (50, 32, 32, 3) and imgs.dtype == np.uint8
    np.testing.assert_array_equal(imgs[..., 0], imgs[..., 2])      # grey replicated to RGB
    assert imgs.max() > 200 and imgs.min() == 0
    for c, a in zip(caps, attrs):
        assert c == f"a handwritten digit {DIGIT_WORDS[a['label']]}"
    again = make_digits(32, limit=50, seed=3)
    np.testing.assert_array_equal(again[0], imgs)
    assert again[1] == caps
    assert make_digits(32, limit=50, seed=4)[1] != caps


def test_digit_checker_accuracy_on_held_out_digits():
    imgs, _, attrs = make_digits(32, seed=0)
    labels = np.asarray([a["label"] for a in attrs])
    n_train = int(0.8 * len(imgs))
    ck = ImageChecker.train(imgs[:n_train], labels[:n_train])
    acc = float(np.mean(ck.read_digits(imgs[n_train:]) == labels[n_train:]))
    assert acc >= 0.97, acc
    res = ck.check(imgs[n_train:], attrs[n_train:])
    assert res["digit"] == pytest.approx(acc) and res["num_digits"] == len(imgs) - n_train


# --- shapes -----------------------------------------------------------------------------------
def test_shapes_are_deterministic_balanced_and_captioned():
    n = 2 * len(SHAPES) * len(COLOURS) * len(POSITIONS) * len(SIZES)
    imgs, caps, attrs = make_shapes(n, 32, seed=0)
    assert imgs.shape == (n, 32, 32, 3) and imgs.dtype == np.uint8
    again = make_shapes(n, 32, seed=0)
    np.testing.assert_array_equal(again[0], imgs)
    assert again[1] == caps
    assert not np.array_equal(make_shapes(n, 32, seed=1)[0], imgs)
    for key, values in (("shape", SHAPES), ("colour", COLOURS), ("position", POSITIONS),
                        ("size", SIZES)):
        counts = {v: sum(a[key] == v for a in attrs) for v in values}
        assert len(set(counts.values())) == 1, counts              # exactly balanced
    for c, a in zip(caps, attrs):
        assert c == shape_caption(a["shape"], a["colour"], a["position"], a["size"])
        for key in ("shape", "colour", "size"):
            assert a[key] in c.split()
    assert caps[0].startswith("a ")


def test_render_shape_geometry():
    img = render_shape("square", "red", "left", "large", 32)
    cols = np.nonzero(img[..., 0].max(axis=0) > 128)[0]
    assert cols.mean() < 16                                       # drawn on the left
    assert tuple(img[16, int(cols.mean())]) == (230, 30, 30)      # solid palette colour inside
    assert img[16, 28].max() == 0                                 # background stays black
    with pytest.raises(ValueError, match="unknown shape"):
        render_shape("hexagon", "red", "left", "large")
    with pytest.raises(ValueError, match="unknown colour"):
        render_shape("square", "mauve", "left", "large")


def test_shape_checker_reads_rendered_shapes():
    imgs, _, attrs = make_shapes(400, 32, seed=7)
    ck = ImageChecker(digit_model=None)
    res = ck.check(imgs, attrs)
    for key in ("shape", "colour", "position", "size"):
        assert res[key] >= 0.99, res
    assert read_shape(np.zeros((32, 32, 3), np.uint8)) is None
    # a wrong target is reported as wrong
    wrong = [dict(a, colour="green" if a["colour"] != "green" else "red") for a in attrs[:20]]
    assert ck.check(imgs[:20], wrong)["colour"] == 0.0


def test_image_checker_save_load(tmp_path):
    imgs, _, attrs = make_digits(32, limit=300, seed=0)
    labels = np.asarray([a["label"] for a in attrs])
    ck = ImageChecker.train(imgs[:200], labels[:200])
    p = ck.save(tmp_path / "ck.npz")
    np.testing.assert_array_equal(ImageChecker.load(p).read_digits(imgs[200:]),
                                  ck.read_digits(imgs[200:]))
    (tmp_path / "other.pkl").write_bytes(__import__("pickle").dumps({"format": "x"}))
    with pytest.raises(ValueError, match="is a pickle .* not an mdm image checker"):
        ImageChecker.load(tmp_path / "other.pkl")       # refused, never unpickled


def test_read_shape_handles_a_faint_image_whose_peak_is_the_threshold():
    """A generated image whose brightest pixel is exactly the 40-level floor (a near-black
    sample from a weak model) reads as a shape or as None, never an IndexError."""
    from mdm.demo_data.image_checker import read_shape
    img = np.zeros((32, 32, 3), np.uint8)
    img[10:14, 20:24] = 40
    r = read_shape(img)
    assert r is None or r["position"] in ("right", "top", "center", "left", "bottom")
    assert read_shape(np.zeros((32, 32, 3), np.uint8)) is None
