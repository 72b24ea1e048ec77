"""The per-task sampler defaults (mdm.generation_tasks.DEFAULTS): what `make demo`,
`make showcase` and the Python API sample with.

Written by the sampling-defaults study (`make sampling-defaults`: launch/showcase.py --study,
decided by `python -m analysis.sampling_defaults ... --write-module`), which writes this file
next to its tables; copy it here to adopt a new study's choice.

Provenance: the study on the best demo checkpoint, 8 held-out items per task and setting (steps
16/32/64 x ancestral/confidence x guidance 0/2 for image and audio; temperature 0.7/1.0 for
text). That checkpoint's outputs were near chance: rerun the study on a real checkpoint.
"""
from mdm.samplers import SamplerConfig

DEFAULTS: dict[str, SamplerConfig] = {
    "t2i": SamplerConfig(method="confidence", steps=32, temperature=1.0, guidance=2.0,
                         schedule="linear"),
    "t2s": SamplerConfig(method="ancestral", steps=32, temperature=1.0, guidance=2.0,
                         schedule="linear"),
    "i2t": SamplerConfig(method="ancestral", steps=16, temperature=1.0, guidance=0.0,
                         schedule="linear"),
    "s2t": SamplerConfig(method="ancestral", steps=64, temperature=1.0, guidance=2.0,
                         schedule="linear"),
    "text": SamplerConfig(method="confidence", steps=64, temperature=1.0, guidance=0.0,
                          schedule="linear"),
}
