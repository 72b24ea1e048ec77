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
  cpu           `make studies`: the shared design at CPU scale (`scale=cpu`: the demo's micro
                w32 on the demo data, experiments/demo.py study_config), 2^20 tokens, seeds
                0, 1, 2: 12 runs;
  cpu_quick     the reduced version the tests run: linear and cosine, 16384 tokens (8 steps), seeds 0, 1.
Schedules default to linear, cosine, poly:0.5, poly:2 (`schedules=linear+cosine+poly:3`);
`sizes=`, `tokens=`, `mix=`, `seeds=`, `source=`, `path=`. Names: t-cos_i-lin_a-lin-s6-t2e9
(cpu: ...-s<seed>).
"""
from __future__ import annotations

import ml_collections as mlc

from experiments import common, demo, ladder
from experiments.sweep import Point, Sweep, SweepError, fmt, format_arg, parse_arg, product

STUDY = "noise_schedule"   # config.study: which study its runs belong to (mdm.run_contract.STUDIES)

ARGS = dict(text="linear", image="linear", audio="linear", size="s6", tokens=2e9, mix="default",
            scale="paper", seed=0, source="synthetic", path="")


def get_config(arg: str | None = None) -> mlc.ConfigDict:
    a = parse_arg(arg, ARGS, where="experiments/noise_schedule.py")
    if a.scale == "cpu":
        c = demo.study_config(a.size, a.tokens, a.source, a.path, seed=a.seed)
    elif a.scale == "paper":
        c = ladder.apply_size(common.study_base("paper"), a.size)
    else:
        raise ValueError(f"experiments/noise_schedule.py: unknown scale {a.scale!r}; choose "
                         "paper or cpu")
    c.study = STUDY
    common.set_mixture(c, "tri" if a.scale == "cpu" and a.mix == "default" else a.mix)
    c.objective.schedule.update(text=a.text, image=a.image, audio=a.audio)
    c.train.total_tokens = a.tokens
    return c


def short(spec: str) -> str:
    s = spec.strip().lower()
    return {"linear": "lin", "cosine": "cos"}.get(s, s.replace("polynomial:", "poly")
                                                   .replace("poly:", "poly"))


SWEEP_ARGS = dict(kind="per_modality", schedules=("linear", "cosine", "poly:0.5", "poly:2"),
                  sizes=("s6",), tokens=(2e9,), mix="default", seeds=(-1,), source="synthetic",
                  path="")
# the CPU kinds: the shared design with these defaults (a field given explicitly wins)
CPU_KINDS = {"cpu": dict(sizes=("w32",), tokens=(2.0 ** 20,), seeds=(0, 1, 2)),
             "cpu_quick": dict(sizes=("w16",), tokens=(16384.0,), seeds=(0, 1),
                               schedules=("linear", "cosine"))}


def sweep(arg: str | None = None) -> Sweep:
    a = parse_arg(arg, SWEEP_ARGS, positional="kind", where="experiments/noise_schedule.py sweep")
    given = {i.split("=", 1)[0].strip() for i in (arg or "").split(",") if "=" in i}
    cpu = a.kind in CPU_KINDS
    if cpu:
        a.update({k: v for k, v in CPU_KINDS[a.kind].items() if k not in given})
        return _cpu_sweep(a)
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


def _cpu_sweep(a: dict) -> Sweep:
    """The shared design at CPU scale, one run per schedule x size x seed."""
    extra = dict(scale="cpu", source=a["source"]) | ({"path": a["path"]} if a["path"] else {})
    pts = [Point(f"t-{short(p['s'])}_i-{short(p['s'])}_a-{short(p['s'])}-{p['size']}"
                 f"-t{fmt(p['tokens'])}-s{p['seed']}",
                 format_arg(text=p["s"], image=p["s"], audio=p["s"], size=p["size"],
                            tokens=p["tokens"], seed=p["seed"], **extra))
           for p in product(size=a["sizes"], tokens=a["tokens"], s=a["schedules"],
                            seed=a["seeds"])]
    return Sweep(f"schedules-{a['kind'].replace('_', '-')}", pts,
                 description="noise schedules (one per run, shared by the modalities), CPU scale")
