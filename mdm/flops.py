"""Training FLOPs per token (DESIGN.md section 5): the one function the trainer logs and the
analysis reads.

    flops_per_token = 6 * N_ne + 12 * n_layers * seq_len * d_attn

N_ne = non-embedding parameters *including* the output head (the head is a [d, V] matmul on
every token; the input embedding is a gather and costs no matmul FLOPs). The factor 6 is 2
(multiply-add) x 3 (forward + backward for activations and weights). The attention term counts
QK^T and AV (2 x 2 x L x d_attn per token per layer forward, x3 for training) over the full
bidirectional L x L score matrix: no causal halving. d_attn = heads x head_dim (= width by
default).

`model_measures(model_cfg, seq_len)` is the one place that composes the two: parameter counts
measured on an abstract init (jax.eval_shape, nothing allocated) and this formula. The trainer,
the planner, the ladder and the benchmarks all call it.
"""
from __future__ import annotations

import functools
from typing import Any


def flops_per_token(params_non_embedding: int, n_layers: int, seq_len: int, d_attn: int) -> float:
    """Training FLOPs per token; params_non_embedding must include the output head."""
    for name, v in (("params_non_embedding", params_non_embedding), ("n_layers", n_layers),
                    ("seq_len", seq_len), ("d_attn", d_attn)):
        if v <= 0:
            raise ValueError(f"flops_per_token: {name} must be positive, got {v}")
    return 6.0 * params_non_embedding + 12.0 * n_layers * seq_len * d_attn


@functools.lru_cache(maxsize=256)
def _measures(model_cfg: Any, seq_len: int) -> tuple[tuple[str, float], ...]:
    from mdm.model import Transformer
    from mdm.train_state import abstract_params
    return _with_flops(abstract_params(Transformer(model_cfg), min(seq_len, 64)), model_cfg,
                       seq_len)


def _with_flops(params: Any, model_cfg: Any, seq_len: int) -> tuple[tuple[str, float], ...]:
    from mdm.model import count_params
    counts = count_params(params)
    fpt = flops_per_token(counts["params_non_embedding"], model_cfg.depth, seq_len,
                          model_cfg.num_heads * model_cfg.resolved_head_dim)
    return tuple(sorted({**counts, "flops_per_token": fpt}.items()))


def model_measures(model_cfg: Any, seq_len: int, params: Any = None) -> dict[str, float]:
    """{params_total, params_embedding, params_head, params_non_embedding, flops_per_token} of
    a mdm.model.ModelConfig at `seq_len` (counts do not depend on it; measured once per shape).
    `params`: the model's (abstract) parameter tree when the caller has it already (the
    trainer's StepSetup.abstract.params), counted instead of tracing the model's init again."""
    if params is not None:
        return dict(_with_flops(params, model_cfg, int(seq_len)))
    return dict(_measures(model_cfg, int(seq_len)))
