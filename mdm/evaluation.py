"""The evaluation ELBO on a fixed quadrature grid with fixed mask seeds (DESIGN.md section 4).

For a held-out set of n examples, with Gauss-Legendre nodes t_k and weights q_k on [t_min, 1]:

    S_i,m = sum_k q_k sum_{positions p of modality m, masked at t_k} w_m(t_k) (-log p(x0_p | x_t_k))

where the mask of example i at node k uses u = Uniform(fold_in(fold_in(seed, k), i)): the same
grid and the same masks in every run, so scaling fits are not fitted to estimator noise.
nats per token of modality m = sum_i S_i,m / sum_i C_i,m (C = real tokens) with the
delta-method standard error over examples (objective.ratio_with_se); bits = nats / ln 2.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mdm.objective import Batch, ObjectiveConfig, corrupt, elbo_sums, gauss_legendre_grid, ratio_with_se
from mdm.token_space import TokenSpace

MODS = ("text", "image", "audio")
LN2 = math.log(2.0)


def make_eval_step(apply_fn: Callable[..., jax.Array], space: TokenSpace,
                   obj: ObjectiveConfig, seed: int) -> Callable[..., tuple[jax.Array, jax.Array]]:
    """eval_step(params, batch, row_ids [n], t scalar, k scalar int) -> (sums [n,3], counts [n,3])."""
    eval_obj = ObjectiveConfig(obj.schedules, antithetic=False, complementary=False,
                               cond_dropout=0.0, t_min=obj.t_min)
    base = jax.random.PRNGKey(seed)

    def eval_step(params: Any, batch: Batch, row_ids: jax.Array, t: jax.Array, k: jax.Array):
        key_k = jax.random.fold_in(base, k)
        L = batch.tokens.shape[1]
        u = jax.vmap(lambda i: jax.random.uniform(jax.random.fold_in(key_k, i), (L,)))(row_ids)
        tt = jnp.full((batch.tokens.shape[0],), t, jnp.float32)
        corr = corrupt(jax.random.PRNGKey(0), batch, tt, space, eval_obj, u=u)
        logits = apply_fn(params, corr.inputs, batch.segment_ids)
        s = elbo_sums(logits, batch, corr, space)
        return s.sums, s.counts

    return eval_step


def evaluate(eval_step: Callable, params: Any, examples: dict[str, np.ndarray], num_t: int,
             t_min: float, batch_size: int, put: Callable[[np.ndarray], Any] = jnp.asarray
             ) -> dict[str, float]:
    """Run the fixed-grid estimator over `examples`; returns the eval.jsonl fields."""
    n = examples["tokens"].shape[0]
    nodes, weights = gauss_legendre_grid(num_t, t_min)
    sums = np.zeros((n, 3))
    counts = np.zeros((n, 3))
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        idx = np.arange(start, stop)
        if stop - start < batch_size:  # pad the last batch to a fixed shape (one compile)
            idx = np.concatenate([idx, np.full(batch_size - (stop - start), idx[-1])])
        batch = Batch(*(put(examples[f][idx]) for f in ("tokens", "segment_ids", "cond")))
        rows = put(idx.astype(np.int32))
        for k, (t, q) in enumerate(zip(nodes, weights)):
            s, c = eval_step(params, batch, rows, jnp.float32(t), jnp.int32(k))
            s, c = np.asarray(s)[: stop - start], np.asarray(c)[: stop - start]
            sums[start:stop] += q * s
            counts[start:stop] = c
    return summarize(sums, counts)


def summarize(sums: np.ndarray, counts: np.ndarray) -> dict[str, float]:
    out: dict[str, float] = {}
    for i, m in enumerate(MODS):
        if counts[:, i].sum() == 0:
            continue
        r, se = ratio_with_se(sums[:, i], counts[:, i])
        out.update({f"nats_{m}": r, f"nats_se_{m}": se, f"bits_{m}": r / LN2,
                    f"bits_se_{m}": se / LN2, f"count_{m}": float(counts[:, i].sum())})
    r, se = ratio_with_se(sums.sum(1), counts.sum(1))
    out.update({"nats": r, "nats_se": se, "bits": r / LN2, "bits_se": se / LN2})
    return out
