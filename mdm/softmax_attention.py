"""Explicit softmax attention with a segment mask, as batched products XLA:CPU runs at bf16 rate.

    o = softmax(scale * q k^T + mask) v          q, k, v [B, L, H, Dh] -> o [B, L, H, Dh]

Shapes inside: heads folded into the batch, n = B * H:

    forward   s  = scale * q k^T     [n, L, Dh] @ [n, Dh, L]   float32 scores
              p  = softmax(where(mask, s, -1e30))              float32, rounded once to `dtype`
              o  = p v               [n, L, L] @ [n, L, Dh]
    backward  dv^T = do^T p          [n, Dh, L] @ [n, L, L]    (then transposed: [n, L, Dh])
              dp = do v^T            [n, L, Dh] @ [n, Dh, L]
              ds = p * (dp - rowsum(do * o)) * scale           float32
              dq = ds k              [n, L, L] @ [n, L, Dh]
              dk^T = q^T ds          [n, Dh, L] @ [n, L, L]    (then transposed)

Every product has `dtype` operands (bfloat16 by default), float32 accumulation and its left
operand contracting its last dimension, the forms measured to run on XLA:CPU's bf16 matmul path
(see mdm.matmul; autodiff of the einsum writes P^T dO and dS^T Q, contracting the left operand's
leading dimension, and mixes float32 cotangents with bf16 operands: both fall back to float32
at a fifth of the rate). Masked entries have p = 0 exactly, so they get no gradient; a row with
no allowed key (PAD) attends uniformly over -1e30 scores and carries no loss.

With dtype float32 the same products run in float32 (the reference path of the tests).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

Array = jax.Array
_F32 = jnp.float32
_NEG = -1e30


def _bdot(a: Array, b: Array) -> Array:
    """[n, M, K] @ [n, K, N] -> float32 [n, M, N] (batch dim 0, canonical contraction)."""
    return lax.dot_general(a, b, (((2,), (1,)), ((0,), (0,))), preferred_element_type=_F32)


def _heads_first(x: Array) -> Array:
    """[B, L, H, D] -> [B * H, L, D]."""
    B, L, H, D = x.shape
    return x.transpose(0, 2, 1, 3).reshape(B * H, L, D)


def _heads_first_t(x: Array) -> Array:
    """[B, L, H, D] -> [B * H, D, L]."""
    B, L, H, D = x.shape
    return x.transpose(0, 2, 3, 1).reshape(B * H, D, L)


def _heads_last(x: Array, B: int, H: int) -> Array:
    """[B * H, L, D] -> [B, L, H, D]."""
    n, L, D = x.shape
    return x.reshape(B, H, L, D).transpose(0, 2, 1, 3)


def _heads_last_t(x: Array, B: int, H: int) -> Array:
    """[B * H, D, L] -> [B, L, H, D]."""
    n, D, L = x.shape
    return x.reshape(B, H, D, L).transpose(0, 3, 1, 2)


def _probs(q: Array, k: Array, mask: Array, scale: float, H: int) -> Array:
    """float32 softmax probabilities [n, L, L]; mask [B, 1 or H, L, L] bool."""
    B, L = q.shape[0], q.shape[1]
    s = _bdot(_heads_first(q), _heads_first_t(k)) * scale                  # [n, L, L]
    s = s.reshape(B, H, L, L)
    s = jnp.where(mask, s, _NEG)
    return jax.nn.softmax(s, axis=-1).reshape(B * H, L, L)


@functools.lru_cache(maxsize=None)
def _attention(dtype_name: str, scale: float):
    dtype = jnp.dtype(dtype_name)

    @jax.custom_vjp
    def attend(q: Array, k: Array, v: Array, mask: Array) -> Array:
        return _fwd(q, k, v, mask)[0]

    def _fwd(q, k, v, mask):
        B, L, H, D = q.shape
        q, k, v = q.astype(dtype), k.astype(dtype), v.astype(dtype)
        p = _probs(q, k, mask, scale, H).astype(dtype)                      # [n, L, L]
        o = _bdot(p, _heads_first(v))                                       # [n, L, D] f32
        out = _heads_last(o, B, H).astype(dtype)
        return out, (q, k, v, mask, p, out)

    def _bwd(res, g):
        q, k, v, mask, p, out = res
        B, L, H, D = q.shape
        g = g.astype(dtype)
        go = _heads_first(g)                                                # [n, L, D]
        dv = _heads_last_t(_bdot(_heads_first_t(g), p), B, H)               # [B, L, H, D]
        dp = _bdot(go, _heads_first_t(v))                                   # [n, L, L] f32
        row = jnp.sum(go.astype(_F32) * _heads_first(out).astype(_F32), -1, keepdims=True)
        ds = (p.astype(_F32) * (dp - row) * scale).astype(dtype)            # [n, L, L]
        dq = _heads_last(_bdot(ds, _heads_first(k)), B, H)
        dk = _heads_last_t(_bdot(_heads_first_t(q), ds), B, H)
        zero_mask = jnp.zeros(mask.shape, jax.dtypes.float0)
        return dq.astype(dtype), dk.astype(dtype), dv.astype(dtype), zero_mask

    attend.defvjp(_fwd, _bwd)
    return attend


def softmax_attention(q: Array, k: Array, v: Array, mask: Array, scale: float,
                      dtype=jnp.bfloat16) -> Array:
    """q, k, v [B, L, H, Dh]; mask bool [B, 1 or H, L, L] (True = may attend) -> [B, L, H, Dh]
    in `dtype` (module docstring)."""
    return _attention(jnp.dtype(dtype).name, float(scale))(q, k, v, mask)
