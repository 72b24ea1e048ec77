"""Readers for the published scaling-law data sets used to validate the fitters.

The files are not shipped with the package: pass the folder that holds them (in this repo's
checkout, `../shared/validation-data`; its README says where each file comes from and which
numbers a correct fitter reproduces). Each reader returns a tidy DataFrame in this package's
column conventions (N, D, C, loss, run_id, ...).
"""
from __future__ import annotations

import os

import pandas as pd

from .stats import AnalysisError


def default_validation_dir() -> str:
    """`../shared/validation-data` relative to the repository root holding this package."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return os.path.normpath(os.path.join(here, "..", "shared", "validation-data"))


def _path(root: str | None, *parts: str) -> str:
    p = os.path.join(root or default_validation_dir(), *parts)
    if not os.path.exists(p):
        raise AnalysisError(f"validation file not found: {p}")
    return p


def load_epoch_chinchilla(root: str | None = None, drop_outliers: int = 5) -> pd.DataFrame:
    """Epoch AI's extraction of Hoffmann et al.'s approach-3 points (245 rows).

    N = Model Size, C = Training FLOP, D = C / (6 N); the `drop_outliers` highest losses are
    removed (Besiroglu et al. drop 5, leaving 240 points). run_id is the row index.
    """
    d = pd.read_csv(_path(root, "epoch_chinchilla", "svg_extracted_data.csv"))
    if drop_outliers:
        d = d.drop(d["loss"].nlargest(drop_outliers).index)
    out = pd.DataFrame({"run_id": d.index.astype(str), "N": d["Model Size"].astype(float),
                        "C": d["Training FLOP"].astype(float), "loss": d["loss"].astype(float)})
    out["D"] = out["C"] / (6 * out["N"])
    return out.reset_index(drop=True)


def load_isoflops(root: str | None = None, source: str | None = "epochai_chinchilla") -> pd.DataFrame:
    """Open-Athena's collection of IsoFLOP points: N = params, D = tokens, C = budget."""
    d = pd.read_csv(_path(root, "open_athena_isoflops", "isoflops_transform.csv"))
    if source is not None:
        d = d[d["source"] == source]
        if d.empty:
            raise AnalysisError(f"no rows with source {source!r}")
    out = d.rename(columns={"params": "N", "tokens": "D", "budget": "C"}).copy()
    out["run_id"] = [f"{s}:{i}" for s, i in zip(out["source"], out.index)]
    return out.reset_index(drop=True)


def load_critical_batch(root: str | None = None) -> pd.DataFrame:
    """Zhang et al. 2024 steps-to-target-loss runs (5 models x 9 batch sizes)."""
    d = pd.read_csv(_path(root, "critical_batch_size", "steps_to_target_loss.csv"))
    d = d.rename(columns={"batch_size_seqs": "batch", "steps_to_target": "steps",
                          "n_params_nominal": "N"})
    d["run_id"] = [f"{m}:{b}" for m, b in zip(d["model"], d["batch"])]
    return d


def load_regmix(root: str | None = None, split: str = "train", scale: str = "1m"):
    """RegMix mixtures and their Pile validation losses joined on `index`.

    Returns (frame, domain columns, loss columns); mixtures are the `train_the_pile_*` columns.
    """
    mix = pd.read_csv(_path(root, "regmix", f"{split}_mixture_{scale}.csv"))
    loss = pd.read_csv(_path(root, "regmix", f"{split}_pile_loss_{scale}.csv"))
    df = mix.merge(loss, on="index", how="inner", validate="one_to_one")
    domains = [c for c in mix.columns if c != "index"]
    losses = [c for c in loss.columns if c != "index"]
    df["run_id"] = df["index"].astype(str)
    return df, domains, losses


def load_misfitting(root: str | None = None, last_only: bool = False) -> pd.DataFrame:
    """hadasah/scaling_laws checkpoints (N, D, C, loss, run ids from model/lr/horizon)."""
    name = "scaling_results_last_ckpt_only.csv" if last_only else "scaling_results.csv"
    d = pd.read_csv(_path(root, "misfitting", name))
    d["run_id"] = [f"{m}|lr{lr}|T{t}|{s}" for m, lr, t, s in
                   zip(d["model"], d["peak_lr"], d["train_tokens"], d["sweep"])]
    return d


__all__ = ["default_validation_dir", "load_epoch_chinchilla", "load_isoflops",
           "load_critical_batch", "load_regmix", "load_misfitting"]
