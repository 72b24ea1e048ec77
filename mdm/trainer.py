"""The trainer: config -> sharded state -> jitted steps -> run directory (DESIGN.md sections 6-9).

Read top to bottom: `build` resolves everything a run needs from the config (token space,
model, data source, objective, optimizer with the SDE reparameterization), `train` runs the loop.

Cadences are in tokens (or fractions of the run) and turned into step sets once. The loop keeps
one step in flight: the metrics of step s are read after step s + 1 is dispatched, so metric
reads never stall the device; at eval / checkpoint / final steps it drains first.

Gradient noise scale (logging.grad_noise_scale, needs >= 2 micro-batches): the train step
returns the unbiased components tr(S) and |G|^2 of every step (mdm.train_step). The trainer
sums them over every step it handles and each metrics record holds their means over the steps
since the previous record: "gns_trace" and "gns_grad_sq" (window means), "gns_steps" (how many
steps: the weight of the record) and "gns_b_noise_tokens" = gns_trace / gns_grad_sq of those
means (only when the mean |G|^2 > 0). So no step is lost between logging steps, and
sum(gns_steps * gns_trace) / sum(gns_steps * gns_grad_sq) over records is the ratio of the
means over those steps (analysis.batch_size.gradient_noise_scale). A resumed run starts a new
window at the restored step.

Exit statuses (summary.json "status", and the CLI's exit code): done (0), nan (3: a non-finite
loss or gradient; nothing is saved after it, the previous checkpoint stays valid), preempted
(75: SIGTERM; a checkpoint is saved at the next step boundary and logs are flushed; rerunning
the same command resumes).
"""
from __future__ import annotations

import logging
import math
import os
import signal
import time
from typing import Any

import jax
import ml_collections as mlc
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from mdm import run_contract as rc
from mdm.assemble import build, make_evaluator, setup_train_step
from mdm.checkpointing import Checkpointer
from mdm.config_validation import ConfigError
from mdm.distributed import describe_layout
from mdm.flops import model_measures
from mdm.objective import Batch
from mdm.optim import SDE_RULES, resolve_duration
from mdm.run_logger import RunWriter
from mdm.sharding import (data_parallel_size, mesh_context, mesh_from_config,
                          rules_from_config)
from mdm.throughput import peak_flops_total
from mdm.train_state import create_state

log = logging.getLogger("mdm")
# How tokens and FLOPs are counted (also in config.json and analysis/loading.py).
TOKEN_CONVENTION = ("tokens = distinct data tokens seen (with complementary pairs each row is "
                    "processed with both masks and counted once); tokens_processed and flops = "
                    "tokens through the model and the compute spent (both copies); "
                    "train.total_tokens and physical_batch count processed tokens / sequences")
MODS = rc.MODALITIES
EXIT_CODES = {"done": 0, "failed": 1, "nan": 3, "preempted": 75}


def cadence_steps(value: float, total_tokens: float, tokens_per_step: int,
                  total_steps: int) -> set[int]:
    """Steps at which a cadence given in tokens or fractions (<= 1) falls; 0 = none."""
    if value <= 0:
        return set()
    every = max(1, round(resolve_duration(value, total_tokens) / tokens_per_step))
    return set(range(every, total_steps + 1, every))


class _Preemption:
    """SIGTERM or Ctrl-C (SIGINT) sets a flag; the loop saves at the next step boundary and the
    run exits with status "preempted". A second Ctrl-C interrupts at once."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.requested = False
        self._old: dict[int, Any] = {}

    def __enter__(self) -> "_Preemption":
        try:
            for sig in self.SIGNALS:
                self._old[sig] = signal.signal(sig, self._handler)
        except ValueError:  # not the main thread: no signal handling
            self._old = {}
        return self

    def _handler(self, signum, frame) -> None:
        if signum == signal.SIGINT and self.requested:
            raise KeyboardInterrupt
        self.requested = True
        log.warning("%s received: saving a checkpoint at the next step boundary",
                    signal.Signals(signum).name)

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def train(cfg: mlc.ConfigDict, workdir: str, progress: bool | None = None,
          devices: list | None = None) -> dict[str, Any]:
    """Train (or resume) the run in `workdir`; returns summary.json's content.

    `devices` restricts the mesh to a subset of jax.devices() (single-process only).
    A SIGTERM that arrives while the run is still starting (building, compiling) stops it at
    its first step boundary, like one that arrives later.
    """
    with _Preemption() as pre:
        return _train(cfg, workdir, pre, progress, devices)


def _train(cfg: mlc.ConfigDict, workdir: str, pre: "_Preemption", progress: bool | None,
           devices: list | None) -> dict[str, Any]:
    b = build(cfg)
    layout = describe_layout()
    if devices is not None:
        layout["num_devices"] = len(devices)
    log.info("process %d/%d, %d devices (%d local), %s", layout["process_index"],
             layout["process_count"], layout["num_devices"], layout["local_devices"],
             layout["device_kind"])
    mesh = mesh_from_config(cfg, devices)
    rules = rules_from_config(cfg)
    dp = data_parallel_size(mesh)
    if b.rows_per_step % math.lcm(dp, jax.process_count()):
        raise ConfigError(f"config.train.physical_batch: {b.rows_per_step} rows per step do not "
                          f"split over the data-parallel size {dp} (mesh data x fsdp) and "
                          f"{jax.process_count()} processes; make it a multiple of {dp}")
    st = setup_train_step(cfg, b, mesh, rules)
    ema = st.ema
    measures = model_measures(b.model_cfg, cfg.data.seq_len)
    counts = {k: v for k, v in measures.items() if k.startswith("params_")}
    fpt = measures["flops_per_token"]
    mc = b.model_cfg
    peak, peak_source = peak_flops_total(devices or jax.devices(), mc.dtype)
    run_id = cfg.run_id or _basename(workdir)
    sweep = cfg.sweep or _basename(_parent(workdir))
    resolved = {
        **counts, "flops_per_token": fpt, "seq_len": cfg.data.seq_len,
        "physical_batch_seqs": cfg.train.physical_batch, "micro_batch_seqs":
            cfg.train.micro_batch or cfg.train.physical_batch, "num_micro_batches": b.num_micro,
        "logical_batch_seqs": b.logical_batch, "tokens_per_step": b.tokens_per_step,
        "data_tokens_per_step": b.data_tokens_per_step, "examples_per_step": b.rows_per_step,
        "token_convention": TOKEN_CONVENTION,
        "total_tokens": b.total_steps * b.tokens_per_step, "total_steps": b.total_steps,
        "total_data_tokens": b.total_steps * b.data_tokens_per_step,
        **b.opt, "sde_rules": ({k: cfg.sde[k] for k in SDE_RULES if k in cfg.sde}
                               if cfg.sde.enabled else {}), "token_space": b.space.to_dict(), "mesh": dict(mesh.shape),
        "num_devices": layout["num_devices"], "num_processes": layout["process_count"],
        "device_kind": layout["device_kind"], "peak_flops": peak, "peak_flops_source": peak_source,
        "data": b.source.describe(),
    }
    writer = RunWriter(workdir, enabled=jax.process_index() == 0,
                       tensorboard=cfg.logging.tensorboard)
    writer.write_config(cfg.to_dict(), resolved, run_id, sweep)

    ckpt_cfg = cfg.checkpoint
    ckpt = None
    if ckpt_cfg.enabled:
        permanent = {max(1, round(f * b.total_steps)) for f in ckpt_cfg.permanent}
        ckpt = Checkpointer(writer.path(rc.CHECKPOINT_DIR), ckpt_cfg.keep, permanent,
                            ckpt_cfg.async_save)
    start = ckpt.latest_step() if ckpt else None
    if start is not None:
        with mesh_context(mesh):
            state = ckpt.restore(start, st.abstract, st.shardings)
        writer.truncate_after(start)
        log.info("resumed from the checkpoint at step %d", start)
    else:
        state, _ = create_state(b.model, st.tx, mesh, rules, cfg.data.seq_len,
                                jax.random.PRNGKey(cfg.seed), ema)
        start = 0
    jit_step, bsh, rep = st.step, st.batch_sharding, st.replicated

    def put_batch(arrays: dict[str, np.ndarray]) -> Batch:
        return Batch(*(jax.make_array_from_process_local_data(bsh, arrays[f])
                       for f in ("tokens", "segment_ids", "cond")))

    def put_global(x: Any) -> jax.Array:
        """A host array identical on every process -> a global array sharded over the batch."""
        x = np.asarray(x)
        sh = NamedSharding(mesh, PartitionSpec(("data", "fsdp"), *([None] * (x.ndim - 1))))
        return jax.make_array_from_callback(x.shape, sh, lambda idx: x[idx])

    evaluator = make_evaluator(cfg, b, put=put_global, dp=dp, out_shardings=rep)

    def run_eval(step: int, tokens: float, flops: float) -> dict[str, Any]:
        params = state.ema_params if ema else state.params
        with mesh_context(mesh, rules):
            res = evaluator(params)
        rec = {"step": step, "tokens": tokens, "flops": flops, **res}
        writer.eval(rec)
        return rec

    T = b.total_steps
    eval_steps = cadence_steps(cfg.eval.every, cfg.train.total_tokens, b.tokens_per_step, T) | {T}
    ckpt_steps = cadence_steps(ckpt_cfg.every, cfg.train.total_tokens, b.tokens_per_step, T) | {T}
    if cfg.train.max_steps:
        T = min(T, start + cfg.train.max_steps) if start < T else T

    # Host-side running totals (restored from the log on resume).
    prev, _ = rc.read_jsonl(writer.path(rc.METRICS_FILE)) if start else ([], 0)
    last = prev[-1] if prev else {}
    mod_tokens = {m: float(last.get(f"tokens_{m}", 0.0)) for m in MODS}
    wall0 = float(last.get("wall_s", 0.0))
    t_start = time.perf_counter()
    last_eval: dict[str, Any] = {}
    status = "done"

    if start == 0 and cfg.eval.at_start:  # every process runs the (SPMD) eval; process 0 writes
        last_eval = run_eval(0, 0.0, 0.0)

    bar = None
    if progress if progress is not None else cfg.logging.progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=T, initial=start, desc=run_id, unit="step", dynamic_ncols=True,
                   disable=jax.process_index() != 0)

    window = {"t": time.perf_counter(), "steps": 0}
    gns = {"gns_trace": 0.0, "gns_grad_sq": 0.0, "steps": 0}   # sums since the last record
    pending: tuple[int, Any] | None = None

    def handle(item: tuple[int, Any], force_log: bool) -> bool:
        """Read one step's metrics (blocking on that step only); returns False on NaN."""
        s, m = item
        m = jax.device_get(m)
        for mod in MODS:
            mod_tokens[mod] += float(m[f"count_{mod}"]) / b.copies  # distinct data tokens
        window["steps"] += 1
        if bool(m["nonfinite"]):
            log.error("non-finite loss or gradient at step %d: stopping (status 'nan')", s)
            return False
        if "gns_trace" in m:
            for key in ("gns_trace", "gns_grad_sq"):
                gns[key] += float(m[key])
            gns["steps"] += 1
        if force_log or s % cfg.logging.every_steps == 0:
            now = time.perf_counter()
            dt = (now - window["t"]) / max(window["steps"], 1)
            tps = b.tokens_per_step / dt  # processed tokens per second (the compute rate)
            rec = {"step": s, "tokens": s * b.data_tokens_per_step,
                   "tokens_processed": s * b.tokens_per_step, "flops": s * b.tokens_per_step * fpt,
                   "wall_s": wall0 + now - t_start, "lr": float(m["lr"]), "loss": float(m["loss"]),
                   "grad_norm": float(m["grad_norm"]), "step_time_s": dt, "tokens_per_s": tps,
                   "tokens_per_s_per_device": tps / layout["num_devices"],
                   "model_flops_per_s": tps * fpt, "mfu": tps * fpt / peak}
            for mod in MODS:
                rec[f"loss_{mod}"] = float(m[f"loss_{mod}"])
                rec[f"tokens_{mod}"] = mod_tokens[mod]
            if gns["steps"]:                   # window means (module docstring)
                n = gns["steps"]
                tr, g2 = gns["gns_trace"] / n, gns["gns_grad_sq"] / n
                rec.update(gns_trace=tr, gns_grad_sq=g2, gns_steps=n)
                if g2 > 0:
                    rec["gns_b_noise_tokens"] = tr / g2
                gns.update(gns_trace=0.0, gns_grad_sq=0.0, steps=0)
            writer.metrics(rec)
            window.update(t=now, steps=0)
            if bar is not None:
                bar.set_postfix(loss=f"{rec['loss']:.3f}", mfu=f"{rec['mfu']:.1%}")
        return True

    batches = b.source.iterate(start, T, b.rows_per_step, jax.process_index(), jax.process_count())
    for step in range(start, T):
        local = next(batches)
        state, metrics = jit_step(state, put_batch(local))
        if pending is not None and not handle(pending, False):
            status = "nan"
            pending = None
            break
        pending = (step + 1, metrics)
        s = step + 1
        drain = s in eval_steps or s in ckpt_steps or s == T or pre.requested
        if drain:
            ok = handle(pending, True)
            pending = None
            if not ok:
                status = "nan"
                break
            if s in eval_steps:
                last_eval = run_eval(s, float(s * b.data_tokens_per_step),
                                     s * b.tokens_per_step * fpt)
            if ckpt is not None and (s in ckpt_steps or pre.requested or s == T):
                ckpt.save(s, state)
            if pre.requested:
                status = "preempted"
                break
            window.update(t=time.perf_counter(), steps=0)  # eval / save time is not step time
        if bar is not None:
            bar.update(1)
    if pending is not None and status == "done" and not handle(pending, True):
        status = "nan"
    if bar is not None:
        bar.close()
    if ckpt is not None:
        ckpt.close()
    if status == "done" and T < b.total_steps:
        status = "preempted"  # stopped early by train.max_steps: resumable, not finished
    final_step = int(jax.device_get(state.step)) if status != "nan" else None
    summary = {
        "status": status, "run_id": run_id, "steps": final_step, "tokens":
            (final_step or 0) * b.data_tokens_per_step,
        "tokens_processed": (final_step or 0) * b.tokens_per_step,
        "flops": (final_step or 0) * b.tokens_per_step * fpt,
        "wall_s": wall0 + time.perf_counter() - t_start, "tokens_per_modality": mod_tokens,
        "final_eval": {m: {k: last_eval[f"{k}_{m}"] for k in ("nats", "bits", "nats_se",
                                                               "bits_se", "count")}
                       for m in MODS if f"nats_{m}" in last_eval},
        "params_total": counts["params_total"],
        "params_non_embedding": counts["params_non_embedding"], "flops_per_token": fpt,
    }
    writer.summary(summary)
    if status == "done":
        writer.done()
    return summary


def _basename(path: str) -> str:
    return os.path.basename(os.path.normpath(os.path.abspath(path)))


def _parent(path: str) -> str:
    return os.path.dirname(os.path.normpath(os.path.abspath(path)))
