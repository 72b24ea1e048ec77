"""Per-task sampler defaults (the paper ships optimized inference defaults per modality).

These are the settings `make demo` and `mdm-sample` start from. They were chosen by the
sampling-defaults study (experiments/sampling.py, `python -m mdm.sampling_study`), whose
table is in the README; rerun the study on your own checkpoint to re-derive them.
"""
from __future__ import annotations

from mdm.sampling import SamplerConfig

DEFAULTS: dict[str, SamplerConfig] = {
    "t2i": SamplerConfig(method="confidence", steps=32, temperature=1.0, guidance=2.0),
    "t2s": SamplerConfig(method="confidence", steps=32, temperature=1.0, guidance=2.0),
    "caption": SamplerConfig(method="confidence", steps=16, temperature=0.7),
    "asr": SamplerConfig(method="confidence", steps=16, temperature=0.7),
    "text": SamplerConfig(method="ancestral", steps=64, temperature=1.0, top_p=0.95),
}
