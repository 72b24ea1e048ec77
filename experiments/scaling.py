"""The multimodal scaling study: loss L(N, D) per modality mix, from a size x tokens grid and
from IsoFLOP profiles.

    python -m mdm.train --config experiments/scaling.py:size=s7,tokens=2e9,mix=text --workdir ...
    python -m launch.cli run experiments/scaling.py:isoflop,mix=text --runs-root runs ...

Config argument: size (a ladder rung, experiments/ladder.py), tokens (the run's token budget),
mix (text | image | audio | tri | default, experiments/common.py), on the `paper` study base
(1024-token sequences, 256 sequences per step, CompleteP from the ladder's base shape).

Sweeps (the argument's first item picks one):
  grid     sizes x tokens for each mix. Default sizes s4..s9 (3M..350M non-embedding
           parameters), tokens 5e8, 1e9, 2e9, 5e9, 1e10, mixes text, image, audio, tri:
           6 x 5 x 4 = 120 runs. Names: s6-t2e9-mix_text.
  isoflop  for each compute budget C and each size, the token budget D that spends C:
           steps = round(C / (flops_per_token x tokens_per_step)), D = steps x tokens_per_step,
           where flops_per_token is measured (ladder.flops_per_token: parameter counts from an
           abstract init, mdm.flops). A (C, size) point is kept when the run's FLOPs are within
           `tol` (relative) of C and D / N_non_embedding is within [min_tpp, max_tpp]; a budget
           with fewer than `min_points` sizes is an error. Default budgets 3e17..3e19 (5),
           sizes s4..s10, tol 0.01, tokens per parameter in [1, 1000]. Names: c1e18-s7-mix_text.
Both take `mix=text+tri` (or `mix=all`), `sizes=s4+s5+...`; grid takes `tokens=...`, isoflop
`budgets=...`, `tol=`, `min_tpp=`, `max_tpp=`, `min_points=`.

Runs record their study (config.study, config.json "study"; the run id ignores it): "scaling",
and "isoflop" for the isoflop sweep's points (`--config.study=isoflop` on a point run by hand).
The analysis fits the scaling laws on both and the IsoFLOP profiles on the second
(`mdm-figures RUNS_ROOT --out DIR`).
"""
from __future__ import annotations

import ml_collections as mlc

from experiments import common, ladder
from experiments.sweep import Point, Sweep, SweepError, fmt, format_arg, parse_arg, product

STUDY = "scaling"   # config.study: which study its runs belong to (mdm.run_contract.STUDIES)
ISOFLOP_STUDY = "isoflop"   # ...and the isoflop sweep's points (IsoFLOP profiles, frontier)

ARGS = dict(size="s6", tokens=1e9, mix="tri")


def get_config(arg: str | None = None) -> mlc.ConfigDict:
    a = parse_arg(arg, ARGS, where="experiments/scaling.py")
    c = ladder.apply_size(common.study_base("paper"), a.size)
    c.study = STUDY
    common.set_mixture(c, a.mix)
    c.train.total_tokens = a.tokens
    return c


ALL_MIXES = ("text", "image", "audio", "tri")
SWEEP_ARGS = dict(kind="grid", mix=("all",), sizes=("",), tokens=(5e8, 1e9, 2e9, 5e9, 1e10),
                  budgets=(3e17, 1e18, 3e18, 1e19, 3e19), tol=0.01, min_tpp=1.0, max_tpp=1000.0,
                  min_points=3)
DEFAULT_SIZES = {"grid": ladder.sizes_between("s4", "s9"),
                 "isoflop": ladder.sizes_between("s4", "s10")}


def isoflop_points(budgets, sizes, mix: str, tol: float, min_tpp: float, max_tpp: float,
                   min_points: int) -> list[Point]:
    pts = []
    for C in budgets:
        kept = []
        for s in sizes:
            cfg = get_config(format_arg(size=s, tokens=1e9, mix=mix))
            fpt = ladder.flops_per_token(cfg)
            tps = cfg.train.physical_batch * cfg.data.seq_len
            steps = round(C / (fpt * tps))
            if steps < 1:
                continue
            tokens = float(steps * tps)
            n = ladder.param_counts(cfg)["params_non_embedding"]
            if abs(tokens * fpt / C - 1) > tol or not min_tpp <= tokens / n <= max_tpp:
                continue
            kept.append(Point(f"c{fmt(C)}-{s}-mix_{mix}",
                              format_arg(size=s, tokens=tokens, mix=mix),
                              overrides={"study": ISOFLOP_STUDY}))
        if len(kept) < min_points:
            raise SweepError(f"experiments/scaling.py isoflop: budget {C:g} (mix {mix}) has "
                             f"{len(kept)} sizes within tol={tol} and tokens/param in "
                             f"[{min_tpp:g}, {max_tpp:g}]; need {min_points} (add sizes or "
                             "change the budget)")
        pts += kept
    return pts


def sweep(arg: str | None = None) -> Sweep:
    a = parse_arg(arg, SWEEP_ARGS, positional="kind", where="experiments/scaling.py sweep")
    if a.kind not in DEFAULT_SIZES:
        raise SweepError(f"experiments/scaling.py: unknown sweep {a.kind!r}; choose grid or "
                         "isoflop")
    mixes = ALL_MIXES if a.mix == ("all",) else a.mix
    sizes = DEFAULT_SIZES[a.kind] if a.sizes == ("",) else a.sizes
    for s in sizes:
        ladder.size(s)
    if a.kind == "grid":
        pts = [Point(f"{p['size']}-t{fmt(p['tokens'])}-mix_{p['mix']}",
                     format_arg(size=p["size"], tokens=p["tokens"], mix=p["mix"]))
               for p in product(mix=mixes, size=sizes, tokens=a.tokens)]
    else:
        pts = [p for m in mixes for p in isoflop_points(a.budgets, sizes, m, a.tol, a.min_tpp,
                                                         a.max_tpp, a.min_points)]
    name = f"scaling-{a.kind}" + ("" if a.mix == ("all",) else "-mix_" + "+".join(mixes))
    return Sweep(name, pts, description=f"multimodal scaling study ({a.kind})")
