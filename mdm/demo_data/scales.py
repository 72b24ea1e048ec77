"""Sizes of the embedded demo data set. "small" is the `make demo` default (a few minutes on a
2-core CPU; at least 2 MB of English prose, which needs the Debian text packages the Makefile
installs); "tiny" builds in well under a minute for tests (the standard library's text is
enough)."""
from __future__ import annotations

import dataclasses
from typing import Any

from mdm.tokenizers.audio import AudioTokenizerConfig
from mdm.tokenizers.image import ImageTokenizerConfig
from mdm.tokenizers.training import TrainSettings


@dataclasses.dataclass(frozen=True)
class DemoScale:
    name: str
    # text (mdm.demo_data.text): the build fails, naming the apt command, below text_min_bytes
    text_max_chars: int | None = None         # None: every available document
    text_min_bytes: int = 2_000_000           # English prose the scale needs (UTF-8 bytes)
    text_max_chars_per_source: int | None = 1_500_000  # so no one source (GCIDE: 22 MB) dominates
    text_sources: tuple[str, ...] | None = None  # None: every source in text.SOURCES
    text_vocab: int = 4096
    # image-text
    image_size: int = 32
    num_digits: int | None = None             # None: all 1797 scikit-learn digits
    num_shapes: int = 2000
    image_valid_fraction: float = 0.2
    # audio-text
    renderings_per_word: int = 63             # clips per digit word, 9 per voice (7 voices)
    sample_rate: int = 8000
    clip_seconds: float = 1.0
    # tokenizers
    image_tokenizer: ImageTokenizerConfig = ImageTokenizerConfig()
    image_train: TrainSettings = TrainSettings(steps=800, batch_size=32, learning_rate=3e-3)
    audio_tokenizer: AudioTokenizerConfig = AudioTokenizerConfig()
    audio_train: TrainSettings = TrainSettings(steps=500, batch_size=16, learning_rate=2e-3)
    audio_crop_seconds: float = 0.5

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["image_tokenizer"] = self.image_tokenizer.to_dict()
        d["audio_tokenizer"] = self.audio_tokenizer.to_dict()
        if self.text_sources is not None:
            d["text_sources"] = list(self.text_sources)      # as JSON reads it back
        return d


SCALES: dict[str, DemoScale] = {
    # the token space is sized for the demo's micro models (experiments/demo.py): a 512-id BPE
    # and 4^4 = 256-code image and audio tokenizers keep the output head from swamping a
    # 10k-300k-parameter transformer; 6000 shapes and 126 renderings per spoken digit keep
    # the image and audio sets from being repeated dozens of times in a few million tokens
    "small": DemoScale(name="small", text_vocab=512, num_shapes=6000, renderings_per_word=126,
                       image_tokenizer=ImageTokenizerConfig(levels=(4, 4, 4, 4)),
                       audio_tokenizer=AudioTokenizerConfig(levels=(4, 4, 4, 4))),
    "tiny": DemoScale(
        name="tiny", text_max_chars=40_000, text_min_bytes=20_000,
        text_max_chars_per_source=None, text_vocab=512,
        # the standard library alone has enough; reading GCIDE (22 MB, ~4 s) is left to "small"
        text_sources=("pydoc_topics", "fortunes", "devil", "jargon"),
        num_digits=160, num_shapes=160,
        renderings_per_word=7,
        image_tokenizer=ImageTokenizerConfig(widths=(16, 32), levels=(4, 4, 4, 4)),
        image_train=TrainSettings(steps=60, batch_size=16, learning_rate=3e-3, log_every=10),
        audio_tokenizer=AudioTokenizerConfig(widths=(32, 32, 48), levels=(4, 4, 4, 4)),
        audio_train=TrainSettings(steps=60, batch_size=8, learning_rate=3e-3, log_every=10)),
}


def get_scale(scale: str | DemoScale) -> DemoScale:
    if isinstance(scale, DemoScale):
        return scale
    try:
        return SCALES[scale]
    except KeyError:
        raise ValueError(f"unknown demo scale {scale!r}; known: {sorted(SCALES)}") from None
