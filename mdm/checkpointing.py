"""Orbax checkpoints: asynchronous saves on a token cadence, a few permanent checkpoints at fixed
fractions of the budget, restore onto any mesh (the target shardings come from the new mesh).

A save is committed atomically by orbax (written to a temporary directory, then renamed), so a
run killed mid-save leaves the previous checkpoint intact and `latest_step` never returns a
partial one.
"""
from __future__ import annotations

import os
from typing import Any, Sequence

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as cm


class Checkpointer:
    def __init__(self, directory: str, keep: int = 2, permanent_steps: Sequence[int] = (),
                 async_save: bool = True) -> None:
        policy = cm.AnyPreservationPolicy([cm.LatestN(max(1, keep)),
                                           cm.CustomSteps(sorted(set(int(s) for s in permanent_steps)))])
        options = ocp.CheckpointManagerOptions(enable_async_checkpointing=async_save,
                                               preservation_policy=policy, create=True)
        self.directory = os.path.abspath(directory)
        self.manager = ocp.CheckpointManager(self.directory, options=options)

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self.manager.all_steps())

    def save(self, step: int, state: Any) -> None:
        self.manager.save(step, args=ocp.args.StandardSave(state), force=True)

    def restore(self, step: int, abstract_state: Any, shardings: Any) -> Any:
        """Restore `step` directly into `shardings` (which may describe a different mesh)."""
        target = jax.tree_util.tree_map(
            lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract_state,
            shardings)
        return self.manager.restore(step, args=ocp.args.StandardRestore(target))

    def restore_params(self, step: int, abstract_params: Any, shardings: Any,
                       item: str = "params") -> Any:
        """Restore one parameter tree of the saved TrainState ("params" or "ema_params") and
        nothing else (no optimizer state is read or built): what sampling needs."""
        target = {item: jax.tree_util.tree_map(
            lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract_params,
            shardings)}
        restored = self.manager.restore(step, args=ocp.args.PyTreeRestore(
            item=target, restore_args=ocp.checkpoint_utils.construct_restore_args(target),
            partial_restore=True))
        return restored[item]

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()
