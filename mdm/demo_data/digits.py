"""scikit-learn's bundled handwritten digits (1797 images, 8 x 8, values 0..16, labelled), as
RGB images of the demo's size with captions "a handwritten digit seven".

Upsampling: bilinear (scipy.ndimage.zoom, order 1, pixel-centred grid) from 8 x 8 to S x S, then
v * 255 / 16, replicated to 3 channels: a white digit on black.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from mdm.demo_data.vocab import DIGIT_WORDS

DIGITS_SIDE = 8
DIGITS_MAX = 16.0


def load_digits_raw() -> tuple[np.ndarray, np.ndarray]:
    """float64 [1797, 8, 8] in [0, 16] and int labels [1797] (ships with scikit-learn)."""
    from sklearn.datasets import load_digits
    d = load_digits()
    return d.images, d.target.astype(np.int64)


def upsample_digits(raw: np.ndarray, image_size: int = 32) -> np.ndarray:
    """float [N, 8, 8] in [0, 16] -> uint8 [N, S, S, 3]."""
    from scipy import ndimage
    if image_size % DIGITS_SIDE:
        raise ValueError(f"image_size must be a multiple of {DIGITS_SIDE}, got {image_size}")
    f = image_size / DIGITS_SIDE
    up = ndimage.zoom(np.asarray(raw, np.float64), (1, f, f), order=1, mode="nearest",
                      grid_mode=True)                                   # [N, S, S]
    g = np.clip(np.round(up * (255.0 / DIGITS_MAX)), 0, 255).astype(np.uint8)
    return np.repeat(g[..., None], 3, axis=-1)


def digit_caption(label: int) -> str:
    return f"a handwritten digit {DIGIT_WORDS[int(label)]}"


def make_digits(image_size: int = 32, limit: int | None = None, seed: int = 0
                ) -> tuple[np.ndarray, list[str], list[dict[str, Any]]]:
    """The digits in a seeded order (first `limit` of them): uint8 images [n, S, S, 3],
    captions, attribute dicts {"source": "digit", "label": int, "index": original index}."""
    raw, labels = load_digits_raw()
    order = np.random.default_rng(seed).permutation(len(raw))
    if limit is not None:
        order = order[:limit]
    images = upsample_digits(raw[order], image_size)
    captions = [digit_caption(labels[i]) for i in order]
    attrs = [{"source": "digit", "label": int(labels[i]), "index": int(i)} for i in order]
    return images, captions, attrs
