"""Orbax checkpoints: asynchronous saves on a token cadence, a few permanent checkpoints at fixed
fractions of the budget, restore onto any mesh (the target shardings come from the new mesh).

A save is committed atomically by orbax (written to a temporary directory, then renamed), so a
run killed mid-save leaves the previous checkpoint intact and `latest_step` never returns a
partial one. A save that fails in the background (a full disk) is raised as CheckpointError by
`check()`, which the trainer calls every step, so it is reported when it happens; `cleanup_tmp`
removes the temporary directories a failed or killed save leaves.
"""
from __future__ import annotations

import os
import shutil
from typing import Any, Sequence

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as cm


class CheckpointError(RuntimeError):
    """A checkpoint save failed (the message says why; earlier checkpoints are intact)."""


TMP_MARKER = ".orbax-checkpoint-tmp"


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
        self.check()
        try:
            self.manager.save(step, args=ocp.args.StandardSave(state), force=True)
        except Exception as e:   # orbax raises plain exceptions (OSError, ValueError, ...)
            raise CheckpointError(f"saving the checkpoint at step {step} failed: "
                                  f"{type(e).__name__}: {e}") from None

    def check(self) -> None:
        """Raise CheckpointError if a background (asynchronous) save has failed."""
        try:
            self.manager.check_for_errors()
        except Exception as e:
            raise CheckpointError(f"a background checkpoint save failed: "
                                  f"{type(e).__name__}: {e}") from None

    def committed_steps(self) -> list[int]:
        """Steps whose save has committed (read from the directory, no manager needed)."""
        if not os.path.isdir(self.directory):
            return []
        return sorted(int(n) for n in os.listdir(self.directory) if n.isdigit())

    def cleanup_tmp(self) -> list[str]:
        """Remove temporary directories of failed or interrupted saves; returns their names."""
        removed = []
        if os.path.isdir(self.directory):
            for name in os.listdir(self.directory):
                if TMP_MARKER in name:
                    shutil.rmtree(os.path.join(self.directory, name), ignore_errors=True)
                    removed.append(name)
        return removed

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

    @staticmethod
    def restore_from(directory: str, step: int, abstract_state: Any, shardings: Any) -> Any:
        """Restore the train state another run saved at `step` (read-only: nothing in that
        directory is created, cleaned or deleted). CheckpointError names what is missing."""
        directory = os.path.abspath(directory)
        have = sorted(int(n) for n in os.listdir(directory) if n.isdigit()) \
            if os.path.isdir(directory) else []
        if step not in have:
            raise CheckpointError(f"{directory} has no committed checkpoint at step {step} "
                                  f"(committed: {have or 'none'})")
        mgr = ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(
            read_only=True, create=False))
        try:
            target = jax.tree_util.tree_map(
                lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract_state,
                shardings)
            return mgr.restore(step, args=ocp.args.StandardRestore(target))
        finally:
            mgr.close()

    def close(self) -> None:
        """Wait for the last save to commit (CheckpointError if it failed), then close."""
        try:
            self.manager.wait_until_finished()
            self.manager.check_for_errors()
        except Exception as e:
            raise CheckpointError(f"the last checkpoint save failed: {type(e).__name__}: {e}") \
                from None
        finally:
            try:
                self.manager.close()
            except Exception:
                pass
