"""The jitted train step: corruption, forward, ELBO, gradient accumulation, AdamW update.

One physical batch of B rows is split into k micro-batches inside the step (lax.scan); the
gradient is that of the whole batch's loss sum_m S_m / sum_m C_m, exactly: per-micro-batch
gradients of the *sum* S are accumulated in float32 and divided once by the batch's total
token count C (known before the forward pass). Micro-batch j holds rows j, j + k, j + 2k, ...
so that every device keeps its own rows (no resharding of the batch).

Gradient noise scale (McCandlish et al. 2018, App. A), when k > 1, from the squared norms of
the k micro-batch mean gradients g_j (c_j counted tokens each) and of the full-batch mean
gradient g_big (C = sum_j c_j tokens), with tokens as the batch unit (`noise_scale_components`):

    if per-token gradients are iid with mean G and covariance S,
        E|g_j|^2 = |G|^2 + tr(S) / c_j,        E|g_big|^2 = |G|^2 + tr(S) / C,
    so with mean_j |g_j|^2 for |g_small|^2 and 1 / B_small = mean_j (1 / c_j) (the harmonic
    mean count: the micro-batches' token counts differ, since the masked fraction is random),
    B_big = C, both of these are unbiased:
        |G|^2  ~ (B_big |g_big|^2 - B_small |g_small|^2) / (B_big - B_small)     "gns_grad_sq"
        tr(S)  ~ (|g_small|^2 - |g_big|^2) / (1 / B_small - 1 / B_big)          "gns_trace"
    B_noise = tr(S) / |G|^2 (tokens). The per-step ratio "gns_b_noise_tokens" is a ratio of two
    noisy estimates (the denominator is often near 0 or negative): it is biased and heavy
    tailed. Average the two components over steps first, then divide (the trainer logs their
    means over each logging window, analysis.batch_size.gradient_noise_scale does the rest).
"""
from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from mdm.objective import (
    Batch,
    ObjectiveConfig,
    corrupt,
    corrupt_pair,
    elbo_sums,
    sample_times,
)
from mdm.run_contract import MODALITIES
from mdm.token_space import TokenSpace
from mdm.train_state import TrainState

MODS = MODALITIES


def _micro(x: jax.Array, k: int) -> jax.Array:
    """[B, ...] -> [k, B / k, ...] with micro-batch j = rows j, j + k, ..."""
    return x.reshape(x.shape[0] // k, k, *x.shape[1:]).swapaxes(0, 1)


def _sqnorm(tree: Any) -> jax.Array:
    return sum(jnp.sum(jnp.square(x.astype(jnp.float32))) for x in jax.tree_util.tree_leaves(tree))


def noise_scale_components(small_sq: jax.Array, small_counts: jax.Array,
                           big_sq: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Unbiased (|G|^2, tr S) from k micro-batch mean gradients and their pooled mean.

    small_sq: [k] squared norms |g_j|^2 of the micro-batch mean gradients; small_counts: [k]
    units (tokens) behind each, c_j > 0; big_sq: |g_big|^2 of the pooled mean
    g_big = sum_j c_j g_j / C, C = sum_j c_j. With B_small = 1 / mean_j (1 / c_j), B_big = C:

        |G|^2 = (B_big |g_big|^2 - B_small mean_j |g_j|^2) / (B_big - B_small)
        tr S  = (mean_j |g_j|^2 - |g_big|^2) / (1 / B_small - 1 / B_big)

    (unbiased when the units' gradients are iid; needs k >= 2 and not all of C in one c_j).
    """
    small_sq = jnp.asarray(small_sq)
    counts = jnp.asarray(small_counts, small_sq.dtype)
    inv_small = jnp.mean(1.0 / counts)
    b_big = jnp.sum(counts)
    g_small_sq = jnp.mean(small_sq)
    g2 = (b_big * big_sq - g_small_sq / inv_small) / (b_big - 1.0 / inv_small)
    tr_s = (g_small_sq - big_sq) / (inv_small - 1.0 / b_big)
    return g2, tr_s


def make_train_step(model: nn.Module, tx: optax.GradientTransformation, space: TokenSpace,
                    obj: ObjectiveConfig, num_micro: int, lr_fn: Callable[[Any], Any],
                    base_rng: jax.Array, ema_decay: float = 0.0,
                    grad_noise: bool = False) -> Callable[[TrainState, Batch], tuple]:
    """Returns step(state, batch) -> (state, metrics). The batch has B rows; with
    complementary pairs it has B / 2 rows, each appearing with both masks."""

    def micro_grad(params: Any, batch: Batch, corr: Any):
        def f(p):
            logits = model.apply({"params": p}, corr.inputs, batch.segment_ids)
            s = elbo_sums(logits, batch, corr, space)
            return s.sums.sum(), s
        (_, s), g = jax.value_and_grad(f, has_aux=True)(params)
        return jax.tree_util.tree_map(lambda x: x.astype(jnp.float32), g), s

    def step(state: TrainState, batch: Batch) -> tuple[TrainState, dict[str, jax.Array]]:
        rng = jax.random.fold_in(base_rng, state.step)
        k_t, k_c = jax.random.split(rng)
        n = batch.tokens.shape[0]
        if obj.complementary:
            t = sample_times(k_t, n, obj.antithetic, obj.t_min)
            c1, c2 = corrupt_pair(k_c, batch, t, space, obj)
            # rows i and n + i are a pair; micro-batch j takes rows = j mod k, and n / k =
            # micro_batch / 2 is an integer (config_validation), so a pair never straddles two
            # micro-batches (which would correlate them and bias the noise-scale components)
            batch = Batch(*(jnp.concatenate([a, a]) for a in batch))
            corr = jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a, b]), c1, c2)
        else:
            t = sample_times(k_t, n, obj.antithetic, obj.t_min)
            corr = corrupt(k_c, batch, t, space, obj)
        total = jnp.maximum(corr.counted.sum().astype(jnp.float32), 1.0)

        if num_micro == 1:
            g_sum, s = micro_grad(state.params, batch, corr)
            sums, counts = s.sums.sum(0), s.counts.sum(0)
        else:
            mb = jax.tree_util.tree_map(lambda x: _micro(x, num_micro), (batch, corr))
            zeros = g_like(state.params)

            def body(carry, xs):
                g_acc, s_acc, c_acc = carry
                b, c = xs
                g, s = micro_grad(state.params, b, c)
                cnt = jnp.maximum(s.counts.sum(), 1.0)
                g_acc = jax.tree_util.tree_map(jnp.add, g_acc, g)
                # |g_j|^2 of micro-batch j's mean gradient, and its token count c_j
                return (g_acc, s_acc + s.sums.sum(0), c_acc + s.counts.sum(0)), (
                    _sqnorm(g) / cnt ** 2, cnt)

            init = (zeros, jnp.zeros(3), jnp.zeros(3))
            (g_sum, sums, counts), (micro_sq, micro_cnt) = jax.lax.scan(body, init, mb)
        grads = jax.tree_util.tree_map(lambda g: g / total, g_sum)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        ema = state.ema_params
        if ema is not None:
            ema = jax.tree_util.tree_map(lambda e, p: ema_decay * e + (1 - ema_decay) * p,
                                         ema, params)
        new_state = TrainState(state.step + 1, params, opt_state, ema)

        grad_norm = jnp.sqrt(_sqnorm(grads))
        metrics = {"loss": sums.sum() / total, "grad_norm": grad_norm, "lr": lr_fn(state.step),
                   "nonfinite": ~jnp.isfinite(sums.sum()) | ~jnp.isfinite(grad_norm)}
        for i, m in enumerate(MODS):
            metrics[f"loss_{m}"] = sums[i] / jnp.maximum(counts[i], 1.0)
            metrics[f"count_{m}"] = counts[i]
        if grad_noise and num_micro > 1:
            # g_big = sum_j c_j g_j / C is the applied gradient (C = total = sum_j c_j)
            g2, tr_s = noise_scale_components(micro_sq, micro_cnt, jnp.square(grad_norm))
            metrics["gns_trace"] = tr_s
            metrics["gns_grad_sq"] = g2
            metrics["gns_b_noise_tokens"] = tr_s / g2
        return new_state, metrics

    return step


def g_like(params: Any) -> Any:
    return jax.tree_util.tree_map(lambda p: jnp.zeros(p.shape, jnp.float32), params)
