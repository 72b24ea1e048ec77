"""The showcase: one tri-modal model trained on the embedded demo data set that does every task
(`make showcase`, launch/showcase.py): text, T2I, I2T (captioning), T2S and S2T (ASR) from one
checkpoint, with task tokens and classifier-free-guidance dropout.

    python -m mdm.train --config experiments/showcase.py:size=s4,tokens=2e7,source=shards,path=SHARDS \\
        --workdir runs/showcase/one

The model is a ladder size (experiments/ladder.py; default s4: width 256, 2 layers) on the demo
token space (experiments/demo.py: a 512-id text BPE, 256-code image and audio tokenizers);
CompleteP relative to the demo family's base shape, so the demo's tuned learning rate transfers.
Warmup-stable-decay (20% cooldown); held-out evaluation every 10% of the run (the learning
curves) and a checkpoint every 12.5%, all eight kept, so the showcase can score the tasks along
the run (score versus tokens).

The mixture weighs the paired data over plain text (`mix=showcase`: 20% text, 50% image-text,
30% audio-text sequences): the tasks are what the showcase is judged on, and a demo pair row
is mostly media tokens.

Config argument: size, tokens, mix (a mixture name of experiments/common.py or showcase),
batch, lr, source / path (the demo token shards).

Sweeps: `showcase` (default) the one run; `smoke` a few steps of a small size (the test's
reduced showcase, same code path). Both take `size=`, `tokens=`, `source=`, `path=`.
The same recipe at scale is this file with a larger `size=` and `tokens=` on real shards.
"""
from __future__ import annotations

import ml_collections as mlc

from experiments import common, demo, ladder
from experiments.sweep import Point, Sweep, fmt, format_arg, parse_arg

STUDY = "showcase"      # config.study (mdm.run_contract.STUDIES)
MIXES = {"showcase": (0.2, 0.5, 0.3)}
SEQ_LEN = demo.SEQ_LEN
ARGS = dict(size="s4", tokens=1.4e7, mix="showcase", batch=32, lr=0.0, source="synthetic", path="")


def get_config(arg: str | None = None) -> mlc.ConfigDict:
    a = parse_arg(arg, ARGS, positional="size", where="experiments/showcase.py")
    c = ladder.apply_size(common.study_base("cpu"), a.size)
    c.model.update(base_width=demo.BASE[0], base_depth=demo.BASE[1], base_head_dim=demo.BASE[2])
    c.study = STUDY
    common.set_mixture(c, MIXES.get(a.mix, a.mix))
    c.token_space.update(**demo.demo_token_space(), pad_vocab_to=64)
    c.data.update(source=a.source, path=a.path, seq_len=SEQ_LEN)
    c.train.update(total_tokens=a.tokens, physical_batch=a.batch)
    c.optimizer.update(decay="wsd", decay_fraction=0.2, warmup=0.02, min_lr_ratio=0.0)
    if a.lr:
        c.optimizer.lr = a.lr
    c.eval.update(every=0.1, num_t=6, num_examples=demo.EVAL_EXAMPLES, batch_size=64,
                  at_start=False)
    c.checkpoint.update(every=0.125, keep=8, permanent=())
    c.logging.update(every_steps=20, progress=True)
    return c


KINDS = {"showcase": dict(size="s4", tokens=1.4e7), "smoke": dict(size="w16", tokens=16 * 2048)}
SWEEP_ARGS = dict(kind="showcase", size="", tokens=0.0, mix="showcase", batch=32,
                  source="synthetic", path="")


def sweep(arg: str | None = None) -> Sweep:
    a = parse_arg(arg, SWEEP_ARGS, positional="kind", where="experiments/showcase.py sweep")
    if a.kind not in KINDS:
        raise ValueError(f"experiments/showcase.py: unknown sweep {a.kind!r}; choose from "
                         f"{', '.join(KINDS)}")
    size = a.size or KINDS[a.kind]["size"]
    tokens = a.tokens or KINDS[a.kind]["tokens"]
    extra = dict(source=a.source, path=a.path) if a.source != "synthetic" else {}
    name = f"{size}-t{fmt(tokens)}"
    if a.mix != "showcase":
        name += f"-mix_{a.mix}"
    pt = Point(name, format_arg(size=size, tokens=tokens, mix=a.mix, batch=a.batch, **extra))
    return Sweep("showcase" if a.kind == "showcase" else f"showcase-{a.kind}", [pt],
                 description="one tri-modal model that does every task")
