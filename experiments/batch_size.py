"""The batch-size study: physical batch sweeps with and without the SDE reparameterization
(DESIGN.md section 6), at several token horizons.

    python -m mdm.train --config experiments/batch_size.py:batch=64,tokens=1e9,sde=true ...

Config argument: batch (physical batch, sequences per step), tokens (horizon D), sde (on: the
optimizer values are mapped onto the reference run (ref_batch, ref_tokens) with
kappa = (D_ref / D)^gamma (B / B_ref); off: the reference values are used as they are),
ref_batch, ref_tokens, gamma, size, mix, micro (micro-batch; 0 = min(batch / 2, 128), so every
run has at least two micro-batches and logs the gradient-noise scale: the critical batch is
measured, not assumed), on the `paper` study base.

Sweep: batch 32, 64, 128, 256, 512, 1024 x sde off / on x horizons 5e8, 1e9, 2e9 at size s6:
35 runs (at B = B_ref and D = D_ref the two arms compute the same thing; only the `sde` one runs).
Names: b64-t1e9-sde / b64-t1e9-plain.
"""
from __future__ import annotations

import ml_collections as mlc

from experiments import common, ladder
from experiments.sweep import Point, Sweep, fmt, format_arg, parse_arg, product

STUDY = "batch_size"   # config.study: which study its runs belong to (mdm.run_contract.STUDIES)

ARGS = dict(batch=256, tokens=1e9, sde=False, ref_batch=256, ref_tokens=1e9, gamma=0.44,
            size="s6", mix="default", micro=0)


def get_config(arg: str | None = None) -> mlc.ConfigDict:
    a = parse_arg(arg, ARGS, where="experiments/batch_size.py")
    c = ladder.apply_size(common.study_base("paper"), a.size)
    c.study = STUDY
    common.set_mixture(c, a.mix)
    c.train.update(total_tokens=a.tokens, physical_batch=a.batch,
                   micro_batch=a.micro or max(1, min(a.batch // 2, 128)))
    c.sde.update(enabled=a.sde, ref_batch=a.ref_batch, ref_tokens=a.ref_tokens, gamma=a.gamma)
    if not a.sde:  # the reference fields are inert when off; fix them so ids ignore them
        c.sde.update(ref_batch=256, ref_tokens=0.0, gamma=0.44)
    c.logging.grad_noise_scale = True
    return c


SWEEP_ARGS = dict(batches=(32, 64, 128, 256, 512, 1024), tokens=(5e8, 1e9, 2e9),
                  sde=(False, True), size="s6", ref_batch=256, ref_tokens=1e9)


def sweep(arg: str | None = None) -> Sweep:
    a = parse_arg(arg, SWEEP_ARGS, where="experiments/batch_size.py sweep")
    pts = []
    for p in product(tokens=a.tokens, batch=a.batches, sde=a.sde):
        same_as_ref = p["batch"] == a.ref_batch and p["tokens"] == a.ref_tokens
        if same_as_ref and not p["sde"] and True in a.sde:
            continue  # kappa = 1: identical to the sde run up to the sde flag
        pts.append(Point(f"b{p['batch']}-t{fmt(p['tokens'])}-{'sde' if p['sde'] else 'plain'}",
                         format_arg(batch=p["batch"], tokens=p["tokens"], sde=p["sde"],
                                    ref_batch=a.ref_batch, ref_tokens=a.ref_tokens,
                                    size=a.size)))
    return Sweep(f"batch-{a.size}", pts,
                 description="physical batch x SDE reparameterization x token horizon")
