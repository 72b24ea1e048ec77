"""The main job, reduced: tiny demo data, 2 sizes x 3 budgets, fits, samples, report."""
import json
import subprocess
import sys

import numpy as np
import pytest


@pytest.mark.slow
def test_reduced_demo_pipeline_produces_a_valid_report(tiny_demo, tmp_path, repo_root):
    out = tmp_path / "runs"
    cmd = [sys.executable, "-m", "launch.demo", "--scale", "tiny", "--quick", "--demo_dir",
           str(tiny_demo.root), "--data", str(tmp_path / "data"), "--out", str(out),
           "--samples", "2", "--parallel", "2"]
    p = subprocess.run(cmd, cwd=repo_root, capture_output=True, text=True, timeout=1200)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    report = out / "demo_report"
    assert p.stdout.strip().splitlines()[-1] == str(report / "report.md")
    text = (report / "report.md").read_text()
    for needle in ("## Fitted laws", "loss_vs_compute.png", "t2i_samples.png", "| t2s |"):
        assert needle in text
    # every figure is a readable PNG
    import matplotlib.image as mpimg
    for png in ("loss_vs_compute.png", "t2i_samples.png"):
        assert mpimg.imread(report / png).ndim == 3
    # the fits are JSON with finite parameters for every modality
    fits = json.loads((report / "fits.json").read_text())["laws"]
    assert set(fits["fits"]) == {"text", "image", "audio"}
    for f in fits["fits"].values():
        assert all(np.isfinite(f["params"][k]) for k in ("E", "A", "B", "alpha", "beta"))
    # the T2S samples are readable WAVs
    from scipy.io import wavfile
    wavs = sorted((report / "samples" / "t2s").glob("*.wav"))
    assert wavs
    sr, w = wavfile.read(wavs[0])
    assert sr == 8000 and len(w) > 0
    meta = json.loads((report / "samples" / "t2s" / "samples.json").read_text())
    assert np.isfinite(meta["metrics"]["mcd_db"])
    # relaunching reuses every finished run
    p2 = subprocess.run(cmd, cwd=repo_root, capture_output=True, text=True, timeout=1200)
    assert p2.returncode == 0 and "6 runs, 0 to launch" in p2.stderr
    # the README's command redraws the figures from the runs alone: each run records its study
    fig = [sys.executable, "-c", "import sys; from analysis.cli import figures_main; "
           "sys.exit(figures_main())", str(out), "--out", str(tmp_path / "figs"), "--bootstrap", "0"]
    p3 = subprocess.run(fig, cwd=repo_root, capture_output=True, text=True, timeout=600)
    assert p3.returncode == 0, p3.stderr[-3000:]
    res = json.loads(p3.stdout)
    assert res["studies"] == {"scaling": 6} and res["notes"] == []
    assert {"loss_vs_compute", "frontier"} <= set(res["figures"])


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
