"""What the studies share: the two scales a study runs at and the named modality mixtures.

`study_base(scale)`:
  * "paper": experiments/base.py's default preset, with 1024-token sequences, 256 sequences per
    step (262k tokens), 11 evaluations on 512 fixed examples, checkpoints every 10% of the
    run, no progress bar (batch jobs).
  * "cpu": the `tiny` preset (64-token sequences, 64-id vocabularies, 16 sequences per step):
    a run of 1e5 tokens takes seconds on this machine.

Mixtures (data.mixture, fractions of each batch's sequences): text / image / audio (one
modality), tri (equal thirds) and default (the base config's 0.5 / 0.25 / 0.25).
"""
from __future__ import annotations

import ml_collections as mlc

from experiments import base

MIXES: dict[str, tuple[float, float, float]] = {
    "text": (1.0, 0.0, 0.0),
    "image": (0.0, 1.0, 0.0),
    "audio": (0.0, 0.0, 1.0),
    "tri": (1 / 3, 1 / 3, 1 / 3),
    "default": (0.5, 0.25, 0.25),
}
SCALES = ("paper", "cpu")


def study_base(scale: str = "paper") -> mlc.ConfigDict:
    if scale == "paper":
        c = base.get_config("default")
        c.data.seq_len = 1024
        c.train.physical_batch = 256
        c.eval.update(every=0.1, num_examples=512, batch_size=64)
        c.checkpoint.update(every=0.1, keep=2)
        c.logging.update(every_steps=50, progress=False)
        return c
    if scale == "cpu":
        c = base.get_config("tiny")
        c.logging.progress = False
        return c
    raise ValueError(f"unknown scale {scale!r}; choose from {SCALES}")


def set_mixture(c: mlc.ConfigDict, mix: str | tuple[float, float, float]) -> mlc.ConfigDict:
    if isinstance(mix, str):
        if mix not in MIXES:
            raise ValueError(f"unknown mixture {mix!r}; choose from {', '.join(MIXES)} "
                             "(or set data.mixture.* directly)")
        mix = MIXES[mix]
    c.data.mixture.update(text=float(mix[0]), image=float(mix[1]), audio=float(mix[2]))
    return c
