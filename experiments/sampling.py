"""The sampling-defaults study: denoising steps, temperature, classifier-free guidance weight
and sampler, per modality, applied to one trained checkpoint. Each point runs `mdm.eval_samples`
(same command-line shape as mdm.train: `python -m mdm.eval_samples --config FILE:ARG --workdir
OUT [--config.a.b=v]`), which samples the checkpoint, scores the outputs on the demo held-out
split and writes a run directory with the metrics under summary.json's "sampling";
`python -m analysis.sampling_defaults RUNS_ROOT` then picks the best setting per task.

The config is the `paper` study base at a ladder size plus a `sampling` section; mdm.eval_samples
takes the model itself from the checkpoint's config.json (the model fields here are unused):

    sampling.checkpoint     run directory whose newest checkpoint is sampled
    sampling.step           checkpoint step (-1 = newest)
    sampling.num_samples, sampling.batch_size, sampling.seed
    sampling.tasks          "+"-joined subset of text (unconditional), t2i, t2s, i2t, s2t
    sampling.{text,image,audio}:
        steps               denoising steps (number of unmasking rounds)
        temperature         softmax temperature of the token draws
        guidance            classifier-free guidance weight w (0 = none):
                            log p = log p_c + w (log p_c - log p_u)
        sampler             ancestral | confidence | margin  (MDM ancestral sampling, or
                            unmask the most confident / largest-margin positions first)
        top_p               nucleus mass (1 = off)
        unmask_schedule     linear | cosine  (how many positions are revealed per round)

Each section becomes an mdm.samplers.SamplerConfig: sampler -> method, unmask_schedule ->
schedule, steps, temperature, guidance, top_p (the rest at SamplerConfig's defaults). Tasks use
sections: text -> text; t2i and i2t (captioning) -> image; t2s and s2t (ASR) -> audio.

Config argument: size, checkpoint, modality + steps, temperature, guidance, sampler (these set
that modality's section), tasks, num_samples.

Sweep (per modality, `modality=all|text|image|audio`): steps 32, 64, 128, 256 x temperature
0.7, 0.9, 1.0 x sampler ancestral, confidence, and for image and audio guidance 0, 1, 3, 5:
24 + 96 + 96 = 216 points. Names: image-st64-temp0.9-g3-ancestral. Set the checkpoint with
`checkpoint=RUN_DIR` in the sweep argument or `--set sampling.checkpoint=RUN_DIR`. Each
modality's points run its generation task (text, t2i, t2s); `--set sampling.tasks=t2i+i2t`
(image) or `t2s+s2t` (audio) also scores captioning / ASR with the same settings.
"""
from __future__ import annotations

import ml_collections as mlc

from experiments import common, ladder
from experiments.sweep import Point, Sweep, SweepError, fmt, format_arg, parse_arg, product
from mdm.generation_tasks import validate_sampling
from mdm.run_contract import MODALITIES

ENTRYPOINT = "mdm.eval_samples"


def sampling_section() -> mlc.ConfigDict:
    def mod(guidance: float) -> mlc.ConfigDict:
        return mlc.ConfigDict(dict(steps=128, temperature=1.0, guidance=guidance,
                                   sampler="ancestral", top_p=1.0, unmask_schedule="linear"))
    return mlc.ConfigDict(dict(checkpoint="", step=-1, num_samples=64, batch_size=16, seed=0,
                               tasks="text+t2i+t2s", text=mod(0.0), image=mod(3.0),
                               audio=mod(3.0)))


STUDY = "sampling"   # config.study: which study its runs belong to (mdm.run_contract.STUDIES)

ARGS = dict(size="s6", checkpoint="", modality="image", steps=0, temperature=0.0,
            guidance=-1.0, sampler="", tasks="", num_samples=0)


def get_config(arg: str | None = None) -> mlc.ConfigDict:
    a = parse_arg(arg, ARGS, where="experiments/sampling.py")
    c = ladder.apply_size(common.study_base("paper"), a.size)
    c.study = STUDY
    c.sampling = sampling_section()
    c.sampling.checkpoint = a.checkpoint
    if a.modality not in MODALITIES:
        raise SweepError(f"experiments/sampling.py: modality must be one of {MODALITIES}")
    g = c.sampling[a.modality]
    if a.steps:
        g.steps = a.steps
    if a.temperature:
        g.temperature = a.temperature
    if a.guidance >= 0:
        g.guidance = a.guidance
    if a.sampler:
        g.sampler = a.sampler
    if a.tasks:
        c.sampling.tasks = a.tasks
    if a.num_samples:
        c.sampling.num_samples = a.num_samples
    validate_sampling(c)
    return c


TASK_OF = {"text": "text", "image": "t2i", "audio": "t2s"}
SWEEP_ARGS = dict(modality=("all",), steps=(32, 64, 128, 256), temperature=(0.7, 0.9, 1.0),
                  guidance=(0.0, 1.0, 3.0, 5.0), sampler=("ancestral", "confidence"),
                  size="s6", checkpoint="")


def sweep(arg: str | None = None) -> Sweep:
    a = parse_arg(arg, SWEEP_ARGS, where="experiments/sampling.py sweep")
    mods = MODALITIES if a.modality == ("all",) else a.modality
    pts = []
    for m in mods:
        if m not in MODALITIES:
            raise SweepError(f"experiments/sampling.py sweep: unknown modality {m!r}")
        guid = (0.0,) if m == "text" else a.guidance  # unconditional text has no guidance
        for p in product(steps=a.steps, temperature=a.temperature, guidance=guid,
                         sampler=a.sampler):
            name = f"{m}-st{p['steps']}-temp{fmt(p['temperature'])}"
            name += "" if m == "text" else f"-g{fmt(p['guidance'])}"
            pts.append(Point(f"{name}-{p['sampler']}", format_arg(
                size=a.size, checkpoint=a.checkpoint, modality=m, tasks=TASK_OF[m], **p)))
    return Sweep("sampling" + ("" if a.modality == ("all",) else "-" + "+".join(mods)), pts,
                 entrypoint=ENTRYPOINT, description="sampling defaults per modality")
