import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mdm.schedules import ModalitySchedules, get_schedule

SPECS = ["linear", "cosine", "poly:2", "poly:0.5", "poly:3"]
T = jnp.linspace(0.01, 0.99, 41)


@pytest.mark.parametrize("spec", SPECS)
def test_endpoints_derivative_and_positive_weight(spec):
    s = get_schedule(spec)
    assert abs(float(s.alpha(jnp.float32(0.0))) - 1.0) < 1e-6
    assert abs(float(s.alpha(jnp.float32(1.0)))) < 1e-6
    grad = jax.vmap(jax.grad(lambda t: s.alpha(t)))(T)
    np.testing.assert_allclose(s.dalpha(T), grad, rtol=1e-5, atol=1e-6)
    assert bool(jnp.all(s.weight(T) > 0))
    assert bool(jnp.all(jnp.diff(s.alpha(T)) < 0))  # keep probability decreases


@pytest.mark.parametrize("spec,closed", [
    ("linear", lambda t: 1 / t),
    ("cosine", lambda t: (math.pi / 2) * np.tan(math.pi / 2 * (1 - t))),
    ("poly:2", lambda t: 2 / t),
    ("poly:0.5", lambda t: 0.5 / t),
])
def test_weight_matches_closed_form(spec, closed):
    w = get_schedule(spec).weight(T)
    np.testing.assert_allclose(w, closed(np.asarray(T)), rtol=2e-4)


def test_weight_integrates_the_mask_probability_to_one():
    # int_0^1 w(t) (1 - alpha(t)) dt = int -alpha'(t) dt = 1 for every schedule
    t, q = np.polynomial.legendre.leggauss(64)
    t, q = (t + 1) / 2, q / 2
    for spec in SPECS:
        s = get_schedule(spec)
        tt = jnp.asarray(t, jnp.float32)
        val = float(jnp.sum(q * s.weight(tt) * s.mask_prob(tt)))
        np.testing.assert_allclose(s.mask_prob(tt), 1 - s.alpha(tt), atol=1e-6)
        # poly:k with k < 1 has an integrable t^(k-1) singularity at 0: Gauss-Legendre
        # converges slowly there, so it gets a looser tolerance
        assert abs(val - 1.0) < (1e-2 if spec == "poly:0.5" else 1e-3), spec


def test_per_modality_selection_and_bad_specs():
    ms = ModalitySchedules.from_specs("linear", "cosine", "poly:2")
    mod = jnp.array([[1, 2, 3, 0]])
    t = jnp.array([0.3])
    a = ms.alpha(t, mod)
    np.testing.assert_allclose(a[0], [0.7, 1 - math.cos(math.pi / 2 * 0.7), 1 - 0.09, 0.7],
                               rtol=1e-5)
    with pytest.raises(ValueError, match="unknown schedule"):
        get_schedule("exp")
    with pytest.raises(ValueError, match="must be > 0"):
        get_schedule("poly:-1")
