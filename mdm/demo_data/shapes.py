"""Rendered shapes with captions that state exactly their attributes.

Each image is one filled shape on a black background, drawn by numpy rasterisation with 4 x 4
supersampling (anti-aliased edges). For image size S and a shape with centre (cx, cy) and
half-extent r (pixel coordinates, y down), a point (x, y) with dx = x - cx, dy = y - cy is inside

    circle    dx^2 + dy^2 <= r^2
    square    max(|dx|, |dy|) <= 0.85 r
    triangle  -r <= dy <= r  and  |dx| <= (dy + r) / 2          (apex up, base 2r)
    diamond   |dx| + |dy| <= r

Attributes: shape, colour (vocab.COLOURS), position (centre offset of 0.25 S towards left / right /
top / bottom, or none for center), size (r = 0.16 S small, 0.25 S large), with a small seeded
jitter of the centre (+-0.04 S) and of r (x 0.93 .. 1.07). Caption: "a {size} {colour} {shape}
{position phrase}", e.g. "a large red circle on the left".
"""
from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from mdm.demo_data.vocab import COLOURS, POSITION_PHRASES, POSITIONS, SHAPES, SIZES

POSITION_OFFSETS: dict[str, tuple[float, float]] = {
    "center": (0.0, 0.0), "left": (-1.0, 0.0), "right": (1.0, 0.0),
    "top": (0.0, -1.0), "bottom": (0.0, 1.0),
}
OFFSET_FRACTION = 0.25
RADIUS_FRACTION: dict[str, float] = {"small": 0.16, "large": 0.25}
CENTRE_JITTER = 0.04                      # +- fraction of S
RADIUS_JITTER = (0.93, 1.07)              # multiplicative
SUPERSAMPLE = 4


def shape_mask(shape: str, size: int, cx: float, cy: float, r: float) -> np.ndarray:
    """float32 [size, size] coverage in [0, 1] of `shape` (4 x 4 supersampled)."""
    s = SUPERSAMPLE
    c = (np.arange(size * s, dtype=np.float32) + 0.5) / s       # sub-pixel centres
    x, y = np.meshgrid(c, c)                                     # [S*s, S*s], y down
    dx, dy = x - cx, y - cy
    if shape == "circle":
        m = dx * dx + dy * dy <= r * r
    elif shape == "square":
        m = np.maximum(np.abs(dx), np.abs(dy)) <= 0.85 * r
    elif shape == "triangle":
        m = (dy >= -r) & (dy <= r) & (np.abs(dx) <= (dy + r) / 2.0)
    elif shape == "diamond":
        m = np.abs(dx) + np.abs(dy) <= r
    else:
        raise ValueError(f"unknown shape {shape!r}; known: {SHAPES}")
    return m.reshape(size, s, size, s).mean(axis=(1, 3)).astype(np.float32)


def render_shape(shape: str, colour: str, position: str, size_name: str, image_size: int = 32,
                 rng: np.random.Generator | None = None) -> np.ndarray:
    """uint8 [S, S, 3]: one shape on black; jittered when `rng` is given."""
    if colour not in COLOURS:
        raise ValueError(f"unknown colour {colour!r}; known: {tuple(COLOURS)}")
    if position not in POSITION_OFFSETS:
        raise ValueError(f"unknown position {position!r}; known: {POSITIONS}")
    if size_name not in RADIUS_FRACTION:
        raise ValueError(f"unknown size {size_name!r}; known: {SIZES}")
    S = float(image_size)
    ox, oy = POSITION_OFFSETS[position]
    cx, cy = S / 2 + ox * OFFSET_FRACTION * S, S / 2 + oy * OFFSET_FRACTION * S
    r = RADIUS_FRACTION[size_name] * S
    if rng is not None:
        cx += rng.uniform(-CENTRE_JITTER, CENTRE_JITTER) * S
        cy += rng.uniform(-CENTRE_JITTER, CENTRE_JITTER) * S
        r *= rng.uniform(*RADIUS_JITTER)
    a = shape_mask(shape, image_size, cx, cy, r)[..., None]     # [S, S, 1]
    rgb = np.asarray(COLOURS[colour], np.float32)                # [3]
    return np.clip(np.round(a * rgb), 0, 255).astype(np.uint8)


def shape_caption(shape: str, colour: str, position: str, size_name: str) -> str:
    return f"a {size_name} {colour} {shape} {POSITION_PHRASES[position]}"


def make_shapes(n: int, image_size: int = 32, seed: int = 0
                ) -> tuple[np.ndarray, list[str], list[dict[str, Any]]]:
    """n shapes cycling through a seeded shuffle of all attribute combinations (balanced).

    Returns uint8 images [n, S, S, 3], captions, and attribute dicts
    {"source": "shape", "shape", "colour", "position", "size"}.
    """
    rng = np.random.default_rng(seed)
    combos = list(itertools.product(SHAPES, COLOURS, POSITIONS, SIZES))
    images, captions, attrs = [], [], []
    order: list[int] = []
    while len(order) < n:
        order.extend(rng.permutation(len(combos)).tolist())
    for i in order[:n]:
        shape, colour, position, size_name = combos[i]
        images.append(render_shape(shape, colour, position, size_name, image_size, rng))
        captions.append(shape_caption(shape, colour, position, size_name))
        attrs.append({"source": "shape", "shape": shape, "colour": colour,
                      "position": position, "size": size_name})
    arr = np.stack(images) if images else np.zeros((0, image_size, image_size, 3), np.uint8)
    return arr, captions, attrs
