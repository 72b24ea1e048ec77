"""Training FLOPs per token (DESIGN.md section 5): the one function the trainer logs and the
analysis reads.

    flops_per_token = 6 * N_ne + 12 * n_layers * seq_len * d_attn

N_ne = non-embedding parameters *including* the output head (the head is a [d, V] matmul on
every token; the input embedding is a gather and costs no matmul FLOPs). The factor 6 is 2
(multiply-add) x 3 (forward + backward for activations and weights). The attention term counts
QK^T and AV (2 x 2 x L x d_attn per token per layer forward, x3 for training) over the full
bidirectional L x L score matrix: no causal halving. d_attn = heads x head_dim (= width by
default).
"""
from __future__ import annotations


def flops_per_token(params_non_embedding: int, n_layers: int, seq_len: int, d_attn: int) -> float:
    """Training FLOPs per token; params_non_embedding must include the output head."""
    for name, v in (("params_non_embedding", params_non_embedding), ("n_layers", n_layers),
                    ("seq_len", seq_len), ("d_attn", d_attn)):
        if v <= 0:
            raise ValueError(f"flops_per_token: {name} must be positive, got {v}")
    return 6.0 * params_non_embedding + 12.0 * n_layers * seq_len * d_attn


def forward_flops_per_token(params_non_embedding: int, n_layers: int, seq_len: int,
                            d_attn: int) -> float:
    """Forward-only FLOPs per token (evaluation, sampling): one third of the training figure."""
    return flops_per_token(params_non_embedding, n_layers, seq_len, d_attn) / 3.0
