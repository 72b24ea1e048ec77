"""analysis: run directories -> tidy DataFrames -> scaling-law fits (JSON) -> figures.

Plain functions for notebooks (the same ones behind `mdm-analysis` and `mdm-figures`):

    from analysis import load_runs, fit_chinchilla, compute_optimal, plot_loss_vs_compute
    rs = load_runs("runs/")                      # RunSet: .runs, .evals, .metrics, .issues
    fit = fit_chinchilla(rs.done(), loss="bits_text")
    fit.params, fit.ci, fit.to_json()

Never imports jax, flax or the trainer: it reads the run-directory contract
(`mdm.run_contract`, pure Python) and needs only numpy, scipy, pandas and matplotlib.
Figure functions live in `analysis.figures` (imported on first use, since matplotlib is slow
to import).
"""
from __future__ import annotations

from .audit import audit_batch_size, audit_chinchilla, audit_isoflop, audit_mixing
from .batch_size import (collapse_score, critical_batch, fit_batch_size, fit_steps_curve,
                         gradient_noise_scale, sde_collapse, steps_to_target)
from .chinchilla import (chinchilla_starts, fit_chinchilla, fit_chinchilla_arrays, fit_chinchilla_lsq,
                         fit_chinchilla_lsq_arrays)
from .frontier import allocation_terms, compute_optimal, frontier_from_isoflop
from .isoflop import assign_budgets, fit_isoflop
from .loading import RunSet, curves_frame, flatten, load_runs, runs_frame, select_done
from .lse_huber import Tolerances
from .mixing import fit_linear_mixing, fit_mixing_law, fit_mixing_laws, optimal_mixture
from .modality import fit_modality_laws
from .report import analyse, audit_runs, batch_size_from_runs, make_all_figures
from .results import chinchilla_law, load_result
from .stats import AnalysisError, power_law_fit
from .studies import (antimasking_summary, bootstrap_steps_fit, collapse_breakdown,
                      compare_groups, diff_interval, loss_estimator_variance, relative_spread,
                      seed_interval)
from .synthetic import write_synthetic_runs
from .tables import comparison_table, format_table, sampling_table, schedule_table

_FIGURES = ("plot_loss_vs_compute", "plot_isoflop", "plot_frontier", "plot_mixing", "plot_batch_size",
            "plot_sde_collapse", "plot_comparison", "plot_batch_study", "plot_group_intervals",
            "plot_antimasking", "save_figure")


def __getattr__(name: str):
    if name in _FIGURES:
        from . import figures

        return getattr(figures, name)
    raise AttributeError(f"module 'analysis' has no attribute {name!r}")


__all__ = [
    "load_runs", "runs_frame", "curves_frame", "RunSet", "flatten", "select_done",
    "fit_chinchilla", "fit_chinchilla_arrays", "fit_chinchilla_lsq", "fit_chinchilla_lsq_arrays",
    "chinchilla_starts", "chinchilla_law", "Tolerances",
    "fit_isoflop", "assign_budgets", "compute_optimal", "allocation_terms", "frontier_from_isoflop",
    "fit_modality_laws", "fit_mixing_law", "fit_linear_mixing", "fit_mixing_laws", "optimal_mixture",
    "fit_batch_size", "fit_steps_curve", "critical_batch", "steps_to_target", "collapse_score",
    "sde_collapse", "batch_size_from_runs", "gradient_noise_scale",
    "comparison_table", "schedule_table", "sampling_table", "format_table",
    "audit_chinchilla", "audit_isoflop", "audit_batch_size", "audit_mixing", "audit_runs",
    "analyse", "make_all_figures", "write_synthetic_runs", "load_result", "power_law_fit",
    "AnalysisError", "seed_interval", "diff_interval", "loss_estimator_variance",
    "compare_groups", "relative_spread", "collapse_breakdown", "bootstrap_steps_fit",
    "antimasking_summary", *_FIGURES,
]
