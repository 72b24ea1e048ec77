"""The jitted train step: corruption, forward, ELBO, gradient accumulation, AdamW update.

One physical batch of B rows is split into k micro-batches inside the step (lax.scan); the
gradient is that of the whole batch's loss sum_m S_m / sum_m C_m, exactly: per-micro-batch
gradients of the *sum* S are accumulated in float32 and divided once by the batch's total
token count C (known before the forward pass). Micro-batch j holds rows j, j + k, j + 2k, ...
so that every device keeps its own rows (no resharding of the batch).

Gradient noise scale (McCandlish et al. 2018), when k > 1, from the micro-batch (b = B / k rows)
and full-batch (B rows) gradient squared norms, with token counts as batch sizes:

    |G|^2   ~ (B_big |g_big|^2 - B_small E|g_small|^2) / (B_big - B_small)
    tr(S)   ~ (E|g_small|^2 - |g_big|^2) / (1 / B_small - 1 / B_big)
    B_noise = tr(S) / |G|^2     (in tokens)
"""
from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from mdm.objective import (Batch, ObjectiveConfig, corrupt, corrupt_pair, elbo_sums,
                           sample_times)
from mdm.token_space import TokenSpace
from mdm.train_state import TrainState

MODS = ("text", "image", "audio")


def _micro(x: jax.Array, k: int) -> jax.Array:
    """[B, ...] -> [k, B / k, ...] with micro-batch j = rows j, j + k, ..."""
    return x.reshape(x.shape[0] // k, k, *x.shape[1:]).swapaxes(0, 1)


def _sqnorm(tree: Any) -> jax.Array:
    return sum(jnp.sum(jnp.square(x.astype(jnp.float32))) for x in jax.tree_util.tree_leaves(tree))


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
            batch = Batch(*(jnp.concatenate([a, a]) for a in batch))
            corr = jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a, b]), c1, c2)
        else:
            t = sample_times(k_t, n, obj.antithetic, obj.t_min)
            corr = corrupt(k_c, batch, t, space, obj)
        total = jnp.maximum(corr.counted.sum().astype(jnp.float32), 1.0)

        if num_micro == 1:
            g_sum, s = micro_grad(state.params, batch, corr)
            sums, counts = s.sums.sum(0), s.counts.sum(0)
            micro_sq = jnp.zeros(())
        else:
            mb = jax.tree_util.tree_map(lambda x: _micro(x, num_micro), (batch, corr))
            zeros = g_like(state.params)

            def body(carry, xs):
                g_acc, s_acc, c_acc, sq = carry
                b, c = xs
                g, s = micro_grad(state.params, b, c)
                cnt = jnp.maximum(s.counts.sum(), 1.0)
                sq = sq + _sqnorm(g) / cnt ** 2
                g_acc = jax.tree_util.tree_map(jnp.add, g_acc, g)
                return (g_acc, s_acc + s.sums.sum(0), c_acc + s.counts.sum(0), sq), None

            init = (zeros, jnp.zeros(3), jnp.zeros(3), jnp.zeros(()))
            (g_sum, sums, counts, micro_sq), _ = jax.lax.scan(body, init, mb)
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
            b_small, b_big = total / num_micro, total
            g_small_sq = micro_sq / num_micro
            g_big_sq = grad_norm ** 2
            g2 = (b_big * g_big_sq - b_small * g_small_sq) / (b_big - b_small)
            tr_s = (g_small_sq - g_big_sq) / (1.0 / b_small - 1.0 / b_big)
            metrics["gns_trace"] = tr_s
            metrics["gns_grad_sq"] = g2
            metrics["gns_b_noise_tokens"] = tr_s / g2
        return new_state, metrics

    return step


def g_like(params: Any) -> Any:
    return jax.tree_util.tree_map(lambda p: jnp.zeros(p.shape, jnp.float32), params)
