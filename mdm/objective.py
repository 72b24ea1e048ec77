"""Absorbing-state (masked) diffusion objective: corruption, logit masking, continuous-time ELBO.

Notation: x0 [B, L] clean tokens, x_t the corrupted tokens, m(i) the modality of position i,
alpha_m(t) the keep probability of modality m (schedules.py), and c_i = 1 for content positions
(text / image / audio tokens; layout tokens and PAD are never masked and carry no loss).

Forward process: with u_i ~ U(0, 1) i.i.d., position i is masked iff c_i and u_i >= alpha_m(i)(t),
i.e. with probability 1 - alpha_m(i)(t).

Continuous-time ELBO (negative, in nats) of one sequence:

    L(x0) = E_t E_{x_t | x0} [ sum_{i masked} w_m(i)(t) * -log p_theta(x0_i | x_t) ],
    w_m(t) = -alpha_m'(t) / (1 - alpha_m(t)),

which upper-bounds -log p_theta(x0); with the exact conditionals p(x0_i | unmasked tokens) it
equals -log p(x0) (the any-order autoregressive identity), which the tests check by brute force.

Variance reduction:
  * antithetic (stratified) times over the global batch: t_b = (u + pi(b)) / B mod 1 with one
    u ~ U(0, 1) and a random permutation pi, so each of the B strata [k/B, (k+1)/B) holds exactly
    one example, and strata are not tied to row order (rows are grouped by modality);
    then mapped to [t_min, 1];
  * complementary pairs: each example also appears with the complementary mask (masked iff
    c_i and u_i < alpha(t)). That mask is a sample of the reversed-complement schedule
    beta(s) = 1 - alpha(1 - s) at s = 1 - t, whose ELBO weight is -alpha'(t) / alpha(t), so
    the pair average is an unbiased estimator of a valid ELBO (the same value for a single
    schedule, since the ELBO is schedule-invariant; a valid bound with per-modality schedules).

Condition dropout (classifier-free guidance): with probability p an example's conditioning
segment is fully masked; those positions then take no loss (they are not a sample of the forward
process at t) and are not counted. Both members of a complementary pair share the dropout draw.

The per-position weight is set to 0 wherever the position is not masked, so a weight that is
infinite at an end point (w(t) -> inf as t -> 0, the complement weight as t -> 1) never meets a
zero loss: no inf * 0 in the loss or its gradient.

Normalisation: per-modality sums S_m and real-token counts C_m (content tokens of modality m);
nats per token of modality m = S_m / C_m, the scalar training loss = sum_m S_m / sum_m C_m.
Everything here is float32 whatever the model's compute dtype.
"""
from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from mdm.run_contract import MODALITIES
from mdm.schedules import ModalitySchedules
from mdm.token_space import LAYOUT, TokenSpace

Array = jax.Array
NUM_MODALITIES = len(MODALITIES)  # text, image, audio (modality ids 1..3)
_NEG = -1e30        # logit for disallowed ids: exp underflows to exactly 0 in float32


class Batch(NamedTuple):
    tokens: Array       # int32 [B, L] clean global token ids
    segment_ids: Array  # int32 [B, L] 0 = PAD
    cond: Array         # bool  [B, L] conditioning segment


class Corruption(NamedTuple):
    inputs: Array       # int32 [B, L] x_t (MASK at masked positions)
    masked: Array       # bool  [B, L] positions whose loss counts
    weight: Array       # f32   [B, L] ELBO weight per position
    counted: Array      # bool  [B, L] real content tokens counted in the normaliser
    t: Array            # f32   [B]


@dataclasses.dataclass(frozen=True)
class ObjectiveConfig:
    schedules: ModalitySchedules
    antithetic: bool = True
    complementary: bool = False
    cond_dropout: float = 0.0
    t_min: float = 1e-3


def sample_times(rng: Array, batch_size: int, antithetic: bool = True,
                 t_min: float = 1e-3) -> Array:
    """[B] times in [t_min, 1]; antithetic = one sample in each of B strata (random order)."""
    k_u, k_perm = jax.random.split(rng)
    if antithetic:
        u = jax.random.uniform(k_u, ())
        strata = jax.random.permutation(k_perm, batch_size).astype(jnp.float32)
        s = jnp.mod(u + strata / batch_size, 1.0)
    else:
        s = jax.random.uniform(k_u, (batch_size,))
    return t_min + (1.0 - t_min) * s


def content_mask(tokens: Array, space: TokenSpace) -> tuple[Array, Array]:
    """(modality [B, L] int32, content [B, L] bool): content = a text/image/audio token."""
    modality = space.modality_of(tokens)
    return modality, (modality != LAYOUT) & (tokens < space.used_vocab)


def corrupt(rng: Array, batch: Batch, t: Array, space: TokenSpace, cfg: ObjectiveConfig,
            complement: bool = False, u: Array | None = None) -> Corruption:
    """Sample x_t ~ q(x_t | x0) at per-example times t [B].

    `u` [B, L] may be given (the same u with complement=True gives the complementary mask).
    """
    k_u, k_drop = jax.random.split(rng)
    modality, content = content_mask(batch.tokens, space)
    alpha = cfg.schedules.alpha(t, modality)                       # [B, L]
    if u is None:
        u = jax.random.uniform(k_u, batch.tokens.shape)
    if complement:
        masked = content & (u < alpha)
        weight = cfg.schedules.complement_weight(t, modality)
    else:
        masked = content & (u >= alpha)
        weight = cfg.schedules.weight(t, modality)
    counted = content
    if cfg.cond_dropout > 0.0:
        drop = jax.random.bernoulli(k_drop, cfg.cond_dropout, (batch.tokens.shape[0],))
        dropped = drop[:, None] & batch.cond                        # [B, L]
        counted = counted & ~dropped
        inputs_mask = masked | dropped
        masked = masked & ~dropped
    else:
        inputs_mask = masked
    inputs = jnp.where(inputs_mask, space.mask, batch.tokens)
    # The weight only matters where a position is masked; elsewhere it may be inf (w(t) at an
    # end point where nothing can be masked) and inf * 0 would make the gradient NaN.
    weight = jnp.where(masked, weight, 0.0)
    return Corruption(inputs.astype(jnp.int32), masked, weight.astype(jnp.float32), counted, t)


def corrupt_pair(rng: Array, batch: Batch, t: Array, space: TokenSpace,
                 cfg: ObjectiveConfig) -> tuple[Corruption, Corruption]:
    """A complementary pair at times t [B]: one u [B, L] gives the mask (u >= alpha) and its
    complement (u < alpha), and one condition-dropout draw is shared by both members, so the
    pair differs only in which content positions are masked."""
    k_u, k_pair = jax.random.split(rng)
    u = jax.random.uniform(k_u, batch.tokens.shape)
    return (corrupt(k_pair, batch, t, space, cfg, complement=False, u=u),
            corrupt(k_pair, batch, t, space, cfg, complement=True, u=u))


def modality_bounds(modality: Array, space: TokenSpace) -> tuple[Array, Array]:
    """(lo, hi) int32 [B, L]: the position's own modality range [lo, hi) of global ids; layout
    positions (never scored) take the text range so that a softmax over it stays finite."""
    table = jnp.asarray(space.range_table())                        # [4, 2]
    m = jnp.where(modality == LAYOUT, 1, modality)
    return table[m, 0], table[m, 1]


def modality_log_softmax(logits: Array, modality: Array, space: TokenSpace) -> Array:
    """log p over the position's own modality range only (exactly 0 probability elsewhere).

    logits: [B, L, V] any float dtype -> float32 [B, L, V]. Layout positions (never scored) use
    the text range so that the softmax stays finite.
    """
    lo, hi = modality_bounds(modality, space)                       # [B, L]
    x = jnp.where(_in_range(logits, lo, hi), logits.astype(jnp.float32), _NEG)
    return jax.nn.log_softmax(x, axis=-1)


def token_nll(logits: Array, tokens: Array, space: TokenSpace) -> Array:
    """-log p(x0_i | x_t) at every position, float32 [B, L], over the position's own modality
    range [lo_i, hi_i) (the same value as modality_log_softmax then picking the token's entry):

        nll_i = logsumexp_{v in [lo_i, hi_i)} z_iv - z_i,x0_i,
        d nll_i / d z_iv = softmax_i(z)_v [v in range] - [v = x0_i].

    The gradient is written out (range_nll's custom VJP), so the backward pass is one fused
    pass over the [B, L, V] logits and no [B, L, V] mask or log-softmax is stored: on the demo's
    micro models, autodiff through the masked full-vocabulary log-softmax was half the train
    step. Layout positions use the text range (they carry no loss; their value is finite).
    """
    lo, hi = modality_bounds(space.modality_of(tokens), space)      # [B, L]
    safe = jnp.clip(tokens, 0, logits.shape[-1] - 1)
    return range_nll(logits.astype(jnp.float32), lo, hi, safe)


def _in_range(z: Array, lo: Array, hi: Array) -> Array:
    """[B, L, V] bool: id v of z's last axis lies in the position's [lo, hi)."""
    ids = jnp.arange(z.shape[-1], dtype=jnp.int32)
    return (ids >= lo[..., None]) & (ids < hi[..., None])           # [B, L, V]


def _range_lse(z: Array, lo: Array, hi: Array) -> Array:
    zm = jnp.where(_in_range(z, lo, hi), z, -jnp.inf)
    mx = zm.max(-1)                                                 # [B, L]
    return mx + jnp.log(jnp.sum(jnp.exp(zm - mx[..., None]), -1))


@jax.custom_vjp
def range_nll(z: Array, lo: Array, hi: Array, tok: Array) -> Array:
    """logsumexp of z [B, L, V] over [lo, hi) minus z at tok, float32 [B, L] (see token_nll)."""
    return _range_nll_fwd(z, lo, hi, tok)[0]


def _range_nll_fwd(z, lo, hi, tok):
    lse = _range_lse(z, lo, hi)
    return lse - jnp.take_along_axis(z, tok[..., None], -1)[..., 0], (z, lo, hi, tok, lse)


def _range_nll_bwd(res, g):
    z, lo, hi, tok, lse = res
    p = jnp.where(_in_range(z, lo, hi), jnp.exp(z - lse[..., None]), 0.0)
    onehot = jnp.arange(z.shape[-1], dtype=jnp.int32) == tok[..., None]
    return g[..., None] * (p - onehot), None, None, None


range_nll.defvjp(_range_nll_fwd, _range_nll_bwd)


class ElboSums(NamedTuple):
    sums: Array    # f32 [B, 3] weighted NLL per example and modality (text, image, audio)
    counts: Array  # f32 [B, 3] real content tokens per example and modality


def elbo_sums(logits: Array, batch: Batch, corruption: Corruption,
              space: TokenSpace) -> ElboSums:
    """Per-example, per-modality ELBO sums and token counts (see module docstring)."""
    nll = token_nll(logits, batch.tokens, space)                    # [B, L]
    contrib = jnp.where(corruption.masked, corruption.weight * nll, 0.0)
    modality = space.modality_of(batch.tokens)
    onehot = jax.nn.one_hot(modality - 1, NUM_MODALITIES, dtype=jnp.float32)  # [B, L, 3]
    sums = jnp.einsum("bl,blm->bm", contrib, onehot)
    counts = jnp.einsum("bl,blm->bm", corruption.counted.astype(jnp.float32), onehot)
    return ElboSums(sums, counts)


def loss_from_sums(s: ElboSums) -> tuple[Array, dict[str, Array]]:
    """Scalar loss (nats per content token) and per-modality nats per token."""
    tot_s = s.sums.sum(0)                                            # [3]
    tot_c = s.counts.sum(0)
    loss = tot_s.sum() / jnp.maximum(tot_c.sum(), 1.0)
    per = {name: tot_s[i] / jnp.maximum(tot_c[i], 1.0)
           for i, name in enumerate(MODALITIES)}
    return loss, per


def gauss_legendre_grid(num_points: int, t_min: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights of Gauss-Legendre quadrature on [t_min, 1] (sum of weights = 1 - t_min)."""
    if num_points < 1:
        raise ValueError(f"need at least one quadrature point, got {num_points}")
    x, w = np.polynomial.legendre.leggauss(num_points)
    half = (1.0 - t_min) / 2.0
    return (t_min + half * (x + 1.0)).astype(np.float32), (half * w).astype(np.float32)


def ratio_with_se(sums: np.ndarray, counts: np.ndarray) -> tuple[float, float]:
    """Ratio estimator R = sum S_i / sum C_i over examples i with its delta-method SE.

    SE^2 = sum_i (S_i - R C_i)^2 / (n (n - 1) Cbar^2), Cbar = mean C_i.
    """
    sums = np.asarray(sums, np.float64)
    counts = np.asarray(counts, np.float64)
    keep = counts > 0
    n = int(keep.sum())
    if n == 0:
        return math.nan, math.nan
    s, c = sums[keep], counts[keep]
    r = s.sum() / c.sum()
    if n == 1:
        return float(r), math.nan
    resid = s - r * c
    se = math.sqrt((resid ** 2).sum() / (n * (n - 1))) / c.mean()
    return float(r), float(se)
