"""The modality mixing-ratio study: per-modality loss as a function of the share of text,
image-text and audio-text sequences in every batch (data.mixture), at fixed size and tokens.

    python -m mdm.train --config experiments/mixing.py:text=0.5,image=0.25,audio=0.25,size=s6 ...

Config argument: text, image, audio (ratios; they must sum to 1), size, tokens, on the `paper`
study base.

`scale=cpu` (with `seed`, `source`, `path`): at CPU scale, the demo's micro model on the demo
data (experiments/demo.py study_config).

Sweeps (the first item picks one; any field below may be given too):
  paper     (default) the simplex lattice {(i, j, k) / n : i + j + k = n} (n = `n`, default 4:
            15 mixtures, the three pure modalities included; `interior=true` keeps only
            mixtures with every modality present) x sizes (default s5, s7) x tokens (default
            2e9): 30 runs;
  cpu       `make studies`: n = 3 (10 mixtures, the three pure ones included) at w32, 2^20
            tokens, seed 0: 10 runs;
  cpu_quick the reduced version the tests run: n = 2 (6 mixtures) at w16, 16384 tokens (8 steps).
Names: mix_t50_i25_a25-s7-t2e9 (percentages; cpu: ...-s<seed>).
"""
from __future__ import annotations

import ml_collections as mlc

from experiments import common, demo, ladder
from experiments.sweep import Point, Sweep, SweepError, fmt, format_arg, parse_arg, product

STUDY = "mixing"   # config.study: which study its runs belong to (mdm.run_contract.STUDIES)

ARGS = dict(text=0.5, image=0.25, audio=0.25, size="s6", tokens=2e9, scale="paper", seed=0,
            source="synthetic", path="")


def get_config(arg: str | None = None) -> mlc.ConfigDict:
    a = parse_arg(arg, ARGS, where="experiments/mixing.py")
    if a.scale == "cpu":
        c = demo.study_config(a.size, a.tokens, a.source, a.path, seed=a.seed)
    elif a.scale == "paper":
        c = ladder.apply_size(common.study_base("paper"), a.size)
    else:
        raise ValueError(f"experiments/mixing.py: unknown scale {a.scale!r}; choose paper or cpu")
    c.study = STUDY
    common.set_mixture(c, (a.text, a.image, a.audio))
    c.train.total_tokens = a.tokens
    return c


def simplex(n: int, interior: bool = False) -> list[tuple[float, float, float]]:
    """Mixtures (i/n, j/n, k/n) with i + j + k = n, text-heaviest first."""
    if n < 1:
        raise SweepError(f"experiments/mixing.py: n must be >= 1, got {n}")
    out = []
    for i in range(n, -1, -1):
        for j in range(n - i, -1, -1):
            k = n - i - j
            if interior and min(i, j, k) == 0:
                continue
            out.append((round(i / n, 6), round(j / n, 6), round(1 - round(i / n, 6)
                                                                - round(j / n, 6), 6)))
    return out


def mix_name(m: tuple[float, float, float]) -> str:
    return "mix_" + "_".join(f"{p}{round(100 * v):g}" for p, v in zip("tia", m))


SWEEP_ARGS = dict(kind="paper", n=4, interior=False, sizes=("s5", "s7"), tokens=(2e9,),
                  seeds=(0,), source="synthetic", path="")
KINDS = {"paper": {},
         "cpu": dict(n=3, sizes=("w32",), tokens=(2.0 ** 20,), seeds=(0,)),
         "cpu_quick": dict(n=2, sizes=("w16",), tokens=(16384.0,), seeds=(0,))}


def sweep(arg: str | None = None) -> Sweep:
    a = parse_arg(arg, SWEEP_ARGS, positional="kind", where="experiments/mixing.py sweep")
    if a.kind not in KINDS:
        raise SweepError(f"experiments/mixing.py: unknown sweep {a.kind!r}; choose from "
                         f"{', '.join(KINDS)}")
    given = {i.split("=", 1)[0].strip() for i in (arg or "").split(",") if "=" in i}
    a.update({k: v for k, v in KINDS[a.kind].items() if k not in given})
    cpu = a.kind != "paper"
    mixes = simplex(a.n, a.interior)
    if not mixes:
        raise SweepError(f"experiments/mixing.py: n={a.n} with interior=true leaves no mixture")
    extra = (dict(scale="cpu", source=a.source) | ({"path": a.path} if a.path else {})
             if cpu else {})
    pts = [Point(f"{mix_name(p['mix'])}-{p['size']}-t{fmt(p['tokens'])}"
                 + (f"-s{p['seed']}" if cpu else ""),
                 format_arg(text=p["mix"][0], image=p["mix"][1], audio=p["mix"][2],
                            size=p["size"], tokens=p["tokens"],
                            **(dict(seed=p["seed"], **extra) if cpu else {})))
           for p in product(size=a.sizes, tokens=a.tokens, mix=mixes, seed=a.seeds)]
    return Sweep(f"mixing-n{a.n}" + ("-interior" if a.interior else "")
                 + ("-cpu" if cpu else ""), pts,
                 description="modality mixing ratios on the simplex")
