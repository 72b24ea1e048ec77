"""Per-task sampler defaults (the paper ships optimized inference defaults per modality).

These are what `make demo` and the Python API start from. They were chosen by the
sampling-defaults study (experiments/sampling.py run through `launch.cli`, then
`python -m mdm.sampling_study RUNS_ROOT`) on the best demo checkpoint, 8 held-out items per
task; the table is in the README. On that CPU-sized checkpoint the metrics are near chance and,
for every task but text, the differences between settings are within about two seed standard
deviations: rerun the study on your own checkpoint to re-derive them.
"""
from __future__ import annotations

from mdm.sampling import SamplerConfig

DEFAULTS: dict[str, SamplerConfig] = {
    "t2i": SamplerConfig(method="confidence", steps=32, temperature=1.0, guidance=2.0,
                         schedule="linear"),
    "t2s": SamplerConfig(method="ancestral", steps=32, temperature=1.0, guidance=2.0,
                         schedule="linear"),
    "caption": SamplerConfig(method="ancestral", steps=16, temperature=1.0, guidance=0.0,
                             schedule="linear"),
    "asr": SamplerConfig(method="ancestral", steps=64, temperature=1.0, guidance=2.0,
                         schedule="linear"),
    "text": SamplerConfig(method="confidence", steps=64, temperature=1.0, guidance=0.0,
                          schedule="linear"),
}
