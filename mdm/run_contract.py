"""The run-directory contract between training and analysis (DESIGN.md section 9).

Pure Python (no JAX): the trainer writes these files, `analysis/` reads them.

    <runs root>/<sweep name>/<run id>/
      config.json    {"config": <the resolved ml_collections config as a dict>,
                      "resolved": {params_total, params_non_embedding, params_embedding,
                                   flops_per_token, seq_len, physical_batch_seqs,
                                   micro_batch_seqs, num_micro_batches, logical_batch_seqs,
                                   tokens_per_step, total_tokens, total_steps, lr, beta1, beta2,
                                   eps, kappa, token_space: {...offsets...}, mesh: {...},
                                   num_devices, num_processes, device_kind},
                      "run_id", "sweep", "study", "code_version", "created"}
                     "study": the study the run belongs to (one of STUDIES, set by its
                     experiment file as config.study; "" for none). Analysis groups runs by
                     it; runs written before it was recorded are matched by sweep name.
      metrics.jsonl  one object per logged step; keys METRICS_KEYS, plus loss_<modality> and
                     tokens_<modality> for each modality in MODALITIES
      eval.jsonl     one object per evaluation; keys EVAL_KEYS plus, per modality m,
                     nats_<m>, bits_<m>, nats_se_<m>, bits_se_<m>, count_<m>
      summary.json   {status, steps, tokens, flops, wall_s, final_eval: {m: {nats, bits,
                      nats_se, bits_se, count}}, startup_s (process start -> first finished
                      step, this start), startup: {total_s, phases_s: {phase: s},
                      compile: {seconds, backend_s, programs, cache_hits, cache_dir}}, ...}
      DONE           present only when the run finished (status "done")
      OWNER          {host, pid, started, heartbeat, released}: who trains the run now
                     (mdm.run_claim; flock-held while it trains)
      checkpoints/   orbax
      samples/       generated outputs

Every line of a .jsonl file is appended and flushed; a torn last line (a run killed mid-write)
is skipped by `read_jsonl`, which reports it.
"""
from __future__ import annotations

import json
import os
import warnings
from typing import Any, Iterable

MODALITIES: tuple[str, ...] = ("text", "image", "audio")   # the one home of the names
# Generation tasks (summary.json "sampling" keys, sampler defaults, the sampling study): plain
# text plus the token space's task tokens T2I, I2T (captioning), T2S, S2T (ASR), lower-cased.
GENERATION_TASKS: tuple[str, ...] = ("text", "t2i", "i2t", "t2s", "s2t")
TASK_MODALITY: dict[str, str] = {"text": "text", "t2i": "image", "i2t": "image",
                                 "t2s": "audio", "s2t": "audio"}   # the media each task uses

# The studies a run can belong to: config.study (each experiment file sets its own, e.g.
# experiments/scaling.py STUDY = "scaling"), written to config.json's top-level "study". The one
# home of the names: mdm.config_validation refuses any other, analysis/report.py says which
# analyses read which study. "isoflop" is the scaling study's IsoFLOP design (its `isoflop`
# sweep marks its points so); "heldout" = a run trained to check a fitted law's prediction
# (launch/demo.py), which no fit reads; "" = no study (a run by hand from experiments/base.py).
STUDIES: tuple[str, ...] = ("scaling", "isoflop", "batch_size", "mixing", "noise_schedule",
                            "sampling", "ladder", "heldout", "showcase", "antimasking")

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
EVAL_FILE = "eval.jsonl"
SUMMARY_FILE = "summary.json"
DONE_FILE = "DONE"
OWNER_FILE = "OWNER"          # the trainer's exclusive claim on the run (mdm.run_claim)
CHECKPOINT_DIR = "checkpoints"
SAMPLES_DIR = "samples"

# Keys every metrics.jsonl record carries (plus loss_<m>, tokens_<m> per modality).
METRICS_KEYS: tuple[str, ...] = (
    "step", "tokens", "flops", "wall_s", "lr", "loss", "grad_norm", "step_time_s",
    "tokens_per_s", "tokens_per_s_per_device", "model_flops_per_s", "mfu",
)
# Keys every eval.jsonl record carries (plus nats_<m>, bits_<m>, nats_se_<m>, bits_se_<m>,
# count_<m> per modality). `nats`/`bits` are averaged over all real content tokens.
EVAL_KEYS: tuple[str, ...] = ("step", "tokens", "flops", "nats", "bits")
# Required keys of summary.json.
SUMMARY_KEYS: tuple[str, ...] = ("status", "steps", "tokens", "flops", "wall_s", "final_eval")
# Run statuses written to summary.json.
STATUSES: tuple[str, ...] = ("done", "preempted", "nan", "failed", "running")
RESOLVED_KEYS: tuple[str, ...] = (
    "params_total", "params_non_embedding", "flops_per_token", "seq_len",
    "physical_batch_seqs", "logical_batch_seqs", "tokens_per_step", "total_tokens",
    "lr", "beta1", "beta2", "eps", "kappa", "token_space",
)


class ContractError(ValueError):
    """A run directory does not follow the contract; the message names the file and field."""


def append_jsonl(path: str, record: dict[str, Any]) -> None:
    """Append one JSON object as a line and flush it to disk (safe against a later kill)."""
    line = json.dumps(record, sort_keys=True, allow_nan=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


def write_json_atomic(path: str, obj: Any) -> None:
    """Write JSON to `path` atomically (write a temp file, then rename)."""
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=2, sort_keys=True, allow_nan=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:       # a full disk or a kill: leave no partial temp file behind
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise


def scan_jsonl(path: str) -> tuple[list[dict[str, Any]], int, list[tuple[int, str]]]:
    """Read every well-formed record of a .jsonl file, without raising on bad lines.

    Returns (records, torn, bad): `torn` is 1 when the last non-empty line is not a JSON object
    (a run killed mid-write), `bad` the (1-based line number, problem) of every malformed line
    before it (a damaged file). Records after a bad line are kept.
    """
    if not os.path.exists(path):
        return [], 0, []
    with open(path, "r", encoding="utf-8", errors="replace") as f:
        lines = f.read().split("\n")
    records: list[dict[str, Any]] = []
    bad: list[tuple[int, str]] = []
    torn = 0
    nonempty = [(i, l) for i, l in enumerate(lines) if l.strip()]
    for k, (i, line) in enumerate(nonempty):
        try:
            rec = json.loads(line)
            problem = "" if isinstance(rec, dict) else f"a JSON {type(rec).__name__}, not an object"
        except json.JSONDecodeError as e:
            problem = f"not valid JSON ({e})"
        if not problem:
            records.append(rec)
        elif k == len(nonempty) - 1:
            torn += 1
        else:
            bad.append((i + 1, problem))
    return records, torn, bad


def read_jsonl(path: str) -> tuple[list[dict[str, Any]], int]:
    """Read a .jsonl file; returns (records, number of torn lines skipped).

    Only a torn *last* line is tolerated (warned about); a malformed line in the middle means
    the file is corrupted and raises ContractError naming the line.
    """
    records, torn, bad = scan_jsonl(path)
    if bad:
        line, problem = bad[0]
        raise ContractError(f"{path}: line {line} is {problem}")
    if torn:
        warnings.warn(f"{path}: skipped a torn last line; the run was probably killed while "
                      "writing it")
    return records, torn


def missing_keys(record: dict[str, Any], keys: Iterable[str]) -> list[str]:
    return [k for k in keys if k not in record]


def validate_run_dir(run_dir: str, require_done: bool = True) -> dict[str, Any]:
    """Check a run directory against the contract; returns the parsed summary.

    Raises ContractError with the offending file and field.
    """
    cfg_path = os.path.join(run_dir, CONFIG_FILE)
    if not os.path.exists(cfg_path):
        raise ContractError(f"{run_dir}: missing {CONFIG_FILE}")
    with open(cfg_path) as f:
        cfg = json.load(f)
    for top in ("config", "resolved", "run_id"):
        if top not in cfg:
            raise ContractError(f"{cfg_path}: missing top-level key '{top}'")
    miss = missing_keys(cfg["resolved"], RESOLVED_KEYS)
    if miss:
        raise ContractError(f"{cfg_path}: 'resolved' lacks {miss}")
    metrics, _ = read_jsonl(os.path.join(run_dir, METRICS_FILE))
    if not metrics:
        raise ContractError(f"{run_dir}: {METRICS_FILE} is missing or empty")
    for i, r in enumerate(metrics):
        miss = missing_keys(r, METRICS_KEYS)
        if miss:
            raise ContractError(f"{run_dir}/{METRICS_FILE} record {i}: missing {miss}")
    evals, _ = read_jsonl(os.path.join(run_dir, EVAL_FILE))
    for i, r in enumerate(evals):
        miss = missing_keys(r, EVAL_KEYS)
        if miss:
            raise ContractError(f"{run_dir}/{EVAL_FILE} record {i}: missing {miss}")
    summary_path = os.path.join(run_dir, SUMMARY_FILE)
    if not os.path.exists(summary_path):
        if require_done:
            raise ContractError(f"{run_dir}: missing {SUMMARY_FILE}")
        return {"status": "running"}
    with open(summary_path) as f:
        summary = json.load(f)
    miss = missing_keys(summary, SUMMARY_KEYS)
    if miss:
        raise ContractError(f"{summary_path}: missing {miss}")
    if summary["status"] not in STATUSES:
        raise ContractError(f"{summary_path}: unknown status {summary['status']!r}")
    done = os.path.exists(os.path.join(run_dir, DONE_FILE))
    if require_done and not done:
        raise ContractError(f"{run_dir}: no {DONE_FILE} marker (status {summary['status']})")
    if done and summary["status"] != "done":
        raise ContractError(f"{run_dir}: {DONE_FILE} present but status is {summary['status']}")
    return summary


def last_record(path: str, tail_bytes: int = 65536) -> dict[str, Any]:
    """The last complete JSON line of a .jsonl file, reading only its tail (for status checks
    on large logs); {} when the file is missing or has no complete line."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - tail_bytes))
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return {}
    for line in reversed(lines):
        try:
            return json.loads(line)
        except ValueError:
            continue
    return {}
