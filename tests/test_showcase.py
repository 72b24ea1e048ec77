"""The showcase job, reduced: the same code path as `make showcase` on the tiny demo data, a
16-step model and 3 prompts per task; every artefact, and scores on the requested prompts."""
import json
import subprocess
import sys

import numpy as np
import pytest

from mdm.run_contract import GENERATION_TASKS

PROMPTS = 3


@pytest.mark.slow
def test_reduced_showcase_writes_every_artefact(tiny_demo, tmp_path, repo_root):
    out = tmp_path / "runs"
    cmd = [sys.executable, "-m", "launch.showcase", "--scale", "tiny", "--demo_dir",
           str(tiny_demo.root), "--data", str(tmp_path / "data"), "--out", str(out),
           "--sweep", "smoke", "--prompts", str(PROMPTS)]
    p = subprocess.run(cmd, cwd=repo_root, capture_output=True, text=True, timeout=1200)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    report = out / "showcase_report"
    assert p.stdout.strip().splitlines()[-1] == str(report / "report.md")
    text = (report / "report.md").read_text()
    for needle in ("## Scores against the targets", "## Every task", "## Learning curves",
                   "## Score versus training tokens", "## Classifier-free guidance", "## Time",
                   "| t2i | digit |", "| s2t | cer |", "without it"):
        assert needle in text, needle
    rep = json.loads((report / "report.json").read_text())
    # every task scored on the requested number of prompts (t2i: that many of each family)
    for t in GENERATION_TASKS:
        assert rep["final"][t]["num_prompts"] == (2 * PROMPTS if t == "t2i" else PROMPTS), t
    assert {r["metric"] for r in rep["targets"]} >= {"digit", "shape", "colour", "position",
                                                      "word_accuracy", "cer"}
    for r in rep["targets"]:
        lo, hi = r["interval"]
        assert lo <= r["value"] <= hi
    for t in ("i2t", "s2t"):           # with and without the length oracle
        assert np.isfinite(rep["prior"][t]["cer"])
        assert rep["prior"][t]["prior_length"] >= 1 and "prior_length" not in rep["final"][t]
    # the per-prompt scores travel with the samples
    items = json.loads((out / "showcase-score" / "t2i-final" / "samples" / "t2i" / "items.json")
                       .read_text())
    assert len(items["digit"]) == 2 * PROMPTS
    assert sum(np.isfinite(items["digit"])) == PROMPTS      # the digit prompts only
    # score versus tokens: two earlier checkpoints (1/3 and 2/3 of the run) and the final one
    assert len(rep["curve"]) == 3
    assert [c["tokens"] for c in rep["curve"]] == sorted(c["tokens"] for c in rep["curve"])
    # guidance: t2i and t2s at w = 0..4
    assert sorted((g["task"], g["guidance"]) for g in rep["guidance"]) == sorted(
        (t, float(w)) for t in ("t2i", "t2s") for w in range(5))
    import matplotlib.image as mpimg
    for png in ("learning_curves.png", "score_vs_tokens.png", "guidance.png", "t2i_samples.png"):
        assert mpimg.imread(report / png).ndim == 3, png
    from scipy.io import wavfile
    wavs = [e["file"] for e in rep["examples"]["t2s"]]
    assert len(wavs) == 2 and all(w.startswith("t2s_") for w in wavs)
    sr, w = wavfile.read(report / wavs[0])
    assert sr == 8000 and len(w) > 0
    assert len(rep["examples"]["t2i"]) == 4
    # a rerun reuses the training run and every sampling run
    p2 = subprocess.run(cmd, cwd=repo_root, capture_output=True, text=True, timeout=600)
    assert p2.returncode == 0, p2.stderr[-3000:]
    assert "1 runs, 0 to launch" in p2.stderr
    rep2 = json.loads((report / "report.json").read_text())
    assert rep2["final"] == rep["final"]
