"""Comparison tables: noise schedules and sampling defaults.

`comparison_table(runs, by, metrics)` groups runs by the `by` columns and, per metric, reports
the mean, the standard error of the mean, the number of runs, the difference to the best group
(lower is better unless `higher_is_better`), and the rank. The standard error is the spread of
the runs (std / sqrt(n), for n > 1 seeds); for a single run it is the eval's own standard error
(column <metric-with-_se>, e.g. bits_se_text for bits_text) when available. `delta_z` is the
difference to the best group divided by the two groups' combined standard error.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from mdm.run_contract import MODALITIES

from .loading import select_done
from .stats import AnalysisError, require_columns


def _se_column(metric: str) -> str:
    head, _, m = metric.rpartition("_")
    return f"{head}_se_{m}" if head in ("bits", "nats") else f"{metric}_se"


def comparison_table(runs: pd.DataFrame, by: Sequence[str], metrics: Sequence[str],
                     higher_is_better: bool = False, done_only: bool = True) -> pd.DataFrame:
    """One row per (group, metric): mean, se, n, delta_to_best, delta_z, rank, run_ids."""
    by, metrics = list(by), list(metrics)
    if not by or not metrics:
        raise AnalysisError("comparison_table: give at least one `by` column and one metric")
    require_columns(runs, by + metrics, "comparison_table")
    if done_only:
        runs, _ = select_done(runs)
        if runs.empty:
            raise AnalysisError("comparison_table: no finished (done) runs")
    rows = []
    for metric in metrics:
        se_col = _se_column(metric)
        vals = runs.assign(_v=pd.to_numeric(runs[metric], errors="coerce")).dropna(subset=["_v"])
        if vals.empty:
            continue
        for key, g in vals.groupby(by, sort=True, dropna=False):
            key = key if isinstance(key, tuple) else (key,)
            x = g["_v"].to_numpy(float)
            if len(x) > 1:
                se = float(x.std(ddof=1) / np.sqrt(len(x)))
            elif se_col in g.columns:
                se = float(pd.to_numeric(g[se_col], errors="coerce").iloc[0])
            else:
                se = float("nan")
            rows.append({**dict(zip(by, key)), "metric": metric, "mean": float(x.mean()), "se": se,
                         "n": int(len(x)), "run_ids": ",".join(map(str, g["run_id"])) if "run_id" in g else ""})
    if not rows:
        raise AnalysisError(f"comparison_table: no finite values in {metrics}")
    t = pd.DataFrame(rows)
    sign = -1.0 if higher_is_better else 1.0
    grp = t.groupby("metric")["mean"]
    best_idx = grp.idxmax() if higher_is_better else grp.idxmin()
    best_rows = t.loc[best_idx.to_numpy()].set_index("metric")
    t["delta_to_best"] = t["mean"] - t["metric"].map(best_rows["mean"])
    best_se = t["metric"].map(best_rows["se"])
    with np.errstate(invalid="ignore", divide="ignore"):
        t["delta_z"] = t["delta_to_best"] / np.sqrt(t["se"] ** 2 + best_se ** 2)
    t["rank"] = t.groupby("metric")["mean"].rank(ascending=sign > 0, method="min").astype(int)
    return t.sort_values(["metric", "rank"]).reset_index(drop=True)


def schedule_table(runs: pd.DataFrame, metric: str = "bits", modalities: Sequence[str] | None = None,
                   schedule_prefix: str = "config.objective.schedule") -> pd.DataFrame:
    """Final <metric>_<m> per noise-schedule choice (columns config.objective.schedule.<m>)."""
    mods = [m for m in (modalities or MODALITIES) if f"{metric}_{m}" in runs.columns]
    by = [c for c in runs.columns if c.startswith(schedule_prefix + ".")
          and c.rsplit(".", 1)[-1] in mods]
    if not by:
        raise AnalysisError(f"schedule_table: no {schedule_prefix}.<modality> columns in the runs")
    varying = [c for c in by if runs[c].nunique(dropna=False) > 1] or by
    return comparison_table(runs, varying, [f"{metric}_{m}" for m in mods])


def sampling_table(runs: pd.DataFrame, metrics: Sequence[str] | None = None,
                   by: Sequence[str] | None = None, higher_is_better: bool = False) -> pd.DataFrame:
    """Sample metrics per sampler setting.

    `by` defaults to the config.sampling.* columns that vary across the runs; `metrics` to the
    numeric summary.sampling.* columns other than the settings themselves.
    """
    if by is None:
        by = [c for c in runs.columns if c.startswith("config.sampling.") and runs[c].nunique() > 1]
    if not by:
        raise AnalysisError("sampling_table: no varying config.sampling.* column; pass `by`")
    if metrics is None:
        settings = {c.rsplit(".", 1)[-1] for c in by}
        metrics = [c for c in runs.columns if c.startswith("summary.sampling.")
                   and c.rsplit(".", 1)[-1] not in settings
                   and pd.to_numeric(runs[c], errors="coerce").notna().any()]
    if not metrics:
        raise AnalysisError("sampling_table: no summary.sampling.* metric columns; pass `metrics`")
    return comparison_table(runs, by, metrics, higher_is_better=higher_is_better)


def format_table(t: pd.DataFrame, digits: int = 4) -> str:
    """Plain-text rendering (no extra dependency)."""
    return t.drop(columns=["run_ids"], errors="ignore").to_string(index=False, float_format=lambda v: f"{v:.{digits}g}")


__all__ = ["comparison_table", "schedule_table", "sampling_table", "format_table"]
