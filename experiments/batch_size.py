"""The batch-size study: physical batch sweeps with and without the SDE reparameterization
(DESIGN.md section 6), at several token horizons.

    python -m mdm.train --config experiments/batch_size.py:batch=64,tokens=1e9,sde=true ...

Config argument: batch (physical batch, sequences per step), tokens (horizon D), sde (on: the
optimizer values are mapped onto the reference run (ref_batch, ref_tokens) with
kappa = (D_ref / D)^gamma (B / B_ref); off: the reference values are used as they are),
ref_batch, ref_tokens, gamma, size, mix, micro (micro-batch; 0 = min(batch / 2, 128), so every
run has at least two micro-batches and logs the gradient-noise scale: the critical batch is
measured, not assumed), on the `paper` study base.

`scale=cpu` (with `seed`, `source`, `path`): the same study at CPU scale on the demo data
(experiments/demo.py study_config: micro model, 128-token sequences), evaluated 8 times along
the run on 192 fixed examples at 4 quadrature nodes (the loss-vs-tokens curves), metrics logged
every 2 steps.

Sweeps (the first item picks one; any field below may be given too):
  paper     (default) batch 32, 64, 128, 256, 512, 1024 x sde off / on x horizons 5e8, 1e9,
            2e9 at size s6: 35 runs (at B = B_ref and D = D_ref the two arms compute the same
            thing; only the `sde` one runs);
  cpu       `make studies`: w32 at batch 8, 16, 32, 64, 128 (16x) x sde off / on x seeds 0, 1,
            one horizon of 2^20 tokens, B_ref 32: 18 runs;
  cpu_quick the reduced version the tests run: batch 8, 16, 32, B_ref 16, 16384 tokens, seed 0
Names: b64-t1e9-sde / b64-t1e9-plain (cpu: b8-t1.048576e6-sde-s0).
"""
from __future__ import annotations

import ml_collections as mlc

from experiments import common, demo, ladder
from experiments.sweep import Point, Sweep, SweepError, fmt, format_arg, parse_arg, product

STUDY = "batch_size"   # config.study: which study its runs belong to (mdm.run_contract.STUDIES)

ARGS = dict(batch=256, tokens=1e9, sde=False, ref_batch=256, ref_tokens=1e9, gamma=0.44,
            size="s6", mix="default", micro=0, scale="paper", seed=0, source="synthetic", path="")
SCALES = ("paper", "cpu")


def get_config(arg: str | None = None) -> mlc.ConfigDict:
    a = parse_arg(arg, ARGS, where="experiments/batch_size.py")
    if a.scale not in SCALES:
        raise ValueError(f"experiments/batch_size.py: unknown scale {a.scale!r}; choose from "
                         f"{', '.join(SCALES)}")
    if a.scale == "cpu":
        c = demo.study_config(a.size, a.tokens, a.source, a.path, a.batch, a.seed)
        c.eval.update(every=0.125, num_examples=192, num_t=4)   # the loss-vs-tokens curves
        c.logging.every_steps = 2
    else:
        c = ladder.apply_size(common.study_base("paper"), a.size)
    c.study = STUDY
    common.set_mixture(c, "tri" if a.scale == "cpu" and a.mix == "default" else a.mix)
    c.train.update(total_tokens=a.tokens, physical_batch=a.batch,
                   micro_batch=a.micro or max(1, min(a.batch // 2, 128)))
    c.sde.update(enabled=a.sde, ref_batch=a.ref_batch, ref_tokens=a.ref_tokens, gamma=a.gamma)
    if not a.sde:  # the reference fields are inert when off; fix them so ids ignore them
        c.sde.update(ref_batch=256, ref_tokens=0.0, gamma=0.44)
    c.logging.grad_noise_scale = True
    return c


CPU_TOKENS = 2.0 ** 20          # 64 steps at batch 128, 1024 at batch 8
KINDS = {
    "paper": dict(batches=(32, 64, 128, 256, 512, 1024), tokens=(5e8, 1e9, 2e9), size="s6",
                  ref_batch=256, ref_tokens=1e9, seeds=(0,), scale="paper"),
    "cpu": dict(batches=(8, 16, 32, 64, 128), tokens=(CPU_TOKENS,), size="w32", ref_batch=32,
                ref_tokens=CPU_TOKENS, seeds=(0, 1), scale="cpu"),
    "cpu_quick": dict(batches=(8, 16, 32), tokens=(16384.0,), size="w16", ref_batch=16,
                      ref_tokens=16384.0, seeds=(0,), scale="cpu"),
}
# "" / 0 / (0,) / (-1,): take the kind's value
SWEEP_ARGS = dict(kind="paper", batches=(0,), tokens=(0.0,), sde=(False, True), size="",
                  ref_batch=0, ref_tokens=0.0, seeds=(-1,), source="synthetic", path="")


def sweep(arg: str | None = None) -> Sweep:
    a = parse_arg(arg, SWEEP_ARGS, positional="kind", where="experiments/batch_size.py sweep")
    if a.kind not in KINDS:
        raise SweepError(f"experiments/batch_size.py: unknown sweep {a.kind!r}; choose from "
                         f"{', '.join(KINDS)}")
    k = KINDS[a.kind]
    given = {"batches": a.batches != (0,), "tokens": a.tokens != (0.0,), "size": bool(a.size),
             "ref_batch": a.ref_batch > 0, "ref_tokens": a.ref_tokens > 0,
             "seeds": a.seeds != (-1,)}
    a.update({f: k[f] for f, g in given.items() if not g})
    cpu = k["scale"] == "cpu"
    extra = dict(scale="cpu", source=a.source, path=a.path) if cpu else {}
    if cpu and a.source == "synthetic":
        extra.pop("path")
    pts = []
    for p in product(tokens=a.tokens, batch=a.batches, sde=a.sde, seed=a.seeds):
        same_as_ref = p["batch"] == a.ref_batch and p["tokens"] == a.ref_tokens
        if same_as_ref and not p["sde"] and True in a.sde:
            continue  # kappa = 1: identical to the sde run up to the sde flag
        name = f"b{p['batch']}-t{fmt(p['tokens'])}-{'sde' if p['sde'] else 'plain'}"
        fields = dict(batch=p["batch"], tokens=p["tokens"], sde=p["sde"],
                      ref_batch=a.ref_batch, ref_tokens=a.ref_tokens, size=a.size)
        if cpu:
            name += f"-s{p['seed']}"
            fields.update(seed=p["seed"], **extra)
        pts.append(Point(name, format_arg(**fields)))
    return Sweep(f"batch-{a.size}" + ("-cpu" if cpu else ""), pts,
                 description="physical batch x SDE reparameterization x token horizon")
