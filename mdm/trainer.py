"""The trainer: config -> sharded state -> jitted steps -> run directory (DESIGN.md sections 6-9).

Read top to bottom: `build` (mdm.assemble) resolves everything a run needs from the config
(token space, model, data source, objective, optimizer with the SDE reparameterization);
`_train` sets the run up (mesh, jitted step, config.json, checkpoint restore or a fresh state),
runs the loop and writes the summary. The loop's pieces are in mdm.train_loop: MetricsLogger
(metrics.jsonl records, running totals, step-time and gradient-noise-scale windows), InFlight
(one step in flight), EvalHook, CheckpointHook, ProgressBar.

Cadences are in tokens (or fractions of the run) and turned into step sets once. The loop keeps
one step in flight: the metrics of step s are read after step s + 1 is dispatched, so metric
reads never stall the device; at eval / checkpoint / final steps and on preemption it drains
first. train.max_steps stops a run early (status "preempted", resumable); its cadences stay
those of the full run.

One owner per run: process 0 takes the run directory's claim (mdm.run_claim) before touching
it and refreshes its heartbeat every step; a second trainer of the same run stops at once with
RunClaimed (exit 4). Every (re)start first makes the logs match the state it starts from
(RunWriter.start_from: empty without a checkpoint, cut at the restored step otherwise, torn
lines dropped). A finished run (DONE and a "done" summary) is not trained again: train() returns
its summary and says so.

Start-up (mdm.startup.StartupClock) is timed in phases up to the first finished step (the
loop waits for that one step): imports (everything before train(): the interpreter, flags,
config, importing jax / flax / orbax / grain), build, setup (mesh, abstract state and the
jitted step, parameter counts, the CPU's measured peak, config.json, checkpoint manager), state
(init or restore), eval_setup, eval_at_start, first_batch, first_step (tracing, compiling or
loading from the persistent cache, running). One `startup:` log line; summary.json "startup_s"
and "startup" (with the compile seconds, programs and cache hits, from jax.monitoring).

WSD cooldown branches (train.cooldowns, mdm.cooldown): at each branch step the loop saves a
permanent checkpoint and trains the branch inline (CooldownHook: a nested `train` into the
branch's own run directory); a restarted run first trains the branches it still owes.

Exit statuses (summary.json "status", and the CLI's exit code): done (0), failed (1: a checkpoint
save or a log write failed, e.g. a full disk; summary.json names the error and the last good
checkpoint, temporary save directories are removed), nan (3: a non-finite loss or gradient;
nothing is saved after it, the previous checkpoint stays valid), preempted (75: SIGTERM; a
checkpoint is saved at the next step boundary and logs are flushed; rerunning the same command
resumes). Exit 4 (no summary written): another live process owns the run.
"""
from __future__ import annotations

import functools
import json
import logging
import math
import os
import signal
import time
from typing import Any

import jax
import ml_collections as mlc

from mdm import run_contract as rc
from mdm.assemble import Built, build, make_evaluator, setup_train_step
from mdm.checkpointing import CheckpointError, Checkpointer
from mdm.cooldown import Branch, branch_config, plan_branches
from mdm.config_validation import ConfigError
from mdm.data.shards import ShardError
from mdm.distributed import describe_layout
from mdm.flops import model_measures
from mdm.optim import SDE_RULES, resolve_duration
from mdm.run_claim import CLAIMED_EXIT, DEFAULT_STALE_S, RunClaim  # noqa: F401 (re-export)
from mdm.run_logger import RunWriter
from mdm.sharding import (data_parallel_size, mesh_context, mesh_from_config,
                          rules_from_config)
from mdm.startup import StartupClock
from mdm.throughput import peak_flops_total
from mdm.train_loop import (CheckpointHook, EvalHook, InFlight, MetricsLogger, ProgressBar,
                            put_batch, put_global)
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
          devices: list | None = None, clock: StartupClock | None = None) -> dict[str, Any]:
    """Train (or resume) the run in `workdir`; returns summary.json's content.

    `devices` restricts the mesh to a subset of jax.devices() (single-process only).
    A SIGTERM that arrives while the run is still starting (building, compiling) stops it at
    its first step boundary, like one that arrives later.
    `clock` times the start-up (mdm.startup.StartupClock; the CLI's starts at the process's
    start, so its first phase, "imports", is everything before this call); by default one
    starts now. Its phases go to the log as one line and to summary.json ("startup_s", the
    seconds to the first finished step, and "startup", the phases and compile counts).
    """
    finished = finished_summary(workdir)
    if finished is not None:
        log.warning("%s already finished (DONE, status done): nothing to do", workdir)
        return finished
    owner = (RunClaim(workdir, stale_s=float(os.environ.get("MDM_CLAIM_STALE_S", DEFAULT_STALE_S)))
             if jax.process_index() == 0 else _NoClaim())
    clock = clock if clock is not None else StartupClock(time.time())
    try:
        with _Preemption() as pre, owner as claim:
            return _train(cfg, workdir, pre, progress, devices, claim, clock)
    finally:
        clock.compiles.stop()               # stop counting compiles, whatever happened


def finished_summary(workdir: str) -> dict[str, Any] | None:
    """The summary of a finished run (DONE present and summary.json status "done"), else None."""
    if not os.path.exists(os.path.join(workdir, rc.DONE_FILE)):
        return None
    try:
        with open(os.path.join(workdir, rc.SUMMARY_FILE), encoding="utf-8") as f:
            summary = json.load(f)
    except (OSError, ValueError):
        return None
    return summary if summary.get("status") == "done" else None


class _NoClaim:
    """Processes other than 0 of a multi-host run share process 0's claim."""

    def __enter__(self) -> "_NoClaim":
        return self

    def __exit__(self, *exc: Any) -> None:
        pass

    def heartbeat(self, force: bool = False) -> None:
        pass


def _train(cfg: mlc.ConfigDict, workdir: str, pre: _Preemption, progress: bool | None,
           devices: list | None, claim: Any, clock: StartupClock) -> dict[str, Any]:
    """Setup, the loop, the summary (module docstring); `pre` says when to stop early;
    `clock` times the start-up up to the first finished step."""
    # Setup: the run, the mesh, the jitted step, the run directory, the state.
    clock.mark("imports")
    b = build(cfg)
    clock.mark("build")
    layout = _layout(devices)
    mesh, rules = mesh_from_config(cfg, devices), rules_from_config(cfg)
    dp = data_parallel_size(mesh)
    _check_rows_split(b, dp)
    st = setup_train_step(cfg, b, mesh, rules)
    measures = model_measures(b.model_cfg, cfg.data.seq_len, st.abstract.params)
    fpt = measures["flops_per_token"]
    peak, peak_source = peak_flops_total(devices or jax.devices(), b.model_cfg.dtype)
    run_id = cfg.run_id or _basename(workdir)
    writer = RunWriter(workdir, enabled=jax.process_index() == 0,
                       tensorboard=cfg.logging.tensorboard)
    writer.write_config(cfg.to_dict(), _resolved(cfg, b, mesh, layout, measures, peak, peak_source),
                        run_id, cfg.sweep or _basename(_parent(workdir)), cfg.get("study", ""))
    ckpt = _checkpointer(cfg, writer, b.total_steps, b.tokens_per_step)
    start = ckpt.latest_step() if ckpt else None
    cleaned = writer.start_from(start)          # the logs now match the state we start from
    writer.reserve()                            # room for summary.json even on a full disk
    if any(v for k, v in cleaned.items() if k.startswith("garbled")):
        log.warning("dropped torn or garbled log lines on restart: %s", cleaned)
    if ckpt is not None:
        ckpt.cleanup_tmp()                      # leftovers of a save that was killed
    clock.mark("setup")
    if start is not None:
        with mesh_context(mesh):
            state = ckpt.restore(start, st.abstract, st.shardings)
        log.info("resumed from the checkpoint at step %d", start)
    elif cfg.train.get("init_from"):       # a cooldown branch: the parent's state at init_step
        start = int(cfg.train.init_step)
        with mesh_context(mesh):
            state = Checkpointer.restore_from(
                os.path.join(cfg.train.init_from, rc.CHECKPOINT_DIR), start, st.abstract,
                st.shardings)
        log.info("started from %s at step %d", cfg.train.init_from, start)
    else:
        state, _ = create_state(b.model, st.tx, mesh, rules, cfg.data.seq_len,
                                jax.random.PRNGKey(cfg.seed), st.ema, st.shardings)
        start = 0
    clock.mark("state")

    # The pieces of the loop (mdm.train_loop): cadences in steps, eval, checkpoints, metrics.
    evaluate = make_evaluator(cfg, b, put=functools.partial(put_global, mesh), dp=dp,
                              out_shardings=st.replicated)
    T = b.total_steps
    eval_steps = cadence_steps(cfg.eval.every, cfg.train.total_tokens, b.tokens_per_step, T) | {T}
    ckpt_steps = cadence_steps(cfg.checkpoint.every, cfg.train.total_tokens, b.tokens_per_step,
                               T) | {T}
    branches = plan_branches(cfg, workdir, run_id, b.tokens_per_step)
    ckpt_steps |= {br.step for br in branches}
    evals = EvalHook(evaluate, eval_steps, mesh, rules, writer, st.ema, b, fpt)
    if start:   # a resumed run's final eval may predate the restart (killed before the summary)
        evals.last = _last_record(writer.path(rc.EVAL_FILE))
    saver = CheckpointHook(ckpt, ckpt_steps)
    if cfg.train.max_steps:  # stop early (resumable): the cadences stay those of the full run
        T = min(T, start + cfg.train.max_steps) if start < T else T
    logger = MetricsLogger(writer, b, fpt, peak, layout["num_devices"],
                           cfg.logging.every_steps, start)  # the wall clock starts here
    clock.mark("eval_setup")
    if start == 0 and cfg.eval.at_start:  # every process runs the (SPMD) eval; process 0 writes
        evals.run(0, state)
        clock.mark("eval_at_start")
    bar = ProgressBar(progress if progress is not None else cfg.logging.progress, T, start,
                      run_id)
    logger.start_window(bar)
    pending = InFlight(logger)
    cooldowns = CooldownHook(cfg, branches, workdir, run_id, ckpt, progress, devices)
    if not cooldowns.run_owed(start):          # branches a restarted run still owes
        pre.requested = True

    # The loop: one step in flight; drain (read the step at once) at eval, checkpoint and stop.
    status, failure, bad_data = "done", {}, None
    batches = b.source.iterate(start, T, b.rows_per_step, jax.process_index(), jax.process_count())
    startup = None
    try:
        for step in range(start, T):
            s = step + 1
            batch = next(batches)
            if startup is None:
                clock.mark("first_batch")
            state, metrics = st.step(state, put_batch(st.batch_sharding, batch))
            if startup is None:        # start-up ends when the first step has finished
                jax.block_until_ready(metrics)
                clock.mark("first_step")
                startup = clock.stop()
                log.info("%s", clock.line())
            if not pending.push(s, metrics):      # reads step s - 1 while step s runs
                status = "nan"
                break
            if evals.due(s) or saver.due(s) or s == T or pre.requested:
                if not pending.drain():
                    status = "nan"
                    break
                evals.run_if_due(s, state)
                preempted = pre.requested
                saver.save_if_due(s, state, stopping=preempted or s == T)
                if not preempted and cooldowns.due(s):
                    preempted = not cooldowns.run_at(s)     # a branch was preempted
                if preempted:
                    status = "preempted"
                    break
                logger.restart_window()           # eval / save time is not step time
            saver.check()                         # a failed background save stops the run now
            claim.heartbeat()
            bar.update()
        if status == "done" and not pending.drain():
            status = "nan"
        bar.close()
        saver.close()
    except (CheckpointError, OSError, ShardError) as e:   # a failed save or log write (a full
        bar.close()                                         # disk), a chunk that broke mid-run
        status = "failed"
        failure = {"error": f"{type(e).__name__}: {e}", **saver.abort()}
        log.error("run failed: %s; the last good checkpoint is step %s", failure["error"],
                  failure["last_checkpoint"])
        if isinstance(e, ShardError):
            bad_data = e
    if status == "done" and T < b.total_steps:
        status = "preempted"  # stopped early by train.max_steps: resumable, not finished

    summary = {**_summary(status, run_id, state, b, measures, logger, evals.last), **failure}
    if startup is None:         # no step ran (a run already at its last step)
        startup = clock.stop()
    summary.update(startup_s=startup["total_s"], startup=startup)
    try:
        writer.summary(summary)
        if status == "done":
            writer.done()
    except OSError as e:
        log.error("could not write summary.json (%s: %s); the run's status is %r",
                  type(e).__name__, e, status)
    if bad_data is not None:
        raise bad_data          # the CLI's one line and exit 65, after the summary is written
    return summary


class CooldownHook:
    """Trains the run's WSD cooldown branches (mdm.cooldown) at their steps, inline: each is a
    nested `train` of the branch's config into its own run directory, starting from this run's
    checkpoint at the branch step (committed first). `run_at` / `run_owed` return False when a
    branch was preempted (this run then stops too, resumable)."""

    def __init__(self, cfg: mlc.ConfigDict, branches: list[Branch], workdir: str, run_id: str,
                 ckpt: Checkpointer | None, progress: bool | None,
                 devices: list | None) -> None:
        if branches and ckpt is None:
            raise ConfigError("config.train.cooldowns: cooldown branches start from checkpoints; "
                              "set checkpoint.enabled=True")
        self.cfg, self.branches, self.workdir, self.run_id = cfg, branches, workdir, run_id
        self.sweep = cfg.sweep or _basename(_parent(workdir))
        self.ckpt, self.progress, self.devices = ckpt, progress, devices

    def due(self, s: int) -> bool:
        return any(br.step == s for br in self.branches)

    def run_owed(self, start: int) -> bool:
        """Branches at or before `start` (a restarted run) that have not finished."""
        return all(self._run(br) for br in self.branches if br.step <= start)

    def run_at(self, s: int) -> bool:
        return all(self._run(br) for br in self.branches if br.step == s)

    def _run(self, br: Branch) -> bool:
        if finished_summary(br.workdir) is not None:
            return True
        self.ckpt.wait()                          # the branch reads the checkpoint at br.step
        self.ckpt.check()
        log.info("cooldown branch %s: %.3g tokens from step %d", br.run_id, br.tokens, br.step)
        summary = train(branch_config(self.cfg, br, self.workdir, self.run_id, self.sweep),
                        br.workdir, progress=self.progress, devices=self.devices)
        if summary["status"] not in ("done", "preempted"):
            log.warning("cooldown branch %s ended with status %s (see its summary.json); this "
                        "run goes on", br.run_id, summary["status"])
        return summary["status"] != "preempted"


def _last_record(path: str) -> dict[str, Any]:
    records, _ = rc.read_jsonl(path)
    return records[-1] if records else {}


def _layout(devices: list | None) -> dict[str, Any]:
    """The process / device layout (logged, and recorded in config.json)."""
    layout = describe_layout()
    if devices is not None:
        layout["num_devices"] = len(devices)
    log.info("process %d/%d, %d devices (%d local), %s", layout["process_index"],
             layout["process_count"], layout["num_devices"], layout["local_devices"],
             layout["device_kind"])
    return layout


def _check_rows_split(b: Built, dp: int) -> None:
    """The rows of a step must split evenly over the data-parallel size and the processes."""
    if b.rows_per_step % math.lcm(dp, jax.process_count()):
        raise ConfigError(f"config.train.physical_batch: {b.rows_per_step} rows per step do not "
                          f"split over the data-parallel size {dp} (mesh data x fsdp) and "
                          f"{jax.process_count()} processes; make it a multiple of {dp}")


def _resolved(cfg: mlc.ConfigDict, b: Built, mesh: Any, layout: dict[str, Any],
              measures: dict[str, float], peak: float, peak_source: str) -> dict[str, Any]:
    """config.json's "resolved": the values the run derived from its config."""
    counts = {k: v for k, v in measures.items() if k.startswith("params_")}
    return {
        **counts, "flops_per_token": measures["flops_per_token"], "seq_len": cfg.data.seq_len,
        "physical_batch_seqs": cfg.train.physical_batch, "micro_batch_seqs":
            cfg.train.micro_batch or cfg.train.physical_batch, "num_micro_batches": b.num_micro,
        "logical_batch_seqs": b.logical_batch, "tokens_per_step": b.tokens_per_step,
        "data_tokens_per_step": b.data_tokens_per_step, "examples_per_step": b.rows_per_step,
        "token_convention": TOKEN_CONVENTION,
        "total_tokens": b.total_steps * b.tokens_per_step, "total_steps": b.total_steps,
        "total_data_tokens": b.total_steps * b.data_tokens_per_step,
        **b.opt, "sde_rules": ({k: cfg.sde[k] for k in SDE_RULES if k in cfg.sde}
                               if cfg.sde.enabled else {}), "token_space": b.space.to_dict(),
        "mesh": dict(mesh.shape),
        "num_devices": layout["num_devices"], "num_processes": layout["process_count"],
        "device_kind": layout["device_kind"], "peak_flops": peak, "peak_flops_source": peak_source,
        "data": b.source.describe(),
    }


def _checkpointer(cfg: mlc.ConfigDict, writer: RunWriter, total_steps: int,
                  tokens_per_step: int) -> Checkpointer | None:
    """The run's checkpoint manager (None when checkpointing is off), with its permanent steps
    at the configured fractions of the budget and at its cooldown branch steps."""
    c = cfg.checkpoint
    if not c.enabled:
        return None
    permanent = {max(1, round(f * total_steps)) for f in c.permanent}
    permanent |= {br.step for br in plan_branches(cfg, ".", "", tokens_per_step)}
    return Checkpointer(writer.path(rc.CHECKPOINT_DIR), c.keep, permanent, c.async_save)


def _summary(status: str, run_id: str, state: Any, b: Built, measures: dict[str, float],
             logger: MetricsLogger, last_eval: dict[str, Any]) -> dict[str, Any]:
    """summary.json: the status, the final step's counts (none after a NaN), the final eval."""
    fpt = measures["flops_per_token"]
    final_step = int(jax.device_get(state.step)) if status != "nan" else None
    return {
        "status": status, "run_id": run_id, "steps": final_step, "tokens":
            (final_step or 0) * b.data_tokens_per_step,
        "tokens_processed": (final_step or 0) * b.tokens_per_step,
        "flops": (final_step or 0) * b.tokens_per_step * fpt,
        "wall_s": logger.wall_s(), "tokens_per_modality": logger.mod_tokens,
        "final_eval": {m: {k: last_eval[f"{k}_{m}"] for k in ("nats", "bits", "nats_se",
                                                               "bits_se", "count")}
                       for m in MODS if f"nats_{m}" in last_eval},
        "params_total": measures["params_total"],
        "params_non_embedding": measures["params_non_embedding"], "flops_per_token": fpt,
    }


def _basename(path: str) -> str:
    return os.path.basename(os.path.normpath(os.path.abspath(path)))


def _parent(path: str) -> str:
    return os.path.dirname(os.path.normpath(os.path.abspath(path)))
