"""Reject impossible configs before anything is compiled, with a message naming the field.

Three kinds of check, all raising ConfigError("config.a.b: what is wrong; what to do"):

  * unknown keys in the sections whose keys mdm defines itself (model: mdm.model.ModelConfig;
    token_space; data.mixture and objective.schedule: the modalities; sde: its values and
    mdm.optim.SDE_RULES; mesh: the mesh axes), where a stray key would otherwise be silently
    ignored (a `model.widht` in an experiment file) or misread (a `data.mixture.video`).
    Command-line overrides of unknown fields are refused earlier, at flag parsing
    (mdm.cli_flags);
  * numbers: every float anywhere in the config must be finite, and each numeric field must be
    a number (an int where a count is meant) inside its range, with absurd optimizer values
    refused (lr > 10, lr x weight_decay >= 1, ...);
  * consistency between fields (divisibility, a run longer than one step, ...).
"""
from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any

from mdm.attention import ATTENTION_IMPLS, LOW_PRECISION
from mdm.model import ModelConfig
from mdm.optim import SDE_RULES
from mdm.run_contract import MODALITIES, STUDIES
from mdm.schedules import get_schedule
from mdm.sharding import MESH_AXES

DTYPES = ("float32", "bfloat16", "float16")
MAX_LR = 10.0  # a peak learning rate above this is a typo (1e1 for 1e-1), not an experiment

# Sections whose keys mdm defines; any other key there is an error (module docstring).
CLOSED_SECTIONS: dict[str, tuple[str, ...]] = {
    "model": tuple(f.name for f in dataclasses.fields(ModelConfig) if f.name != "vocab_size"),
    "token_space": ("text_vocab", "image_vocab", "audio_vocab", "pad_vocab_to"),
    "data.mixture": MODALITIES,
    "objective.schedule": MODALITIES,
    "sde": ("enabled", "ref_batch", "ref_tokens", "gamma", *SDE_RULES),
    "mesh": (*MESH_AXES, *(f"dcn_{a}" for a in MESH_AXES)),
}


class ConfigError(ValueError):
    """A config value is impossible; the message names the field (config.a.b)."""


def _check(cond: bool, field: str, msg: str) -> None:
    if not cond:
        raise ConfigError(f"config.{field}: {msg}")


def _get(c: Any, field: str) -> Any:
    node = c
    for part in field.split("."):
        if part not in node:
            raise ConfigError(f"config.{field}: missing; the config must define it (start from "
                              "experiments/base.py)")
        node = node[part]
    return node


def _num(c: Any, field: str, lo: float | None = None, hi: float | None = None, *,
         lo_open: bool = False, hi_open: bool = False, integer: bool = False) -> Any:
    """config.<field>, checked to be a (finite) number in [lo, hi] (open ends as asked)."""
    v = _get(c, field)
    kind = "an integer" if integer else "a number"
    ok_type = isinstance(v, numbers.Integral if integer else numbers.Real) and \
        not isinstance(v, bool)
    _check(ok_type, field, f"must be {kind}, got {v!r}")
    _check(math.isfinite(v), field, f"must be finite, got {v}")
    if lo is not None and hi is not None:
        rng = f"in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
    elif lo is not None:
        rng = f"{'>' if lo_open else '>='} {lo}"
    else:
        rng = f"{'<' if hi_open else '<='} {hi}"
    if lo is not None:
        _check(v > lo if lo_open else v >= lo, field, f"must be {rng}, got {v}")
    if hi is not None:
        _check(v < hi if hi_open else v <= hi, field, f"must be {rng}, got {v}")
    return v


def _finite_everywhere(node: Any, path: str) -> None:
    """No NaN or infinity anywhere in the config (no field means 'unbounded' by inf)."""
    if hasattr(node, "items"):
        for k, v in node.items():
            _finite_everywhere(v, f"{path}.{k}" if path else str(k))
    elif isinstance(node, (list, tuple)):
        for i, v in enumerate(node):
            _finite_everywhere(v, f"{path}[{i}]")
    elif isinstance(node, float) and not math.isfinite(node):
        raise ConfigError(f"config.{path}: must be a finite number, got {node}")


def check_known_keys(c: Any) -> None:
    """Unknown keys in the closed sections (CLOSED_SECTIONS) are errors naming the known ones."""
    for section, known in CLOSED_SECTIONS.items():
        node = _get(c, section)
        if not hasattr(node, "keys"):
            raise ConfigError(f"config.{section}: must be a section (fields {', '.join(known)}), "
                              f"got {node!r}")
        for k in node.keys():
            if k not in known:
                raise ConfigError(f"config.{section}.{k}: unknown field; known fields of "
                                  f"config.{section}: {', '.join(known)}")


def check_study(c: Any) -> str:
    """config.study: "" or one of mdm.run_contract.STUDIES (ConfigError otherwise)."""
    study = c.get("study", "") if hasattr(c, "get") else ""
    _check(isinstance(study, str) and study in ("",) + STUDIES, "study",
           f"unknown study {study!r}; known: {', '.join(STUDIES)} (or \"\" for none)")
    return study


def validate_config(c: Any) -> None:
    _finite_everywhere(c, "")
    check_known_keys(c)
    check_study(c)
    _num(c, "seed", integer=True)

    m = c.model
    for f in ("width", "depth", "num_heads", "base_width", "base_depth"):
        _num(c, f"model.{f}", 0, lo_open=True, integer=True)
    for f in ("head_dim", "mlp_dim", "base_head_dim"):
        _num(c, f"model.{f}", 0, integer=True)
    _num(c, "model.rope_theta", 0, lo_open=True)
    _num(c, "model.norm_eps", 0, 1, lo_open=True, hi_open=True)
    _num(c, "model.init_std", 0, lo_open=True)
    _num(c, "model.depth_alpha", 0, lo_open=True)
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
    _check(m.attn_scale in ("auto", "sqrt", "mup"), "model.attn_scale",
           f"must be 'auto', 'sqrt' or 'mup', got {m.attn_scale!r}")
    attention = m.get("attention", "auto")  # absent from configs written before it existed
    _check(attention in ATTENTION_IMPLS, "model.attention",
           f"must be one of {', '.join(ATTENTION_IMPLS)}, got {attention!r}")
    _check(attention != "cudnn" or m.dtype in LOW_PRECISION, "model.attention",
           f"'cudnn' needs model.dtype bfloat16 or float16, got {m.dtype!r}; use xla or auto")

    for f in ("text_vocab", "image_vocab", "audio_vocab", "pad_vocab_to"):
        _num(c, f"token_space.{f}", 1, integer=True)

    o = c.objective
    for mod in MODALITIES:
        try:
            get_schedule(o.schedule[mod])
        except ValueError as e:
            raise ConfigError(f"config.objective.schedule.{mod}: {e}") from None
    _num(c, "objective.cond_dropout", 0, 1, hi_open=True)
    _num(c, "objective.t_min", 0, 1, hi_open=True)

    d = c.data
    _check(d.source in ("synthetic", "shards"), "data.source",
           f"must be 'synthetic' or 'shards', got {d.source!r}")
    _check(d.source != "shards" or bool(d.path), "data.path",
           "must name a token-shard directory when data.source == 'shards'")
    _num(c, "data.seq_len", 16, integer=True)
    _num(c, "data.seed", integer=True)
    for k in MODALITIES:
        _num(c, f"data.mixture.{k}", 0, 1)
    mix = {k: float(d.mixture[k]) for k in MODALITIES}
    _check(abs(sum(mix.values()) - 1.0) < 1e-6, "data.mixture",
           f"ratios must sum to 1, got {mix} (sum {sum(mix.values()):.6g})")

    t = c.train
    _num(c, "train.physical_batch", 0, lo_open=True, integer=True)
    _num(c, "train.micro_batch", 0, integer=True)
    _num(c, "train.max_steps", 0, integer=True)
    _num(c, "train.total_tokens", 0, lo_open=True)
    if t.micro_batch:
        _check(t.physical_batch % t.micro_batch == 0, "train.micro_batch",
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
    _num(c, "optimizer.lr", 0, MAX_LR, lo_open=True)
    _num(c, "optimizer.beta1", 0, 1, hi_open=True)
    _num(c, "optimizer.beta2", 0, 1, hi_open=True)
    _num(c, "optimizer.eps", 0, 1, lo_open=True, hi_open=True)
    _num(c, "optimizer.weight_decay", 0)
    _check(op.lr * op.weight_decay < 1, "optimizer.weight_decay",
           f"lr x weight_decay = {op.lr * op.weight_decay:.3g} >= 1 would shrink every weight to "
           "zero or past it in one step; lower one of them")
    _num(c, "optimizer.warmup", 0)
    _num(c, "optimizer.grad_clip", 0)
    _check(op.decay in ("cosine", "wsd", "constant"), "optimizer.decay",
           f"must be cosine, wsd or constant, got {op.decay!r}")
    _num(c, "optimizer.decay_fraction", 0, 1, lo_open=True)
    _num(c, "optimizer.min_lr_ratio", 0, 1)
    warm = op.warmup * t.total_tokens if op.warmup <= 1 else op.warmup
    _check(warm < t.total_tokens, "optimizer.warmup",
           f"warmup ({warm:.3g} tokens) must be shorter than train.total_tokens")
    _num(c, "optimizer.ema_decay", 0, 1, hi_open=True)
    _check_cooldowns(c, warm, tokens_per_step)

    s = c.sde
    if s.enabled:
        _num(c, "sde.ref_batch", 0, lo_open=True)
        _num(c, "sde.ref_tokens", 0)
        _num(c, "sde.gamma", 0, 2)
        for rule, choices in SDE_RULES.items():
            if rule in s:
                _check(s[rule] in choices, f"sde.{rule}", f"must be one of {choices}, got "
                       f"{s[rule]!r}")

    _num(c, "eval.every", 0)
    _num(c, "eval.num_t", 1, integer=True)
    _num(c, "eval.num_examples", 2, integer=True)  # >= 2 for a standard error
    _num(c, "eval.batch_size", 1, integer=True)
    _num(c, "checkpoint.every", 0)
    _num(c, "checkpoint.keep", 1, integer=True)
    _num(c, "logging.every_steps", 1, integer=True)
    _num(c, "multihost.num_processes", 0, integer=True)
    _num(c, "multihost.process_id", -1, integer=True)


def _check_cooldowns(c: Any, warm: float, tokens_per_step: int) -> None:
    """train.cooldowns (mdm.cooldown): WSD branches need a WSD run, budgets inside the run and
    past the warmup, and no SDE rule (its kappa depends on the budget, so a branch would not be
    the parent's continuation)."""
    t, op = c.train, c.optimizer
    cds = t.get("cooldowns", ()) or ()
    if not cds:
        return
    _check(isinstance(cds, (tuple, list)) and all(
        isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(x) for x in cds),
        "train.cooldowns", f"must be a tuple of token counts, got {cds!r}")
    _check(op.decay == "wsd", "train.cooldowns", "cooldown branches need optimizer.decay='wsd' "
           f"(the run's learning rate must be constant where they branch), got {op.decay!r}")
    _check(not c.sde.enabled, "train.cooldowns", "cooldown branches and sde.enabled do not mix "
           "(the SDE kappa depends on the budget); run the budgets as separate runs")
    f = float(op.decay_fraction)
    for d in cds:
        _check(d < t.total_tokens, "train.cooldowns",
               f"{d:.3g} must be below train.total_tokens ({t.total_tokens:.3g}); the run itself "
               "is the last budget")
        _check((1 - f) * d >= max(warm, tokens_per_step), "train.cooldowns",
               f"{d:.3g} tokens branch at {(1 - f) * d:.3g}, before the warmup ends ({warm:.3g}) "
               f"or the first step ({tokens_per_step}); drop it or shorten the warmup")


def check_resolved_optimizer(opt: dict[str, float]) -> None:
    """The optimizer values after the SDE reparameterization (mdm.assemble.build) are finite and
    not absurd: a reference batch or token count far from the run's can blow them up."""
    for k, v in opt.items():
        if isinstance(v, numbers.Real) and not math.isfinite(v):
            raise ConfigError(f"config.sde: the reparameterization gives a non-finite {k} ({v}); "
                              "check sde.ref_batch, sde.ref_tokens and sde.gamma")
    if not 0 < opt["lr"] <= MAX_LR:
        raise ConfigError(f"config.sde: the reparameterization gives lr {opt['lr']:.3g}, outside "
                          f"(0, {MAX_LR}]; check sde.ref_batch, sde.ref_tokens and sde.gamma")
