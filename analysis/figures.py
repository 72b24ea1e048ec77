"""One function per figure. Each returns a matplotlib Figure built on the Agg canvas (no pyplot
state, so it works the same in a notebook, a script or a headless job); `save_figure` writes it
as PNG and PDF. Axes carry units: compute in FLOPs, parameters N (non-embedding), tokens D,
losses in bits per token, batch in sequences.
"""
from __future__ import annotations

import os
from typing import Mapping, Sequence

import matplotlib  # figures use the Agg canvas explicitly (FigureCanvasAgg): no pyplot, no global backend

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from .results import (Allocation, BatchSizeFit, ChinchillaFit, CollapseResult, IsoFlopFit,
                      MixingFit, ModalityLaws, OptimalMixture, chinchilla_law)
from .stats import AnalysisError, require_columns

MOD_COLORS = {"text": "tab:blue", "image": "tab:orange", "audio": "tab:green"}


def new_figure(ncols: int = 1, nrows: int = 1, width: float = 5.0, height: float = 4.0):
    """A Figure with an Agg canvas and its axes grid (squeezed)."""
    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def save_figure(fig: Figure, out_dir: str, name: str, formats: Sequence[str] = ("png", "pdf"),
                dpi: int = 150) -> list[str]:
    """Write `fig` to out_dir/name.<fmt> for each format; returns the paths."""
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for fmt in formats:
        p = os.path.join(out_dir, f"{name}.{fmt}")
        fig.savefig(p, dpi=dpi)
        paths.append(p)
    return paths


def _law_params(fits, m):
    if fits is None:
        return None
    if isinstance(fits, ModalityLaws):
        f = fits.fits.get(m)
    else:
        f = fits.get(m)
    if f is None:
        return None
    return f.params if isinstance(f, ChinchillaFit) else f


def plot_loss_vs_compute(runs: pd.DataFrame, fits: ModalityLaws | Mapping | None = None,
                         modalities: Sequence[str] | None = None, metric: str = "bits",
                         n: str = "N", c: str = "C", heldout: Mapping | None = None) -> Figure:
    """Final loss per modality against training compute, coloured by N, with the fitted law:
    one curve L(N, C / F(N)) per model size (F = FLOPs per token) and the compute-optimal
    envelope min_N L(N, C / F(N)). `heldout` ({"C": FLOPs, "modalities": {m: {"predicted",
    "interval", "measured"}}}, launch/demo.py) adds a run no fit has seen: its predicted loss
    with the interval, and the measured one."""
    mods = list(modalities or [m for m in MOD_COLORS if f"{metric}_{m}" in runs.columns])
    if not mods:
        raise AnalysisError(f"plot_loss_vs_compute: no {metric}_<modality> columns")
    require_columns(runs, [n, c] + [f"{metric}_{m}" for m in mods], "plot_loss_vs_compute")
    fig, axes = new_figure(len(mods), 1, 4.6, 3.8)
    norm = LogNorm(vmin=runs[n].min(), vmax=runs[n].max())
    cmap = matplotlib.colormaps["viridis"]
    fpt = (runs["flops_per_token"] if "flops_per_token" in runs.columns else 6 * runs[n]).to_numpy(float)
    k_eff = float(np.nanmedian(fpt / runs[n].to_numpy(float)))
    for ax, m in zip(axes[0], mods):
        y = pd.to_numeric(runs[f"{metric}_{m}"], errors="coerce")
        ax.scatter(runs[c], y, c=cmap(norm(runs[n])), s=18, edgecolor="k", linewidth=0.3, zorder=3)
        p = _law_params(fits, m)
        if p is not None:
            c_hi = max(runs[c].max(), heldout["C"] if heldout else 0.0) * 1.5
            Cg = np.geomspace(runs[c].min() / 1.5, c_hi, 200)
            for nn in np.unique(runs[n]):
                fr = fpt[runs[n].to_numpy() == nn].mean()
                ax.plot(Cg, chinchilla_law(nn, Cg / fr, p["E"], p["A"], p["B"], p["alpha"], p["beta"]),
                        color=cmap(norm(nn)), lw=0.8, alpha=0.7)
            Ng = np.geomspace(runs[n].min() / 10, runs[n].max() * 10, 400)
            env = chinchilla_law(Ng[None, :], Cg[:, None] / (k_eff * Ng[None, :]), p["E"], p["A"],
                                 p["B"], p["alpha"], p["beta"]).min(axis=1)
            ax.plot(Cg, env, "k--", lw=1.2, label="compute-optimal envelope")
            h = (heldout or {}).get("modalities", {}).get(m)
            if h is not None:
                lo, hi = h["interval"]
                ax.errorbar([heldout["C"]], [h["predicted"]], yerr=[[h["predicted"] - lo],
                            [hi - h["predicted"]]], fmt="o", mfc="none", color="crimson",
                            capsize=3, label="held-out: predicted (95%)", zorder=4)
                ax.scatter([heldout["C"]], [h["measured"]], marker="*", s=90, color="crimson",
                           edgecolor="k", linewidth=0.4, zorder=5,
                           label=f"held-out: measured ({100 * h['rel_error']:+.1f}%)")
            ax.set_title(f"{m}: E={p['E']:.3g}, α={p['alpha']:.3g}, β={p['beta']:.3g}", fontsize=9)
            ax.legend(fontsize=7, loc="upper right")
        else:
            ax.set_title(m)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("training compute C (FLOPs)")
        ax.set_ylabel(f"final eval loss ({metric} per {m} token)")
        ax.grid(True, which="both", alpha=0.3)
    fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=axes[0, -1], label="parameters N (non-embedding)")
    return fig


def plot_isoflop(fit: IsoFlopFit, runs: pd.DataFrame) -> Figure:
    """Left: loss vs N per budget with each budget's parabola and vertex. Right: N*(C), D*(C)
    with the fitted power laws."""
    cols = fit.columns
    require_columns(runs, [cols["loss"], cols["N"]], "plot_isoflop")
    fig, axes = new_figure(2, 1, 5.0, 4.0)
    ax, ax2 = axes[0]
    budgets = fit.budgets
    norm = LogNorm(vmin=min(b["C"] for b in budgets), vmax=max(b["C"] for b in budgets) * 1.01)
    cmap = matplotlib.colormaps["plasma"]
    ids = runs["run_id"].astype(str) if "run_id" in runs.columns else pd.Series(runs.index.astype(str))
    for b in budgets:
        sel = ids.isin(b["run_ids"]).to_numpy()
        col = cmap(norm(b["C"]) * 0.85)
        ax.scatter(runs.loc[sel, cols["N"]], runs.loc[sel, cols["loss"]], color=col, s=16, zorder=3)
        lo, hi = b["log10N_range"]
        x = np.linspace(lo - 0.1, hi + 0.1, 100)
        ax.plot(10 ** x, np.polyval(b["coeffs"], x), color=col, lw=1,
                ls=":" if b.get("dropped") else "-", label=f"C={b['C']:.2g}" + (" (flagged)" if b["flags"] else ""))
        ax.plot(b["N_opt"], b["loss_opt"], marker="*", color=col, ms=10, mec="k", zorder=4)
    ax.set_xscale("log")
    ax.set_xlabel("parameters N")
    ax.set_ylabel(f"final loss ({cols['loss']})")
    ax.set_title("IsoFLOP profiles (parabola in log N)")
    ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.3)
    good = [b for b in budgets if not b.get("dropped")]
    Cs = np.array([b["C"] for b in good])
    Cg = np.geomspace(Cs.min() / 2, Cs.max() * 4, 100)
    for law, key, color, lab in ((fit.n_opt_law, "N_opt", "tab:blue", "N*"), (fit.d_opt_law, "D_opt", "tab:red", "D*")):
        ax2.scatter(Cs, [b[key] for b in good], color=color, zorder=3)
        lo, hi = law.predict_interval(Cg)
        ax2.fill_between(Cg, lo, hi, color=color, alpha=0.15)
        ax2.plot(Cg, law.predict(Cg), color=color,
                 label=f"{lab} ∝ C^{law.exponent:.3f} ± {law.se_exponent:.3f}")
    ax2.set_xscale("log")
    ax2.set_yscale("log")
    ax2.set_xlabel("training compute C (FLOPs)")
    ax2.set_ylabel("compute-optimal N* (parameters), D* (tokens)")
    ax2.set_title("approach 2: optimal allocation")
    ax2.legend(fontsize=8)
    ax2.grid(True, which="both", alpha=0.3)
    return fig


def plot_frontier(allocation: Allocation | None = None, isoflop: IsoFlopFit | None = None,
                  allocations: Mapping[str, Allocation] | None = None) -> Figure:
    """The compute-optimal frontier D*(N) = G N^a (from fitted laws), with the IsoFLOP vertices
    and lines of constant tokens per parameter."""
    allocs = dict(allocations or {})
    if allocation is not None:
        allocs.setdefault("law", allocation)
    if not allocs and isoflop is None:
        raise AnalysisError("plot_frontier: give an Allocation and/or an IsoFlopFit")
    fig, axes = new_figure(1, 1, 6.0, 4.5)
    ax = axes[0, 0]
    Ns = []
    if isoflop is not None:
        good = [b for b in isoflop.budgets if not b.get("dropped")]
        Ns += [b["N_opt"] for b in good]
        ax.scatter([b["N_opt"] for b in good], [b["D_opt"] for b in good], color="k", zorder=3,
                   label="IsoFLOP vertices")
    for a in allocs.values():
        Ns += [r["N_opt"] for r in a.table]
    Ng = np.geomspace(min(Ns) / 3, max(Ns) * 3, 100) if Ns else np.geomspace(1e6, 1e10, 100)
    for (name, a), col in zip(allocs.items(), ("tab:blue", "tab:orange", "tab:green", "tab:red")):
        ax.plot(Ng, a.frontier(Ng), color=col,
                label=f"{name}: D* = {a.frontier_coef:.3g} N^{a.frontier_exponent:.3f}")
    for tpp in (1, 20, 100):
        ax.plot(Ng, tpp * Ng, color="grey", lw=0.6, ls=":")
        ax.annotate(f"{tpp} tok/param", (Ng[-1], tpp * Ng[-1]), fontsize=7, color="grey", ha="right")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("parameters N")
    ax.set_ylabel("compute-optimal tokens D*")
    ax.set_title("compute-optimal frontier")
    ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.3)
    return fig


def plot_mixing(runs: pd.DataFrame, fits: Mapping[str, MixingFit],
                optimum: OptimalMixture | None = None, baseline: Mapping[str, MixingFit] | None = None) -> Figure:
    """Per target: loss vs the target modality's own mixing ratio (points), and the fitted law
    along the path where the other domains share the rest equally; the linear baseline dashed."""
    targets = list(fits)
    fig, axes = new_figure(len(targets), 1, 4.3, 3.6)
    for ax, t in zip(axes[0], targets):
        f = fits[t]
        dom = f.domains
        m = t.rsplit("_", 1)[-1]
        own = next((d for d in dom if d.rsplit(".", 1)[-1] == m), dom[0])
        j = dom.index(own)
        ax.scatter(runs[own], runs[t], s=18, color=MOD_COLORS.get(m, "k"), edgecolor="k", lw=0.3,
                   zorder=3, label="runs")
        r = np.linspace(0.0, 1.0, 101)
        R = np.tile((1 - r)[:, None] / (len(dom) - 1), (1, len(dom)))
        R[:, j] = r
        ax.plot(r, f.predict(R), color="k",
                label=f"{f.law} law (ρ={f.train.get('spearman', float('nan')):.3f})")
        if baseline and t in baseline:
            b = baseline[t]
            ax.plot(r, b.predict(R), color="grey", ls="--",
                    label=f"{b.law} (ρ={b.train.get('spearman', float('nan')):.3f})")
        if optimum is not None:
            ax.axvline(optimum.ratios[own], color="tab:red", ls=":", label="predicted optimum")
        ax.set_xlabel(f"mixing ratio of {own.rsplit('.', 1)[-1]}")
        ax.set_ylabel(f"final loss ({t})")
        ax.set_title(f"{t} vs mixture", fontsize=9)
        ax.legend(fontsize=7)
        ax.grid(True, alpha=0.3)
    return fig


def plot_batch_size(fit: BatchSizeFit, data: pd.DataFrame) -> Figure:
    """Left: steps to target vs batch per group, fitted S = S_min (1 + B_noise / B), B_crit marked.
    Right: B_crit (and B_noise) against the group scale with the power laws."""
    cols = fit.columns
    fig, axes = new_figure(2, 1, 5.0, 4.0)
    ax, ax2 = axes[0]
    cmap = matplotlib.colormaps["viridis"]
    groups = sorted(fit.groups, key=lambda g: (g.get("scale", 0.0), str(g["key"])))
    for i, g in enumerate(groups):
        col = cmap(i / max(1, len(groups) - 1) * 0.9)
        key = f"{cols['group']}={g['key']:.3g}" if isinstance(g["key"], (int, float)) else str(g["key"])
        sel = data[cols["group"]] == g["key"]
        ax.scatter(data.loc[sel, cols["batch"]], data.loc[sel, cols["steps"]], color=col, s=16, zorder=3)
        B = np.geomspace(min(g["batches"]) / 1.5, max(g["batches"]) * 1.5, 100)
        ax.plot(B, g["S_min"] + g["b"] / B, color=col, label=f"{key}: B_crit={g['B_crit']:.3g}")
        ax.plot(g["B_crit"], g["S_min"] + g["b"] / g["B_crit"], marker="o", mfc="none", mec=col, ms=9)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(f"batch size B ({cols['batch']})")
    ax.set_ylabel("optimizer steps to target loss S")
    d = fit.definition
    ax.set_title(f"S = S_min(1 + B_noise/B); B_crit: {d['overhead']:.0%} over linear from B0={d['B0']:g}",
                 fontsize=8)
    ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.3)
    if fit.cbs_law is not None:
        xs = np.array([g["scale"] for g in fit.groups])
        xg = np.geomspace(xs.min() / 1.5, xs.max() * 3, 100)
        unit = cols.get("scale_unit", 1.0)
        ax2.scatter(xs, [g["B_crit"] for g in fit.groups], color="tab:blue", zorder=3)
        ax2.plot(xg, fit.cbs_law.predict(xg), color="tab:blue",
                 label=f"B_crit = {fit.cbs_law.coef:.3g} (X/{unit:g})^{fit.cbs_law.exponent:.3f}")
        if fit.noise_law is not None:
            ax2.scatter(xs, [g["B_noise"] for g in fit.groups], color="tab:red", marker="s", zorder=3)
            ax2.plot(xg, fit.noise_law.predict(xg), color="tab:red", ls="--",
                     label=f"B_noise (McCandlish) ∝ X^{fit.noise_law.exponent:.3f}")
        ax2.set_xscale("log")
        ax2.set_yscale("log")
        ax2.set_xlabel(f"{cols['scale']}")
        ax2.set_ylabel("critical batch (sequences)")
        ax2.legend(fontsize=7)
        ax2.grid(True, which="both", alpha=0.3)
    else:
        ax2.text(0.5, 0.5, "one group: no power law", ha="center", transform=ax2.transAxes)
        ax2.set_axis_off()
    return fig


def plot_sde_collapse(curves: pd.DataFrame, runs: pd.DataFrame, result: CollapseResult) -> Figure:
    """Loss vs tokens per physical batch, one panel per group (e.g. SDE off / on), with the
    collapse score (mean coefficient of variation across curves; lower = better collapse)."""
    cols = result.columns
    keys = list(result.scores)
    fig, axes = new_figure(len(keys), 1, 4.6, 3.8)
    batches = sorted(runs[cols["batch"]].dropna().unique())
    norm = LogNorm(vmin=min(batches), vmax=max(batches) * 1.001)
    cmap = matplotlib.colormaps["viridis"]
    gcol = runs[cols["group"]].astype(str)
    for ax, k in zip(axes[0], keys):
        sub = runs[gcol == k].sort_values(cols["batch"])
        for rid, B in zip(sub["run_id"], sub[cols["batch"]]):
            c = curves[curves["run_id"] == rid].sort_values(cols["x"])
            ax.plot(c[cols["x"]], c[cols["loss"]], color=cmap(norm(B)), lw=1.2, label=f"B={B:g}")
        lo, hi, _ = result.grid[k]
        ax.axvspan(lo, hi, color="grey", alpha=0.08)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("tokens seen D")
        ax.set_ylabel(f"eval loss ({cols['loss']})")
        ax.set_title(f"{cols['group']}={k}: collapse score {result.scores[k]:.4f}", fontsize=9)
        ax.legend(fontsize=7, title="physical batch (seqs)", title_fontsize=7)
        ax.grid(True, which="both", alpha=0.3)
    return fig


def _setting_label(row) -> str:
    vals = [str(v) for v in row]
    return vals[0] if len(set(vals)) == 1 else " / ".join(vals)


def plot_comparison(table: pd.DataFrame, title: str = "schedule comparison") -> Figure:
    """Grouped bars of a comparison table (tables.comparison_table): one panel per metric,
    one bar per setting, error bars = standard error, best setting hatched."""
    require_columns(table, ["metric", "mean", "se", "rank"], "plot_comparison")
    by = [c for c in table.columns if c not in ("metric", "mean", "se", "n", "delta_to_best",
                                                "delta_z", "rank", "run_ids")]
    metrics = list(dict.fromkeys(table["metric"]))
    fig, axes = new_figure(len(metrics), 1, 3.6, 3.4)
    for ax, m in zip(axes[0], metrics):
        t = table[table["metric"] == m]
        labels = [_setting_label(row) for row in t[by].itertuples(index=False)]
        x = np.arange(len(t))
        bars = ax.bar(x, t["mean"], yerr=t["se"].fillna(0), capsize=3,
                      color=[MOD_COLORS.get(m.rsplit("_", 1)[-1], "tab:grey")] * len(t), alpha=0.8)
        for bar, r in zip(bars, t["rank"]):
            if r == 1:
                bar.set_hatch("//")
        lo = (t["mean"] - t["se"].fillna(0)).min()
        hi = (t["mean"] + t["se"].fillna(0)).max()
        pad = 0.15 * (hi - lo) if hi > lo else 0.01 * abs(hi)
        ax.set_ylim(lo - pad, hi + pad)
        ax.set_xticks(x, labels, rotation=30, ha="right", fontsize=7)
        ax.set_ylabel(m)
        ax.set_title(m, fontsize=9)
        ax.grid(True, axis="y", alpha=0.3)
    fig.suptitle(title)
    return fig


def plot_batch_study(curves: pd.DataFrame, runs: pd.DataFrame, steps: pd.DataFrame,
                     fits: Mapping[str, Mapping], gns_seqs: float | None = None,
                     loss: str = "bits", arms: Sequence[str] = ("plain", "sde")) -> Figure:
    """The batch-size / SDE study in three panels. Left and middle: eval loss vs tokens seen,
    one colour per physical batch, one line per seed, without and with the SDE rule. Right:
    optimizer steps to the target loss vs batch per arm (points: runs), the fitted
    S = S_min + b / B, B_noise = b / S_min (dashed) and, when given, the gradient-noise-scale
    estimate (dotted).

    curves: run_id, tokens, `loss`; runs: run_id, arm, batch, seed; steps: arm, batch, steps;
    fits: {arm: analysis.studies.bootstrap_steps_fit(...)}."""
    require_columns(curves, ["run_id", "tokens", loss], "plot_batch_study(curves)")
    require_columns(runs, ["run_id", "arm", "batch", "seed"], "plot_batch_study(runs)")
    require_columns(steps, ["arm", "batch", "steps"], "plot_batch_study(steps)")
    fig, axes = new_figure(3, 1, 4.4, 3.8)
    batches = sorted(runs["batch"].unique())
    norm = LogNorm(vmin=min(batches), vmax=max(batches) * 1.001)
    cmap = matplotlib.colormaps["viridis"]
    lo = curves[loss].quantile(0.02)
    hi = curves[loss].quantile(0.9)
    for ax, arm in zip(axes[0][:2], arms):
        sub = runs[runs["arm"] == arm].sort_values(["batch", "seed"])
        seen = set()
        for rid, B in zip(sub["run_id"], sub["batch"]):
            c = curves[curves["run_id"] == rid].sort_values("tokens")
            ax.plot(c["tokens"], c[loss], color=cmap(norm(B)), lw=1.1, alpha=0.85,
                    label=None if B in seen else f"B={B:g}")
            seen.add(B)
        ax.set_xscale("log")
        ax.set_ylim(lo - 0.05 * (hi - lo), hi)
        ax.set_xlabel("tokens seen")
        ax.set_ylabel(f"eval {loss} per token")
        ax.set_title("without SDE (same lr, betas, eps)" if arm == "plain"
                     else "with SDE (lr sqrt(k), beta^k, eps/sqrt(k))", fontsize=9)
        ax.legend(fontsize=7, title="physical batch (seqs)", title_fontsize=7)
        ax.grid(True, which="both", alpha=0.3)
    ax = axes[0][2]
    colors = {"plain": "tab:grey", "sde": "tab:red"}
    for arm in arms:
        st = steps[steps["arm"] == arm]
        col = colors.get(arm, "tab:blue")
        ax.scatter(st["batch"], st["steps"], color=col, s=18, zorder=3)
        f = fits.get(arm)
        if f:
            B = np.geomspace(min(batches) / 1.3, max(batches) * 1.3, 100)
            ax.plot(B, f["S_min"] + f["b"] / B, color=col,
                    label=f"{arm}: B_noise={f['B_noise']:.3g}, B_crit={f['B_crit']:.3g}")
            ax.axvline(f["B_noise"], color=col, ls="--", lw=0.8)
    if gns_seqs is not None and np.isfinite(gns_seqs):
        ax.axvline(gns_seqs, color="k", ls=":", lw=1.0, label=f"gradient noise scale {gns_seqs:.3g}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("physical batch B (sequences)")
    ax.set_ylabel("optimizer steps to target loss")
    ax.set_title("S(B) = S_min + b / B; B_noise = b / S_min", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.3)
    return fig


def plot_group_intervals(table: Mapping[str, Mapping], ylabel: str = "final eval bits per token",
                         title: str = "") -> Figure:
    """One panel per key of `table` ({panel: analysis.studies.compare_groups(...)}): each
    group's seed mean with its interval (analysis.studies.seed_interval), the best marked."""
    fig, axes = new_figure(len(table), 1, 3.6, 3.4)
    for ax, (panel, cmp) in zip(axes[0], table.items()):
        names = list(cmp["groups"])
        x = np.arange(len(names))
        g = [cmp["groups"][n] for n in names]
        mean = np.array([v["mean"] for v in g])
        lo = np.array([v["lo"] if np.isfinite(v["lo"]) else v["mean"] for v in g])
        hi = np.array([v["hi"] if np.isfinite(v["hi"]) else v["mean"] for v in g])
        col = MOD_COLORS.get(panel, "tab:blue")
        ax.errorbar(x, mean, yerr=[mean - lo, hi - mean], fmt="o", color=col, capsize=4)
        b = names.index(cmp["best"])
        ax.plot([x[b]], [mean[b]], marker="*", ms=14, color="crimson", ls="none")
        ax.set_xticks(x, names, rotation=30, ha="right", fontsize=8)
        ax.set_title(str(panel), fontsize=9)
        ax.set_ylabel(ylabel)
        ax.grid(True, axis="y", alpha=0.3)
    if title:
        fig.suptitle(title)
    return fig


def plot_antimasking(variance: Mapping[str, Sequence[float]],
                     final: Mapping[str, Mapping[str, Sequence[float]]]) -> Figure:
    """Left: the variance of the training-loss estimator per seed (points) and its seed mean,
    with and without complementary pairs. Right: final eval bits per modality per arm
    (seed means, bars = min..max over seeds)."""
    fig, axes = new_figure(2, 1, 4.2, 3.6)
    ax = axes[0][0]
    arms = list(variance)
    for i, arm in enumerate(arms):
        v = np.asarray(variance[arm], float)
        ax.scatter(np.full(v.size, i), v, color="tab:blue", s=20, zorder=3)
        ax.plot([i - 0.2, i + 0.2], [v.mean()] * 2, color="k")
    ax.set_xticks(range(len(arms)), arms)
    ax.set_xlim(-0.6, len(arms) - 0.4)
    ax.set_ylabel("Var of the per-step training loss (nats^2)")
    ax.set_title("loss-estimator variance, equal compute", fontsize=9)
    ax.grid(True, axis="y", alpha=0.3)
    ax = axes[0][1]
    mods = list(next(iter(final.values())))
    w = 0.8 / max(1, len(final))
    for i, (arm, per) in enumerate(final.items()):
        x = np.arange(len(mods)) + (i - (len(final) - 1) / 2) * w
        vals = [np.asarray(per[m], float) for m in mods]
        mean = np.array([v.mean() for v in vals])
        ax.errorbar(x, mean, yerr=[mean - [v.min() for v in vals], [v.max() for v in vals] - mean],
                    fmt="o", capsize=3, label=arm)
    ax.set_xticks(range(len(mods)), mods)
    ax.set_ylabel("final eval bits per token")
    ax.set_title("final eval loss (seed mean, min..max)", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(True, axis="y", alpha=0.3)
    return fig


__all__ = ["plot_batch_study", "plot_group_intervals", "plot_antimasking", "plot_loss_vs_compute", "plot_isoflop", "plot_frontier", "plot_mixing", "plot_batch_size",
           "plot_sde_collapse", "plot_comparison", "save_figure", "new_figure"]
