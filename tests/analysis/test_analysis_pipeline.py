"""End-to-end on the synthetic runs root: studies, audits, tables, figures, CLI, notebook."""
from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest

from analysis import cli
from analysis.report import analyse, audit_runs, batch_size_from_runs, make_all_figures
from analysis.synthetic import SYNTH_BATCH, SYNTH_MIXING, SYNTH_SCHEDULES
from analysis.tables import comparison_table, schedule_table

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def analysed(runset):
    return analyse(runset, n_bootstrap=100)


# the synthetic root (analysis.synthetic) has no anti-masking sweep yet: that study is tested on
# real runs (tests/test_studies_e2e.py) and synthetic frames (tests/analysis/test_studies_stats.py)
NOT_SYNTHESISED = {"antimasking": "no finished runs of the antimasking study"}


def test_analyse_runs_every_study(analysed):
    assert analysed["skipped"] == NOT_SYNTHESISED
    laws = analysed["laws"]
    assert set(laws.fits) == {"text", "image", "audio"}
    # unfinished runs are listed as excluded, not silently dropped
    reasons = {e["reason"] for e in laws.excluded}
    assert {"status running", "status preempted"} <= reasons
    assert analysed["sde"].scores["True"] < 0.1 * analysed["sde"].scores["False"]
    assert set(analysed["mixing"]) == {"bits_text", "bits_image", "bits_audio"}


def test_batch_size_from_runs_recovers_b_noise(runset):
    p = SYNTH_BATCH
    fit, data = batch_size_from_runs(runset.sweep("batch"), loss="bits_text")
    assert data["reached"].all()
    for g in fit.groups:
        truth = p["B_noise_coef"] * (g["key"] / p["N_ref"]) ** p["B_noise_exp"]
        assert g["B_noise"] == pytest.approx(truth, rel=0.03)
    assert fit.noise_law.exponent == pytest.approx(p["B_noise_exp"], abs=0.02)
    # with the exact target the minimal steps are recovered too
    N = {rid: n for rid, n in zip(runset.runs["run_id"], runset.runs["N"])}
    tgt = {rid: p["E"] + p["K"] * (p["S_min_coef"] * (N[rid] / p["N_ref"]) ** p["S_min_exp"]) ** -p["gamma"]
           for rid in runset.sweep("batch").runs["run_id"]}
    fit2, _ = batch_size_from_runs(runset.sweep("batch"), target=tgt)
    for g in fit2.groups:
        assert g["S_min"] == pytest.approx(p["S_min_coef"] * (g["key"] / p["N_ref"]) ** p["S_min_exp"], rel=0.03)


def test_mixing_from_runs_recovers_law_and_optimum(analysed):
    for m in ("text", "image", "audio"):
        f = analysed["mixing"][f"bits_{m}"]
        assert f.train["spearman"] > 0.95
        assert f.params["c"] == pytest.approx(SYNTH_MIXING[m]["c"], abs=0.15)
    opt = analysed["optimal_mixture"]
    assert sum(opt.ratios.values()) == pytest.approx(1.0)
    assert all(0.1 < v < 0.6 for v in opt.ratios.values())  # a balanced tri-modal optimum


def test_schedule_table_ranks_the_true_best(runset):
    t = schedule_table(runset.sweep("sched").runs)
    top = t[t["rank"] == 1].set_index("metric")
    for m in ("text", "image", "audio"):
        true_best = min(SYNTH_SCHEDULES, key=lambda s: SYNTH_SCHEDULES[s][m])
        assert top.loc[f"bits_{m}", f"config.objective.schedule.{m}"] == true_best
    # independent: means and standard errors from a plain groupby
    runs = runset.sweep("sched").runs
    g = runs.groupby("config.objective.schedule.text")["bits_text"]
    row = t[(t["metric"] == "bits_text") & (t["config.objective.schedule.text"] == "cosine")].iloc[0]
    assert row["mean"] == pytest.approx(g.mean()["cosine"])
    assert row["se"] == pytest.approx(g.std(ddof=1)["cosine"] / np.sqrt(2))
    assert row["n"] == 2


def test_comparison_table_errors(runset):
    from analysis.stats import AnalysisError

    with pytest.raises(AnalysisError, match="missing column"):
        comparison_table(runset.runs, ["config.nope"], ["bits_text"])


def test_audits(runset, analysed):
    res = audit_runs(runset, n_bootstrap=100, modalities=("text",))
    assert "chinchilla_image" not in res
    a = res["chinchilla_text"]
    assert a.holdout["by"] == "C" and a.holdout["n_heldout"] == 7
    assert a.mean_abs_rel_error < 0.02 and 0 <= a.coverage <= 1
    assert all(r["lo"] <= r["predicted"] <= r["hi"] for r in a.rows)
    iso = res["isoflop_text"]
    assert [r["key"] for r in iso.rows] == ["N_opt", "D_opt"]
    assert iso.mean_abs_rel_error < 0.15
    cb = res["critical_batch"]
    r = cb.rows[0]
    assert r["key"] == str(1.28e7) and abs(r["rel_error"]) < 0.2
    assert r["rel_error"] == pytest.approx((r["predicted"] - r["actual"]) / r["actual"])
    assert r["inside"] == (r["lo"] <= r["actual"] <= r["hi"])
    assert "mixing_text" in res and res["mixing_text"].holdout["n_heldout"] >= 2
    json.dumps({k: v.to_dict() for k, v in res.items() if k != "skipped"}, allow_nan=False)


@pytest.mark.slow
def test_make_all_figures_png_and_pdf(runset, analysed, tmp_path):
    out = make_all_figures(runset, str(tmp_path / "figs"), results=analysed)
    expected = {"loss_vs_compute", "isoflop", "frontier", "mixing", "batch_size", "sde_collapse",
                "schedules", "sampling"}
    assert set(out["figures"]) == expected and out["skipped"] == NOT_SYNTHESISED
    for name, paths in out["figures"].items():
        png, pdf = paths
        with open(png, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
        with open(pdf, "rb") as f:
            assert f.read(5) == b"%PDF-"
        assert os.path.getsize(png) > 10_000
    fits = json.load(open(tmp_path / "figs" / "fits.json"))
    assert fits["laws"]["kind"] == "modality_laws" and "isoflop" in fits


def test_cli_load_fit_audit_tables(synth, tmp_path, capsys):
    root = synth[0]
    assert cli.main(["load", root]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["status"] == {"done": 88, "running": 1, "preempted": 1} and out["n_runs"] == 90
    assert any("torn" in i["problem"] for i in out["issues"])
    path = str(tmp_path / "fit.json")
    assert cli.main(["fit", root, "--law", "chinchilla", "--sweep", "isoflop", "--loss", "bits_text",
                     "--bootstrap", "50", "--out", path]) == 0
    fit = json.load(open(path))
    assert fit["kind"] == "chinchilla" and 0.2 < fit["params"]["alpha"] < 0.5
    assert {e["reason"] for e in fit["excluded"]} == {"status running", "status preempted"}
    assert fit["n_points"] == 28 and len(fit["run_ids"]) == 28
    capsys.readouterr()
    assert cli.main(["fit", root, "--law", "isoflop", "--sweep", "isoflop"]) == 0
    iso = json.loads(capsys.readouterr().out)
    assert iso["kind"] == "isoflop" and len(iso["budgets"]) == 4
    assert cli.main(["fit", root, "--law", "batch", "--bootstrap", "0"]) == 0
    assert "batch_size" in json.loads(capsys.readouterr().out)
    assert cli.main(["tables", root, "--out", str(tmp_path / "tables")]) == 0
    tabs = json.loads(capsys.readouterr().out)
    assert tabs["schedules"] and tabs["sampling"] and os.path.exists(tmp_path / "tables" / "schedules.csv")
    # clear error for a missing column
    assert cli.main(["fit", root, "--law", "chinchilla", "--loss", "bits_nope", "--bootstrap", "0"]) == 2
    assert "missing column" in capsys.readouterr().err


@pytest.mark.slow
def test_mdm_figures_command(tmp_path):
    """The console command on a small root (the full set of figures is checked in-process above)."""
    import subprocess

    from analysis.synthetic import write_synthetic_runs

    root = str(tmp_path / "runs")
    write_synthetic_runs(root, sweeps=("mixing", "sde", "schedules"))
    out = tmp_path / "figs"
    exe = os.path.join(os.path.dirname(sys.executable), "mdm-figures")
    cmd = [exe] if os.path.exists(exe) else [sys.executable, "-c", "import sys; from analysis.cli import figures_main; sys.exit(figures_main())"]
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""), MPLBACKEND="Agg")
    p = subprocess.run(cmd + [root, "--out", str(out), "--bootstrap", "20"], capture_output=True,
                       text=True, timeout=300, cwd=REPO, env=env)
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    made = res["figures"]
    assert set(made) == {"mixing", "sde_collapse", "schedules"}
    assert all(os.path.exists(f) for v in made.values() for f in v)
    assert sorted(os.path.basename(f) for f in made["mixing"]) == ["mixing.pdf", "mixing.png"]
    # absent sweeps are skipped with a reason, not an error
    assert "no finished runs" in res["skipped"]["isoflop"]


@pytest.mark.slow
def test_notebook_executes(synth, tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    # a kernel spec that runs this interpreter (the project venv), found through JUPYTER_PATH
    kdir = tmp_path / "jupyter" / "kernels" / "mdm-analysis-test"
    kdir.mkdir(parents=True)
    (kdir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "mdm (test)", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("MDM_RUNS_ROOT", synth[0])
    monkeypatch.setenv("PYTHONPATH", REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    nb = nbformat.read(os.path.join(REPO, "notebooks", "scaling_laws.ipynb"), as_version=4)
    NotebookClient(nb, kernel_name="mdm-analysis-test", timeout=300,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    text = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "IsoFLOP exponent a =" in text and "collapse scores" in text and "reloaded alpha" in text
    pngs = sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert pngs >= 7
