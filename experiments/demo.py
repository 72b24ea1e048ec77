"""The demo family: a mini scaling grid small enough for a 2-core CPU.

    python -m launch.cli run experiments/demo.py --runs-root runs --executor local --parallel 2
    python -m mdm.train --config experiments/demo.py:size=s1,tokens=1e5 --workdir runs/x/y

Config argument: size (a ladder rung, s0..s2 are the CPU sizes), tokens (the token budget),
mix (a mixture name from experiments/common.py; "tri" = equal thirds of text, image-text and
audio-text sequences), source / path (data.source and data.path: "synthetic" today, "shards"
with a token-shard directory once the embedded demo data set is tokenized), lr.

Runs use the `cpu` study base (64-token sequences, 16 sequences = 1024 tokens per step) with
two evaluations and one mid-run checkpoint.

Sweeps (the argument picks one):
  grid   (default) sizes s0, s1, s2 x budgets 4e4, 1e5, 2.5e5 tokens: 9 runs, each 20-60 s
         on this 2-core CPU (start-up and compilation take 10-15 s of it);
  smoke  two s0 runs of 8 and 12 steps: what the launcher tests submit (local processes and SLURM);
  mh     one 8-step s0 run that wants 2 hosts (the multi-process launcher test).
Any sweep takes `sizes=s0+s1`, `tokens=5e4+1e5`, `mix=...`, `source=...`, `path=...`.
"""
from __future__ import annotations

import ml_collections as mlc

from experiments import common, ladder
from experiments.sweep import Point, Sweep, fmt, format_arg, parse_arg, product

STUDY = "scaling"   # config.study: which study its runs belong to (mdm.run_contract.STUDIES)

ARGS = dict(size="s1", tokens=1e5, mix="tri", source="synthetic", path="", lr=0.0)


def get_config(arg: str | None = None) -> mlc.ConfigDict:
    a = parse_arg(arg, ARGS, positional="size", where="experiments/demo.py")
    c = ladder.apply_size(common.study_base("cpu"), a.size)
    c.study = STUDY
    common.set_mixture(c, a.mix)
    c.train.total_tokens = a.tokens
    c.data.update(source=a.source, path=a.path)
    if a.lr:
        c.optimizer.lr = a.lr
    c.eval.update(every=0.5, num_t=6, num_examples=48, batch_size=16, at_start=False)
    c.checkpoint.update(every=0.5, keep=1, permanent=())
    c.logging.update(every_steps=5, progress=False)
    return c


KINDS = {
    "grid": dict(sizes=("s0", "s1", "s2"), tokens=(4e4, 1e5, 2.5e5)),
    "smoke": dict(sizes=("s0",), tokens=(8e3, 1.2e4)),
    "mh": dict(sizes=("s0",), tokens=(8e3,)),
}
SWEEP_ARGS = dict(kind="grid", sizes=("",), tokens=(0.0,), mix="tri", source="synthetic",
                  path="")


def sweep(arg: str | None = None) -> Sweep:
    a = parse_arg(arg, SWEEP_ARGS, positional="kind", where="experiments/demo.py sweep")
    if a.kind not in KINDS:
        raise ValueError(f"experiments/demo.py: unknown sweep {a.kind!r}; choose from "
                         f"{', '.join(KINDS)}")
    k = KINDS[a.kind]
    sizes = a.sizes if a.sizes != ("",) else k["sizes"]
    tokens = a.tokens if a.tokens != (0.0,) else k["tokens"]
    hosts = 2 if a.kind == "mh" else 1
    pts = []
    for p in product(size=sizes, tokens=tokens):
        arg_fields = dict(size=p["size"], tokens=p["tokens"], mix=a.mix)
        if a.source != "synthetic":
            arg_fields.update(source=a.source, path=a.path)
        pts.append(Point(f"{p['size']}-t{fmt(p['tokens'])}", format_arg(**arg_fields),
                         hosts=hosts))
    name = "demo" if a.kind == "grid" else f"demo-{a.kind}"
    if a.mix != "tri":
        name += f"-mix_{a.mix}"
    return Sweep(name, pts, description="mini scaling grid (model size x tokens), tri-modal")
