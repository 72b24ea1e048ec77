"""The demo family: a real scaling study small enough for a 2-core CPU (`make demo`).

    python -m launch.cli run experiments/demo.py --runs-root runs --executor local --parallel 2
    python -m mdm.train --config experiments/demo.py:size=w32,tokens=2e6 --workdir runs/x/y

Models are micro sizes of the ladder (experiments/ladder.py "w<width>": 2 layers, heads of 16;
w8 one head of 8)
on the demo token space (mdm.demo_data.scales: a 512-id text BPE and 256-code image and audio
tokenizers, so the output head does not swamp the transformer); sequences of 128 tokens, 16 per
step. Every run is warmup-stable-decay with cooldown branches (mdm.cooldown): a size's run to
its largest budget branches a 20% cooldown at each smaller one, so one run per size yields its
loss at every compute budget.

Config argument: size (a ladder name, e.g. w32 or s0), tokens (the run's budget), cooldowns
(budgets of its cooldown branches, `+`-separated), mix (a mixture of experiments/common.py;
"tri" = equal thirds of text, image-text and audio-text sequences), source / path (data.source
and data.path: "shards" with the demo's token shards), lr.

Sweeps (the argument picks one):
  grid    (default) sizes w8, w16, w32, w48, w64 x compute budgets (FLOPs) 4e11, 8e11,
          1.6e12, 3.2e12, diagonal: a size runs the budgets where its tokens per parameter D/N
          lie in `band` (default 5-1500), so every budget sees the 3-4 sizes around its
          optimum; one run per size to its largest budget (2.5M-16M tokens), with cooldown
          branches at the others (16 points);
          `tokens=5e5+1e6` adds common token counts (every size at the same D);
  heldout one run at `size` and `compute` FLOPs, which no fit has seen (launch/demo.py picks
          both from the fitted law and checks its prediction);
  smoke   two w16 runs of 8 and 12 steps: what the launcher tests submit;
  mh      one 8-step w16 run that wants 2 hosts (the multi-process launcher test).
Any sweep takes `sizes=w16+w32`, `budgets=1e11+2e11`, `tokens=5e5+1e6` (common token counts;
-1 for none), `band=5+1500` (grid: D/N range; 0+0 = every size at every budget), `mix=...`,
`source=...`, `path=...`.
The same study at pod scale is experiments/scaling.py (ladder rungs, paper-scale data); see
README "A scaling study".
"""
from __future__ import annotations

import functools
import math

import ml_collections as mlc

from experiments import common, ladder
from experiments.sweep import Point, Sweep, fmt, format_arg, parse_arg, product

STUDY = "isoflop"   # config.study (mdm.run_contract.STUDIES): an IsoFLOP design, read by the
                    # analysis's laws and IsoFLOP profiles; held-out runs record "heldout"

SEQ_LEN, BATCH = 128, 16
BASE = (32, 2, 16)       # CompleteP base shape of the micro family: width, depth, head dim
DECAY_FRACTION = 0.2     # each budget's last 20% is its cooldown
WARMUP = 2e5             # tokens (~100 steps), the same for every run and size; a run shorter
                         # than 5x that warms up over its first 10%. A warmup of 2% of each
                         # run tied warmup to the run's length: w32 on 1.6M tokens scored 7.26
                         # text bits with 2% (32k tokens) and 6.77 with 2e5 (measured), which
                         # confounded D with the warmup in the fitted laws.
EVAL_EXAMPLES = 384      # fixed across runs: 128 per modality, at 6 quadrature nodes in t
ARGS = dict(size="w32", tokens=1e6, cooldowns=(0.0,), mix="tri", source="synthetic", path="",
            lr=0.0, heldout=False)


def demo_token_space() -> dict[str, int]:
    """The demo tokenizers' vocabulary sizes (one home: mdm.demo_data.scales, "small")."""
    from mdm.demo_data.scales import get_scale
    sc = get_scale("small")
    return dict(text_vocab=sc.text_vocab, image_vocab=math.prod(sc.image_tokenizer.levels),
                audio_vocab=math.prod(sc.audio_tokenizer.levels))


def get_config(arg: str | None = None) -> mlc.ConfigDict:
    a = parse_arg(arg, ARGS, positional="size", where="experiments/demo.py")
    c = ladder.apply_size(common.study_base("cpu"), a.size)
    # CompleteP relative to w32 x 2 (the ladder's base, s2, is 4x wider than these models:
    # transferring to width 8 from there gave hidden learning rates of 0.05 and noisy runs)
    c.model.update(base_width=BASE[0], base_depth=BASE[1], base_head_dim=BASE[2])
    c.study = "heldout" if a.heldout else STUDY
    common.set_mixture(c, a.mix)
    c.token_space.update(**demo_token_space(), pad_vocab_to=64)
    c.data.update(source=a.source, path=a.path, seq_len=SEQ_LEN)
    c.train.update(total_tokens=a.tokens, physical_batch=BATCH,
                   cooldowns=tuple(float(x) for x in a.cooldowns if x > 0))
    c.optimizer.update(decay="wsd", decay_fraction=DECAY_FRACTION, warmup=warmup_tokens(a.tokens),
                       min_lr_ratio=0.0)
    if a.lr:
        c.optimizer.lr = a.lr
    c.eval.update(every=0.0, num_t=6, num_examples=EVAL_EXAMPLES, batch_size=64, at_start=False)
    c.checkpoint.update(every=0.25, keep=1, permanent=())
    c.logging.update(every_steps=20, progress=False)
    return c


STUDY_WARMUP = 0.02      # fraction of the run, for study_config (see there)


def warmup_tokens(total_tokens: float) -> float:
    """The warmup of a run of `total_tokens`: WARMUP tokens, or 10% of a run under 5 x WARMUP
    (launcher smoke runs); a fraction <= 1 as mdm.optim.resolve_duration reads it."""
    return WARMUP if total_tokens >= 5 * WARMUP else 0.1


def study_config(size: str, tokens: float, source: str = "synthetic", path: str = "",
                 batch: int = BATCH, seed: int = 0) -> mlc.ConfigDict:
    """The CPU scale of the paper's studies (experiments/batch_size.py, noise_schedule.py,
    mixing.py, antimasking.py with `scale=cpu`; `make studies`): this file's micro model
    `size` on the demo token space, SEQ_LEN-token sequences, `batch` sequences per step,
    `tokens` processed tokens, equal thirds of the three modalities, WSD (20% decay), evaluated
    once at the end on the demo's fixed eval set; `seed` seeds the model, the objective's draws
    and the data order (config.seed and config.data.seed; the eval set and its masks stay fixed,
    so every run of a study is scored on the same tokens). The study file sets what it studies."""
    c = get_config(format_arg(size=size, tokens=float(tokens), source=source, path=path)
                   if path else format_arg(size=size, tokens=float(tokens), source=source))
    c.train.physical_batch = int(batch)
    c.seed = int(seed)
    c.data.seed = int(seed)
    # the studies' reported findings (README, `make studies`) were measured with a warmup of
    # 2% of each run; kept so they reproduce. The grid's fixed WARMUP would likely serve them
    # better (measured on the grid, not yet on the studies).
    c.optimizer.warmup = STUDY_WARMUP
    return c


@functools.lru_cache(maxsize=None)
def flops_per_token(size: str) -> float:
    """Training FLOPs per token of a demo model (mdm.flops, measured on an abstract init)."""
    return ladder.flops_per_token(get_config(f"size={size}"))


@functools.lru_cache(maxsize=None)
def params(size: str) -> float:
    """N of a demo model: non-embedding parameters (transformer + output head), the laws' N."""
    return float(ladder.param_counts(get_config(f"size={size}"))["params_non_embedding"])


def budget_tokens(size: str, compute: float) -> float:
    """Tokens that spend `compute` FLOPs at `size`, rounded to whole steps."""
    step = SEQ_LEN * BATCH
    return max(1, round(compute / flops_per_token(size) / step)) * step


# The grid is a diagonal IsoFLOP design: a size runs the budgets at which its tokens per
# parameter D/N lie in BAND, so each budget sees the sizes around its compute-optimal one
# (~200 tokens per parameter at 1.6e12 FLOPs on this data, measured) and no run is spent where
# a size is hopelessly over- or under-trained (w8 at 3.2e12 would be 32M tokens for a point far
# on the data-rich side). `band=0+0` runs every size at every budget.
BAND = (5.0, 1500.0)
KINDS = {
    "grid": dict(sizes=("w8", "w16", "w32", "w48", "w64"), budgets=(4e11, 8e11, 1.6e12, 3.2e12)),
    "heldout": dict(sizes=("w16",), budgets=(1.2e12,)),
    "smoke": dict(sizes=("w16",), budgets=()),
    "mh": dict(sizes=("w16",), budgets=()),
}
SMOKE_TOKENS = {"smoke": (8 * SEQ_LEN * BATCH, 12 * SEQ_LEN * BATCH), "mh": (8 * SEQ_LEN * BATCH,)}
SWEEP_ARGS = dict(kind="grid", sizes=("",), budgets=(0.0,), tokens=(0.0,), size="", compute=0.0,
                  mix="tri", source="synthetic", path="", band=BAND)


def sweep(arg: str | None = None) -> Sweep:
    from mdm.optim import resolve_duration
    a = parse_arg(arg, SWEEP_ARGS, positional="kind", where="experiments/demo.py sweep")
    if a.kind not in KINDS:
        raise ValueError(f"experiments/demo.py: unknown sweep {a.kind!r}; choose from "
                         f"{', '.join(KINDS)}")
    k = KINDS[a.kind]
    sizes = (a.size,) if a.size else a.sizes if a.sizes != ("",) else k["sizes"]
    given_tokens = a.tokens != (0.0,)
    budgets = ((a.compute,) if a.compute else a.budgets if a.budgets != (0.0,) else
               () if given_tokens else k["budgets"])
    extra: dict = dict(mix=a.mix)
    if a.source != "synthetic":
        extra.update(source=a.source, path=a.path)
    pts = []
    if a.kind in SMOKE_TOKENS:
        hosts = 2 if a.kind == "mh" else 1
        for p in product(size=sizes, tokens=SMOKE_TOKENS[a.kind]):
            pts.append(Point(f"{p['size']}-t{fmt(p['tokens'])}",
                             format_arg(size=p["size"], tokens=p["tokens"], **extra), hosts=hosts))
        return Sweep(f"demo-{a.kind}", pts, description="demo launcher smoke runs")
    budgets = sorted(b for b in budgets if b > 0)
    step = SEQ_LEN * BATCH
    common_d = [max(1, round(t / step)) * step for t in (a.tokens if given_tokens else
                                                          k.get("tokens", ())) if t > 0]
    lo_band, hi_band = (a.band + (0.0, 0.0))[:2]
    if a.kind == "grid" and hi_band > 0:
        inside = {s: [c for c in budgets if lo_band <= budget_tokens(s, c) / params(s) <= hi_band]
                  for s in sizes}
    else:
        inside = {s: list(budgets) for s in sizes}
    for size in sizes:
        if budgets and not inside[size]:
            continue      # no budget puts this size inside the band
        toks = {budget_tokens(size, c) for c in inside[size]}
        # the common token counts (every size at the same D: N's effect at fixed D), unless a
        # budget's point is already within 10% of one
        toks |= {d for d in common_d if all(abs(d / t - 1) > 0.1 for t in toks)}
        # a branch must start after the warmup (a large model's smallest budget may not)
        toks = sorted(toks)
        warm = resolve_duration(warmup_tokens(toks[-1]), toks[-1])
        toks = [d for d in toks[:-1] if (1 - DECAY_FRACTION) * d > warm + step] \
            + toks[-1:]
        more = dict(heldout=True) if a.kind == "heldout" else {}
        pts.append(Point(f"{size}-t{fmt(toks[-1])}",
                         format_arg(size=size, tokens=toks[-1],
                                    cooldowns=tuple(toks[:-1]) or (0.0,), **extra, **more)))
    name = "demo" if a.kind == "grid" else f"demo-{a.kind}"
    if a.mix != "tri":
        name += f"-mix_{a.mix}"
    return Sweep(name, pts, description="demo scaling study: micro sizes x compute budgets "
                 "(WSD cooldown branches), tri-modal")
