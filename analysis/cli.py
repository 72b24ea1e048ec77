"""Command line: the same functions as the notebook API, printing or writing JSON.

    mdm-analysis load    RUNS_ROOT [--csv DIR]               run counts, statuses, issues
    mdm-analysis fit     RUNS_ROOT --law LAW [--loss COL] [--sweep REGEX] [--bootstrap N] [--out FILE]
                         LAW: chinchilla | lsq | isoflop | allocation | modality | modality-joint
                              | mixing | batch | sde | all
    mdm-analysis audit   RUNS_ROOT [--out FILE]               extrapolation audit of every law
    mdm-analysis tables  RUNS_ROOT [--out DIR]                schedule / sampling tables
    mdm-analysis figures RUNS_ROOT --out DIR                  every figure (PNG + PDF) and fits.json
    mdm-analysis synth   OUT_ROOT [--seed S]                  write a synthetic runs root
    mdm-figures RUNS_ROOT --out DIR                           = mdm-analysis figures

figures / audit / tables analyse every study present under RUNS_ROOT: each run records its
study (config.json "study", from its experiment file), and analysis.report.STUDY_SOURCES says
which analyses read which study; runs that record none are matched by sweep name (a note in the
output says so). `--sweep ANALYSIS=REGEX` (repeatable) overrides that for one analysis: only
runs whose sweep matches REGEX (analyses: scaling, isoflop, mixing, batch_size, sde, schedules,
sampling).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from typing import Any, Sequence

import numpy as np

from .results import Result, to_jsonable
from .stats import AnalysisError

LAWS = ("chinchilla", "lsq", "isoflop", "allocation", "modality", "modality-joint", "mixing",
        "batch", "sde", "all")


def _emit(obj: Any, out: str | None) -> None:
    text = json.dumps(to_jsonable(obj.to_dict() if isinstance(obj, Result) else obj), indent=2,
                      allow_nan=False)
    if out:
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        with open(out, "w", encoding="utf-8") as f:
            f.write(text + "\n")
        print(json.dumps({"written": out}))
    else:
        print(text)


def _sweeps(pairs: Sequence[str] | None) -> dict[str, str] | None:
    if not pairs:
        return None
    out = {}
    for p in pairs:
        if "=" not in p:
            raise AnalysisError(f"--sweep expects ANALYSIS=REGEX, got {p!r}")
        k, v = p.split("=", 1)
        out[k.strip()] = v
    return out


def _load(root: str):
    from .loading import load_runs

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_runs(root)


def cmd_load(a) -> int:
    rs = _load(a.root)
    s = rs.summary()
    if a.csv:
        os.makedirs(a.csv, exist_ok=True)
        for name in ("runs", "evals", "metrics", "issues"):
            p = os.path.join(a.csv, f"{name}.csv")
            getattr(rs, name).to_csv(p, index=False)
        s["csv"] = a.csv
    _emit(s, a.out)
    return 0


def cmd_fit(a) -> int:
    from . import chinchilla, frontier, isoflop, loading, modality, report

    rs = _load(a.root)
    if a.sweep:
        rs = rs.sweep(a.sweep)
    runs, excluded = loading.select_done(rs.runs)
    if runs.empty and a.law not in ("all",):
        raise AnalysisError(f"no finished runs under {a.root}" + (f" matching {a.sweep!r}" if a.sweep else ""))
    loss = a.loss or "bits_text"
    kw = {"n_bootstrap": a.bootstrap, "seed": a.seed}
    if a.law == "chinchilla":
        res = chinchilla.fit_chinchilla(runs, loss=loss, **kw)
        res.excluded = excluded + res.excluded
    elif a.law == "lsq":
        res = chinchilla.fit_chinchilla_lsq(runs, loss=loss, n_scale=a.n_scale, d_scale=a.d_scale)
    elif a.law == "allocation":
        fit = chinchilla.fit_chinchilla(runs, loss=loss, **kw)
        res = frontier.compute_optimal(fit, k=float(np.nanmedian(runs["flops_per_token"] / runs["N"])))
    elif a.law == "isoflop":
        res = isoflop.fit_isoflop(runs, loss=loss)
        res.excluded = excluded + res.excluded
    elif a.law in ("modality", "modality-joint"):
        res = modality.fit_modality_laws(runs, mode="joint" if a.law.endswith("joint") else "separate",
                                         loss=(a.loss or "bits_{m}"), **kw)
    elif a.law in ("mixing", "batch", "sde", "all"):
        studies = {"mixing": ("mixing",), "batch": ("batch_size",), "sde": ("sde",), "all": report.STUDIES}[a.law]
        out = report.analyse(rs, n_bootstrap=a.bootstrap, seed=a.seed, studies=studies)
        key = {"mixing": ["mixing", "mixing_linear", "optimal_mixture"], "batch": ["batch_size"],
               "sde": ["sde"], "all": None}[a.law]
        js = report.results_to_json(out)
        res = js if key is None else {k: js[k] for k in key if k in js}
        if not res:
            raise AnalysisError(f"law {a.law!r}: nothing fitted; skipped: {out['skipped']}")
    else:  # pragma: no cover - argparse restricts the choices
        raise AnalysisError(f"unknown law {a.law!r}")
    _emit(res, a.out)
    return 0


def cmd_audit(a) -> int:
    from .report import audit_runs

    res = audit_runs(a.root, sweeps=_sweeps(a.sweep), n_bootstrap=a.bootstrap, seed=a.seed)
    _emit({k: (v.to_dict() if isinstance(v, Result) else v) for k, v in res.items()}, a.out)
    return 0


def cmd_tables(a) -> int:
    from .report import analyse

    res = analyse(a.root, sweeps=_sweeps(a.sweep), n_bootstrap=0, studies=("schedules", "sampling"))
    out = {}
    for name in ("schedules", "sampling"):
        if name in res:
            out[name] = res[name].drop(columns=["run_ids"]).to_dict(orient="records")
            if a.out:
                os.makedirs(a.out, exist_ok=True)
                res[name].to_csv(os.path.join(a.out, f"{name}.csv"), index=False)
    out["skipped"] = {k: v for k, v in res["skipped"].items() if k in ("schedules", "sampling")}
    out["notes"] = res["notes"]
    _emit(out, None)
    return 0


def cmd_figures(a) -> int:
    from .report import make_all_figures

    res = make_all_figures(a.root, a.out, sweeps=_sweeps(a.sweep), n_bootstrap=a.bootstrap, seed=a.seed)
    _emit({"out": a.out, "studies": res["studies"], "figures": res["figures"],
           "skipped": res["skipped"], "notes": res["notes"]}, None)
    return 0 if res["figures"] else 1


def cmd_synth(a) -> int:
    from .synthetic import write_synthetic_runs

    info = write_synthetic_runs(a.out_root, seed=a.seed)
    _emit({"root": a.out_root, "run_ids": info["run_ids"], "torn_run": info.get("torn_run"),
           "unfinished_run": info.get("unfinished_run"), "preempted_run": info.get("preempted_run")}, None)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mdm-analysis", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)

    def common(sp, out_help="write the JSON to this file instead of stdout"):
        sp.add_argument("root", help="runs root: <root>/<sweep>/<run id>/")
        sp.add_argument("--out", default=None, help=out_help)
        sp.add_argument("--bootstrap", type=int, default=200, help="bootstrap replicates (runs resampled)")
        sp.add_argument("--seed", type=int, default=0)

    sp = sub.add_parser("load", help="summarise a runs root (statuses, issues)")
    common(sp)
    sp.add_argument("--csv", default=None, help="also write runs/evals/metrics/issues CSVs here")
    sp.set_defaults(fn=cmd_load)
    sp = sub.add_parser("fit", help="fit one law and print its JSON result")
    common(sp)
    sp.add_argument("--law", choices=LAWS, required=True)
    sp.add_argument("--loss", default=None, help="loss column (default bits_text; modality: bits_{m})")
    sp.add_argument("--sweep", default=None, help="regex on sweep names")
    sp.add_argument("--n-scale", type=float, default=1e6, help="lsq: N unit")
    sp.add_argument("--d-scale", type=float, default=1e9, help="lsq: D unit")
    sp.set_defaults(fn=cmd_fit)
    sp = sub.add_parser("audit", help="extrapolation audit of every law")
    common(sp)
    sp.add_argument("--sweep", action="append", help="ANALYSIS=REGEX (repeatable): only runs of matching sweeps feed ANALYSIS")
    sp.set_defaults(fn=cmd_audit)
    sp = sub.add_parser("tables", help="schedule and sampling comparison tables")
    common(sp, "directory for the CSV tables")
    sp.add_argument("--sweep", action="append", help="ANALYSIS=REGEX (repeatable): only runs of matching sweeps feed ANALYSIS")
    sp.set_defaults(fn=cmd_tables)
    sp = sub.add_parser("figures", help="every figure as PNG and PDF, plus fits.json")
    common(sp, "output directory")
    sp.add_argument("--sweep", action="append", help="ANALYSIS=REGEX (repeatable): only runs of matching sweeps feed ANALYSIS")
    sp.set_defaults(fn=cmd_figures)
    sp = sub.add_parser("synth", help="write a synthetic runs root (for trying the pipeline)")
    sp.add_argument("out_root")
    sp.add_argument("--seed", type=int, default=0)
    sp.set_defaults(fn=cmd_synth)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.cmd == "figures" and not args.out:
        print("mdm-analysis figures: --out DIR is required", file=sys.stderr)
        return 2
    try:
        return int(args.fn(args) or 0)
    except AnalysisError as e:
        print(f"mdm-analysis {args.cmd}: error: {e}", file=sys.stderr)
        return 2


def figures_main(argv: Sequence[str] | None = None) -> int:
    """mdm-figures RUNS_ROOT --out DIR [--bootstrap N] [--sweep ANALYSIS=REGEX ...]"""
    p = argparse.ArgumentParser(prog="mdm-figures", description="Regenerate every figure of every study found under a runs root.")
    p.add_argument("root")
    p.add_argument("--out", required=True, help="output directory for PNG/PDF figures and fits.json")
    p.add_argument("--bootstrap", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sweep", action="append", help="ANALYSIS=REGEX (repeatable): only runs of matching sweeps feed ANALYSIS")
    a = p.parse_args(argv)
    try:
        return cmd_figures(a)
    except AnalysisError as e:
        print(f"mdm-figures: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
