"""`make studies`, reduced: the four studies' cpu_quick sweeps on the tiny demo data (a few
steps per run, the same code path as the full command), and every artefact of the report."""
import json
import subprocess
import sys

import numpy as np
import pytest

SECTIONS = ("## 1. Batch size and the SDE reparameterization", "## 2. Noise schedules",
            "## 3. Modality mixing", "## 4. Anti-masking (complementary mask pairs)")
FIGURES = ("batch_sde.png", "schedules.png", "mixing.png", "antimasking.png")
SWEEPS = {"batch": ("batch-w16-cpu", 5), "schedules": ("schedules-cpu-quick", 4),
          "mixing": ("mixing-n2-cpu", 6), "antimasking": ("antimasking-w16-cpu", 4)}


def _finite(*xs):
    return all(x is not None and np.isfinite(x) for x in xs)


@pytest.mark.slow
def test_reduced_studies_pipeline_writes_every_artefact(tiny_demo, tmp_path, repo_root):
    out = tmp_path / "runs"
    cmd = [sys.executable, "-m", "launch.studies", "--scale", "tiny", "--quick", "--demo_dir",
           str(tiny_demo.root), "--data", str(tmp_path / "data"), "--out", str(out),
           "--parallel", "2"]
    p = subprocess.run(cmd, cwd=repo_root, capture_output=True, text=True, timeout=1200)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    report = out / "studies_report"
    assert p.stdout.strip().splitlines()[-1] == str(report / "report.md")
    text = (report / "report.md").read_text()
    def no_nan(c):
        raise AssertionError(f"report.json holds {c}: not strict JSON")

    rep = json.loads((report / "report.json").read_text(), parse_constant=no_nan)
    st = rep["studies"]
    assert set(st) == set(SWEEPS) and rep["info"]["not_analysed"] == {}
    assert rep["info"]["failed_runs"] == {} and "Incomplete" not in text
    # every study: its section, its figure (a readable PNG), its finding in the summary and the
    # section, and the seeds / runs per point stated
    import matplotlib.image as mpimg
    for sec, fig, key in zip(SECTIONS, FIGURES, SWEEPS):
        assert sec in text and f"]({fig})" in text
        assert mpimg.imread(report / fig).ndim == 3
        assert f"- **{key}**: {st[key]['finding']}" in text
        assert f"Finding: **{st[key]['finding']}**" in text
        assert st[key]["runs"] == SWEEPS[key][1] and st[key]["runs_per_point"] >= 1
        assert rep["info"]["sweeps"][key] == SWEEPS[key][0]
    # 1. batch / SDE: collapse scores per arm, both critical-batch definitions, the GNS
    b = st["batch"]
    assert b["batches"] == [8.0, 16.0, 32.0] and b["ref_batch"] == 16.0
    for arm in ("plain", "sde"):
        assert _finite(b["collapse"][arm]["all"]["mean"])
        assert len(b["collapse"][arm]["per_seed"]["all"]) == 1          # one seed in the quick kind
    f = b["steps_fit"]["sde"]
    assert _finite(f["S_min"], f["b"], f["B_noise"], f["B_crit"])
    assert f["B_noise"] == pytest.approx(f["b"] / f["S_min"])
    assert f"B_noise = b / S_min = {f['B_noise']:.3g}" in text
    assert "gradient noise scale B_noise = tr(Sigma) / |G|^2" in text
    assert _finite(b["gns"]["seqs"]["mean"]) and len(b["gns"]["per_run"]) == 5
    assert "| plain final bits |" in text and "| sde final bits |" in text
    # 2. schedules: every modality, every schedule, a seed interval (2 seeds)
    s = st["schedules"]
    assert s["schedules"] == ["cosine", "linear"] and s["seeds"] == [0, 1]
    for m in ("text", "image", "audio"):
        c = s["per_modality"][m]
        assert c["best"] in s["schedules"] and c["margin"] >= 0
        assert all(_finite(g["lo"], g["hi"]) for g in c["groups"].values())
        assert f"{m}: {c['best']} beats {c['runner_up']} by {c['margin']:.3g} bits" in s["finding"]
    # 3. mixing: 6 mixtures (pure ones included), a law per modality, leave-one-out errors
    m = st["mixing"]
    assert len(m["mixtures"]) == 6 and [1.0, 0.0, 0.0] in m["mixtures"]
    for t in ("bits_text", "bits_image", "bits_audio"):
        assert _finite(m["fits"][t]["params"]["c"]) and m["loo"][t]["exp"]["n"] == 6
    assert sum(m["optimal"]["ratios"].values()) == pytest.approx(1, abs=1e-6)
    # 4. anti-masking: per-arm variance with seeds, the paired ratio, final bits per arm
    a = st["antimasking"]
    assert set(a["variance"]) == {"independent", "complementary"}
    for arm, v in a["variance"].items():
        assert len(v["per_seed"]) == 2 and _finite(v["mean"], v["lo"], v["hi"])
    r = a["variance_ratio"]
    assert _finite(r["mean"], r["lo"], r["hi"]) and r["lo"] <= r["mean"] <= r["hi"]
    assert a["data_tokens"]["complementary"] == a["data_tokens"]["independent"] / 2
    # relaunching reuses every finished run
    p2 = subprocess.run(cmd, cwd=repo_root, capture_output=True, text=True, timeout=600)
    assert p2.returncode == 0, p2.stderr[-3000:]
    for name, n in SWEEPS.values():
        assert f"sweep {name}: {n} runs, 0 to launch" in p2.stderr
    # the runs are plain run directories: mdm-figures finds every study and redraws its figures
    fig = [sys.executable, "-c", "import sys; from analysis.cli import figures_main; "
           "sys.exit(figures_main())", str(out), "--out", str(tmp_path / "figs"), "--bootstrap", "0"]
    p3 = subprocess.run(fig, cwd=repo_root, capture_output=True, text=True, timeout=600)
    assert p3.returncode == 0, p3.stderr[-3000:]
    res = json.loads(p3.stdout)
    assert res["studies"] == {"batch_size": 5, "noise_schedule": 4, "mixing": 6,
                              "antimasking": 4}
    assert {"mixing", "sde_collapse", "schedules", "antimasking"} <= set(res["figures"])


def test_studies_bad_input_is_one_clear_line(repo_root):
    p = subprocess.run([sys.executable, "-m", "launch.studies", "--only", "batch,nosuch"],
                       cwd=repo_root, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2
    assert p.stderr.strip() == ("error: --only: unknown studies nosuch; choose from batch, "
                                "schedules, mixing, antimasking")
