"""Read a runs root (DESIGN.md section 9) into tidy pandas DataFrames.

    <runs root>/<sweep>/<run id>/{config.json, metrics.jsonl, eval.jsonl, summary.json, DONE}

`load_runs(root)` returns a `RunSet` with
  * `runs`    one row per run: run_id, sweep, study (config.json's "study", else config.study:
              one of mdm.run_contract.STUDIES, "" when the run records none or an unknown one,
              which is an issue), status, done, N (= measured non-embedding
              parameters), params_total, params_non_embedding, flops_per_token, D (tokens seen),
              C (FLOPs seen), steps, wall_s, physical/logical batch, kappa, lr, the final eval per
              modality (bits_<m>, nats_<m>, bits_se_<m>, nats_se_<m>, count_<m>) and overall
              (bits, nats), tokens_<m>, bookkeeping (n_metrics, n_evals, torn_lines,
              final_eval_source), and every config field flattened with '.' separators under
              `config.` (e.g. config.model.width, config.data.mixture.text), every resolved
              value under `resolved.`, and extra summary fields under `summary.`;
  * `evals`   one row per eval.jsonl record (run_id, sweep, step, tokens, flops, nats, bits,
              per-modality keys), plus N and C = flops;
  * `metrics` one row per metrics.jsonl record;
  * `issues`  one row per problem found (run_id, sweep, file, problem): torn last lines,
              unfinished runs (no summary / no DONE / status != done), unreadable files.
Nothing is dropped silently: unfinished runs are rows with their status (running, preempted,
nan, failed, "invalid" when config.json is missing or unreadable, "damaged" below), their curves
are loaded up to the last complete line, and every problem is an `issues` row (and one summary
warning).

Damaged runs (status "damaged", done False, the reason in the `damage` column and one issue row
per cause): a malformed line in the middle of metrics.jsonl or eval.jsonl (the well-formed lines,
before and after it, are still loaded as curves), a config.json whose "resolved" block lacks a
value the fits need (FIT_RESOLVED_KEYS, as a positive number), or a summary.json that cannot be
read as a JSON object with a known status. A torn *last* line is not damage (a run killed while
writing; resuming rewrites the file). Fits take done runs only (`select_done`), so a damaged run
is excluded with its reason, which every fit also names in its warnings.

Final eval: summary.json's final_eval when present, otherwise the last complete eval line
(`final_eval_source` says which). D and C: the summary's totals, else the last metrics line.

Token convention (the trainer's `token_convention`, recorded in config.json): D = `tokens` is the
number of distinct data tokens seen; with complementary pairs every row goes through the model
twice (once per mask) and counts once in D and twice in `D_processed` (= `tokens_processed`).
C = `flops` is the compute actually spent (processed tokens x FLOPs per token), so a
complementary run has C = 2 D x flops_per_token: scaling laws in D measure data, laws in C
measure compute. Logs written before the convention (no tokens_processed) have D_processed = D.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import warnings
from typing import Any, Iterable

import numpy as np
import pandas as pd

from mdm.run_contract import (CONFIG_FILE, DONE_FILE, EVAL_FILE, METRICS_FILE, MODALITIES,
                              STATUSES, STUDIES, SUMMARY_FILE, scan_jsonl)

from .stats import AnalysisError

# resolved config values every scaling fit needs (N, and C = flops_per_token x D)
FIT_RESOLVED_KEYS: tuple[str, ...] = ("params_non_embedding", "flops_per_token")
RUN_COLUMNS = ("run_id", "sweep", "study", "status", "done", "damage", "N", "params_total",
               "params_non_embedding", "params_head",
               "flops_per_token", "D", "C", "steps", "wall_s", "seq_len", "physical_batch_seqs",
               "logical_batch_seqs", "tokens_per_step", "kappa", "lr")


def flatten(d: Any, prefix: str = "", sep: str = ".") -> dict[str, Any]:
    """Flatten nested dicts: {"a": {"b": 1}} -> {"a.b": 1}; lists stay values (JSON text if nested)."""
    out: dict[str, Any] = {}
    if isinstance(d, dict):
        for k, v in d.items():
            key = f"{prefix}{sep}{k}" if prefix else str(k)
            if isinstance(v, dict) and v:
                out.update(flatten(v, key, sep))
            elif isinstance(v, (list, tuple)):
                out[key] = json.dumps(v) if any(isinstance(x, (dict, list)) for x in v) else tuple(v)
            else:
                out[key] = v
    else:
        out[prefix] = d
    return out


@dataclasses.dataclass
class RunSet:
    """The tidy frames of one runs root (see the module docstring)."""

    root: str
    runs: pd.DataFrame
    evals: pd.DataFrame
    metrics: pd.DataFrame
    issues: pd.DataFrame

    def done(self) -> pd.DataFrame:
        """Runs whose status is 'done' (with a DONE marker)."""
        return self.runs[self.runs["done"]] if not self.runs.empty else self.runs

    def sweep(self, pattern: str) -> "RunSet":
        """The runs whose sweep name matches the regex `pattern` (case-insensitive)."""
        rx = re.compile(pattern, re.I)
        keep = self.runs["sweep"].astype(str).map(lambda s: bool(rx.search(s))) if not self.runs.empty \
            else pd.Series([], dtype=bool)
        ids = set(self.runs.loc[keep, "run_id"]) if not self.runs.empty else set()
        return self.subset(ids)

    def studies(self, names: Iterable[str]) -> "RunSet":
        """The runs that record one of the studies `names` (config.json "study")."""
        wanted = set(names)
        if self.runs.empty or "study" not in self.runs.columns:
            return self.subset(set())
        return self.subset(set(self.runs.loc[self.runs["study"].isin(wanted), "run_id"]))

    def subset(self, run_ids: Iterable[str]) -> "RunSet":
        """The runs with these ids (and their curves and issues)."""
        ids = set(run_ids)

        def sub(df):
            return df[df["run_id"].isin(ids)] if "run_id" in df.columns and not df.empty else df

        return RunSet(self.root, sub(self.runs), sub(self.evals), sub(self.metrics), sub(self.issues))

    def summary(self) -> dict[str, Any]:
        """Counts for printing: runs per status and sweep, issues."""
        r = self.runs
        return {
            "root": self.root,
            "n_runs": int(len(r)),
            "status": {str(k): int(v) for k, v in r["status"].value_counts().items()} if len(r) else {},
            "sweeps": {str(k): int(v) for k, v in r["sweep"].value_counts().items()} if len(r) else {},
            "studies": {str(k or "(none recorded)"): int(v)
                        for k, v in r["study"].value_counts().items()}
            if len(r) and "study" in r.columns else {},
            "n_eval_points": int(len(self.evals)),
            "n_metric_points": int(len(self.metrics)),
            "issues": self.issues.to_dict(orient="records"),
        }


def _find_run_dirs(root: str) -> list[tuple[str, str]]:
    """(sweep, run_dir) pairs: root/<sweep>/<run>/ (also accepts a sweep dir or one run dir)."""
    if not os.path.isdir(root):
        raise AnalysisError(f"runs root {root!r} is not a directory")
    if os.path.exists(os.path.join(root, CONFIG_FILE)):
        return [(os.path.basename(os.path.dirname(os.path.abspath(root))), root)]
    out = []
    for s in sorted(os.listdir(root)):
        sd = os.path.join(root, s)
        if not os.path.isdir(sd) or s.startswith("."):
            continue
        if os.path.exists(os.path.join(sd, CONFIG_FILE)):  # root is a sweep directory
            out.append((os.path.basename(os.path.abspath(root)), sd))
            continue
        for r in sorted(os.listdir(sd)):
            rd = os.path.join(sd, r)
            if os.path.isdir(rd) and not r.startswith("."):
                out.append((s, rd))
    return out


def _positive_number(v: Any) -> bool:
    try:
        return not isinstance(v, bool) and bool(np.isfinite(float(v)) and float(v) > 0)
    except (TypeError, ValueError):
        return False


def _recorded_study(cfg: dict[str, Any], issue) -> str:
    """config.json's "study" (else config.study; runs written before it was recorded have
    neither: ""). An unknown name is an issue, and the run counts as recording none."""
    inner = cfg.get("config")
    study = cfg.get("study", inner.get("study", "") if isinstance(inner, dict) else "")
    if study in ("", None):
        return ""
    if not isinstance(study, str) or study not in STUDIES:
        issue(CONFIG_FILE, f"unknown study {study!r} (known: {', '.join(STUDIES)}); the run is "
                           "matched to studies by its sweep name")
        return ""
    return study


def _load_one(sweep: str, run_dir: str, issues: list[dict]):
    run_id = os.path.basename(os.path.normpath(run_dir))
    row: dict[str, Any] = {"run_id": run_id, "sweep": sweep, "study": "", "run_dir": run_dir,
                           "damage": ""}
    damage: list[str] = []

    def issue(file, problem):
        issues.append({"run_id": run_id, "sweep": sweep, "file": file, "problem": problem})

    cfg_path = os.path.join(run_dir, CONFIG_FILE)
    cfg: dict[str, Any] = {}
    cfg_read = False
    if not os.path.exists(cfg_path):
        issue(CONFIG_FILE, "missing: not a run directory under the contract")
        row.update(status="invalid", done=False, has_summary=False, n_metrics=0, n_evals=0, torn_lines=0)
        return row, [], []
    else:
        try:
            with open(cfg_path, encoding="utf-8") as f:
                cfg = json.load(f)
            if not isinstance(cfg, dict):
                raise ValueError(f"a JSON {type(cfg).__name__}, not an object")
            cfg_read = True
        except (OSError, ValueError) as e:
            issue(CONFIG_FILE, f"unreadable ({e})")
            row["status"] = "invalid"
            cfg = {}
    if cfg:
        run_id = str(cfg.get("run_id", run_id))
        row["run_id"] = run_id
        row["sweep"] = str(cfg.get("sweep", sweep))
        sweep = row["sweep"]
        row.update(flatten(cfg.get("config", {}), "config"))
        row.update(flatten(cfg.get("resolved", {}), "resolved"))
        row["study"] = _recorded_study(cfg, issue)
        for k in ("code_version", "created"):
            if k in cfg:
                row[k] = cfg[k]
    res = cfg.get("resolved", {}) if cfg else {}
    res = res if isinstance(res, dict) else {}
    if cfg_read:
        lacks = [k for k in ("config", "resolved") if not isinstance(cfg.get(k), dict)]
        unusable = [k for k in FIT_RESOLVED_KEYS if not _positive_number(res.get(k))]
        if lacks or unusable:
            what = (f"lacks {lacks}" if lacks else "") + ("; " if lacks and unusable else "") + (
                f"'resolved' lacks {unusable} as positive numbers (the fits need them)"
                if unusable else "")
            issue(CONFIG_FILE, f"{what}: run marked damaged")
            damage.append(f"{CONFIG_FILE} {what}")
    for k in ("params_total", "params_non_embedding", "params_head", "flops_per_token", "seq_len",
              "physical_batch_seqs", "logical_batch_seqs", "tokens_per_step", "kappa", "lr"):
        row[k] = res.get(k, np.nan)
    row["N"] = res.get("params_non_embedding", np.nan)

    metrics, torn_m, bad_m = scan_jsonl(os.path.join(run_dir, METRICS_FILE))
    evals, torn_e, bad_e = scan_jsonl(os.path.join(run_dir, EVAL_FILE))
    for fname, recs, torn, bad in ((METRICS_FILE, metrics, torn_m, bad_m),
                                   (EVAL_FILE, evals, torn_e, bad_e)):
        if torn:
            issue(fname, f"torn last line skipped ({torn})")
        if bad:
            where = ", ".join(str(i) for i, _ in bad[:5]) + (" ..." if len(bad) > 5 else "")
            issue(fname, f"malformed line(s) {where} ({bad[0][1]}); the other {len(recs)} "
                         "record(s) loaded; run marked damaged")
            damage.append(f"{fname} line {bad[0][0]} is {bad[0][1]}")
    if not os.path.exists(os.path.join(run_dir, METRICS_FILE)):
        issue(METRICS_FILE, "missing")
    row["torn_lines"] = torn_m + torn_e
    row["n_metrics"] = len(metrics)
    row["n_evals"] = len(evals)

    summary: dict[str, Any] = {}
    sp = os.path.join(run_dir, SUMMARY_FILE)
    has_summary_file = os.path.exists(sp)
    if has_summary_file:
        try:
            with open(sp, encoding="utf-8") as f:
                summary = json.load(f)
            if not isinstance(summary, dict):
                raise ValueError(f"a JSON {type(summary).__name__}, not an object")
            if summary.get("status") not in STATUSES:
                raise ValueError(f"status {summary.get('status')!r} is not one of {list(STATUSES)}")
        except (OSError, ValueError) as e:
            summary = {}
            issue(SUMMARY_FILE, f"unreadable ({e}): run marked damaged")
            damage.append(f"{SUMMARY_FILE} unreadable ({e})")
    done_marker = os.path.exists(os.path.join(run_dir, DONE_FILE))
    if "status" in row:                                       # invalid: config.json unreadable
        pass
    elif damage:
        row["status"] = "damaged"
    else:
        row["status"] = str(summary.get("status", "running"))
    if not has_summary_file and row["status"] != "invalid":
        issue(SUMMARY_FILE, "missing: run unfinished (status 'running')")
    if row["status"] not in ("invalid", "damaged"):
        if row["status"] == "done" and not done_marker:
            issue(DONE_FILE, "summary says done but there is no DONE marker; treated as not done")
            row["status"] = "incomplete"
        if done_marker and row["status"] not in ("done",):
            issue(DONE_FILE, f"DONE present but status is {row['status']!r}")
        if row["status"] not in ("done", "running") and summary:
            issue(SUMMARY_FILE, f"run ended with status {row['status']!r}")
    row["damage"] = "; ".join(damage)
    row["done"] = bool(row["status"] == "done" and done_marker)
    row["has_summary"] = bool(summary)

    last_m = metrics[-1] if metrics else {}
    last_e = evals[-1] if evals else {}
    row["steps"] = summary.get("steps", last_m.get("step", np.nan))
    row["D"] = summary.get("tokens", last_m.get("tokens", np.nan))
    row["D_processed"] = summary.get("tokens_processed", last_m.get("tokens_processed", row["D"]))
    row["C"] = summary.get("flops", last_m.get("flops", np.nan))
    if not np.isfinite(float(row["C"] if row["C"] is not None else np.nan)) and np.isfinite(
            float(row["flops_per_token"])) and np.isfinite(float(row["D_processed"])):
        row["C"] = float(row["flops_per_token"]) * float(row["D_processed"])
    row["wall_s"] = summary.get("wall_s", last_m.get("wall_s", np.nan))
    for m in MODALITIES:
        if f"tokens_{m}" in last_m:
            row[f"tokens_{m}"] = last_m[f"tokens_{m}"]
    fe = summary.get("final_eval") or {}
    if fe:
        row["final_eval_source"] = "summary"
        for m, vals in fe.items():
            if isinstance(vals, dict):
                for k in ("nats", "bits", "nats_se", "bits_se", "count"):
                    if k in vals:
                        row[f"{k}_{m}"] = vals[k]
            else:
                row[f"final_eval.{m}"] = vals
        for k in ("nats", "bits"):
            if k in last_e:
                row[k] = last_e[k]
    elif last_e:
        row["final_eval_source"] = "last_eval"
        for k, v in last_e.items():
            if k.startswith(("nats", "bits", "count")):
                row[k] = v
    else:
        row["final_eval_source"] = None
    extra = {k: v for k, v in summary.items() if k not in ("final_eval",)}
    row.update(flatten(extra, "summary"))

    base = {"run_id": run_id, "sweep": sweep}
    ev = [dict(base, **r) for r in evals]
    mt = [dict(base, **r) for r in metrics]
    return row, ev, mt


def load_runs(root: str, sweeps: str | Iterable[str] | None = None, warn: bool = True) -> RunSet:
    """Load every run under `root` into a RunSet (see the module docstring).

    Args:
      root: the runs root (also accepted: one sweep directory, or one run directory).
      sweeps: a regex, or a list of sweep names, to load only those sweeps.
      warn: emit one warning summarising unfinished runs and torn lines.
    """
    pairs = _find_run_dirs(root)
    if sweeps is not None:
        if isinstance(sweeps, str):
            rx = re.compile(sweeps, re.I)
            pairs = [p for p in pairs if rx.search(p[0])]
        else:
            wanted = set(sweeps)
            pairs = [p for p in pairs if p[0] in wanted]
    issues: list[dict] = []
    rows, evs, mts = [], [], []
    for sweep, rd in pairs:
        row, ev, mt = _load_one(sweep, rd, issues)
        rows.append(row)
        evs += ev
        mts += mt
    runs = pd.DataFrame(rows)
    if runs.empty:
        runs = pd.DataFrame(columns=list(RUN_COLUMNS))
    else:
        dup = runs["run_id"].duplicated(keep=False)
        if dup.any():
            for rid in sorted(set(runs.loc[dup, "run_id"])):
                issues.append({"run_id": rid, "sweep": "", "file": CONFIG_FILE,
                               "problem": "run id appears in more than one directory"})
        front = [c for c in RUN_COLUMNS if c in runs.columns]
        runs = runs[front + [c for c in runs.columns if c not in front]]
        for c in ("N", "params_total", "params_non_embedding", "flops_per_token", "D",
                  "D_processed", "C", "steps",
                  "wall_s", "physical_batch_seqs", "logical_batch_seqs", "kappa", "lr"):
            runs[c] = pd.to_numeric(runs[c], errors="coerce")
    evals = pd.DataFrame(evs)
    metrics = pd.DataFrame(mts)
    if not evals.empty and not runs.empty:
        evals = evals.merge(runs[["run_id", "N", "flops_per_token", "physical_batch_seqs"]],
                            on="run_id", how="left")
        if "flops" in evals.columns:
            evals["C"] = evals["flops"]
        else:   # pre-convention logs: tokens counted every processed copy
            evals["C"] = evals["tokens"] * evals["flops_per_token"]
    issues_df = pd.DataFrame(issues, columns=["run_id", "sweep", "file", "problem"])
    if warn and len(issues_df):
        n_unf = int((~runs["done"].astype(bool)).sum()) if len(runs) else 0
        n_torn = int(issues_df["problem"].str.startswith("torn").sum())
        damaged = sorted(runs.loc[runs["status"] == "damaged", "run_id"].astype(str)) \
            if len(runs) else []
        dmg = (f", {len(damaged)} damaged ({_name_runs(damaged)})" if damaged else "")
        warnings.warn(f"{root}: {len(runs)} runs, {n_unf} not done{dmg}, {n_torn} torn last "
                      f"line(s) skipped, {len(issues_df)} issue(s) in total: see RunSet.issues",
                      stacklevel=2)
    return RunSet(root=str(root), runs=runs.reset_index(drop=True), evals=evals, metrics=metrics,
                  issues=issues_df)


def runs_frame(root: str, **kwargs) -> pd.DataFrame:
    """One row per run (shortcut for load_runs(root).runs)."""
    return load_runs(root, **kwargs).runs


def curves_frame(root: str, kind: str = "eval", **kwargs) -> pd.DataFrame:
    """One row per logged point: kind='eval' (eval.jsonl) or 'metrics' (metrics.jsonl)."""
    rs = load_runs(root, **kwargs)
    if kind not in ("eval", "metrics"):
        raise AnalysisError(f"kind must be 'eval' or 'metrics', got {kind!r}")
    return rs.evals if kind == "eval" else rs.metrics


def _name_runs(ids: list[str], limit: int = 10) -> str:
    return ", ".join(ids[:limit]) + (f" and {len(ids) - limit} more" if len(ids) > limit else "")


def select_done(runs: pd.DataFrame, run_id: str = "run_id") -> tuple[pd.DataFrame, list[dict]]:
    """(done runs, excluded list with each other run's status as the reason; a damaged run's
    reason also says what is damaged)."""
    if runs.empty or "done" not in runs.columns:
        return runs, []
    bad = runs[~runs["done"].astype(bool)]
    damage = bad["damage"] if "damage" in bad.columns else pd.Series("", index=bad.index)
    return runs[runs["done"].astype(bool)], [
        {"run_id": str(r), "reason": f"status {s}" + (f" ({d})" if isinstance(d, str) and d else "")}
        for r, s, d in zip(bad[run_id], bad["status"], damage)]


def modalities_present(runs: pd.DataFrame, metric: str = "bits") -> list[str]:
    """Modalities with at least one finite final `metric_<m>` value."""
    return [m for m in MODALITIES if f"{metric}_{m}" in runs.columns
            and pd.to_numeric(runs[f"{metric}_{m}"], errors="coerce").notna().any()]


__all__ = ["load_runs", "runs_frame", "curves_frame", "RunSet", "flatten", "select_done",
           "modalities_present"]
