"""The modality mixing-ratio study: per-modality loss as a function of the share of text,
image-text and audio-text sequences in every batch (data.mixture), at fixed size and tokens.

    python -m mdm.train --config experiments/mixing.py:text=0.5,image=0.25,audio=0.25,size=s6 ...

Config argument: text, image, audio (ratios; they must sum to 1), size, tokens, on the `paper`
study base.

Sweep: the simplex lattice {(i, j, k) / n : i + j + k = n} (n = `n`, default 4: 15 mixtures,
the three pure modalities included; `interior=true` keeps only mixtures with every modality
present) x sizes (default s5, s7) x tokens (default 2e9): 30 runs.
Names: mix_t50_i25_a25-s7-t2e9 (percentages).
"""
from __future__ import annotations

import ml_collections as mlc

from experiments import common, ladder
from experiments.sweep import Point, Sweep, SweepError, fmt, format_arg, parse_arg, product

STUDY = "mixing"   # config.study: which study its runs belong to (mdm.run_contract.STUDIES)

ARGS = dict(text=0.5, image=0.25, audio=0.25, size="s6", tokens=2e9)


def get_config(arg: str | None = None) -> mlc.ConfigDict:
    a = parse_arg(arg, ARGS, where="experiments/mixing.py")
    c = ladder.apply_size(common.study_base("paper"), a.size)
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


SWEEP_ARGS = dict(n=4, interior=False, sizes=("s5", "s7"), tokens=(2e9,))


def sweep(arg: str | None = None) -> Sweep:
    a = parse_arg(arg, SWEEP_ARGS, where="experiments/mixing.py sweep")
    mixes = simplex(a.n, a.interior)
    if not mixes:
        raise SweepError(f"experiments/mixing.py: n={a.n} with interior=true leaves no mixture")
    pts = [Point(f"{mix_name(p['mix'])}-{p['size']}-t{fmt(p['tokens'])}",
                 format_arg(text=p["mix"][0], image=p["mix"][1], audio=p["mix"][2],
                            size=p["size"], tokens=p["tokens"]))
           for p in product(size=a.sizes, tokens=a.tokens, mix=mixes)]
    return Sweep(f"mixing-n{a.n}" + ("-interior" if a.interior else ""), pts,
                 description="modality mixing ratios on the simplex")
