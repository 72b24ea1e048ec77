"""Choose the sampler defaults per task from a finished sampling-defaults study
(experiments/sampling.py, runs written by mdm.eval_samples). Pure pandas: no JAX.

    python -m analysis.sampling_defaults RUNS_ROOT [--sweep REGEX] [--checkpoint RUN_DIR]
        [--out DIR]

Each task is decided by one metric of the demo held-out evaluation (mdm.generation_eval),
averaged over the runs (seeds) that share a setting:

    task   metric (summary.sampling.<task>.<metric>)                              better
    t2i    attribute_accuracy: mean of the image checker's digit, shape, colour,  higher
           position, size accuracies
    t2s    word_accuracy: the demo audio checker reads the prompt's word back    higher
           (mel-cepstral distortion to a reference rendering in another voice is
           reported, not decisive: it rewarded guidance that cost words)
    i2t    cer: character error rate (length oracle)                             lower
    s2t    cer                                                                   lower
    text   bigram_js: bigram JS divergence to held-out text                      lower

A setting is the run's config.sampling.<section> (text for text, image for t2i / i2t,
audio for t2s / s2t): sampler, steps, temperature, guidance, top_p, unmask_schedule. Ties on the
metric go to fewer steps, then less guidance (w = 0 skips the unconditional pass), then the
faster setting. The tables are analysis.sampling_table (mean, standard error over runs when a
setting has several, difference to the best, rank) plus the measured seconds per sample.

Writes to --out (default RUNS_ROOT/sampling_defaults, files only so the runs loader ignores it):
    defaults.json       {"defaults": {task: SamplerConfig kwargs}, "decided_by": {...}, ...}
    sampling_table.md   the chosen defaults and one ranked table per task (for the README)
    sampling_table.csv  the same tables, one row per (task, setting)
Exit codes: 0 written, 2 nothing to decide from (the message says why).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from typing import Any

import numpy as np
import pandas as pd

from mdm.run_contract import TASK_MODALITY

from .stats import AnalysisError
from .tables import sampling_table

# task (mdm.run_contract.GENERATION_TASKS) -> (its summary.sampling key, decisive metric,
# higher_is_better, the config.sampling section it samples with)
_DECISIVE: dict[str, tuple[str, bool]] = {
    "t2i": ("attribute_accuracy", True), "t2s": ("word_accuracy", True), "i2t": ("cer", False),
    "s2t": ("cer", False), "text": ("bigram_js", False)}
TASK_METRICS: dict[str, tuple[str, str, bool, str]] = {
    t: (t, metric, higher, TASK_MODALITY[t]) for t, (metric, higher) in _DECISIVE.items()}
IMAGE_ATTRIBUTES = ("digit", "shape", "colour", "position", "size")
# config.sampling.<section>.<field> -> SamplerConfig field
FIELDS: dict[str, str] = {"sampler": "method", "steps": "steps", "temperature": "temperature",
                          "guidance": "guidance", "top_p": "top_p", "unmask_schedule": "schedule"}
_TYPES = {"method": str, "steps": int, "temperature": float, "guidance": float, "top_p": float,
          "schedule": str}


class StudyError(ValueError):
    """The runs cannot decide a default; the message says what is missing."""


def metric_name(task: str) -> str:
    key, metric, _, _ = TASK_METRICS[task]
    return f"summary.sampling.{key}.{metric}"


def setting_columns(task: str) -> list[str]:
    section = TASK_METRICS[task][3]
    return [f"config.sampling.{section}.{f}" for f in FIELDS]


def task_frame(runs: pd.DataFrame, task: str) -> pd.DataFrame:
    """The finished runs that scored `task`: their setting columns, `value` (the decisive
    metric), `seconds_per_sample` and run_id. Empty when no run scored it."""
    if task not in TASK_METRICS:
        raise StudyError(f"unknown task {task!r}; expected one of {tuple(TASK_METRICS)}")
    key, metric, _, _ = TASK_METRICS[task]
    col = metric_name(task)
    df = runs
    if "done" in df.columns:
        df = df[df["done"].astype(bool)]
    if col in df.columns:
        value = pd.to_numeric(df[col], errors="coerce")
    elif task == "t2i":  # older runs: the mean of whichever attribute accuracies are present
        attrs = [f"summary.sampling.t2i.{a}" for a in IMAGE_ATTRIBUTES
                 if f"summary.sampling.t2i.{a}" in df.columns]
        if not attrs:
            return pd.DataFrame()
        value = df[attrs].apply(pd.to_numeric, errors="coerce").mean(axis=1)
    else:
        return pd.DataFrame()
    cols = setting_columns(task)
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise StudyError(f"{task}: the runs lack the setting column(s) {missing}; are they "
                         "mdm.eval_samples runs of experiments/sampling.py?")
    sec = f"summary.sampling.{key}.seconds_per_sample"
    out = df[cols].copy()
    out[col] = value
    for b in ("lo", "hi"):     # the run's 95% interval over prompts (mdm.eval_samples), if kept
        c = f"{col}_{b}"
        out[b] = pd.to_numeric(df[c], errors="coerce") if c in df.columns else np.nan
    out["seconds_per_sample"] = (pd.to_numeric(df[sec], errors="coerce") if sec in df.columns
                                 else np.nan)
    out["run_id"] = df["run_id"] if "run_id" in df.columns else [str(i) for i in df.index]
    out = out[np.isfinite(out[col].to_numpy(float))]
    return out.reset_index(drop=True)


def _ranked_settings(f: pd.DataFrame, task: str) -> pd.DataFrame:
    """One row per setting: mean value, n, mean seconds; best first (ties: fewer steps, less
    guidance, faster)."""
    cols = setting_columns(task)
    col = metric_name(task)
    higher = TASK_METRICS[task][2]
    g = f.groupby(cols, dropna=False, sort=True).agg(
        value=(col, "mean"), n=(col, "size"), seconds_per_sample=("seconds_per_sample", "mean"),
        lo=("lo", "mean"), hi=("hi", "mean"),
        run_ids=("run_id", lambda s: ",".join(map(str, s)))).reset_index()
    sec = TASK_METRICS[task][3]
    g["_key"] = -g["value"] if higher else g["value"]
    g = g.sort_values(["_key", f"config.sampling.{sec}.steps", f"config.sampling.{sec}.guidance",
                       "seconds_per_sample"], na_position="last", kind="mergesort")
    return g.drop(columns="_key").reset_index(drop=True)


def _sampler_kwargs(row: pd.Series, task: str) -> dict[str, Any]:
    sec = TASK_METRICS[task][3]
    out = {}
    for field, kw in FIELDS.items():
        v = row[f"config.sampling.{sec}.{field}"]
        out[kw] = _TYPES[kw](v.item() if hasattr(v, "item") else v)
    return out


def choose_defaults(runs: pd.DataFrame, tasks: tuple[str, ...] | None = None
                    ) -> dict[str, dict[str, Any]]:
    """{task: SamplerConfig keyword arguments} of the best setting per task (see the module
    docstring for the metric deciding each task and the tie rule). Tasks no finished run scored
    are left out; `mdm.samplers.SamplerConfig(**d)` builds each one."""
    out = {}
    for task in tasks or tuple(TASK_METRICS):
        f = task_frame(runs, task)
        if f.empty:
            continue
        out[task] = _sampler_kwargs(_ranked_settings(f, task).iloc[0], task)
    return out


def task_table(runs: pd.DataFrame, task: str) -> pd.DataFrame:
    """analysis.sampling_table of the decisive metric over the settings that vary, with the
    measured seconds per sample; best first."""
    f = task_frame(runs, task)
    if f.empty:
        raise StudyError(f"{task}: no finished run has {metric_name(task)}")
    cols = setting_columns(task)
    by = [c for c in cols if f[c].nunique(dropna=False) > 1] or cols
    col = metric_name(task)
    t = sampling_table(f.assign(done=True, status="done"), metrics=[col], by=by,
                       higher_is_better=TASK_METRICS[task][2])
    secs = f.groupby(by, dropna=False)["seconds_per_sample"].mean().rename("seconds_per_sample")
    t = t.merge(secs.reset_index(), on=by, how="left")
    order = _ranked_settings(f, task)
    order["_order"] = np.arange(len(order))
    order["ci_lo"], order["ci_hi"] = order["lo"], order["hi"]
    best = order.iloc[0]
    # beyond noise: the setting's 95% interval over prompts and the best's do not overlap
    # (conservative: a paired comparison on the same prompts would separate more settings)
    order["beyond_noise"] = [bool(np.isfinite([r.lo, r.hi, best.lo, best.hi]).all()
                                  and (r.hi < best.lo or r.lo > best.hi)) for r in order.itertuples()]
    keep = by + ["_order", "ci_lo", "ci_hi", "beyond_noise"]
    t = t.merge(order[keep].drop_duplicates(by), on=by, how="left")
    return t.sort_values("_order").drop(columns="_order").reset_index(drop=True)


def study(runs: pd.DataFrame) -> dict[str, Any]:
    """Defaults, what decided them, and the per-task tables."""
    defaults = choose_defaults(runs)
    if not defaults:
        raise StudyError("no finished run scored any task (looked for "
                         f"{', '.join(metric_name(t) for t in TASK_METRICS)})")
    decided, tables = {}, {}
    for task in defaults:
        f = task_frame(runs, task)
        ranked = _ranked_settings(f, task)
        key, metric, higher, sec = TASK_METRICS[task]
        best = ranked.iloc[0]
        decided[task] = {
            "metric": f"{key}.{metric}", "higher_is_better": higher, "section": sec,
            "value": float(best["value"]), "n_runs": int(best["n"]),
            "interval": [_num(best["lo"]), _num(best["hi"])],
            "beyond_noise": int(tables_count_beyond(ranked)),
            "seconds_per_sample": _num(best["seconds_per_sample"]),
            "runner_up": float(ranked.iloc[1]["value"]) if len(ranked) > 1 else None,
            "worst": float(ranked.iloc[-1]["value"]), "n_settings": int(len(ranked)),
            "ties_at_best": int(np.isclose(ranked["value"], best["value"], rtol=0, atol=1e-12).sum()),
            "run_ids": str(best["run_ids"]).split(","),
        }
        tables[task] = task_table(runs, task)
    return {"defaults": defaults, "decided_by": decided, "tables": tables}


def tables_count_beyond(ranked: pd.DataFrame) -> int:
    """How many settings' 95% intervals lie wholly apart from the best's."""
    best = ranked.iloc[0]
    ok = np.isfinite(ranked[["lo", "hi"]].to_numpy(float)).all(axis=1) & np.isfinite(
        [best["lo"], best["hi"]]).all()
    return int((ok & ((ranked["hi"] < best["lo"]) | (ranked["lo"] > best["hi"]))).sum())


def _num(x: Any) -> float | None:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _fmt(v: Any, digits: int = 4) -> str:
    if isinstance(v, (float, np.floating)):
        return "" if not math.isfinite(v) else f"{v:.{digits}g}"
    return str(v)


def _python(d: dict[str, Any]) -> str:
    return "SamplerConfig(" + ", ".join(f"{k}={v!r}" for k, v in d.items()) + ")"


def markdown(result: dict[str, Any], runs: pd.DataFrame) -> str:
    """The chosen defaults and one ranked table per task."""
    lines = ["## Sampling defaults", ""]
    ck = _unique(runs, "config.sampling.checkpoint")
    ns = _unique(runs, "config.sampling.num_samples")
    if ck or ns:
        lines += [f"Checkpoint `{ck or '?'}`, {ns or '?'} held-out items per task and setting, "
                  "one run per setting unless `n` says otherwise.", ""]
    lines += ["| task | decided by | better | method | steps | temperature | guidance | top_p | "
              "schedule | value | runner-up | worst | settings | s / sample |",
              "|" + "---|" * 14]
    for task, d in result["defaults"].items():
        b = result["decided_by"][task]
        lines.append(
            f"| {task} | {b['metric']} | {'higher' if b['higher_is_better'] else 'lower'} | "
            f"{d['method']} | {d['steps']} | {_fmt(d['temperature'])} | {_fmt(d['guidance'])} | "
            f"{_fmt(d['top_p'])} | {d['schedule']} | {_fmt(b['value'])} | "
            f"{_fmt(b['runner_up']) if b['runner_up'] is not None else ''} | {_fmt(b['worst'])} | "
            f"{b['n_settings']} | {_fmt(b['seconds_per_sample'] or float('nan'), 3)} |")
    for task, t in result["tables"].items():
        b = result["decided_by"][task]
        by = [c for c in t.columns if c.startswith("config.sampling.")]
        names = [c.rsplit(".", 1)[-1] for c in by]
        lines += ["", f"### {task}: {b['metric']} ({'higher' if b['higher_is_better'] else 'lower'}"
                  " is better)", "",
                  "| " + " | ".join(names + ["mean", "95% CI (prompts)", "se (runs)", "n",
                                             "delta to best", "vs best", "rank",
                                             "s / sample"]) + " |",
                  "|" + "---|" * (len(names) + 8)]
        for i, (_, r) in enumerate(t.iterrows()):
            ci = (f"[{_fmt(r['ci_lo'], 3)}, {_fmt(r['ci_hi'], 3)}]"
                  if "ci_lo" in r and math.isfinite(r["ci_lo"]) else "")
            vs = "best" if i == 0 else ("**beyond noise**" if r.get("beyond_noise") else
                                        "within noise")
            cells = [_fmt(r[c]) for c in by] + [_fmt(r["mean"]), ci, _fmt(r["se"]),
                                                str(int(r["n"])), _fmt(r["delta_to_best"]), vs,
                                                str(int(r["rank"])),
                                                _fmt(r["seconds_per_sample"], 3)]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _unique(runs: pd.DataFrame, col: str) -> str:
    if col not in runs.columns:
        return ""
    vals = sorted({str(v) for v in runs[col].dropna()})
    return vals[0] if len(vals) == 1 else ", ".join(vals)


def write_outputs(result: dict[str, Any], runs: pd.DataFrame, out: str, meta: dict[str, Any]
                  ) -> dict[str, str]:
    os.makedirs(out, exist_ok=True)
    paths = {k: os.path.join(out, n) for k, n in (("json", "defaults.json"),
                                                   ("md", "sampling_table.md"),
                                                   ("csv", "sampling_table.csv"))}
    obj = {"defaults": result["defaults"], "decided_by": result["decided_by"],
           "python": {t: _python(d) for t, d in result["defaults"].items()}, **meta}
    with open(paths["json"], "w") as f:
        json.dump(obj, f, indent=2, sort_keys=False)
        f.write("\n")
    with open(paths["md"], "w") as f:
        f.write(markdown(result, runs))
    frames = []
    for task, t in result["tables"].items():
        t = t.rename(columns={c: c.rsplit(".", 1)[-1] for c in t.columns
                              if c.startswith("config.sampling.")})
        frames.append(t.assign(task=task))
    pd.concat(frames, ignore_index=True).to_csv(paths["csv"], index=False)
    return paths


MODULE_TASKS = ("t2i", "t2s", "i2t", "s2t", "text")


def module_source(result: dict[str, Any], meta: dict[str, Any]) -> str:
    """The text of mdm/sampling_defaults.py holding this study's choice for every task, with
    its provenance (checkpoint, prompts, runs) in the docstring. StudyError when the study did
    not decide every task (the module must define them all)."""
    missing = [t for t in MODULE_TASKS if t not in result["defaults"]]
    if missing:
        raise StudyError(f"the study decided no default for {missing}; the module needs all of "
                         f"{MODULE_TASKS}")
    lines = ['"""The per-task sampler defaults (mdm.generation_tasks.DEFAULTS): what `make demo`,',
             '`make showcase` and the Python API sample with.', '',
             'Written by the sampling-defaults study (`make sampling-defaults`: launch/showcase.py'
             ' --study,', 'decided by `python -m analysis.sampling_defaults ... --write-module`),'
             ' which writes this file', 'next to its tables; copy it here to adopt a new'
             ' study\'s choice.', '',
             f"Provenance: checkpoint {meta.get('checkpoint', '?')},",
             f"{meta.get('num_samples', '?')} held-out prompts per task and setting, "
             f"{meta.get('n_runs', '?')} runs (sweeps {', '.join(meta.get('sweeps', []))}).",
             "Each task's choice and its 95% interval over prompts:"]
    for t in MODULE_TASKS:
        b = result["decided_by"][t]
        lo, hi = b.get("interval") or [None, None]
        ci = f" [{lo:.4g}, {hi:.4g}]" if lo is not None and hi is not None else ""
        lines.append(f"    {t:<5} {b['metric']} = {b['value']:.4g}{ci}; "
                     f"{b.get('beyond_noise', 0)} of {b['n_settings']} settings worse beyond noise")
    lines += ['"""', "from mdm.samplers import SamplerConfig", "",
              "DEFAULTS: dict[str, SamplerConfig] = {"]
    for t in MODULE_TASKS:
        lines.append(f'    "{t}": {_python(result["defaults"][t])},')
    lines.append("}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m analysis.sampling_defaults",
                                 description="choose sampler defaults from a sampling study")
    ap.add_argument("runs_root", help="runs root holding the study's sweeps")
    ap.add_argument("--sweep", default="^sampling",
                    help="regex of the study's sweep names (default: ^sampling)")
    ap.add_argument("--checkpoint", default=None,
                    help="only runs that sampled this checkpoint run directory (needed when the "
                         "sweeps sampled several)")
    ap.add_argument("--out", default=None,
                    help="output directory (default: RUNS_ROOT/sampling_defaults)")
    ap.add_argument("--write-module", action="store_true",
                    help="also write sampling_defaults.py (the text of mdm/sampling_defaults.py "
                         "for this choice) to the output directory")
    a = ap.parse_args(argv)
    import warnings

    from .loading import load_runs
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rs = load_runs(a.runs_root, sweeps=a.sweep)
        runs = rs.done()
        if runs.empty:
            raise StudyError(f"{a.runs_root}: no finished runs in sweeps matching {a.sweep!r} "
                             f"({len(rs.runs)} runs found in all)")
        ck_col = "config.sampling.checkpoint"
        if ck_col not in runs.columns:
            raise StudyError(f"{a.runs_root}: the runs matching {a.sweep!r} have no "
                             "config.sampling section; not a sampling study")
        if a.checkpoint:
            want = os.path.abspath(a.checkpoint)
            runs = runs[runs[ck_col].map(lambda p: os.path.abspath(str(p)) == want)]
            if runs.empty:
                raise StudyError(f"no finished run sampled {want}")
        cks = sorted({os.path.abspath(str(p)) for p in runs[ck_col]})
        if len(cks) > 1:
            raise StudyError(f"the runs sampled {len(cks)} checkpoints ({', '.join(cks)}); "
                             "choose one with --checkpoint")
        result = study(runs)
    except (StudyError, AnalysisError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = a.out or os.path.join(a.runs_root, "sampling_defaults")
    meta = {"runs_root": os.path.abspath(a.runs_root), "sweeps": sorted(set(runs["sweep"])),
            "checkpoint": cks[0] if cks else "", "n_runs": int(len(runs)),
            "num_samples": sorted({int(v) for v in runs.get("config.sampling.num_samples",
                                                            pd.Series([], dtype=float)).dropna()})}
    paths = write_outputs(result, runs, out, meta)
    if a.write_module:
        try:
            src = module_source(result, meta)
        except StudyError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        with open(os.path.join(out, "sampling_defaults.py"), "w") as f:
            f.write(src)
    print(open(paths["md"]).read())
    print(f"wrote {paths['json']}, {paths['md']}, {paths['csv']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
