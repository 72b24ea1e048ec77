"""The anti-masking study: complementary mask pairs (objective.complementary, mdm.objective) as a
variance reduction, against independent masks, at equal compute.

    python -m mdm.train --config experiments/antimasking.py:complementary=true,size=s6 ...

With complementary pairs a step of B sequences holds B / 2 data rows, each with a mask and its
complement (masked iff the other is not); without, B rows with independent masks. Both arms
process the same B sequences per step for the same `tokens` (train.total_tokens counts
processed tokens): equal compute, the complementary arm seeing half the distinct data.
Every step's training loss is logged (logging.every_steps = 1), so the variance of the
training-loss estimator can be measured from metrics.jsonl (analysis/studies.py
loss_estimator_variance).

Config argument: complementary, size, tokens, mix, seed, scale (paper: the `paper` study base;
cpu: the demo's micro model on the demo data, experiments/demo.py study_config), source, path.

Sweeps (the first item picks one; any field below may be given too):
  paper     (default) s6, 2e9 tokens, both arms x seeds 0, 1, 2: 6 runs;
  cpu       `make studies`: w32, 2^20 tokens, both arms x seeds 0, 1, 2: 6 runs;
  cpu_quick the reduced version the tests run: w16, 16384 tokens (8 steps), seeds 0, 1: 4 runs.
Names: comp-s6-t2e9-s0 / indep-s6-t2e9-s0.
"""
from __future__ import annotations

import ml_collections as mlc

from experiments import common, demo, ladder
from experiments.sweep import Point, Sweep, SweepError, fmt, format_arg, parse_arg, product

STUDY = "antimasking"   # config.study (mdm.run_contract.STUDIES)

ARGS = dict(complementary=False, size="s6", tokens=2e9, mix="default", seed=0, scale="paper",
            source="synthetic", path="")


def get_config(arg: str | None = None) -> mlc.ConfigDict:
    a = parse_arg(arg, ARGS, where="experiments/antimasking.py")
    if a.scale == "cpu":
        c = demo.study_config(a.size, a.tokens, a.source, a.path, seed=a.seed)
        common.set_mixture(c, "tri" if a.mix == "default" else a.mix)
    elif a.scale == "paper":
        c = ladder.apply_size(common.study_base("paper"), a.size)
        c.train.total_tokens = a.tokens
        c.seed = c.data.seed = a.seed
        common.set_mixture(c, a.mix)
    else:
        raise ValueError(f"experiments/antimasking.py: unknown scale {a.scale!r}; choose paper "
                         "or cpu")
    c.study = STUDY
    c.objective.complementary = a.complementary
    c.logging.every_steps = 1          # every step's loss: the estimator's variance
    return c


SWEEP_ARGS = dict(kind="paper", size="", tokens=0.0, seeds=(-1,), source="synthetic", path="")
KINDS = {"paper": dict(size="s6", tokens=2e9, seeds=(0, 1, 2), scale="paper"),
         "cpu": dict(size="w32", tokens=2.0 ** 20, seeds=(0, 1, 2), scale="cpu"),
         "cpu_quick": dict(size="w16", tokens=16384.0, seeds=(0, 1), scale="cpu")}


def sweep(arg: str | None = None) -> Sweep:
    a = parse_arg(arg, SWEEP_ARGS, positional="kind", where="experiments/antimasking.py sweep")
    if a.kind not in KINDS:
        raise SweepError(f"experiments/antimasking.py: unknown sweep {a.kind!r}; choose from "
                         f"{', '.join(KINDS)}")
    k = KINDS[a.kind]
    size, tokens = a.size or k["size"], a.tokens or k["tokens"]
    seeds = k["seeds"] if a.seeds == (-1,) else a.seeds
    extra = dict(scale=k["scale"])
    if k["scale"] == "cpu":
        extra.update(source=a.source, **({"path": a.path} if a.path else {}))
    pts = [Point(f"{'comp' if p['comp'] else 'indep'}-{size}-t{fmt(tokens)}-s{p['seed']}",
                 format_arg(complementary=p["comp"], size=size, tokens=tokens, seed=p["seed"],
                            **extra))
           for p in product(comp=(False, True), seed=seeds)]
    return Sweep(f"antimasking-{size}" + ("-cpu" if k["scale"] == "cpu" else ""), pts,
                 description="complementary mask pairs vs independent masks, equal compute")
