"""The model ladder every study uses: sizes s0..s11 named by width, depth and heads by one rule.

    width  64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072   (x1.5 / x1.33 steps)
    depth  max(2, round(width / 128))          a fixed aspect ratio of 128 (min 2 layers)
    heads  width / head_dim,  head_dim = 8 below width 16, 16 below 64, 32 below 256 (the CPU
           sizes), 64 up to 1536, 128 from 2048 (the accelerator sizes)

    name  width depth heads   non-embedding params (vocab 6.1k, base config's token space)
    s0      64    2    2      ~0.5M         CPU demo sizes
    s2     128    2    4      ~1.2M         = the CompleteP base shape
    s6     512    4    8      ~16M
    s8    1024    8   16      ~107M
    s11   3072   24   24      ~2.74B        the paper's ~3B (about 2.9B total with a 32k text
                                            vocabulary)

Between and below the rungs, "w<width>" names any width by the same rule (w16 .. w48: the micro
sizes of the CPU scaling demo, experiments/demo.py; w8 is one head of 8).

Every rung uses the CompleteP parameterization (mdm.model) relative to one fixed base shape
(BASE_WIDTH x BASE_DEPTH = s2), so learning rate, init scale and weight decay tuned at the base
transfer up the ladder; the transfer check is this file's sweep. Rungs from width 2048 use
activation rematerialisation, and rungs from 12 layers scan their layer stack (compile time and
memory, not results).

`param_counts(cfg)` / `flops_per_token(cfg)` measure a config's model on an abstract init
(jax.eval_shape, nothing allocated) and apply mdm.flops.flops_per_token, so IsoFLOP planning
uses the same numbers the trainer logs.

    python -m mdm.train --config experiments/ladder.py:size=s3,scale=cpu --workdir runs/l/s3
"""
from __future__ import annotations

import dataclasses

import ml_collections as mlc

from experiments import common
from experiments.sweep import Point, Sweep, fmt, format_arg, parse_arg, product

WIDTHS: tuple[int, ...] = (64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072)
ASPECT = 128
MIN_DEPTH = 2
BASE_WIDTH, BASE_DEPTH = 128, 2
REMAT_FROM_WIDTH = 2048
SCAN_FROM_DEPTH = 12      # scan the layer stack from 12 layers (compile time, memory)


@dataclasses.dataclass(frozen=True)
class Size:
    name: str
    width: int
    depth: int
    heads: int
    head_dim: int


def depth_for(width: int) -> int:
    return max(MIN_DEPTH, round(width / ASPECT))


def head_dim_for(width: int) -> int:
    return 8 if width < 16 else 16 if width < 64 else 32 if width < 256 else 64 if width < 2048 \
        else 128


def ladder() -> list[Size]:
    """Every rung, smallest first: [(name, width, depth, heads, head_dim), ...]."""
    return [Size(f"s{i}", w, depth_for(w), w // head_dim_for(w), head_dim_for(w))
            for i, w in enumerate(WIDTHS)]


SIZES: dict[str, Size] = {s.name: s for s in ladder()}


def size(name: str) -> Size:
    """A rung (s0..s11) or any width by the same rule, "w<width>" (e.g. w48: 48 wide, 2 layers,
    3 heads of 16; the CPU scaling demo's micro sizes); the width must be a multiple of its
    head dimension."""
    if name in SIZES:
        return SIZES[name]
    if name.startswith("w") and name[1:].isdigit() and int(name[1:]) >= 8:
        w = int(name[1:])
        hd = head_dim_for(w)
        if w % hd == 0:
            return Size(name, w, depth_for(w), w // hd, hd)
        raise ValueError(f"model size {name!r}: width {w} is not a multiple of its head "
                         f"dimension {hd}")
    raise ValueError(f"unknown model size {name!r}; the ladder has {', '.join(SIZES)}, or "
                     "w<width> (a multiple of its head dimension, at least 8)")


def sizes_between(lo: str, hi: str) -> list[str]:
    names = list(SIZES)
    return names[names.index(size(lo).name): names.index(size(hi).name) + 1]


def apply_size(cfg: mlc.ConfigDict, name: str) -> mlc.ConfigDict:
    s = size(name)
    cfg.model.update(width=s.width, depth=s.depth, num_heads=s.heads, head_dim=0,
                     parameterization="completep", base_width=BASE_WIDTH, base_depth=BASE_DEPTH,
                     base_head_dim=head_dim_for(BASE_WIDTH),
                     remat=s.width >= REMAT_FROM_WIDTH, scan_layers=s.depth >= SCAN_FROM_DEPTH)
    return cfg


def _measures(cfg: mlc.ConfigDict) -> dict[str, float]:
    from mdm.flops import model_measures
    from mdm.token_space import TokenSpace
    from mdm.assemble import model_config
    mcfg = model_config(cfg, TokenSpace.from_config(cfg.token_space))
    return model_measures(mcfg, int(cfg.data.seq_len))


def param_counts(cfg: mlc.ConfigDict) -> dict[str, int]:
    """Measured parameter counts of cfg's model (params_total, params_non_embedding, ...)."""
    return {k: v for k, v in _measures(cfg).items() if k.startswith("params_")}


def flops_per_token(cfg: mlc.ConfigDict) -> float:
    """Training FLOPs per token of cfg's model at cfg's sequence length (mdm.flops)."""
    return _measures(cfg)["flops_per_token"]


# --- config and sweep -----------------------------------------------------------------------

STUDY = "ladder"   # config.study: which study its runs belong to (mdm.run_contract.STUDIES)

ARGS = dict(size="s2", scale="cpu", tokens=0.0, lr=0.0)


def get_config(arg: str | None = None) -> mlc.ConfigDict:
    """size=sN (a rung), scale=cpu|paper (common.study_base), tokens (0 = the scale's default),
    lr (0 = the base config's)."""
    a = parse_arg(arg, ARGS, positional="size", where="experiments/ladder.py")
    c = apply_size(common.study_base(a.scale), a.size)
    c.study = STUDY
    if a.tokens:
        c.train.total_tokens = a.tokens
    if a.lr:
        c.optimizer.lr = a.lr
    return c


SWEEP_ARGS = dict(sizes=("s0", "s1", "s2", "s3", "s4"), lrs=(1e-3, 3e-3, 1e-2, 3e-2),
                  scale="cpu", tokens=1e5)


def sweep(arg: str | None = None) -> Sweep:
    """Hyperparameter transfer: learning rate x rung; the best lr should not move with size."""
    a = parse_arg(arg, SWEEP_ARGS, where="experiments/ladder.py sweep")
    pts = [Point(f"{p['size']}-lr{fmt(p['lr'])}",
                 format_arg(size=p["size"], scale=a.scale, tokens=a.tokens, lr=p["lr"]))
           for p in product(size=a.sizes, lr=a.lrs)]
    return Sweep(f"ladder-transfer-{a.scale}", pts,
                 description="CompleteP transfer check: learning rate x model size")
