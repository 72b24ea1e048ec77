"""The embedded demo data set: text, image-text and audio-text, aligned on shared words (digit
names, shapes, colours), generated from what is on the machine (CPython's pydoc topics, Debian
fortunes if installed, scikit-learn's digits, numpy-rendered shapes, espeak-ng speech), with
trained tokenizers and deterministic checkers. Nothing is downloaded.

    build_demo_dataset(out_dir, seed=0, scale="small") -> DemoDataset

Heavy submodules are imported on first access.
"""
from __future__ import annotations

from typing import Any

_LAZY = {
    "build_demo_dataset": "mdm.demo_data.build",
    "DemoDataset": "mdm.demo_data.build",
    "DemoScale": "mdm.demo_data.scales",
    "SCALES": "mdm.demo_data.scales",
    "ImageChecker": "mdm.demo_data.image_checker",
    "AudioChecker": "mdm.demo_data.audio_checker",
    "EspeakNotFoundError": "mdm.demo_data.speech",
    "require_espeak": "mdm.demo_data.speech",
    "synthesize": "mdm.demo_data.speech",
    "make_shapes": "mdm.demo_data.shapes",
    "make_digits": "mdm.demo_data.digits",
    "make_text_corpus": "mdm.demo_data.text",
    "make_spoken_words": "mdm.demo_data.speech",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mdm.demo_data' has no attribute {name!r}")
