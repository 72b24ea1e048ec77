"""The noise-schedule study: masking schedules alpha(t) chosen per modality
(objective.schedule.{text,image,audio}; mdm.schedules: linear, cosine, poly:K).

    python -m mdm.train --config experiments/noise_schedule.py:text=cosine,image=poly:2 ...

Config argument: text, image, audio (schedule specs), size, tokens, mix, on the `paper` study
base (the evaluation ELBO is schedule-independent in continuous time, so bits per token compare
across schedules).

Sweeps (first item):
  per_modality  (default) the all-linear baseline, plus each modality in turn on each other
                schedule while the other two stay linear: 1 + 3 x 3 = 10 runs;
  shared        one schedule for every modality: 4 runs;
  product       every combination: 4^3 = 64 runs.
Schedules default to linear, cosine, poly:0.5, poly:2 (`schedules=linear+cosine+poly:3`);
`sizes=`, `tokens=`, `mix=`. Names: t-cos_i-lin_a-lin-s6-t2e9.
"""
from __future__ import annotations

import ml_collections as mlc

from experiments import common, ladder
from experiments.sweep import Point, Sweep, SweepError, fmt, format_arg, parse_arg, product

STUDY = "noise_schedule"   # config.study: which study its runs belong to (mdm.run_contract.STUDIES)

ARGS = dict(text="linear", image="linear", audio="linear", size="s6", tokens=2e9, mix="default")


def get_config(arg: str | None = None) -> mlc.ConfigDict:
    a = parse_arg(arg, ARGS, where="experiments/noise_schedule.py")
    c = ladder.apply_size(common.study_base("paper"), a.size)
    c.study = STUDY
    common.set_mixture(c, a.mix)
    c.objective.schedule.update(text=a.text, image=a.image, audio=a.audio)
    c.train.total_tokens = a.tokens
    return c


def short(spec: str) -> str:
    s = spec.strip().lower()
    return {"linear": "lin", "cosine": "cos"}.get(s, s.replace("polynomial:", "poly")
                                                   .replace("poly:", "poly"))


SWEEP_ARGS = dict(kind="per_modality", schedules=("linear", "cosine", "poly:0.5", "poly:2"),
                  sizes=("s6",), tokens=(2e9,), mix="default")


def sweep(arg: str | None = None) -> Sweep:
    a = parse_arg(arg, SWEEP_ARGS, positional="kind", where="experiments/noise_schedule.py sweep")
    sch = list(a.schedules)
    base = "linear"
    if a.kind == "per_modality":
        combos = [(base, base, base)]
        for i in range(3):
            for s in sch:
                if s != base:
                    c = [base] * 3
                    c[i] = s
                    combos.append(tuple(c))
    elif a.kind == "shared":
        combos = [(s, s, s) for s in sch]
    elif a.kind == "product":
        combos = [(p["t"], p["i"], p["a"]) for p in product(t=sch, i=sch, a=sch)]
    else:
        raise SweepError(f"experiments/noise_schedule.py: unknown sweep {a.kind!r}; choose "
                         "per_modality, shared or product")
    pts = [Point(f"t-{short(p['c'][0])}_i-{short(p['c'][1])}_a-{short(p['c'][2])}-{p['size']}"
                 f"-t{fmt(p['tokens'])}",
                 format_arg(text=p["c"][0], image=p["c"][1], audio=p["c"][2], size=p["size"],
                            tokens=p["tokens"], mix=a.mix))
           for p in product(size=a.sizes, tokens=a.tokens, c=combos)]
    return Sweep(f"schedules-{a.kind}" + ("" if a.mix == "default" else f"-mix_{a.mix}"), pts,
                 description="per-modality noise schedules")
