"""Words shared by the demo's modalities, so that captions, transcripts and checkers agree."""
from __future__ import annotations

DIGIT_WORDS: tuple[str, ...] = ("zero", "one", "two", "three", "four", "five", "six", "seven",
                                "eight", "nine")
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond")
# name -> RGB; saturated and far apart so that a lossy reconstruction keeps the nearest colour.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (230, 30, 30), "green": (30, 200, 60), "blue": (40, 80, 240),
    "yellow": (240, 220, 40), "magenta": (220, 50, 220), "cyan": (40, 220, 230),
    "white": (245, 245, 245),
}
POSITIONS: tuple[str, ...] = ("center", "left", "right", "top", "bottom")
POSITION_PHRASES: dict[str, str] = {
    "center": "in the center", "left": "on the left", "right": "on the right",
    "top": "at the top", "bottom": "at the bottom",
}
SIZES: tuple[str, ...] = ("small", "large")
