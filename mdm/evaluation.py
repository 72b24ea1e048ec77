"""The evaluation ELBO: one reference parameterization, a fixed quadrature grid, fixed examples
and fixed mask seeds, identical across runs (DESIGN.md section 4).

The model has no time input, so its ELBO is a property of the model, not of the schedule it was
trained with: written as an integral over the mask rate r = 1 - alpha (the fraction of content
tokens masked), every schedule gives the same value

    ELBO(x0) = int_0^1 (1 / r) E_{mask ~ Bernoulli(r)} [ sum_{masked i} -log p(x0_i | x_r) ] dr.

Evaluation therefore ignores the run's training schedule and integrates this one form (the
linear schedule read in r, weight 1 / r) with Gauss-Legendre nodes r_k and weights q_k on
[0, 1]. The integrand is smooth and bounded at r -> 0 (it tends to the sum of the per-token
losses with nothing masked), unlike t^(k-1)-type integrands of other schedules, so 8 nodes
integrate it well, and no t_min cut-off is needed (the nodes are interior). For n held-out
examples:

    S_i,m = sum_k q_k (1 / r_k) sum_{positions p of modality m, masked at r_k} -log p(x0_p | x_r_k)

where the mask of example i at node k uses u = Uniform(fold_in(fold_in(seed, k), i)): the same
grid and the same masks in every run. nats per token of modality m = sum_i S_i,m / sum_i C_i,m
(C = real tokens) with the delta-method standard error over examples
(objective.ratio_with_se); bits = nats / ln 2. Each eval.jsonl line records the scheme
(`eval_scheme`, `eval_num_t`) and the examples (`eval_set`, `eval_rows`), so the analysis can
check that the runs it compares were measured the same way.
"""
from __future__ import annotations

import hashlib
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from mdm.objective import (
    Batch,
    ObjectiveConfig,
    corrupt,
    elbo_sums,
    gauss_legendre_grid,
    ratio_with_se,
)
from mdm.run_contract import MODALITIES
from mdm.schedules import ModalitySchedules
from mdm.token_space import TokenSpace

MODS = MODALITIES
LN2 = math.log(2.0)
EVAL_SCHEME = "mask_rate_gauss_legendre"  # the reference parameterization above
FIELDS = ("tokens", "segment_ids", "cond")

# The reference: mask rate r = t (linear schedule), weight 1 / r, no dropout, one mask per node.
REFERENCE = ObjectiveConfig(ModalitySchedules.from_specs("linear", "linear", "linear"),
                            antithetic=False, complementary=False, cond_dropout=0.0, t_min=0.0)


def make_eval_step(apply_fn: Callable[..., jax.Array], space: TokenSpace,
                   seed: int) -> Callable[..., tuple[jax.Array, jax.Array]]:
    """eval_step(params, batch, row_ids [n], r scalar, k scalar int) -> (sums [n,3], counts [n,3]).

    Uses the reference parameterization whatever the run's training schedule.
    """
    base = jax.random.PRNGKey(seed)

    def eval_step(params: Any, batch: Batch, row_ids: jax.Array, r: jax.Array, k: jax.Array):
        key_k = jax.random.fold_in(base, k)
        L = batch.tokens.shape[1]
        u = jax.vmap(lambda i: jax.random.uniform(jax.random.fold_in(key_k, i), (L,)))(row_ids)
        rr = jnp.full((batch.tokens.shape[0],), r, jnp.float32)
        corr = corrupt(jax.random.PRNGKey(0), batch, rr, space, REFERENCE, u=u)
        logits = apply_fn(params, corr.inputs, batch.segment_ids)
        s = elbo_sums(logits, batch, corr, space)
        return s.sums, s.counts

    return eval_step


def describe_examples(examples: dict[str, np.ndarray]) -> dict[str, Any]:
    """The identity of an eval set: a hash of its token arrays and its rows per kind."""
    h = hashlib.sha256()
    for f in FIELDS:
        h.update(np.ascontiguousarray(examples[f]).tobytes())
    out: dict[str, Any] = {"eval_set": h.hexdigest()[:16]}
    if "kind" in examples:
        kinds = np.asarray(examples["kind"])
        out["eval_rows"] = {m: int((kinds == m).sum()) for m in MODS}
    return out


def evaluate(eval_step: Callable, params: Any, examples: dict[str, np.ndarray], num_t: int,
             batch_size: int, put: Callable[[np.ndarray], Any] = jnp.asarray
             ) -> dict[str, Any]:
    """Run the fixed-grid estimator over `examples`; returns the eval.jsonl fields."""
    n = examples["tokens"].shape[0]
    nodes, weights = gauss_legendre_grid(num_t, 0.0)
    sums = np.zeros((n, 3))
    counts = np.zeros((n, 3))
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        idx = np.arange(start, stop)
        if stop - start < batch_size:  # pad the last batch to a fixed shape (one compile)
            idx = np.concatenate([idx, np.full(batch_size - (stop - start), idx[-1])])
        batch = Batch(*(put(examples[f][idx]) for f in FIELDS))
        rows = put(idx.astype(np.int32))
        for k, (r, q) in enumerate(zip(nodes, weights)):
            s, c = eval_step(params, batch, rows, jnp.float32(r), jnp.int32(k))
            s, c = np.asarray(s)[: stop - start], np.asarray(c)[: stop - start]
            sums[start:stop] += q * s
            counts[start:stop] = c
    return {**summarize(sums, counts), "eval_scheme": EVAL_SCHEME, "eval_num_t": int(num_t),
            **describe_examples(examples)}


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
