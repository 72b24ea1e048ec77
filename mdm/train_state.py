"""The train state, created directly sharded on the mesh (DESIGN.md section 7).

    abstract = eval_shape(init)                 logical axis names from the boxed params
    shardings = logical_to_mesh_sharding(...)   params; optimizer moments mirror their params;
                                                scalars (step, Adam count) replicated
    state = jit(init, out_shardings=shardings)  no host-side copy of the full model
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from mdm.sharding import mesh_context, replicated


@flax.struct.dataclass
class TrainState:
    step: jax.Array          # int32 scalar: optimizer steps taken
    params: Any
    opt_state: Any
    ema_params: Any = None   # EMA of the weights when optimizer.ema_decay > 0, else None


def _model_inputs(batch_size: int, seq_len: int) -> tuple[jax.Array, jax.Array]:
    return (jnp.zeros((batch_size, seq_len), jnp.int32), jnp.ones((batch_size, seq_len), jnp.int32))


def abstract_params(model: nn.Module, seq_len: int) -> Any:
    """Boxed (LogicallyPartitioned) abstract parameter tree; nothing is allocated."""
    return jax.eval_shape(lambda r: model.init(r, *_model_inputs(1, seq_len))["params"],
                          jax.random.PRNGKey(0))


def param_shardings(model: nn.Module, mesh: Mesh, rules: Any, seq_len: int) -> tuple[Any, Any]:
    """(abstract unboxed parameters, their NamedShardings on `mesh`)."""
    boxed = abstract_params(model, seq_len)
    logical = nn.get_partition_spec(boxed)
    return nn.unbox(boxed), nn.logical_to_mesh_sharding(logical, mesh, rules)


def optimizer_shardings(opt_state: Any, params: Any, param_sh: Any, default: Any) -> Any:
    """Shardings for an optimizer state: a leaf whose key path ends with a parameter's path and
    has that parameter's shape (Adam moments, under per-group transforms too, where
    optax.multi_transform leaves MaskedNode holes) takes the parameter's sharding; every other
    leaf (step counts, scalars) takes `default`."""
    by_path = {}
    for (path, leaf), sh in zip(jax.tree_util.tree_flatten_with_path(params)[0],
                                jax.tree_util.tree_leaves(param_sh)):
        by_path[tuple(map(str, path))] = (tuple(leaf.shape), sh)

    def pick(path: Any, leaf: Any) -> Any:
        keys = tuple(map(str, path))
        for i in range(len(keys)):
            hit = by_path.get(keys[i:])
            if hit is not None and hit[0] == tuple(leaf.shape):
                return hit[1]
        return default

    return jax.tree_util.tree_map_with_path(pick, opt_state)


def state_shardings(model: nn.Module, tx: optax.GradientTransformation, mesh: Mesh,
                    rules: Any, seq_len: int, ema: bool) -> tuple[TrainState, TrainState]:
    """(abstract unboxed state, NamedSharding tree of the same structure)."""
    params, param_sh = param_shardings(model, mesh, rules, seq_len)
    opt_abs = jax.eval_shape(tx.init, params)
    rep = replicated(mesh)
    opt_sh = optimizer_shardings(opt_abs, params, param_sh, rep)
    abstract = TrainState(jax.ShapeDtypeStruct((), jnp.int32), params, opt_abs,
                          params if ema else None)
    shardings = TrainState(rep, param_sh, opt_sh, param_sh if ema else None)
    return abstract, shardings


def create_state(model: nn.Module, tx: optax.GradientTransformation, mesh: Mesh, rules: Any,
                 seq_len: int, rng: jax.Array, ema: bool = False,
                 shardings: TrainState | None = None) -> tuple[TrainState, TrainState]:
    """Initialise the state directly into its shardings; returns (state, shardings).
    `shardings`: state_shardings' second result when the caller has it already (it traces
    the model's init once more otherwise)."""
    if shardings is None:
        _, shardings = state_shardings(model, tx, mesh, rules, seq_len, ema)

    def init(r: jax.Array) -> TrainState:
        params = nn.unbox(model.init(r, *_model_inputs(1, seq_len))["params"])
        return TrainState(jnp.zeros((), jnp.int32), params, tx.init(params),
                          params if ema else None)

    with mesh_context(mesh, rules):
        state = jax.jit(init, out_shardings=shardings)(rng)
    return state, shardings
