"""Command line: sample from one trained checkpoint with one set of sampler settings and score the
outputs on the demo held-out split; the entry point of the sampling-defaults study
(experiments/sampling.py, ENTRYPOINT "mdm.eval_samples"; `python -m mdm.sample` is its old name).

    python -m mdm.eval_samples --config experiments/sampling.py:modality=image,steps=32,guidance=2 \
        --workdir runs/sampling/one --config.sampling.checkpoint=runs/demo/s0-t8e4-7a74b777 \
        [--config.sampling.num_samples=8] [--config.sampling.tasks=t2i+i2t]

What it does:
  1. loads the checkpoint run (`sampling.checkpoint`, a run directory; `sampling.step`, -1 =
     newest checkpoint) with mdm.generation.Generator;
  2. finds the demo data set the checkpoint was trained on through its token-shard manifest
     (manifest["tokenizers"][kind]["path"] is <demo root>/tokenizers/<kind>), which gives the
     held-out prompts, references and checkers;
  3. maps each modality section of `config.sampling` to a SamplerConfig
     (mdm.generation_tasks.validate) and runs the configured tasks (`sampling.tasks`,
     '+'-joined, mdm.generation_tasks.TASKS) on the first `sampling.num_samples` held-out items,
     `sampling.batch_size` rows per sampler call, scored by mdm.generation_eval:
         task   section   decisive metric (analysis.sampling_defaults)
         text   text      bigram_js (lower)
         t2i    image     attribute_accuracy (higher)
         i2t    image     cer (lower)
         t2s    audio     mcd_db (lower)
         s2t    audio     cer (lower)
     (`attribute_accuracy` = the mean of the image checker's digit, shape, colour, position and
     size accuracies that are present); outputs are saved with Generator.save under
     <workdir>/samples/<task>/;
  4. writes a run directory under the run contract (mdm.run_contract): config.json ({"config":
     the study config, "resolved": the checkpoint's resolved block (parameter counts, FLOPs per
     token, ...) plus the sampler settings used, "run_id", "sweep"}), metrics.jsonl and
     eval.jsonl (the checkpoint's last records at the sampled step, so the model's training
     state travels with the row), summary.json (status "done"; steps, tokens, flops, wall_s,
     final_eval of the checkpoint; "sampling": {<task>: {metric: value, seconds_per_sample,
     tokens_per_second}, "seconds_per_sample", "tokens_per_second", "compile_s", "wall_s"}),
     then DONE.

Timing: `seconds_per_sample` and `tokens_per_second` count only the compiled sampler calls
(generated tokens / seconds), not compilation (`compile_s`), decoding or scoring.

Exit codes: 0 done, 2 bad command line, config or unusable checkpoint (nothing written), 65
the checkpoint's token shards are corrupt (mdm.train's exit codes), 1 failure while sampling
(summary.json status "failed", no DONE). Exit 2 and 65 are one line on stderr, no traceback
(mdm.cli_flags). Rerunning a finished directory rewrites it.
"""
from __future__ import annotations

import datetime
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from absl import flags
from ml_collections import config_flags

from mdm import run_contract as rc
from mdm.cli_flags import EXIT_BAD_DATA, EXIT_BAD_INPUT, fail, run

IMAGE_ATTRIBUTES = ("digit", "shape", "colour", "position", "size")
ITEMS_FILE = "items.json"   # per-prompt scores next to the samples (samples/<task>/)


class SampleError(ValueError):
    """The checkpoint or the demo data cannot be used for sampling; the message says why."""


# --- the checkpoint and its demo data ----------------------------------------------------------------
def _checkpoint_steps(run_dir: str) -> list[int]:
    d = os.path.join(run_dir, rc.CHECKPOINT_DIR)
    if not os.path.isdir(d):
        return []
    return sorted(int(n) for n in os.listdir(d)
                  if n.isdigit() and os.path.isdir(os.path.join(d, n)))


def resolve_checkpoint(path: str, step: int = -1) -> tuple[str, dict[str, Any], int]:
    """(absolute run dir, its config.json, the checkpoint step); SampleError when unusable."""
    run_dir = os.path.abspath(path)
    if not os.path.isdir(run_dir):
        raise SampleError(f"checkpoint run {path!r} does not exist (config.sampling.checkpoint "
                          "must be a training run directory)")
    cfg_path = os.path.join(run_dir, rc.CONFIG_FILE)
    if not os.path.exists(cfg_path):
        raise SampleError(f"{run_dir} is not a run directory (no {rc.CONFIG_FILE})")
    with open(cfg_path) as f:
        run_config = json.load(f)
    data = run_config.get("config", {}).get("data", {})
    if data.get("source") != "shards":
        raise SampleError(
            f"{run_dir} was trained on {data.get('source', 'unknown')!r} data, which has no "
            "tokenizers to decode samples and no demo held-out split to score them; sample a run "
            "trained on the demo token shards (make demo, or data.source=shards)")
    steps = _checkpoint_steps(run_dir)
    if not steps:
        raise SampleError(f"{run_dir}: no checkpoint to sample from (empty or missing "
                          f"{rc.CHECKPOINT_DIR}/)")
    if step is None or step < 0:
        step = steps[-1]
    elif step not in steps:
        raise SampleError(f"{run_dir}: no checkpoint at step {step}; available: {steps}")
    return run_dir, run_config, int(step)


def find_demo(run_config: dict[str, Any]) -> Any:
    """The demo data set behind a shards-trained run (from its manifest's tokenizer paths)."""
    from mdm.data.shards import ShardError, load_manifest
    from mdm.demo_data.build import SUMMARY_FILE, DemoDataset
    shards = run_config["config"]["data"].get("path", "")
    try:
        manifest = load_manifest(shards)
    except ShardError as e:
        raise SampleError(f"the checkpoint's token shards are unusable: {e}") from None
    toks = manifest.get("tokenizers") or {}
    kinds = rc.MODALITIES
    if not all(k in toks and toks[k].get("path") for k in kinds):
        raise SampleError(f"{shards}: the manifest names no {'/'.join(kinds)} tokenizer paths "
                          f"(has {sorted(toks)}); the demo data set cannot be found")
    roots = {Path(toks[k]["path"]).absolute().parent.parent for k in kinds}
    if len(roots) != 1:
        raise SampleError(f"{shards}: the tokenizers come from different directories {sorted(map(str, roots))};"
                          " expected one demo data set (<root>/tokenizers/<kind>)")
    root = roots.pop()
    summary_path = root / SUMMARY_FILE
    if not summary_path.is_file():
        raise SampleError(f"{root}: not a built demo data set (no {SUMMARY_FILE}); the manifest's "
                          "tokenizers must live in <demo root>/tokenizers/<kind>")
    return DemoDataset(root, json.loads(summary_path.read_text()))


# --- the generator, timed and batched ----------------------------------------------------------------
def timed_generator(run_dir: str, step: int | None, batch_size: int):
    """A Generator (mdm.generation) of the run's checkpoint at `step` (None: the latest) whose
    sampler calls run in chunks of `batch_size` rows and are timed: `compile_s` (ahead of time,
    per shape and settings) apart from `sample_s`, with the `rows` and `tokens` generated."""
    return _timed_generator_class()(run_dir, step, batch_size)


def _timed_generator_class():
    import jax
    import jax.numpy as jnp
    import numpy as np

    from mdm.generation import Generator
    from mdm.samplers import Prompt, sample

    class TimedGenerator(Generator):
        """Generator whose sampler calls run in chunks of `batch_size` rows and are timed:
        compilation (ahead of time, per shape and settings) apart from execution."""

        def __init__(self, run_dir: str, step: int, batch_size: int) -> None:
            super().__init__(run_dir, step)
            self.batch_size = int(batch_size)
            self.reset_timers()

        def reset_timers(self) -> None:
            self.compile_s = 0.0
            self.sample_s = 0.0
            self.rows = 0
            self.tokens = 0

        def run(self, seqs, gen, target, cfg, seed: int = 0):
            n = seqs.tokens.shape[0]
            outs = []
            for i, lo in enumerate(range(0, n, self.batch_size)):
                sl = slice(lo, lo + self.batch_size)
                prompt = Prompt(jnp.asarray(seqs.tokens[sl]), jnp.asarray(seqs.segment_ids[sl]),
                                jnp.asarray(seqs.cond[sl]), jnp.asarray(target[sl], jnp.int32))
                g = jnp.asarray(gen[sl])
                key = jax.random.PRNGKey(seed)
                if i:
                    key = jax.random.fold_in(key, i)
                ck = (prompt.tokens.shape, cfg)
                if ck not in self._compiled:
                    t0 = time.perf_counter()
                    fn = jax.jit(lambda params, p, m, k, c=cfg: sample(
                        lambda x, s: self.model.apply({"params": params}, x, s), p, m,
                        self.space, c, k))
                    self._compiled[ck] = fn.lower(self.params, prompt, g, key).compile()
                    self.compile_s += time.perf_counter() - t0
                t0 = time.perf_counter()
                out = np.asarray(jax.block_until_ready(self._compiled[ck](self.params, prompt, g,
                                                                          key)))
                self.sample_s += time.perf_counter() - t0
                self.rows += out.shape[0]
                self.tokens += int(np.asarray(gen[sl]).sum())
                outs.append(out)
            return np.concatenate(outs)

    return TimedGenerator


# --- the run directory -------------------------------------------------------------------------------
def _records_at(path: str, step: int) -> dict[str, Any] | None:
    recs, _ = rc.read_jsonl(path)
    recs = [r for r in recs if r.get("step", 0) <= step]
    return recs[-1] if recs else None


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def task_metrics(task: str, score: Any) -> dict[str, float]:
    """An mdm.generation_eval TaskScore (or its flat metrics dict) -> the numbers kept in
    summary.json: each metric with its 95% interval as `<metric>_lo` / `<metric>_hi`, the
    number of prompts scored as `num_prompts`, and for t2i the mean attribute accuracy (the
    mean of the attribute accuracies present; its interval is the bootstrap over prompts)."""
    import numpy as np

    from mdm.gen_metrics import bootstrap_interval
    flat = score.flat() if hasattr(score, "flat") else score
    out = {k: float(v) for k, v in flat.items() if not k.startswith("num_")}
    items = getattr(score, "items", {})
    if items:
        out["num_prompts"] = float(max(len(v) for v in items.values()))
    if task == "t2i":
        attrs = [a for a in IMAGE_ATTRIBUTES if a in out]
        out["attribute_accuracy"] = (float(sum(out[a] for a in attrs) / len(attrs)) if attrs
                                     else float("nan"))
        if attrs and items:
            rows = list(zip(*(items[a] for a in attrs)))

            def stat(rs: list) -> float:     # mean over attributes of their accuracies
                a = np.asarray(rs, np.float64)
                n = np.isfinite(a).sum(axis=0)
                acc = np.nansum(a, axis=0)[n > 0] / n[n > 0]
                return float(acc.mean()) if len(acc) else float("nan")
            lo, hi = bootstrap_interval(rows, stat, n_boot=500)
            out["attribute_accuracy_lo"], out["attribute_accuracy_hi"] = lo, hi
    return out


def run_sampling(cfg: Any, workdir: str, progress: bool = False) -> dict[str, Any]:
    """Sample, score and write the run directory; returns the summary (see the module docstring).

    Raises ConfigError / SampleError before anything is written when the config or the
    checkpoint is unusable.
    """
    from mdm.generation_eval import score_task
    from mdm.generation_tasks import validate
    from mdm.run_logger import code_version

    samplers = validate(cfg)
    s = cfg.sampling
    ck_dir, ck_config, step = resolve_checkpoint(str(s.checkpoint), int(s.step))
    demo = find_demo(ck_config)
    ck_summary: dict[str, Any] = {}
    sp = os.path.join(ck_dir, rc.SUMMARY_FILE)
    if os.path.exists(sp):
        with open(sp) as f:
            ck_summary = json.load(f)
    last_metrics = _records_at(os.path.join(ck_dir, rc.METRICS_FILE), step)
    if last_metrics is None:
        raise SampleError(f"{ck_dir}: no {rc.METRICS_FILE} record at or before step {step}")
    last_eval = _records_at(os.path.join(ck_dir, rc.EVAL_FILE), step)

    t_start = time.perf_counter()
    gen = timed_generator(ck_dir, step, int(s.batch_size))
    for t in samplers:
        kind = rc.TASK_MODALITY[t]
        if kind in ("image", "audio") and not gen.media_len.get(kind):
            raise SampleError(f"{ck_dir}: its token shards have no held-out {kind} rows; task "
                              f"{t!r} needs them")

    workdir = os.path.abspath(workdir)
    os.makedirs(workdir, exist_ok=True)
    for name in (rc.DONE_FILE, rc.SUMMARY_FILE, rc.METRICS_FILE, rc.EVAL_FILE):
        if os.path.exists(os.path.join(workdir, name)):
            os.remove(os.path.join(workdir, name))
    shutil.rmtree(os.path.join(workdir, rc.SAMPLES_DIR), ignore_errors=True)
    run_id = cfg.get("run_id", "") or os.path.basename(workdir)
    sweep = cfg.get("sweep", "") or os.path.basename(os.path.dirname(workdir))
    ck_res = ck_config.get("resolved", {})
    resolved = {k: ck_res.get(k) for k in rc.RESOLVED_KEYS}
    resolved.update({k: v for k, v in ck_res.items() if k not in resolved})
    resolved.update({
        "checkpoint": {"run_dir": ck_dir, "run_id": ck_config.get("run_id", ""),
                       "sweep": ck_config.get("sweep", ""), "step": step},
        "model": ck_config["config"].get("model", {}),
        "demo_root": str(demo.root),
        "samplers": {t: dict(c.__dict__) for t, c in samplers.items()},
    })
    rc.write_json_atomic(os.path.join(workdir, rc.CONFIG_FILE), {
        "config": cfg.to_dict(), "resolved": resolved, "run_id": run_id, "sweep": sweep,
        "study": cfg.get("study", ""), "code_version": code_version(),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat()})
    rc.append_jsonl(os.path.join(workdir, rc.METRICS_FILE), last_metrics)
    if last_eval is not None:
        rc.append_jsonl(os.path.join(workdir, rc.EVAL_FILE), last_eval)

    base = {"run_id": run_id, "steps": step,
            "tokens": last_metrics.get("tokens"), "flops": last_metrics.get("flops"),
            "wall_s": last_metrics.get("wall_s"), "final_eval": _final_eval(ck_summary, last_eval, step),
            "params_total": ck_res.get("params_total"),
            "params_non_embedding": ck_res.get("params_non_embedding"),
            "flops_per_token": ck_res.get("flops_per_token"),
            "checkpoint": ck_dir, "checkpoint_step": step}
    try:
        sampling: dict[str, Any] = {}
        tot = {"s": 0.0, "rows": 0, "tokens": 0, "compile": 0.0}
        for t, scfg in samplers.items():
            gen.reset_timers()
            t0 = time.perf_counter()
            score = score_task(gen, demo, t, scfg, num=int(s.num_samples), seed=int(s.seed),
                               lengths=str(s.get("lengths", "oracle")),
                               offset=int(s.get("offset", 0)))
            outputs, prompts = score.outputs, score.prompts
            m = task_metrics(t, score)
            m["seconds_per_sample"] = gen.sample_s / max(gen.rows, 1)
            m["tokens_per_second"] = gen.tokens / gen.sample_s if gen.sample_s > 0 else float("nan")
            m["compile_s"] = gen.compile_s
            out_dir = os.path.join(workdir, rc.SAMPLES_DIR, t)
            gen.save(t, outputs, prompts or ["(unconditional)"] * len(outputs), scfg, int(s.seed),
                     m, out_dir=out_dir)
            rc.write_json_atomic(os.path.join(out_dir, ITEMS_FILE), score.items)
            sampling[t] = m
            for k, v in (("s", gen.sample_s), ("rows", gen.rows), ("tokens", gen.tokens),
                         ("compile", gen.compile_s)):
                tot[k] += v
            if progress:
                shown = {k: round(v, 4) for k, v in m.items() if _finite(v)}
                print(f"[mdm.eval_samples] {t}: {shown} ({time.perf_counter() - t0:.1f} s)", flush=True)
        sampling["seconds_per_sample"] = tot["s"] / max(tot["rows"], 1)
        sampling["tokens_per_second"] = tot["tokens"] / tot["s"] if tot["s"] > 0 else float("nan")
        sampling["compile_s"] = tot["compile"]
        sampling["wall_s"] = time.perf_counter() - t_start
    except Exception as e:
        rc.write_json_atomic(os.path.join(workdir, rc.SUMMARY_FILE),
                             {**base, "status": "failed", "error": f"{type(e).__name__}: {e}"})
        raise
    summary = {**base, "status": "done", "sampling": sampling}
    rc.write_json_atomic(os.path.join(workdir, rc.SUMMARY_FILE), summary)
    with open(os.path.join(workdir, rc.DONE_FILE), "w") as f:
        f.write("done\n")
    return summary


def _final_eval(ck_summary: dict[str, Any], last_eval: dict[str, Any] | None,
                step: int) -> dict[str, Any]:
    """The checkpoint's final eval per modality (its summary's when sampling its last step,
    else rebuilt from the eval record at or before the sampled step)."""
    if ck_summary.get("final_eval") and ck_summary.get("steps") == step:
        return ck_summary["final_eval"]
    if not last_eval:
        return {}
    out = {}
    for m in rc.MODALITIES:
        if f"nats_{m}" in last_eval:
            out[m] = {k: last_eval.get(f"{k}_{m}") for k in ("nats", "bits", "nats_se", "bits_se", "count")}
    return out


# --- command line -------------------------------------------------------------------------------------
_CONFIG = config_flags.DEFINE_config_file("config", None, "experiments/sampling.py[:arg]",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "output run directory (rewritten if it exists)")
_PROGRESS = flags.DEFINE_bool("progress", True, "print each task's metrics as it finishes")


def _main(argv: list[str]) -> None:
    del argv
    from absl import logging as absl_logging
    absl_logging.set_verbosity(absl_logging.WARNING)
    cfg = _CONFIG.value
    if cfg is None:
        fail("--config FILE[:ARG] is required (e.g. --config experiments/sampling.py:checkpoint=RUN)")
    if not _WORKDIR.value:
        fail("--workdir DIR is required (the output run directory)")
    from mdm.config_validation import ConfigError
    from mdm.data.shards import ShardError
    from mdm.startup import enable_compilation_cache
    enable_compilation_cache()        # compiled samplers are reused across processes
    try:
        summary = run_sampling(cfg, _WORKDIR.value, progress=_PROGRESS.value)
    except (ConfigError, SampleError) as e:
        fail(e, EXIT_BAD_INPUT)
    except ShardError as e:
        fail(e, EXIT_BAD_DATA)
    tasks = [k for k, v in summary["sampling"].items() if isinstance(v, dict)]
    print(f"done: {'+'.join(tasks)} from {summary['checkpoint']} (step {summary['steps']}) -> "
          f"{os.path.abspath(_WORKDIR.value)}")
    sys.exit(0)


def main() -> None:
    run(_main)


if __name__ == "__main__":
    main()
