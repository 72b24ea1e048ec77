"""FSQ: codes on the grid and in range, mixed-radix index round trip, straight-through grads."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mdm.tokenizers.fsq import FSQ, parse_levels, round_ste

LEVELS = [(8, 5, 5, 5), (2, 3), (7, 4, 6)]


@pytest.mark.parametrize("levels", LEVELS)
def test_codebook_size(levels):
    assert FSQ(levels).codebook_size == math.prod(levels)
    assert FSQ(levels).dim == len(levels)


def test_invalid_levels_raise():
    with pytest.raises(ValueError, match="levels"):
        FSQ((8, 1))
    with pytest.raises(ValueError, match="levels"):
        FSQ(())
    with pytest.raises(ValueError, match="last dim"):
        FSQ((8, 5)).quantize(jnp.zeros((3, 4)))


@pytest.mark.parametrize("levels", LEVELS)
def test_quantized_values_lie_on_the_grid_and_indices_in_range(levels):
    fsq = FSQ(levels)
    z = jax.random.normal(jax.random.key(0), (4096, len(levels))) * 4.0   # far into the tails
    zhat, idx = fsq(z)
    h = (np.asarray(levels, np.float32) - 1) / 2
    k = np.asarray(zhat) * h + h                                         # digits in 0 .. L-1
    np.testing.assert_allclose(k, np.round(k), atol=1e-5)
    assert np.all(k >= -1e-5) and np.all(k <= np.asarray(levels) - 1 + 1e-5)
    assert np.all(np.abs(np.asarray(zhat)) <= 1.0 + 1e-6)
    idx = np.asarray(idx)
    assert idx.dtype == np.int32 and idx.min() >= 0 and idx.max() < fsq.codebook_size
    # with 4096 wide-spread samples every level of every dimension is hit, and no other value
    for d, l in enumerate(levels):
        assert len(np.unique(np.round(k[:, d]))) == l


@pytest.mark.parametrize("levels", LEVELS)
def test_index_roundtrip_is_a_bijection(levels):
    fsq = FSQ(levels)
    idx = jnp.arange(fsq.codebook_size)
    codes = fsq.indices_to_codes(idx)                                    # [V, d]
    np.testing.assert_array_equal(np.asarray(fsq.codes_to_indices(codes)), np.asarray(idx))
    assert len({tuple(c) for c in np.asarray(codes).round(6)}) == fsq.codebook_size


def test_mixed_radix_order():
    fsq = FSQ((8, 5))
    # index = k0 + 8 * k1 with digits k_i = zhat_i * h_i + h_i, h = (L - 1) / 2
    codes = fsq.indices_to_codes(jnp.asarray([0, 1, 8, 39]))
    digits = np.asarray(codes) * np.array([3.5, 2]) + np.array([3.5, 2])
    np.testing.assert_array_equal(digits.round(), [[0, 0], [1, 0], [0, 1], [7, 4]])


@pytest.mark.parametrize("levels", LEVELS)
def test_every_code_is_reachable_through_bound(levels):
    """Invert the bound at each grid point: quantize() must land exactly on that code."""
    fsq = FSQ(levels)
    h = (np.asarray(levels, np.float64) - 1) / 2
    codes = np.asarray(fsq.indices_to_codes(jnp.arange(fsq.codebook_size)), np.float64)
    z = np.arctanh(np.clip(codes, -0.999, 0.999))                       # bound(z) = h tanh(z)
    idx = fsq.codes_to_indices(fsq.quantize(jnp.asarray(z, jnp.float32)))
    np.testing.assert_array_equal(np.asarray(idx), np.arange(fsq.codebook_size))
    assert np.all(h > 0)


def test_straight_through_gradient_equals_bound_derivative():
    fsq = FSQ((8, 5, 5, 5))
    z = jax.random.normal(jax.random.key(1), (64, 4))
    g_quant = jax.grad(lambda z: jnp.sum(fsq.quantize(z)))(z)
    # d zhat / d z = d (h tanh z) / d z / h = 1 - tanh(z)^2
    np.testing.assert_allclose(np.asarray(g_quant), 1 - np.tanh(np.asarray(z)) ** 2, atol=1e-6)
    assert np.all(np.asarray(g_quant) > 0)          # rounding did not kill the gradient
    # round_ste: identity gradient, rounded value
    x = jnp.asarray([0.2, 1.7, -2.6])
    np.testing.assert_array_equal(np.asarray(round_ste(x)), [0.0, 2.0, -3.0])
    np.testing.assert_array_equal(np.asarray(jax.grad(lambda x: jnp.sum(round_ste(x)))(x)),
                                  [1.0, 1.0, 1.0])


def test_parse_levels():
    assert parse_levels("8,5,5,5") == (8, 5, 5, 5)
    assert parse_levels([7, 5]) == (7, 5)
    with pytest.raises(ValueError):
        parse_levels("8,1")
