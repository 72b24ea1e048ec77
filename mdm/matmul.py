"""Mixed-precision matrix products: bfloat16 operands, float32 accumulation, fast on every backend.

    y = matmul(x, w, dtype)      x [..., K] @ w [K, N] -> [..., N] in `dtype`

Forward and backward are the three products of a dense layer, each with operands cast to the
compute dtype and accumulated in float32 (`preferred_element_type`), the result rounded once:

    y  = x w            [M, K] @ [K, N]
    dx = g w^T          [M, N] @ [N, K]     (contracts the last dim of both operands)
    dw = x^T g          [K, M] @ [M, N]     (returned in w's dtype: float32 master weights)

Why a custom VJP, measured on XLA:CPU (jax 0.10, AVX-512 + AMX host; README "Performance
against md4"): a bfloat16 dot runs at the AMX rate (1.1-1.6 TFLOP/s at
[4096, 256] x [256, 704]) only when it accumulates in float32 and its left operand contracts its
last, row-major dimension; a dot with a bfloat16 result, or the weight gradient's x^T g as
autodiff writes it (left operand contracting its leading dimension), is rewritten to float32
and runs at 0.19-0.25 TFLOP/s, slower than a float32 model. So on CPU the weight gradient
materialises x^T (row-major) first, inside a while loop that runs once, the one construct
measured to stop XLA giving the transpose a column-major layout that turns the product back
into float32 (optimization_barrier, lax.cond, converts and elementwise ops do not). On GPU and
TPU the plain products are used (cuBLAS / the MXU take transposed operands at full rate).

With dtype float32 this is exactly x @ w with float32 gradients.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

Array = jax.Array
_F32 = jnp.float32


def _on_cpu() -> bool:
    return jax.default_backend() == "cpu"


def _row_major_transpose(x: Array, runtime: Array) -> Array:
    """x [M, K] -> x^T [K, M] materialised row-major on CPU (module docstring).

    The transpose is the body of a while loop that runs exactly once; its trip count
    max(runtime, 1) depends on `runtime` (an int32 scalar from the data), so XLA can neither
    remove the loop nor give its result the transposed layout that would turn the product
    back into a float32 one."""
    if not _on_cpu():
        return x.T
    trips = jnp.maximum(runtime, 1)
    init = (jnp.zeros((), jnp.int32), jnp.zeros(x.shape[::-1], x.dtype))
    return lax.while_loop(lambda c: c[0] < trips, lambda c: (c[0] + 1, x.T), init)[1]


def _dot(a: Array, b: Array, dims) -> Array:
    return lax.dot_general(a, b, (dims, ((), ())), preferred_element_type=_F32)


@functools.lru_cache(maxsize=None)
def _matmul2d(dtype_name: str, out_name: str):
    """The custom-VJP 2-D product for one compute and one result dtype (cached)."""
    dtype, out = jnp.dtype(dtype_name), jnp.dtype(out_name)

    @jax.custom_vjp
    def mm(x: Array, w: Array) -> Array:
        return _dot(x.astype(dtype), w.astype(dtype), ((1,), (0,))).astype(out)

    def fwd(x: Array, w: Array):
        xc, wc = x.astype(dtype), w.astype(dtype)
        # residual dtypes travel as zero-size arrays (custom_vjp residuals must be arrays)
        return _dot(xc, wc, ((1,), (0,))).astype(out), (xc, wc, jnp.zeros((0,), x.dtype),
                                                          jnp.zeros((0,), w.dtype))

    def bwd(res, g: Array):
        xc, wc, x_like, w_like = res
        g = g.astype(dtype)                                         # [M, N]
        dx = _dot(g, wc, ((1,), (1,)))                              # [M, K]
        runtime = jnp.isfinite(g[0, 0]).astype(jnp.int32)          # 0 or 1, unknown to XLA
        dw = _dot(_row_major_transpose(xc, runtime), g, ((1,), (0,)))   # [K, N]
        return dx.astype(x_like.dtype), dw.astype(w_like.dtype)

    mm.defvjp(fwd, bwd)
    return mm


def matmul(x: Array, w: Array, dtype=jnp.bfloat16, out_dtype=None) -> Array:
    """x [..., K] @ w [K, N] -> [..., N], operands in `dtype`, float32 accumulation, result in
    `out_dtype` (default `dtype`; float32 keeps the accumulator, e.g. for logits).

    With dtype float32 this is the plain float32 product (autodiff of one dot)."""
    dtype = jnp.dtype(dtype)
    out = jnp.dtype(out_dtype or dtype)
    lead, k = x.shape[:-1], x.shape[-1]
    n = w.shape[-1]
    x2 = x.reshape(-1, k)
    if dtype == _F32:
        y = _dot(x2.astype(_F32), w.astype(_F32), ((1,), (0,))).astype(out)
    else:
        y = _matmul2d(dtype.name, out.name)(x2, w)
    return y.reshape(*lead, n)
