"""Optimizer: AdamW (optax) with token-based learning-rate schedules, per-group multipliers
(CompleteP) and the SDE batch-size reparameterization (DESIGN.md section 6).

Learning-rate schedule, as a function of tokens seen T = step * tokens_per_step (durations are in
tokens, or fractions of the run when <= 1, never raw steps, so a different batch size keeps the
schedule's shape):

    warm(T)   = min(1, T / T_warm)
    p(T)      = clip((T - T_warm) / (T_total - T_warm), 0, 1)
    cosine:    f = r + (1 - r) (1 + cos(pi p)) / 2
    wsd:       f = 1 until T_total (1 - decay_fraction), then linear to r at T_total
    constant:  f = 1
    lr(T)     = lr_peak * warm(T) * f,        r = min_lr_ratio

SDE reparameterization (Malladi et al. 2022 style scaling rule, generalised to a token horizon):
for physical batch B (sequences) and horizon D (tokens), relative to a reference (B_ref, D_ref):

    kappa = (D_ref / D)^gamma * (B / B_ref)
    lr <- lr sqrt(kappa),  beta_i <- beta_i^kappa,  eps <- eps / sqrt(kappa)

One step at batch B then stands for kappa steps of the reference dynamics ("SDE time" per step
grows by kappa), and the run behaves like one at the logical batch

    B_logical = B / kappa = B_ref (D / D_ref)^gamma.

The other step-based quantities follow rules chosen here (config.sde.*_rule, recorded in
config.json with the resolved values):

  * decoupled weight decay (`weight_decay_rule`): "sqrt_kappa" (default) keeps the decay per
    unit of SDE time: kappa reference steps shrink the weights by (1 - lr wd)^kappa ~
    1 - kappa lr wd, one step here by 1 - lr sqrt(kappa) wd', so wd' = wd sqrt(kappa).
    "fixed" keeps wd.
  * EMA of the parameters (`ema_rule`): "power" (default) decays per unit of SDE time like the
    Adam betas, ema' = ema^kappa; "fixed" keeps it.
  * gradient clipping (`grad_clip_rule`): "fixed" (default) keeps the threshold on the mean
    gradient's norm (the same quantity at any batch); "noise_scaled" divides it by
    sqrt(kappa), which keeps the clipped fraction where the norm is noise-dominated
    (|g| ~ sqrt(tr Sigma / B)); "off" disables clipping (clipping breaks the SDE
    correspondence whenever it is active).

kappa = 1 leaves every value unchanged.

Per-group multipliers (model.param_group; `group_multipliers`): learning rate x lr_mult[g],
decoupled weight decay x wd_mult[g], Adam eps x eps_mult[g]. Norm gains are never decayed.
Under CompleteP (Dey et al. 2025, table 1), with m_w = width / base_width, m_d = depth /
base_depth and alpha = depth_alpha:

    group       lr_mult                   wd_mult                  eps_mult
    embedding   1                         1                        1 / m_w
    norm        1                         0                        1 / m_w
    output      1                         1                        1 / m_w
    hidden      m_w^-1 m_d^(alpha - 1)    m_w m_d^(1 - alpha)      m_w^-1 m_d^-alpha

The hidden weight decay is the inverse of its learning-rate factor so that lr * wd per step, the
shrink of a weight per step, does not change along the ladder. Adam's eps is scaled like each
group's gradient entries (O(1/m_w) behind the 1/m_w output multiplier, and a further m_d^-alpha
behind the residual multiplier for block matrices) so that eps keeps the same size relative to
sqrt(v) at every shape; the output head's eps follows its gradient (the issue table names only
embeddings, norms and hidden matrices). Under "standard" every multiplier is 1 (wd 0 on norms)
and one Adam transformation serves all groups; under CompleteP each group has its own Adam
(state layout differs, so a standard run's checkpoint does not resume as CompleteP).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import jax.numpy as jnp
import optax

from mdm.model import ModelConfig, param_groups

GROUPS = ("embedding", "hidden", "output", "norm")


@dataclasses.dataclass(frozen=True)
class SDEResolved:
    kappa: float
    lr: float
    beta1: float
    beta2: float
    eps: float
    weight_decay: float
    grad_clip: float
    ema_decay: float
    logical_batch: float


SDE_RULES = {"weight_decay_rule": ("sqrt_kappa", "fixed"), "ema_rule": ("power", "fixed"),
             "grad_clip_rule": ("fixed", "noise_scaled", "off")}


def sde_reparameterize(lr: float, beta1: float, beta2: float, eps: float, batch: float,
                       tokens: float, ref_batch: float, ref_tokens: float, gamma: float,
                       weight_decay: float = 0.0, grad_clip: float = 0.0, ema_decay: float = 0.0,
                       weight_decay_rule: str = "sqrt_kappa", ema_rule: str = "power",
                       grad_clip_rule: str = "fixed") -> SDEResolved:
    """kappa = (D_ref / D)^gamma (B / B_ref); lr sqrt(kappa), beta^kappa, eps / sqrt(kappa),
    weight decay, EMA and clipping by their rules; logical batch B / kappa (module docstring)."""
    for name, v in (("batch", batch), ("tokens", tokens), ("ref_batch", ref_batch),
                    ("ref_tokens", ref_tokens)):
        if not v > 0:
            raise ValueError(f"sde_reparameterize: {name} must be > 0, got {v}")
    for name, v in (("weight_decay_rule", weight_decay_rule), ("ema_rule", ema_rule),
                    ("grad_clip_rule", grad_clip_rule)):
        if v not in SDE_RULES[name]:
            raise ValueError(f"sde.{name} = {v!r}; choose from {SDE_RULES[name]}")
    kappa = (ref_tokens / tokens) ** gamma * (batch / ref_batch)
    s = math.sqrt(kappa)
    wd = weight_decay * s if weight_decay_rule == "sqrt_kappa" else weight_decay
    ema = ema_decay ** kappa if (ema_rule == "power" and ema_decay > 0) else ema_decay
    clip = {"fixed": grad_clip, "noise_scaled": grad_clip / s, "off": 0.0}[grad_clip_rule]
    return SDEResolved(kappa, lr * s, beta1 ** kappa, beta2 ** kappa, eps / s, wd, clip, ema,
                       batch / kappa)


def resolve_duration(value: float, total_tokens: float) -> float:
    """A duration given as a fraction of the run (<= 1) or in tokens (> 1) -> tokens."""
    if value < 0:
        raise ValueError(f"durations must be >= 0, got {value}")
    return value * total_tokens if value <= 1.0 else float(value)


def lr_schedule(peak_lr: float, total_tokens: float, tokens_per_step: float, warmup: float,
                decay: str = "cosine", decay_fraction: float = 0.2,
                min_lr_ratio: float = 0.1) -> Callable[[Any], Any]:
    """step -> learning rate, defined in tokens (see module docstring)."""
    warm_tok = resolve_duration(warmup, total_tokens)
    if warm_tok >= total_tokens:
        raise ValueError(f"warmup ({warm_tok:.3g} tokens) must be shorter than the run "
                         f"({total_tokens:.3g} tokens)")
    if decay not in ("cosine", "wsd", "constant"):
        raise ValueError(f"unknown decay {decay!r}; expected cosine, wsd or constant")
    r = min_lr_ratio

    def schedule(step):
        tok = jnp.asarray(step, jnp.float32) * tokens_per_step
        warm = jnp.minimum(1.0, tok / warm_tok) if warm_tok > 0 else 1.0
        if decay == "cosine":
            p = jnp.clip((tok - warm_tok) / (total_tokens - warm_tok), 0.0, 1.0)
            f = r + (1.0 - r) * 0.5 * (1.0 + jnp.cos(jnp.pi * p))
        elif decay == "wsd":
            start = total_tokens * (1.0 - decay_fraction)
            p = jnp.clip((tok - start) / max(total_tokens - start, 1.0), 0.0, 1.0)
            f = 1.0 - (1.0 - r) * p
        else:
            f = 1.0
        return peak_lr * warm * f

    return schedule


def group_multipliers(model_cfg: ModelConfig) -> dict[str, dict[str, float]]:
    """{"lr": {group: mult}, "wd": {...}, "eps": {...}}: the per-group table above."""
    lr = {g: 1.0 for g in GROUPS}
    wd = {"embedding": 1.0, "hidden": 1.0, "output": 1.0, "norm": 0.0}
    eps = {g: 1.0 for g in GROUPS}
    if model_cfg.parameterization == "completep":
        m_w, m_d, a = model_cfg.width_mult, model_cfg.depth_mult, model_cfg.depth_alpha
        lr["hidden"] = m_d ** (a - 1.0) / m_w
        wd["hidden"] = 1.0 / lr["hidden"]
        eps = {g: 1.0 / m_w for g in GROUPS}
        eps["hidden"] = m_d ** (-a) / m_w
    return {"lr": lr, "wd": wd, "eps": eps}


def make_optimizer(model_cfg: ModelConfig, schedule: Callable[[Any], Any], beta1: float,
                   beta2: float, eps: float, weight_decay: float,
                   grad_clip: float) -> optax.GradientTransformation:
    """clip -> Adam moments -> per-group (decoupled decay, lr multiplier) -> -lr(step).

    Adam runs once per group under CompleteP (per-group eps), once for all parameters otherwise.
    """
    mult = group_multipliers(model_cfg)
    shared_adam = model_cfg.parameterization != "completep"
    per_group = {}
    for g in GROUPS:
        steps = [] if shared_adam else [optax.scale_by_adam(b1=beta1, b2=beta2,
                                                            eps=eps * mult["eps"][g])]
        steps += [optax.add_decayed_weights(weight_decay * mult["wd"][g]),
                  optax.scale(mult["lr"][g])]
        per_group[g] = optax.chain(*steps)
    parts = []
    if grad_clip and grad_clip > 0:
        parts.append(optax.clip_by_global_norm(grad_clip))
    if shared_adam:
        parts.append(optax.scale_by_adam(b1=beta1, b2=beta2, eps=eps * mult["eps"]["hidden"]))
    parts += [
        optax.multi_transform(per_group, param_groups),
        optax.scale_by_learning_rate(schedule),
    ]
    return optax.chain(*parts)
