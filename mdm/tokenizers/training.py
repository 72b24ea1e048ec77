"""A small, deterministic training loop for the learned (autoencoder) tokenizers.

AdamW (optax) with linear warmup and cosine decay, global-norm clipping, one jitted step on the
default device, batches drawn by a caller-supplied sampler from a seeded numpy Generator, and a
tqdm bar. Training is a pure function of (init params, data, seed, settings): two calls with the
same arguments give bit-identical parameters on the same machine.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

Params = Any
LossFn = Callable[[Params, jax.Array], tuple[jax.Array, dict[str, jax.Array]]]


@dataclasses.dataclass(frozen=True)
class TrainSettings:
    """Optimisation settings of a tokenizer's training run."""

    steps: int = 1000
    batch_size: int = 64
    learning_rate: float = 2e-3
    warmup_steps: int = 50
    weight_decay: float = 1e-4
    clip_norm: float = 1.0
    log_every: int = 25
    seed: int = 0


@dataclasses.dataclass
class TrainResult:
    params: Params
    history: list[dict[str, float]]  # one row per log_every steps: step, loss, aux metrics
    seconds: float


def make_optimizer(s: TrainSettings) -> optax.GradientTransformation:
    """AdamW; lr: linear warmup to the peak, cosine decay to 5% of it at the last step."""
    warmup = min(s.warmup_steps, max(s.steps - 1, 0))    # short runs: at least one decay step
    schedule = optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=s.learning_rate, warmup_steps=warmup,
        decay_steps=max(s.steps, warmup + 1), end_value=s.learning_rate * 0.05)
    return optax.chain(optax.clip_by_global_norm(s.clip_norm),
                       optax.adamw(schedule, b1=0.9, b2=0.99, weight_decay=s.weight_decay))


def fit(loss_fn: LossFn, params: Params, sample_batch: Callable[[np.random.Generator, int],
        np.ndarray], settings: TrainSettings, *, desc: str = "train",
        progress: bool = True) -> TrainResult:
    """Minimise `loss_fn(params, batch) -> (loss, aux)` for `settings.steps` steps.

    sample_batch(rng, batch_size) returns one numpy batch; it is called once per step with the
    same Generator (seeded by settings.seed), so the data order is reproducible.
    """
    opt = make_optimizer(settings)
    opt_state = opt.init(params)

    def step(params, opt_state, batch):
        (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch)
        updates, opt_state = opt.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        aux = dict(aux, loss=loss, grad_norm=optax.global_norm(grads))
        return params, opt_state, aux

    step = jax.jit(step, donate_argnums=(0, 1))
    rng = np.random.default_rng(settings.seed)
    history: list[dict[str, float]] = []
    t0 = time.perf_counter()
    bar = tqdm(range(settings.steps), desc=desc, disable=not progress, leave=False,
               mininterval=1.0)
    for i in bar:
        batch = jnp.asarray(sample_batch(rng, settings.batch_size))
        params, opt_state, aux = step(params, opt_state, batch)
        if (i + 1) % settings.log_every == 0 or i + 1 == settings.steps:
            row = {"step": i + 1, **{k: float(v) for k, v in aux.items()}}
            if not np.isfinite(row["loss"]):
                raise FloatingPointError(f"{desc}: loss became {row['loss']} at step {i + 1}; "
                                         f"lower the learning rate")
            history.append(row)
            bar.set_postfix(loss=f"{row['loss']:.4f}")
    params = jax.block_until_ready(params)
    return TrainResult(params=params, history=history, seconds=time.perf_counter() - t0)
