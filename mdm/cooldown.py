"""Warmup-stable-decay cooldown branches: one run per model size, the loss at several token counts.

A WSD run (optimizer.decay = "wsd") holds its learning rate constant after warmup and decays it
linearly to min_lr_ratio over the last fraction f (optimizer.decay_fraction) of its budget D:

    lr(T) = lr_peak                                   T_warm <= T <= (1 - f) D
    lr(T) = lr_peak (1 - (1 - r) (T - (1 - f) D) / (f D))    (1 - f) D < T <= D

so a WSD run of budget D_k < D is, token for token, the same run as the one of budget D up to
T = (1 - f) D_k (same data: the batch of step s is a pure function of (seed, s); same learning
rate, if the warmup is given in tokens). With `train.cooldowns = (D_1, ..., D_K)` the trainer
keeps a permanent checkpoint at each branch step

    s_k = round((1 - f) D_k / tokens_per_step)

and, there, trains the branch: a plain run directory `<sweep dir>/<run id>-cd<D_k>` whose
config is the parent's with total_tokens = D_k, the warmup in tokens and
train.init_from / init_step pointing at the parent's checkpoint at s_k. The branch decays over
its last f D_k tokens and evaluates at its end: exactly the run a separate job of budget D_k
would have trained (Hagele et al. 2024, "Scaling Laws and Compute-Optimal Training Beyond Fixed
Training Durations"), for the cost of its f D_k decay tokens. One run per size then gives the
loss at K + 1 token counts for about 1 + f sum_k D_k / D of one run's cost.

Branches run inline, in the parent's process, one after another (the parent's state waits in
memory: at pod scale that is one extra copy of the train state in host or device memory). Each
branch is an ordinary run: it resumes from its own checkpoints, a finished one (DONE) is never
trained again, and a parent that restarts after a branch step first finishes the branches it
still owes. The analysis reads branches like any run (config.json "branch" says whose branch).
"""
from __future__ import annotations

import dataclasses
import os

import ml_collections as mlc

from mdm.optim import resolve_duration


@dataclasses.dataclass(frozen=True)
class Branch:
    tokens: float          # the branch's budget D_k (train.total_tokens)
    step: int              # the parent's step it starts from, s_k
    run_id: str            # <parent run id>-cd<D_k>
    workdir: str           # beside the parent's run directory


def branch_id(parent_id: str, tokens: float) -> str:
    return f"{parent_id}-cd{tokens:.3g}".replace("+", "")


def plan_branches(cfg: mlc.ConfigDict, workdir: str, run_id: str,
                  tokens_per_step: int) -> list[Branch]:
    """The branches of cfg's run (train.cooldowns), in the order of their steps."""
    f = float(cfg.optimizer.decay_fraction)
    sweep_dir = os.path.dirname(os.path.normpath(os.path.abspath(workdir)))
    out = []
    for d in sorted(float(x) for x in cfg.train.get("cooldowns", ()) or ()):
        step = max(1, round((1.0 - f) * d / tokens_per_step))
        bid = branch_id(run_id, d)
        out.append(Branch(d, step, bid, os.path.join(sweep_dir, bid)))
    return out


def branch_config(cfg: mlc.ConfigDict, br: Branch, parent_workdir: str,
                  parent_run_id: str, sweep: str) -> mlc.ConfigDict:
    """The branch's config: the parent's, with budget D_k, the warmup in tokens (so it does
    not move with the budget), the parent's checkpoint at s_k as its start, one evaluation and
    one checkpoint at its end, and no branches of its own."""
    c = mlc.ConfigDict(cfg.to_dict())
    warm = resolve_duration(float(cfg.optimizer.warmup), float(cfg.train.total_tokens))
    c.optimizer.warmup = warm if warm > 1 else 0.0     # > 1 is read as tokens
    c.train.total_tokens = br.tokens
    c.train.cooldowns = ()
    c.train.init_from = os.path.abspath(parent_workdir)
    c.train.init_step = br.step
    c.run_id, c.sweep = br.run_id, sweep
    c.eval.update(every=0.0, at_start=False)
    c.checkpoint.update(every=0.0, keep=1, permanent=())
    c.branch = mlc.ConfigDict(dict(parent=parent_run_id, step=br.step))
    return c
