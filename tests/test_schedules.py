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


# --- float32 against float64 references, including 1e-7 from either end ----------------------
H = math.pi / 2
_T32 = np.concatenate([[0.0, 1e-7, 3e-7, 1e-6, 1e-5, 1e-4, 1e-3], np.linspace(0.01, 0.99, 99),
                       [1 - 1e-3, 1 - 1e-4, 1 - 1e-5, 1 - 1e-6, 1 - 3e-7, 1 - 1e-7, 1.0]]
                      ).astype(np.float32)


def _one_minus_cos(x: np.ndarray) -> np.ndarray:
    """1 - cos x in float64 without cancellation: its Taylor series for small x."""
    small = x < 1e-3
    series = x ** 2 / 2 - x ** 4 / 24 + x ** 6 / 720
    return np.where(small, series, 1 - np.cos(np.where(small, 1.0, x)))


def _reference(spec: str, t: np.ndarray) -> tuple[np.ndarray, ...]:
    """(alpha, 1 - alpha, -alpha') in float64 at the float32 times t (as float64)."""
    if spec == "linear":
        return 1 - t, t, np.ones_like(t)
    if spec == "cosine":
        return _one_minus_cos(H * (1 - t)), np.cos(H * (1 - t)), H * np.sin(H * (1 - t))
    k = float(spec.split(":")[1])
    with np.errstate(divide="ignore"):
        return 1 - t ** k, t ** k, k * t ** (k - 1)


def _close(got: np.ndarray, ref: np.ndarray, rtol: float, what: str) -> None:
    got = np.asarray(got, np.float64)
    finite = np.isfinite(ref)
    assert np.array_equal(np.isinf(got), ~finite), (what, got[~finite])
    # an exact end value (0) may come out as 1e-17-size rounding in float64's cos(pi/2)
    err = np.abs(got[finite] - ref[finite])
    bad = err > rtol * np.abs(ref[finite]) + 1e-15
    assert not bad.any(), (what, _T32[finite][bad], got[finite][bad], ref[finite][bad])


@pytest.mark.parametrize("spec", SPECS)
def test_float32_schedules_match_float64_to_1e6_at_both_ends(spec):
    s = get_schedule(spec)
    t32 = jnp.asarray(_T32)
    a, m, da = _reference(spec, _T32.astype(np.float64))
    _close(s.alpha(t32), a, 1e-6, "alpha")
    _close(s.mask_prob(t32), m, 1e-6, "mask_prob")
    inner = (_T32 > 0) & (_T32 < 1)  # the weights are infinite at one end point by definition
    with np.errstate(divide="ignore", invalid="ignore"):
        w, cw = da / m, da / a
    for name, got, ref in (("weight", s.weight(t32), w), ("complement_weight",
                                                          s.complement_weight(t32), cw)):
        got = np.asarray(got, np.float64)[inner]
        ref = ref[inner]
        np.testing.assert_allclose(got, ref, rtol=1e-6, err_msg=f"{spec} {name}")


def test_old_cosine_form_cancels_and_would_fail():
    # the reason for 2 sin^2: 1 - cos(pi/2 (1 - t)) in float32 is exactly 0 below 1 - t = 1.55e-4
    t = jnp.float32(1 - 1e-4)
    assert float(1.0 - jnp.cos(H * (1.0 - t))) == 0.0
    assert float(get_schedule("cosine").alpha(t)) > 0.0
