"""Masking schedules alpha(t) for absorbing-state diffusion, behind one interface.

A content token is kept (not masked) at time t in [0, 1] with probability alpha(t), masked with
probability 1 - alpha(t); alpha decreases from alpha(0) = 1 (clean) to alpha(1) = 0 (all masked).
The continuous-time ELBO weight is

    w(t) = -alpha'(t) / (1 - alpha(t)).

Closed forms (checked against jax.grad in the tests):

    linear        alpha = 1 - t                     w = 1 / t
    cosine        alpha = 1 - cos(pi/2 (1 - t))      w = (pi/2) tan(pi/2 (1 - t))
    poly:k        alpha = 1 - t^k                    w = k / t

Every quantity is evaluated in a cancellation-free float32 form, accurate to a few ulps over
all of [0, 1] including 1e-7 from either end (tested against float64):

    cosine   alpha = 2 sin^2(pi/4 (1 - t))        (not 1 - cos: it cancels near t = 1)
             1 - alpha = sin(pi/2 t),  -alpha' = pi/2 sin(pi/2 (1 - t))
    poly:k   alpha = 1 - t^k while t^k <= 1/2 (no cancellation), else -expm1(k log t) with
             log t = log1p(t - 1) for t >= 1/2 (t - 1 is exact there);
             1 - alpha = t^k, -alpha' = k t^(k - 1), w = k / t

The weights are ratios of these accurate factors, never of a difference.

Written as an integral over the keep probability a = alpha(t), the ELBO is
int_0^1 da / (1 - a) E_{mask ~ a}[sum_masked -log p], the same for every schedule; the schedule
only chooses where the Monte-Carlo samples of a fall (the estimator's variance). With
per-modality schedules each modality follows its own alpha_m(t) at a shared t.

`complement_weight(t) = -alpha'(t) / alpha(t)` is the weight of the complementary mask (mask
probability alpha(t)): it is the ELBO weight of the reversed-complement schedule
beta(s) = 1 - alpha(1 - s) at s = 1 - t (see objective.py).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable

import jax
import jax.numpy as jnp

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class Schedule:
    """alpha(t), alpha'(t), the mask probability 1 - alpha(t) (in closed form, so that the
    weight does not suffer the cancellation 1 - alpha near t = 0 in float32) and the ELBO
    weight (optionally in closed form, where the ratio would be 0 / 0 at an end point);
    t is a float array of any shape."""

    name: str
    alpha: Callable[[Array], Array]
    dalpha: Callable[[Array], Array]
    mask_prob: Callable[[Array], Array]
    closed_weight: Callable[[Array], Array] | None = None

    def weight(self, t: Array) -> Array:
        """w(t) = -alpha'(t) / (1 - alpha(t))."""
        if self.closed_weight is not None:
            return self.closed_weight(t)
        return -self.dalpha(t) / self.mask_prob(t)

    def complement_weight(self, t: Array) -> Array:
        """-alpha'(t) / alpha(t): the weight of the complementary mask at t."""
        return -self.dalpha(t) / self.alpha(t)


def linear() -> Schedule:
    return Schedule("linear", lambda t: 1.0 - t, lambda t: -jnp.ones_like(t), lambda t: t)


def cosine() -> Schedule:
    h = math.pi / 2
    return Schedule("cosine",
                    lambda t: 2.0 * jnp.square(jnp.sin(0.5 * h * (1.0 - t))),
                    lambda t: -h * jnp.sin(h * (1.0 - t)),
                    lambda t: jnp.sin(h * t))


def polynomial(k: float) -> Schedule:
    if not k > 0:
        raise ValueError(f"polynomial schedule exponent must be > 0, got {k}")
    return Schedule(f"poly:{k:g}",
                    lambda t: jnp.where(t ** k <= 0.5, 1.0 - t ** k, -jnp.expm1(k * _log(t))),
                    lambda t: -k * t ** (k - 1.0),
                    lambda t: t ** k,
                    lambda t: k / t)


def _log(t: Array) -> Array:
    """log t, accurate in float32 near t = 1 as well (log1p of the exact t - 1 there)."""
    t = jnp.asarray(t)
    return jnp.where(t >= 0.5, jnp.log1p(t - 1.0), jnp.log(t))


def get_schedule(spec: str) -> Schedule:
    """Parse 'linear', 'cosine' or 'poly:K' (K a positive float)."""
    spec = spec.strip().lower()
    if spec == "linear":
        return linear()
    if spec == "cosine":
        return cosine()
    if spec.startswith("poly:") or spec.startswith("polynomial:"):
        try:
            k = float(spec.split(":", 1)[1])
        except ValueError:
            raise ValueError(f"bad polynomial schedule {spec!r}; write e.g. 'poly:2'") from None
        return polynomial(k)
    raise ValueError(f"unknown schedule {spec!r}; expected 'linear', 'cosine' or 'poly:K'")


@dataclasses.dataclass(frozen=True)
class ModalitySchedules:
    """One schedule per content modality (text, image, audio), applied per position."""

    text: Schedule
    image: Schedule
    audio: Schedule

    @classmethod
    def from_specs(cls, text: str, image: str, audio: str) -> "ModalitySchedules":
        return cls(get_schedule(text), get_schedule(image), get_schedule(audio))

    def _select(self, fn: str, t: Array, modality: Array) -> Array:
        """Evaluate `fn` of each modality's schedule at t and pick by modality id.

        t: [B] or broadcastable to modality's leading dims; modality: int [B, L] ->
        [B, L] float32 (layout positions get the text value; they are never masked).
        """
        t = jnp.asarray(t, jnp.float32)
        if t.ndim == modality.ndim - 1:
            t = t[..., None]
        vals = [getattr(s, fn)(t) for s in (self.text, self.image, self.audio)]
        out = jnp.where(modality == 2, vals[1], vals[0])
        return jnp.where(modality == 3, vals[2], out)

    def alpha(self, t: Array, modality: Array) -> Array:
        return self._select("alpha", t, modality)

    def weight(self, t: Array, modality: Array) -> Array:
        return self._select("weight", t, modality)

    def complement_weight(self, t: Array, modality: Array) -> Array:
        return self._select("complement_weight", t, modality)
