"""Reject impossible configs before anything is compiled, with a message naming the field."""
from __future__ import annotations

from typing import Any

from mdm.optim import SDE_RULES
from mdm.run_contract import MODALITIES
from mdm.schedules import get_schedule

DTYPES = ("float32", "bfloat16", "float16")


class ConfigError(ValueError):
    """A config value is impossible; the message names the field (config.a.b)."""


def _check(cond: bool, field: str, msg: str) -> None:
    if not cond:
        raise ConfigError(f"config.{field}: {msg}")


def validate_config(c: Any) -> None:
    m = c.model
    _check(m.width > 0, "model.width", f"must be positive, got {m.width}")
    _check(m.depth > 0, "model.depth", f"must be positive, got {m.depth}")
    _check(m.num_heads > 0, "model.num_heads", f"must be positive, got {m.num_heads}")
    if not m.head_dim:
        _check(m.width % m.num_heads == 0, "model.num_heads",
               f"width {m.width} is not divisible by num_heads {m.num_heads}; set "
               "model.head_dim or change num_heads")
    hd = m.head_dim or m.width // m.num_heads
    _check(hd % 2 == 0, "model.head_dim", f"rotary embeddings need an even head_dim, got {hd}")
    _check(m.dtype in DTYPES, "model.dtype", f"must be one of {DTYPES}, got {m.dtype!r}")
    _check(m.param_dtype in DTYPES, "model.param_dtype", f"must be one of {DTYPES}")
    _check(m.parameterization in ("standard", "completep"), "model.parameterization",
           f"must be 'standard' or 'completep', got {m.parameterization!r}")
    _check(m.init_std > 0, "model.init_std", "must be positive")
    _check(m.attn_scale in ("auto", "sqrt", "mup"), "model.attn_scale",
           f"must be 'auto', 'sqrt' or 'mup', got {m.attn_scale!r}")
    _check(m.base_head_dim >= 0, "model.base_head_dim",
           f"must be >= 0 (0 = base_width // num_heads), got {m.base_head_dim}")
    _check(m.depth_alpha > 0, "model.depth_alpha", f"must be positive, got {m.depth_alpha}")
    _check(m.base_width > 0 and m.base_depth > 0, "model.base_width",
           "base_width and base_depth must be positive")

    ts = c.token_space
    for f in ("text_vocab", "image_vocab", "audio_vocab"):
        _check(ts[f] > 0, f"token_space.{f}", f"must be positive, got {ts[f]}")

    o = c.objective
    for mod in MODALITIES:
        try:
            get_schedule(o.schedule[mod])
        except ValueError as e:
            raise ConfigError(f"config.objective.schedule.{mod}: {e}") from None
    _check(0.0 <= o.cond_dropout < 1.0, "objective.cond_dropout",
           f"must be in [0, 1), got {o.cond_dropout}")
    _check(0.0 <= o.t_min < 1.0, "objective.t_min", f"must be in [0, 1), got {o.t_min}")

    d = c.data
    _check(d.source in ("synthetic", "shards"), "data.source",
           f"must be 'synthetic' or 'shards', got {d.source!r}")
    _check(d.source != "shards" or bool(d.path), "data.path",
           "must name a token-shard directory when data.source == 'shards'")
    _check(d.seq_len >= 16, "data.seq_len", f"must be >= 16, got {d.seq_len}")
    mix = {k: float(d.mixture[k]) for k in MODALITIES}
    _check(all(v >= 0 for v in mix.values()), "data.mixture", f"ratios must be >= 0, got {mix}")
    _check(abs(sum(mix.values()) - 1.0) < 1e-6, "data.mixture",
           f"ratios must sum to 1, got {mix} (sum {sum(mix.values()):.6g})")

    t = c.train
    _check(t.physical_batch > 0, "train.physical_batch", f"must be positive, got {t.physical_batch}")
    if t.micro_batch:
        _check(t.micro_batch > 0 and t.physical_batch % t.micro_batch == 0, "train.micro_batch",
               f"must divide train.physical_batch ({t.physical_batch}), got {t.micro_batch}")
    if o.complementary:
        _check(t.physical_batch % 2 == 0, "train.physical_batch",
               "must be even with objective.complementary (rows come in mask pairs)")
        if t.micro_batch:
            _check(t.micro_batch % 2 == 0, "train.micro_batch",
                   "must be even with objective.complementary")
    tokens_per_step = t.physical_batch * d.seq_len
    _check(t.total_tokens >= tokens_per_step, "train.total_tokens",
           f"{t.total_tokens:.3g} is less than one step ({tokens_per_step} tokens = "
           f"physical_batch x seq_len)")

    op = c.optimizer
    _check(op.lr > 0, "optimizer.lr", f"must be positive, got {op.lr}")
    _check(0 <= op.beta1 < 1, "optimizer.beta1", f"must be in [0, 1), got {op.beta1}")
    _check(0 <= op.beta2 < 1, "optimizer.beta2", f"must be in [0, 1), got {op.beta2}")
    _check(op.eps > 0, "optimizer.eps", "must be positive")
    _check(op.weight_decay >= 0, "optimizer.weight_decay", "must be >= 0")
    _check(op.decay in ("cosine", "wsd", "constant"), "optimizer.decay",
           f"must be cosine, wsd or constant, got {op.decay!r}")
    _check(0 < op.decay_fraction <= 1, "optimizer.decay_fraction", "must be in (0, 1]")
    _check(0 <= op.min_lr_ratio <= 1, "optimizer.min_lr_ratio", "must be in [0, 1]")
    warm = op.warmup * t.total_tokens if op.warmup <= 1 else op.warmup
    _check(warm < t.total_tokens, "optimizer.warmup",
           f"warmup ({warm:.3g} tokens) must be shorter than train.total_tokens")
    _check(0 <= op.ema_decay < 1, "optimizer.ema_decay", "must be in [0, 1)")

    s = c.sde
    if s.enabled:
        _check(s.ref_batch > 0, "sde.ref_batch", "must be positive")
        _check(s.ref_tokens >= 0, "sde.ref_tokens", "must be >= 0 (0 = this run's total_tokens)")
        for rule, choices in SDE_RULES.items():
            if rule in s:
                _check(s[rule] in choices, f"sde.{rule}", f"must be one of {choices}, got "
                       f"{s[rule]!r}")

    e = c.eval
    _check(e.num_t >= 1, "eval.num_t", "must be >= 1")
    _check(e.num_examples >= 2, "eval.num_examples", "must be >= 2 (for a standard error)")
    _check(e.batch_size >= 1, "eval.batch_size", "must be >= 1")
    _check(c.logging.every_steps >= 1, "logging.every_steps", "must be >= 1")
