"""The named pieces of the trainer loop (mdm.trainer), in the manner of big_vision's train.py or
levanter's hooks: the loop dispatches steps and asks these pieces what to do at each step.

- `MetricsLogger`: reads one step's metrics and writes metrics.jsonl records; owns the running
  totals (per-modality tokens, wall clock), the step-time window and the gradient-noise-scale
  window sums.
- `InFlight`: one step in flight; the metrics of step s are read after step s + 1 is dispatched,
  so metric reads never stall the device; `drain` reads the step in flight at once.
- `EvalHook`: the eval ELBO at its cadence, written to eval.jsonl.
- `CheckpointHook`: the checkpoint cadence (plus the final step and preemption) and the saves.
- `ProgressBar`: the tqdm bar on process 0, or nothing.
- `put_batch`, `put_global`: host arrays -> global arrays on the mesh.

Gradient noise scale (logging.grad_noise_scale, needs >= 2 micro-batches): the train step
returns the unbiased components tr(S) and |G|^2 of every step (mdm.train_step). The logger
sums them over every step it reads and each metrics record holds their means over the steps
since the previous record: "gns_trace" and "gns_grad_sq" (window means), "gns_steps" (how many
steps: the weight of the record) and "gns_b_noise_tokens" = gns_trace / gns_grad_sq of those
means (only when the mean |G|^2 > 0). So no step is lost between logging steps, and
sum(gns_steps * gns_trace) / sum(gns_steps * gns_grad_sq) over records is the ratio of the
means over those steps (analysis.batch_size.gradient_noise_scale). A resumed run starts a new
window at the restored step.
"""
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Callable

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from mdm import run_contract as rc
from mdm.checkpointing import Checkpointer
from mdm.objective import Batch
from mdm.run_logger import RunWriter
from mdm.sharding import mesh_context

if TYPE_CHECKING:
    from mdm.assemble import Built

log = logging.getLogger("mdm")
MODS = rc.MODALITIES


def put_batch(sharding: NamedSharding, arrays: dict[str, np.ndarray]) -> Batch:
    """This process's rows of a training batch -> a Batch of global arrays over `sharding`."""
    return Batch(*(jax.make_array_from_process_local_data(sharding, arrays[f])
                   for f in ("tokens", "segment_ids", "cond")))


def put_global(mesh: jax.sharding.Mesh, x: Any) -> jax.Array:
    """A host array identical on every process -> a global array sharded over the batch."""
    x = np.asarray(x)
    sh = NamedSharding(mesh, PartitionSpec(("data", "fsdp"), *([None] * (x.ndim - 1))))
    return jax.make_array_from_callback(x.shape, sh, lambda idx: x[idx])


class ProgressBar:
    """The tqdm bar (shown on process 0 only) when `enabled`, else nothing: one tick per step,
    the loss and MFU of the latest metrics record as its postfix."""

    def __init__(self, enabled: bool, total: int, initial: int, desc: str) -> None:
        self._bar = None
        if enabled:
            from tqdm.auto import tqdm
            self._bar = tqdm(total=total, initial=initial, desc=desc, unit="step",
                             dynamic_ncols=True, disable=jax.process_index() != 0)

    def update(self) -> None:
        if self._bar is not None:
            self._bar.update(1)

    def show(self, record: dict[str, Any]) -> None:
        if self._bar is not None:
            self._bar.set_postfix(loss=f"{record['loss']:.3f}", mfu=f"{record['mfu']:.1%}")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


class MetricsLogger:
    """Reads step metrics and writes metrics.jsonl records (every `every_steps` steps, and
    whenever the loop drains).

    Owns the host-side running totals: distinct data tokens per modality (each step's counts
    divided by `b.copies`) and the wall clock, both continued from the last metrics record on
    resume (`start` > 0; read after RunWriter.truncate_after); the step-time window (steps and
    seconds since the previous record or `restart_window`); the gradient-noise-scale window
    sums (module docstring). The wall clock starts at construction, the step-time window at
    `start_window`.
    """

    def __init__(self, writer: RunWriter, b: "Built", flops_per_token: float, peak_flops: float,
                 num_devices: int, every_steps: int, start: int) -> None:
        self.writer, self.b, self.fpt, self.peak = writer, b, flops_per_token, peak_flops
        self.num_devices, self.every_steps = num_devices, every_steps
        prev, _ = rc.read_jsonl(writer.path(rc.METRICS_FILE)) if start else ([], 0)
        last = prev[-1] if prev else {}
        self.mod_tokens = {m: float(last.get(f"tokens_{m}", 0.0)) for m in MODS}
        self.wall0 = float(last.get("wall_s", 0.0))
        self.t_start = time.perf_counter()
        self.bar: ProgressBar | None = None
        self._t, self._steps = self.t_start, 0                        # the step-time window
        self._gns = {"gns_trace": 0.0, "gns_grad_sq": 0.0, "steps": 0}  # sums since the record

    def wall_s(self) -> float:
        """Seconds of this run so far, including those of the runs it resumes."""
        return self.wall0 + time.perf_counter() - self.t_start

    def start_window(self, bar: ProgressBar) -> None:
        """Start measuring step time now; records also go to `bar`."""
        self.bar = bar
        self.restart_window()

    def restart_window(self) -> None:
        """Start a new step-time window now (after an eval / save: that time is not step time)."""
        self._t, self._steps = time.perf_counter(), 0

    def read(self, s: int, metrics: Any, force_log: bool) -> bool:
        """Read step s's metrics (blocking on that step only), add them to the totals and write
        a record at the logging cadence or when `force_log`; returns False on a non-finite
        loss or gradient (nothing is logged for that step)."""
        m = jax.device_get(metrics)
        for mod in MODS:
            self.mod_tokens[mod] += float(m[f"count_{mod}"]) / self.b.copies  # distinct tokens
        self._steps += 1
        if bool(m["nonfinite"]):
            log.error("non-finite loss or gradient at step %d: stopping (status 'nan')", s)
            return False
        if "gns_trace" in m:
            for key in ("gns_trace", "gns_grad_sq"):
                self._gns[key] += float(m[key])
            self._gns["steps"] += 1
        if force_log or s % self.every_steps == 0:
            self._write(s, m)
        return True

    def _write(self, s: int, m: dict[str, Any]) -> None:
        """One metrics record of step s (host metrics `m`); closes the step-time window and the
        gradient-noise-scale window."""
        b, fpt = self.b, self.fpt
        now = time.perf_counter()
        dt = (now - self._t) / max(self._steps, 1)
        tps = b.tokens_per_step / dt  # processed tokens per second (the compute rate)
        rec = {"step": s, "tokens": s * b.data_tokens_per_step,
               "tokens_processed": s * b.tokens_per_step, "flops": s * b.tokens_per_step * fpt,
               "wall_s": self.wall0 + now - self.t_start, "lr": float(m["lr"]),
               "loss": float(m["loss"]), "grad_norm": float(m["grad_norm"]), "step_time_s": dt,
               "tokens_per_s": tps, "tokens_per_s_per_device": tps / self.num_devices,
               "model_flops_per_s": tps * fpt, "mfu": tps * fpt / self.peak}
        for mod in MODS:
            rec[f"loss_{mod}"] = float(m[f"loss_{mod}"])
            rec[f"tokens_{mod}"] = self.mod_tokens[mod]
        gns = self._gns
        if gns["steps"]:                   # window means (module docstring)
            n = gns["steps"]
            tr, g2 = gns["gns_trace"] / n, gns["gns_grad_sq"] / n
            rec.update(gns_trace=tr, gns_grad_sq=g2, gns_steps=n)
            if g2 > 0:
                rec["gns_b_noise_tokens"] = tr / g2
            gns.update(gns_trace=0.0, gns_grad_sq=0.0, steps=0)
        self.writer.metrics(rec)
        self._t, self._steps = now, 0
        if self.bar is not None:
            self.bar.show(rec)


class InFlight:
    """One step in flight: `push` hands step s's (device) metrics over and reads those of the
    step before it, which runs no longer once step s is dispatched; `drain` reads the step in
    flight now and logs it. Both return False when the step read was non-finite."""

    def __init__(self, logger: MetricsLogger) -> None:
        self.logger = logger
        self._pending: tuple[int, Any] | None = None

    def push(self, s: int, metrics: Any) -> bool:
        prev, self._pending = self._pending, None
        if prev is not None and not self.logger.read(*prev, force_log=False):
            return False
        self._pending = (s, metrics)
        return True

    def drain(self) -> bool:
        item, self._pending = self._pending, None
        return item is None or self.logger.read(*item, force_log=True)


class EvalHook:
    """The eval ELBO of the current parameters (the EMA ones when the run keeps them) at the
    steps of its cadence: every process runs the (SPMD) eval, process 0 writes eval.jsonl;
    `last` is the latest record (the summary's final_eval)."""

    def __init__(self, evaluate: Callable[[Any], dict[str, Any]], steps: set[int],
                 mesh: jax.sharding.Mesh, rules: Any, writer: RunWriter, use_ema: bool,
                 b: "Built", flops_per_token: float) -> None:
        self.evaluate, self.steps, self.mesh, self.rules = evaluate, steps, mesh, rules
        self.writer, self.use_ema, self.b, self.fpt = writer, use_ema, b, flops_per_token
        self.last: dict[str, Any] = {}

    def due(self, s: int) -> bool:
        return s in self.steps

    def run(self, s: int, state: Any) -> dict[str, Any]:
        """Evaluate the state after step s and write the eval.jsonl record."""
        params = state.ema_params if self.use_ema else state.params
        with mesh_context(self.mesh, self.rules):
            res = self.evaluate(params)
        rec = {"step": s, "tokens": float(s * self.b.data_tokens_per_step),
               "flops": s * self.b.tokens_per_step * self.fpt, **res}
        self.writer.eval(rec)
        self.last = rec
        return rec

    def run_if_due(self, s: int, state: Any) -> None:
        if self.due(s):
            self.run(s, state)


class CheckpointHook:
    """The checkpoint cadence: the loop drains at its steps (checkpointing on or off) and saves
    there, at the final step and on preemption, when checkpointing is on (`ckpt` not None)."""

    def __init__(self, ckpt: Checkpointer | None, steps: set[int]) -> None:
        self.ckpt, self.steps = ckpt, steps

    def due(self, s: int) -> bool:
        return s in self.steps

    def save_if_due(self, s: int, state: Any, stopping: bool) -> None:
        """Save the state after step s at the cadence or when the loop is `stopping` there."""
        if self.ckpt is not None and (self.due(s) or stopping):
            self.ckpt.save(s, state)

    def check(self) -> None:
        """Raise CheckpointError now if a background save has failed (called every step)."""
        if self.ckpt is not None:
            self.ckpt.check()

    def close(self) -> None:
        """Wait for the last (asynchronous) save to commit."""
        if self.ckpt is not None:
            self.ckpt.close()

    def abort(self) -> dict[str, Any]:
        """After a failure: close without raising, remove temporary save directories; returns
        {"last_checkpoint": the newest committed step or None, "removed_tmp": [...]}."""
        if self.ckpt is None:
            return {"last_checkpoint": None, "removed_tmp": []}
        try:
            self.ckpt.close()
        except Exception:
            pass
        steps = self.ckpt.committed_steps()
        last = steps[-1] if steps else None
        # a failed asynchronous save can leave a writer thread that is still creating files in
        # its temporary directory after close() has given up on it: remove temporary
        # directories until none has reappeared for half a second (at most ~10 s)
        removed: list[str] = []
        quiet_since = time.monotonic()
        deadline = quiet_since + 10.0
        while time.monotonic() < deadline:
            again = self.ckpt.cleanup_tmp()
            removed += [n for n in again if n not in removed]
            if again:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= 0.5:
                break
            time.sleep(0.1)
        return {"last_checkpoint": last, "removed_tmp": removed}
