"""The main job, reduced: tiny demo data, 2 sizes x 3 budgets, fits, samples, report."""
import json
import subprocess
import sys

import numpy as np
import pytest


@pytest.mark.slow
def test_reduced_demo_pipeline_produces_a_valid_report(tiny_demo, tmp_path, repo_root):
    """The same code path as `make demo` on a 3-size x 2-budget grid (with cooldown branches)
    and tiny data: laws, IsoFLOP profiles, the held-out run and its line in the report."""
    out = tmp_path / "runs"
    cmd = [sys.executable, "-m", "launch.demo", "--scale", "tiny", "--quick", "--demo_dir",
           str(tiny_demo.root), "--data", str(tmp_path / "data"), "--out", str(out),
           "--samples", "2", "--parallel", "2", "--bootstrap", "50"]
    p = subprocess.run(cmd, cwd=repo_root, capture_output=True, text=True, timeout=1200)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    report = out / "demo_report"
    assert p.stdout.strip().splitlines()[-1] == str(report / "report.md")
    text = (report / "report.md").read_text()
    for needle in ("## Held-out prediction", "## Fitted laws", "## IsoFLOP profiles",
                   "## What the laws mean", "loss_vs_compute.png", "t2i_samples.png", "| t2s |"):
        assert needle in text
    # the held-out line is the report's headline, for every modality, in report.md and .json
    assert text.index("## Held-out prediction") < text.index("## Fitted laws")
    rep = json.loads((report / "report.json").read_text())
    assert set(rep["heldout"]) == {"text", "image", "audio"}
    plan = rep["heldout_plan"]
    assert plan["compute"] >= 3 * plan["largest_fitted_compute"] * 0.999
    for m, h in rep["heldout"].items():
        lo, hi = h["interval"]
        assert np.isfinite([h["predicted"], h["measured"], lo, hi]).all() and lo <= hi
        assert h["rel_error"] == pytest.approx(h["measured"] / h["predicted"] - 1)
        assert f"| {m} | {h['predicted']:.3f} [{lo:.3f}, {hi:.3f}] | {h['measured']:.3f}" in text
    # the held-out run is its own run directory, which no fit read
    heldout_runs = [d for d in (out / "demo-heldout").iterdir() if (d / "DONE").exists()]
    assert len(heldout_runs) == 1
    # it trains data-parallel over a device per core (the grid's runs: one device each)
    log = (out / "demo-heldout" / ".launch" / "logs" / f"{heldout_runs[0].name}.log").read_text()
    import os
    n = min(2, len(os.sched_getaffinity(0)))
    assert f"{n} devices ({n} local), cpu" in log
    fits = json.loads((report / "fits.json").read_text())
    assert heldout_runs[0].name not in json.dumps(fits)
    assert set(fits["laws"]["fits"]) == {"text", "image", "audio"}
    for f in fits["laws"]["fits"].values():
        assert all(np.isfinite(f["params"][k]) for k in ("E", "A", "B", "alpha", "beta"))
        assert f["n_points"] == 6          # 3 runs and their 3 cooldown branches
    # every figure is a readable PNG
    import matplotlib.image as mpimg
    for png in ("loss_vs_compute.png", "t2i_samples.png"):
        assert mpimg.imread(report / png).ndim == 3
    # the T2S samples are readable WAVs
    from scipy.io import wavfile
    wavs = sorted((report / "samples" / "t2s").glob("*.wav"))
    assert wavs
    sr, w = wavfile.read(wavs[0])
    assert sr == 8000 and len(w) > 0
    meta = json.loads((report / "samples" / "t2s" / "samples.json").read_text())
    assert np.isfinite(meta["metrics"]["mcd_db"])
    # relaunching reuses every finished run (the grid and the held-out run)
    p2 = subprocess.run(cmd, cwd=repo_root, capture_output=True, text=True, timeout=1200)
    assert p2.returncode == 0 and "3 runs, 0 to launch" in p2.stderr
    assert "1 runs, 0 to launch" in p2.stderr
    # the README's command redraws the figures from the runs alone: each run records its study
    fig = [sys.executable, "-c", "import sys; from analysis.cli import figures_main; "
           "sys.exit(figures_main())", str(out), "--out", str(tmp_path / "figs"), "--bootstrap", "0"]
    p3 = subprocess.run(fig, cwd=repo_root, capture_output=True, text=True, timeout=600)
    assert p3.returncode == 0, p3.stderr[-3000:]
    res = json.loads(p3.stdout)
    assert res["studies"] == {"isoflop": 6, "heldout": 1}
    assert "loss_vs_compute" in res["figures"]       # (frontier and IsoFLOP need resolved fits)


@pytest.mark.parametrize("module", ["mdm.demo", "mdm.sampling_study"])
def test_old_command_names_still_work_with_a_deprecation_note(module, repo_root):
    """The library keeps the old `python -m` names for one release; they re-execute the new
    commands (launch.demo, analysis.sampling_defaults) without importing the upper layers."""
    p = subprocess.run([sys.executable, "-m", module, "--help"], cwd=repo_root,
                       capture_output=True, text=True, timeout=120)
    new = {"mdm.demo": "launch.demo", "mdm.sampling_study": "analysis.sampling_defaults"}[module]
    assert p.returncode == 0, p.stderr[-2000:]
    assert "deprecated" in p.stderr and new in p.stderr
    assert f"python -m {new}" in p.stdout        # the new command's own usage line
