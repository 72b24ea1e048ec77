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
    sampling.offset         score held-out prompts offset .. offset + num_samples - 1
    sampling.lengths        i2t / s2t text length given to the sampler: "oracle" (the
                            reference's) or "prior" (the training split's most common length)
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
                               lengths="oracle", offset=0, tasks="text+t2i+t2s", text=mod(0.0), image=mod(3.0),
                               audio=mod(3.0)))


STUDY = "sampling"   # config.study: which study its runs belong to (mdm.run_contract.STUDIES)

ARGS = dict(size="s6", checkpoint="", modality="image", steps=0, temperature=0.0,
            guidance=-1.0, sampler="", tasks="", num_samples=0, lengths="", offset=-1, step=-1,
            batch_size=0)


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
    if a.lengths:
        c.sampling.lengths = a.lengths
    if a.offset >= 0:
        c.sampling.offset = a.offset
    c.sampling.step = a.step
    if a.batch_size:
        c.sampling.batch_size = a.batch_size
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


# --- the showcase's sampling runs (launch/showcase.py) -------------------------------------------
# Every point samples one task of one checkpoint on `num` held-out prompts from `offset`:
#   (t2i scores 2 x num prompts: num digit and num shape captions)
#   score     each task at mdm.generation_tasks.DEFAULTS, on the final checkpoint and on the
#             earlier ones named by `ckpt_steps` (score versus tokens); i2t and s2t again with
#             the no-oracle length ("prior")
#   guidance  t2i and t2s at classifier-free guidance weights GUIDANCE, the rest at DEFAULTS
#   defaults  the sampling-defaults study on this checkpoint: one factor at a time around each
#             task's default (steps, sampler, temperature, and guidance for the conditional
#             tasks), on prompts disjoint from `score`'s (offset = num) so the chosen setting
#             is re-scored without selection bias
GUIDANCE: tuple[float, ...] = (0.0, 1.0, 2.0, 3.0, 4.0)
STUDY_GRID = dict(steps=(16, 32, 64), sampler=("ancestral", "confidence", "margin"),
                  temperature=(0.7, 1.0))
SHOWCASE_ARGS = dict(kind="score", checkpoint="", num=100, offset=0, ckpt_steps=(-1,),
                     size="s4")


def _setting(task: str, num: int, offset: int, **change) -> dict:
    """The sampling-config arguments of `task` at DEFAULTS[task], with `change` applied, on
    `num` prompts from `offset` (t2i: 2 x both, so that num digit and num shape captions are
    scored)."""
    from mdm.generation_tasks import DEFAULTS
    from mdm.run_contract import TASK_MODALITY
    d = DEFAULTS[task]
    s = dict(steps=d.steps, sampler=d.method, temperature=d.temperature, guidance=d.guidance)
    s.update(change)
    n = 2 * num if task == "t2i" else num
    return dict(modality=TASK_MODALITY[task], tasks=task, num_samples=n, batch_size=n,
                offset=2 * offset if task == "t2i" else offset, **s)


def _name(task: str, s: dict) -> str:
    return (f"{task}-st{s['steps']}-{s['sampler']}-temp{fmt(s['temperature'])}"
            f"-g{fmt(s['guidance'])}")


def showcase_sweep(arg: str | None = None) -> Sweep:
    """The showcase's sampling runs (see above); `kind` = score | guidance | defaults."""
    from mdm.generation_tasks import TASKS
    a = parse_arg(arg, SHOWCASE_ARGS, positional="kind",
                  where="experiments/sampling.py showcase_sweep")
    base = dict(size=a.size, checkpoint=a.checkpoint)    # one sampler call: every prompt in a batch
    pts: list[Point] = []
    if a.kind == "score":
        for step in a.ckpt_steps:
            at = "final" if step < 0 else f"at{int(step)}"
            for t in TASKS:
                pts.append(Point(f"{t}-{at}", format_arg(**base, **_setting(t, a.num, a.offset),
                                                         step=int(step))))
                if t in ("i2t", "s2t") and step < 0:
                    pts.append(Point(f"{t}-final-prior", format_arg(
                        **base, **_setting(t, a.num, a.offset), lengths="prior")))
    elif a.kind == "guidance":
        for t in ("t2i", "t2s"):
            for w in GUIDANCE:
                pts.append(Point(f"{t}-g{fmt(w)}", format_arg(**base, **_setting(t, a.num, a.offset, guidance=w))))
    elif a.kind == "defaults":
        for t in TASKS:
            seen = set()
            grid = dict(STUDY_GRID)
            if t != "text":
                grid["guidance"] = GUIDANCE if t in ("t2i", "t2s") else (0.0, 2.0)
            for field, values in grid.items():
                for v in values:
                    s = _setting(t, a.num, a.offset, **{field: v})
                    name = _name(t, s)
                    if name not in seen:
                        seen.add(name)
                        pts.append(Point(name, format_arg(**base, **s)))
    else:
        raise SweepError(f"experiments/sampling.py showcase_sweep: unknown kind {a.kind!r}; "
                         "choose from score, guidance, defaults")
    return Sweep(f"showcase-{a.kind}", pts, entrypoint=ENTRYPOINT,
                 description=f"showcase sampling runs ({a.kind})")
