"""mdm.softmax_attention (custom-VJP attention) against plain autodiff of the einsum reference."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mdm.softmax_attention import softmax_attention


def _reference(q, k, v, mask, scale):
    s = jnp.einsum("bqhd,bkhd->bhqk", q, k) * scale
    p = jax.nn.softmax(jnp.where(mask, s, -1e30), axis=-1)
    return jnp.einsum("bhqk,bkhd->bqhd", p, v)


def _inputs(B=2, L=24, H=3, D=8, seed=0):
    ks = jax.random.split(jax.random.PRNGKey(seed), 4)
    q, k, v, g = (jax.random.normal(kk, (B, L, H, D), jnp.float32) for kk in ks)
    seg = np.zeros((B, L), np.int32)
    seg[0, :10], seg[0, 10:20] = 1, 2          # two documents and PAD
    seg[1, :] = 1
    seg = jnp.asarray(seg)
    mask = ((seg[:, :, None] == seg[:, None, :]) & (seg[:, :, None] > 0))[:, None]
    return q, k, v, g, mask, seg


def test_forward_and_gradients_match_autodiff_in_float32():
    q, k, v, g, mask, seg = _inputs()
    scale = 0.3
    real = (seg > 0)[:, :, None, None]          # PAD rows carry no loss in the model

    def loss(fn, q, k, v):
        return jnp.sum(jnp.where(real, fn(q, k, v), 0.0) * g)

    ours = lambda q, k, v: softmax_attention(q, k, v, mask, scale, jnp.float32)
    ref = lambda q, k, v: _reference(q, k, v, mask, scale)
    np.testing.assert_allclose(np.where(real, ours(q, k, v), 0), np.where(real, ref(q, k, v), 0),
                               rtol=1e-5, atol=1e-5)
    g_ours = jax.grad(lambda *a: loss(ours, *a), argnums=(0, 1, 2))(q, k, v)
    g_ref = jax.grad(lambda *a: loss(ref, *a), argnums=(0, 1, 2))(q, k, v)
    for a, b in zip(g_ours, g_ref):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("L", [24, 64])
def test_bfloat16_close_to_float32(L):
    q, k, v, g, mask, seg = _inputs(L=L) if L == 24 else _inputs(B=2, L=L, H=2, D=16, seed=1)[:4] + (
        jnp.ones((2, 1, L, L), bool), None)
    out16 = softmax_attention(q, k, v, mask, 0.25, jnp.bfloat16).astype(jnp.float32)
    out32 = softmax_attention(q, k, v, mask, 0.25, jnp.float32)
    if seg is not None:
        real = (seg > 0)[:, :, None, None]
        out16, out32 = jnp.where(real, out16, 0), jnp.where(real, out32, 0)
    err = float(jnp.linalg.norm(out16 - out32) / jnp.linalg.norm(out32))
    assert err < 2e-2, err      # bf16 has an 8-bit mantissa: relative rounding 2^-9 per value
