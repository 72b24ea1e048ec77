"""From a runs root to every fit, table, figure and audit (what `mdm-figures` and `mdm-analysis`
run, and what the notebook calls).

Which runs feed which analysis is decided by the study each run records (config.json "study",
set by its experiment file; mdm.run_contract.STUDIES), so every study present under a runs root
is analysed whatever its sweeps are called. Runs that record no study (written before runs
recorded one, or run by hand from experiments/base.py) are matched by a regex on their sweep
name instead, and the results say so under "notes". `sweeps={"scaling": "my_regex", ...}`
(`--sweep scaling=my_regex`) overrides both for that analysis: only runs whose sweep matches.

    analysis   recorded study (STUDY_SOURCES)  else sweep regex (SWEEP_PATTERNS)  what
    scaling    scaling, isoflop                isoflop|scaling|ladder|chinchilla  per-modality laws, loss vs compute
    isoflop    isoflop                         isoflop                            IsoFLOP profiles, frontier
    mixing     mixing                          mix                                mixing laws, optimal mixture
    batch_size batch_size                      batch                              steps to target vs batch, critical batch
    sde        batch_size                      sde                                SDE collapse
    schedules  noise_schedule                  sched|noise                        noise-schedule table
    sampling   sampling                        sampl                              sampling-default table
    antimasking antimasking                    antimask                           loss-estimator variance, final bits

The `ladder` study (learning rate x size transfer) has no analysis here: it is listed under
"notes" when present.

Only finished runs (status done) enter fits; the others are listed in each result's
`excluded` with their status. A study whose sweep is absent or unusable is skipped with the
reason recorded under "skipped" (never an exception from `make_all_figures`).
"""
from __future__ import annotations

import dataclasses
import json
import os
import warnings
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd

from mdm.run_contract import MODALITIES, STUDIES as RECORDED_STUDIES

from .audit import audit_batch_size, audit_chinchilla, audit_isoflop, audit_mixing
from .batch_size import fit_batch_size, sde_collapse, steps_to_target
from .frontier import compute_optimal
from .isoflop import fit_isoflop
from .loading import RunSet, load_runs, modalities_present, select_done
from .mixing import fit_mixing_law, optimal_mixture
from .modality import fit_modality_laws
from .results import BatchSizeFit, Result, to_jsonable
from .stats import AnalysisError
from .studies import antimasking_summary
from .tables import sampling_table, schedule_table

SWEEP_PATTERNS: dict[str, str] = {
    "scaling": r"isoflop|scaling|ladder|chinchilla",
    "isoflop": r"isoflop",
    "mixing": r"mix",
    "batch_size": r"batch",
    "sde": r"sde",
    "schedules": r"sched|noise",
    "sampling": r"sampl",
    "antimasking": r"antimask",
}
# analysis -> the recorded studies (config.json "study") whose runs it reads
STUDY_SOURCES: dict[str, tuple[str, ...]] = {
    "scaling": ("scaling", "isoflop"),
    "isoflop": ("isoflop",),
    "mixing": ("mixing",),
    "batch_size": ("batch_size",),
    "sde": ("batch_size",),
    "schedules": ("noise_schedule",),
    "sampling": ("sampling",),
    "antimasking": ("antimasking",),
}
assert set(STUDY_SOURCES) == set(SWEEP_PATTERNS)
assert {s for v in STUDY_SOURCES.values() for s in v} <= set(RECORDED_STUDIES)
MIX_DOMAINS = tuple(f"config.data.mixture.{m}" for m in MODALITIES)


def _runset(source: str | RunSet) -> RunSet:
    if isinstance(source, RunSet):
        return source
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_runs(source)


def _check_sweeps(sweeps: Mapping[str, str] | None) -> None:
    unknown = sorted(set(sweeps or {}) - set(SWEEP_PATTERNS))
    if unknown:
        raise AnalysisError(f"sweep override for unknown analysis {unknown}; known: "
                            f"{', '.join(SWEEP_PATTERNS)}")


def _unrecorded(rs: RunSet) -> RunSet:
    """The runs that record no study (matched by sweep name)."""
    return rs.studies([""])


def _select(rs: RunSet, study: str, sweeps: Mapping[str, str] | None) -> RunSet:
    """The runs analysis `study` reads: those recording one of its STUDY_SOURCES, plus those
    recording none whose sweep matches SWEEP_PATTERNS; an override regex replaces both."""
    if sweeps and study in sweeps:
        return rs.sweep(sweeps[study])
    ids = set(rs.studies(STUDY_SOURCES[study]).runs["run_id"])
    ids |= set(_unrecorded(rs).sweep(SWEEP_PATTERNS[study]).runs["run_id"])
    return rs.subset(ids)


def study_notes(rs: RunSet, sweeps: Mapping[str, str] | None = None) -> tuple[dict[str, int], list[str]]:
    """({recorded study: runs}, notes): what the runs root holds, and what to know about how its
    runs were matched (runs recording no study; studies no analysis reads)."""
    runs = rs.runs
    if runs.empty or "study" not in runs.columns:
        return {}, []
    counts = {str(k): int(v) for k, v in runs["study"].value_counts().items() if k}
    notes = []
    legacy = runs[(runs["study"] == "") & (runs["status"] != "invalid")]   # not other folders
    if len(legacy):
        names = sorted(legacy["sweep"].astype(str).unique())
        shown = ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
        notes.append(f"{len(legacy)} run(s) record no study (written before runs recorded one, or "
                     f"run by hand): matched to analyses by sweep name (sweeps {shown}); "
                     "--sweep ANALYSIS=REGEX overrides")
    read = {s for v in STUDY_SOURCES.values() for s in v}
    for s, n in counts.items():
        if s not in read:
            notes.append(f"study {s!r} ({n} run(s)): no analysis reads it")
    if sweeps:
        notes.append("sweep overrides: " + ", ".join(f"{k}={v!r}" for k, v in sweeps.items()))
    return counts, notes


def batch_size_from_runs(rs: RunSet, loss: str = "bits_text", target: float | dict | None = None,
                         rel_margin: float = 0.005, group: str = "N", batch: str = "physical_batch_seqs",
                         overhead: float = 0.2, B0: float | None = None, scale_unit: float = 1.0):
    """Steps to a target loss for each finished run of a batch sweep, then `fit_batch_size`.

    target: one loss for all runs, a dict {run_id: loss}, a dict {group value: loss}, or None:
    per group, the largest of the runs' best eval losses times (1 + rel_margin), i.e. a loss
    every run of the group reaches. B0 defaults to the smallest batch measured.
    Returns (BatchSizeFit, the per-run frame with its `steps_to_target` column).
    """
    runs, excluded = select_done(rs.runs)
    if runs.empty:
        raise AnalysisError("batch_size_from_runs: no finished runs")
    ev = rs.evals[rs.evals["run_id"].isin(runs["run_id"])]
    if loss not in ev.columns:
        raise AnalysisError(f"batch_size_from_runs: the eval curves have no {loss} column")
    best = ev.groupby("run_id")[loss].min()
    tmap: dict[str, float] = {}
    for key, g in runs.groupby(group):
        if target is None:
            t = float(best.reindex(g["run_id"]).max() * (1 + rel_margin))
        elif isinstance(target, dict):
            t = target.get(key, np.nan)
        else:
            t = float(target)
        for rid in g["run_id"]:
            tmap[rid] = target[rid] if isinstance(target, dict) and rid in target else t
    st = steps_to_target(ev, tmap, loss=loss, x="step")
    data = runs.merge(st.rename(columns={"steps": "steps_to_target"}), on="run_id", how="left")
    nr = data[~data["reached"].astype(bool)]
    excluded += [{"run_id": r, "reason": f"never reached the target {loss}"} for r in nr["run_id"]]
    B0 = float(data[batch].min()) if B0 is None else B0
    fit = fit_batch_size(data[data["reached"].astype(bool)], batch=batch, steps="steps_to_target",
                         group=group, overhead=overhead, B0=B0, scale_unit=scale_unit)
    fit.excluded = excluded + fit.excluded
    fit.columns["target"] = {str(k): v for k, v in tmap.items()}
    return fit, data


@dataclasses.dataclass
class _Context:
    """What every study function gets: the fit settings and `attempt`, which runs one fit and
    records a failure under results["skipped"][name] instead of raising."""
    metric: str
    n_bootstrap: int
    seed: int
    skipped: dict[str, str]

    def attempt(self, name: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except (AnalysisError, ValueError, KeyError, np.linalg.LinAlgError) as e:
            self.skipped[name] = f"{type(e).__name__}: {e}"
            return None

    def loss_column(self, frame: pd.DataFrame, modality: str = "text") -> str:
        col = f"{self.metric}_{modality}"
        return col if col in frame.columns else self.metric


def _study_laws(sel: RunSet, ctx: _Context) -> dict[str, Any]:
    done, excluded = select_done(sel.runs)
    out: dict[str, Any] = {}
    mods = modalities_present(done, ctx.metric)
    laws = ctx.attempt("laws", lambda: fit_modality_laws(
        sel.runs[sel.runs["done"]], mods, mode="separate", loss=ctx.metric + "_{m}",
        n_bootstrap=ctx.n_bootstrap, seed=ctx.seed))
    if laws is None:
        return out
    laws.excluded += excluded
    out["laws"] = laws
    Cg = np.geomspace(float(done["C"].min()) / 10, float(done["C"].max()) * 100, 15)
    k = float(np.nanmedian(done["flops_per_token"] / done["N"]))
    out["allocation"] = {m: ctx.attempt(f"allocation_{m}", lambda f=f: compute_optimal(f, C=Cg, k=k))
                         for m, f in laws.fits.items()}
    if len(mods) > 1:
        out["laws_joint"] = ctx.attempt("laws_joint", lambda: fit_modality_laws(
            done, list(laws.fits), mode="joint", loss=ctx.metric + "_{m}",
            n_bootstrap=ctx.n_bootstrap, seed=ctx.seed, separate=laws))
    return out


def _study_isoflop(sel: RunSet, ctx: _Context) -> dict[str, Any]:
    done, excluded = select_done(sel.runs)
    fits = {}
    for m in modalities_present(done, ctx.metric):
        r = ctx.attempt(f"isoflop_{m}", lambda m=m: fit_isoflop(
            done, loss=f"{ctx.metric}_{m}", n="N", d="D", budget="C"))
        if r is not None:
            r.excluded = excluded + r.excluded
            fits[m] = r
    return {"isoflop": fits}


def _study_mixing(sel: RunSet, ctx: _Context) -> dict[str, Any]:
    done, excluded = select_done(sel.runs)
    doms = [d for d in MIX_DOMAINS if d in done.columns]
    targets = [f"{ctx.metric}_{m}" for m in modalities_present(done, ctx.metric)]
    fits = {t: ctx.attempt(f"mixing_{t}", lambda t=t: fit_mixing_law(done, t, doms)) for t in targets}
    fits = {k: v for k, v in fits.items() if v is not None}
    lin = {t: ctx.attempt(f"mixing_linear_{t}", lambda t=t: fit_mixing_law(done, t, doms, law="linear"))
           for t in targets}
    for f in fits.values():
        f.excluded = excluded + f.excluded
    out = {"mixing": fits, "mixing_linear": {k: v for k, v in lin.items() if v is not None},
           "mixing_runs": done}
    if fits:
        out["optimal_mixture"] = ctx.attempt("optimal_mixture", lambda: optimal_mixture(fits))
    return out


def _study_batch_size(sel: RunSet, ctx: _Context) -> dict[str, Any]:
    res = ctx.attempt("batch_size", lambda: batch_size_from_runs(
        sel, loss=ctx.loss_column(sel.evals)))
    return {} if res is None else {"batch_size": res[0], "batch_data": res[1]}


def _study_sde(sel: RunSet, ctx: _Context) -> dict[str, Any]:
    done, excluded = select_done(sel.runs)
    # the trainer's config has sde.enabled; older / synthetic runs train.sde.enabled
    group = next((c for c in ("config.sde.enabled", "config.train.sde.enabled")
                  if c in done.columns), "config.sde.enabled")
    r = ctx.attempt("sde", lambda: sde_collapse(sel.evals, done, loss=ctx.loss_column(sel.evals),
                                                group=group))
    if r is None:
        return {}
    r.excluded = excluded + r.excluded
    return {"sde": r, "sde_curves": (sel.evals, done)}


def _study_schedules(sel: RunSet, ctx: _Context) -> dict[str, Any]:
    t = ctx.attempt("schedules", lambda: schedule_table(sel.runs, metric=ctx.metric))
    return {} if t is None else {"schedules": t}


def _study_sampling(sel: RunSet, ctx: _Context) -> dict[str, Any]:
    t = ctx.attempt("sampling", lambda: sampling_table(sel.runs))
    return {} if t is None else {"sampling": t}


def _study_antimasking(sel: RunSet, ctx: _Context) -> dict[str, Any]:
    done, _ = select_done(sel.runs)
    r = ctx.attempt("antimasking", lambda: antimasking_summary(
        done, sel.metrics[sel.metrics["run_id"].isin(done["run_id"])]))
    return {} if r is None else {"antimasking": r}


def _has_done(rs: RunSet) -> bool:
    return len(select_done(rs.runs)[0]) > 0


def _has_mixtures(rs: RunSet) -> bool:
    done = select_done(rs.runs)[0]
    return len(done) > 0 and sum(d in done.columns for d in MIX_DOMAINS) >= 2


@dataclasses.dataclass(frozen=True)
class Study:
    """One row of the study table: which runs feed it (`sweep`: the STUDY_SOURCES /
    SWEEP_PATTERNS key), when it can run, what to say when it cannot, and the function that
    fits it."""
    name: str
    sweep: str
    fit: Callable[[RunSet, _Context], dict[str, Any]]
    missing: str
    usable: Callable[[RunSet], bool] = _has_done


STUDY_TABLE: tuple[Study, ...] = (
    Study("laws", "scaling", _study_laws, "no finished runs of the scaling study"),
    Study("isoflop", "isoflop", _study_isoflop,
          "no finished runs of the isoflop study (experiments/scaling.py's isoflop sweep)"),
    Study("mixing", "mixing", _study_mixing,
          "no finished runs with config.data.mixture.* in the mixing study", _has_mixtures),
    Study("batch_size", "batch_size", _study_batch_size,
          "no finished runs of the batch_size study"),
    Study("sde", "sde", _study_sde, "no finished runs of the batch_size study's SDE arms"),
    Study("schedules", "schedules", _study_schedules,
          "no finished runs of the noise_schedule study"),
    Study("sampling", "sampling", _study_sampling, "no finished runs of the sampling study"),
    Study("antimasking", "antimasking", _study_antimasking,
          "no finished runs of the antimasking study"),
)
STUDIES = tuple(s.name for s in STUDY_TABLE)


def analyse(source: str | RunSet, sweeps: Mapping[str, str] | None = None, n_bootstrap: int = 200,
            seed: int = 0, metric: str = "bits", studies: tuple[str, ...] = STUDIES) -> dict[str, Any]:
    """Run every study (of `studies`) whose runs are present (module docstring: by the study
    each run records, else by sweep name); returns a dict of results and tables, with
    "skipped": {study: reason} for the others, "studies": {recorded study: runs} and "notes"."""
    unknown = set(studies) - set(STUDIES)
    if unknown:
        raise AnalysisError(f"unknown studies {sorted(unknown)}; known: {STUDIES}")
    _check_sweeps(sweeps)
    rs = _runset(source)
    counts, notes = study_notes(rs, sweeps)
    out: dict[str, Any] = {"skipped": {}, "root": rs.root, "studies": counts, "notes": notes}
    ctx = _Context(metric, n_bootstrap, seed, out["skipped"])
    for study in STUDY_TABLE:
        if study.name not in studies:
            continue
        sel = _select(rs, study.sweep, sweeps)
        if study.usable(sel):
            out.update(study.fit(sel, ctx))
        else:
            out["skipped"][study.name] = study.missing
    return out


def results_to_json(results: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON-able part of `analyse`'s output (results and tables; curves/frames left out)."""
    out: dict[str, Any] = {}
    for k, v in results.items():
        if k in ("mixing_runs", "batch_data", "sde_curves"):
            continue
        if k in ("studies", "notes"):
            out[k] = v
            continue
        if isinstance(v, pd.DataFrame):
            out[k] = v.to_dict(orient="records")
        elif isinstance(v, Result):
            out[k] = v.to_dict()
        elif isinstance(v, dict):
            out[k] = {kk: (vv.to_dict() if isinstance(vv, Result) else vv) for kk, vv in v.items()}
        else:
            out[k] = v
    return to_jsonable(out)


def make_all_figures(source: str | RunSet, out_dir: str, sweeps: Mapping[str, str] | None = None,
                     n_bootstrap: int = 200, seed: int = 0, formats=("png", "pdf"),
                     write_results: bool = True, results: Mapping[str, Any] | None = None,
                     studies: tuple[str, ...] = STUDIES) -> dict[str, Any]:
    """Fit everything (`analyse`) and draw every figure whose data is present into `out_dir`.

    Writes <name>.png/.pdf per figure, and (write_results) fits.json plus the tables as CSV.
    `results` reuses a previous `analyse(source)` instead of refitting.
    Returns {"figures": {name: [paths]}, "skipped": {name: reason}, "results": analyse(...),
    "studies": {recorded study: runs}, "notes": [...]}.
    """
    from . import figures as F

    _check_sweeps(sweeps)
    rs = _runset(source)
    res = dict(results) if results is not None else analyse(
        rs, sweeps=sweeps, n_bootstrap=n_bootstrap, seed=seed, studies=studies)
    os.makedirs(out_dir, exist_ok=True)
    made: dict[str, list[str]] = {}
    skipped = dict(res.get("skipped", {}))

    def draw(name, fn):
        try:
            fig = fn()
        except (AnalysisError, ValueError, KeyError) as e:
            skipped[f"figure:{name}"] = f"{type(e).__name__}: {e}"
            return
        made[name] = F.save_figure(fig, out_dir, name, formats)

    if "laws" in res:
        sc = _select(rs, "scaling", sweeps)
        draw("loss_vs_compute", lambda: F.plot_loss_vs_compute(select_done(sc.runs)[0], res["laws"]))
    allocs = {m: a for m, a in (res.get("allocation") or {}).items() if a is not None}
    if res.get("isoflop"):
        iso_done = select_done(_select(rs, "isoflop", sweeps).runs)[0]
        m0 = next(iter(res["isoflop"]))
        draw("isoflop", lambda: F.plot_isoflop(res["isoflop"][m0], iso_done))
        draw("frontier", lambda: F.plot_frontier(isoflop=res["isoflop"][m0], allocations=allocs))
    elif allocs:
        draw("frontier", lambda: F.plot_frontier(allocations=allocs))
    if res.get("mixing"):
        draw("mixing", lambda: F.plot_mixing(res["mixing_runs"], res["mixing"], res.get("optimal_mixture"),
                                             baseline=res.get("mixing_linear")))
    if isinstance(res.get("batch_size"), BatchSizeFit):
        draw("batch_size", lambda: F.plot_batch_size(res["batch_size"], res["batch_data"]))
    if "sde" in res:
        draw("sde_collapse", lambda: F.plot_sde_collapse(*res["sde_curves"], res["sde"]))
    if "schedules" in res:
        draw("schedules", lambda: F.plot_comparison(res["schedules"], "noise-schedule comparison"))
    if "sampling" in res:
        draw("sampling", lambda: F.plot_comparison(res["sampling"], "sampling-default comparison"))
    if "antimasking" in res:
        am = res["antimasking"]
        draw("antimasking", lambda: F.plot_antimasking(
            {k: list(v["per_seed"].values()) for k, v in am["variance"].items()},
            am["final_values"]))
    if write_results:
        with open(os.path.join(out_dir, "fits.json"), "w", encoding="utf-8") as f:
            json.dump(results_to_json(res), f, indent=1, allow_nan=False)
        for name in ("schedules", "sampling"):
            if name in res:
                res[name].to_csv(os.path.join(out_dir, f"{name}.csv"), index=False)
    studies_found, notes = (res["studies"], res["notes"]) if "notes" in res else study_notes(rs, sweeps)
    return {"figures": made, "skipped": skipped, "results": res, "studies": studies_found,
            "notes": notes}


def audit_runs(source: str | RunSet, sweeps: Mapping[str, str] | None = None, metric: str = "bits",
               n_bootstrap: int = 200, seed: int = 0, modalities: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Extrapolation audit of every law whose sweep is present (see `audit`); returns
    {name: AuditResult} plus "skipped": {name: reason}. `modalities` limits the per-modality
    audits (default: every modality with losses)."""
    _check_sweeps(sweeps)
    rs = _runset(source)

    def mods_of(df):
        ms = modalities_present(df, metric) if len(df) else []
        return [m for m in ms if modalities is None or m in modalities]

    out: dict[str, Any] = {"skipped": {}}

    def attempt(name, fn):
        try:
            out[name] = fn()
        except (AnalysisError, ValueError, KeyError) as e:
            out["skipped"][name] = f"{type(e).__name__}: {e}"

    sc = select_done(_select(rs, "scaling", sweeps).runs)[0]
    for m in mods_of(sc):
        attempt(f"chinchilla_{m}", lambda m=m: audit_chinchilla(sc, loss=f"{metric}_{m}", by="C",
                                                                n_bootstrap=n_bootstrap, seed=seed))
    iso = select_done(_select(rs, "isoflop", sweeps).runs)[0]
    for m in mods_of(iso):
        attempt(f"isoflop_{m}", lambda m=m: audit_isoflop(iso, loss=f"{metric}_{m}"))
    bs = _select(rs, "batch_size", sweeps)
    if len(select_done(bs.runs)[0]):
        try:
            _, data = batch_size_from_runs(bs)
            reached = data[data["reached"].astype(bool)]
            attempt("critical_batch", lambda: audit_batch_size(
                reached, batch="physical_batch_seqs", steps="steps_to_target", group="N",
                B0=float(reached["physical_batch_seqs"].min())))
        except (AnalysisError, ValueError) as e:
            out["skipped"]["critical_batch"] = str(e)
    mx = select_done(_select(rs, "mixing", sweeps).runs)[0]
    doms = [d for d in MIX_DOMAINS if d in mx.columns]
    for m in mods_of(mx) if len(doms) >= 2 else []:
        attempt(f"mixing_{m}", lambda m=m: audit_mixing(mx, f"{metric}_{m}", doms, seed=seed))
    return out


__all__ = ["analyse", "make_all_figures", "audit_runs", "batch_size_from_runs", "results_to_json",
           "study_notes", "SWEEP_PATTERNS", "STUDY_SOURCES"]
