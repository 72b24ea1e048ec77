"""The per-task sampler defaults (mdm.generation_tasks.DEFAULTS): what `make demo`,
`make showcase` and the Python API sample with.

Written by the sampling-defaults study (`make sampling-defaults`: launch/showcase.py --study,
decided by `python -m analysis.sampling_defaults ... --write-module`), which writes this file
next to its tables; copy it here to adopt a new study's choice.

Provenance: checkpoint /tmp/sc_full/showcase/s4-t1.4e7-76365192,
[100, 200] held-out prompts per task and setting, 64 runs (sweeps showcase-defaults).
Each task's choice and its 95% interval over prompts:
    t2i   t2i.attribute_accuracy = 0.45 [0.4164, 0.4861]; 5 of 17 settings worse beyond noise
    t2s   t2s.word_accuracy = 0.61 [0.512, 0.6998]; 3 of 15 settings worse beyond noise
    i2t   i2t.cer = 0.0932 [0.07316, 0.1147]; 6 of 11 settings worse beyond noise
    s2t   s2t.cer = 0.2118 [0.1347, 0.2955]; 6 of 12 settings worse beyond noise
    text  text.bigram_js = 0.3169 [0.3074, 0.3265]; 6 of 9 settings worse beyond noise
"""
from mdm.samplers import SamplerConfig

DEFAULTS: dict[str, SamplerConfig] = {
    "t2i": SamplerConfig(method='ancestral', steps=32, temperature=1.0, guidance=2.0, top_p=1.0, schedule='linear'),
    "t2s": SamplerConfig(method='confidence', steps=32, temperature=1.0, guidance=2.0, top_p=1.0, schedule='linear'),
    "i2t": SamplerConfig(method='confidence', steps=16, temperature=1.0, guidance=0.0, top_p=1.0, schedule='linear'),
    "s2t": SamplerConfig(method='ancestral', steps=64, temperature=0.7, guidance=0.0, top_p=1.0, schedule='linear'),
    "text": SamplerConfig(method='confidence', steps=16, temperature=1.0, guidance=0.0, top_p=1.0, schedule='linear'),
}
