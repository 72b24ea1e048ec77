"""Loading a runs root: tidy frames, torn lines, unfinished runs, flattened configs, errors."""
from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from analysis.loading import flatten, load_runs, select_done
from analysis.stats import AnalysisError
from analysis.synthetic import SYNTH_LAWS
from mdm.run_contract import validate_run_dir


def _count_lines(path):
    with open(path) as f:
        return sum(1 for line in f if line.strip())


@pytest.mark.filterwarnings("ignore:.*torn last line")
def test_synthetic_runs_follow_the_contract(synth):
    root, info = synth
    for sweep, ids in info["run_ids"].items():
        for rid in ids:
            rd = os.path.join(root, sweep, rid)
            done = rid not in (info["unfinished_run"], info["preempted_run"])
            summary = validate_run_dir(rd, require_done=done)
            if done:
                assert summary["status"] == "done"


def test_one_row_per_run_and_per_point(synth, runset):
    root, info = synth
    n_runs = sum(len(v) for v in info["run_ids"].values())
    assert len(runset.runs) == n_runs and runset.runs["run_id"].is_unique
    n_eval = sum(_count_lines(os.path.join(root, s, r, "eval.jsonl"))
                 for s, ids in info["run_ids"].items() for r in ids)
    assert len(runset.evals) == n_eval
    assert {"run_id", "sweep", "step", "tokens", "bits_text", "nats_se_image", "count_audio"} <= set(runset.evals.columns)
    assert set(runset.runs["sweep"]) == set(info["run_ids"])


def test_torn_last_line_is_skipped_and_reported(synth, runset):
    root, info = synth
    rid = info["torn_run"]
    row = runset.runs.set_index("run_id").loc[rid]
    path = os.path.join(root, "isoflop", rid, "metrics.jsonl")
    assert _count_lines(path) == 11  # 10 records + the torn one
    assert row["n_metrics"] == 10 and row["torn_lines"] == 1
    assert row["status"] == "done" and row["done"]  # the run itself finished
    iss = runset.issues[runset.issues["run_id"] == rid]
    assert list(iss["problem"]) == ["torn last line skipped (1)"]
    assert (runset.metrics["run_id"] == rid).sum() == 10


def test_unfinished_runs_are_kept_and_reported(synth, runset):
    root, info = synth
    r = runset.runs.set_index("run_id")
    un, pre = info["unfinished_run"], info["preempted_run"]
    assert r.loc[un, "status"] == "running" and not r.loc[un, "done"]
    assert r.loc[un, "final_eval_source"] == "last_eval" and np.isfinite(r.loc[un, "bits_text"])
    assert r.loc[pre, "status"] == "preempted" and not r.loc[pre, "done"]
    problems = runset.issues.set_index("run_id")["problem"]
    assert "unfinished" in problems.loc[un] and "preempted" in problems.loc[pre]
    done, excluded = select_done(runset.runs)
    assert un not in set(done["run_id"])
    assert {"run_id": un, "reason": "status running"} in excluded
    assert {"run_id": pre, "reason": "status preempted"} in excluded


def test_load_warns_once_with_counts(synth):
    with pytest.warns(UserWarning, match=r"2 not done, 1 torn last line\(s\) skipped"):
        load_runs(synth[0])


def test_columns_flattened_and_measured(synth, runset):
    root, info = synth
    r = runset.runs.set_index("run_id")
    rid = info["run_ids"]["isoflop"][0]
    with open(os.path.join(root, "isoflop", rid, "config.json")) as f:
        cfg = json.load(f)
    with open(os.path.join(root, "isoflop", rid, "summary.json")) as f:
        summ = json.load(f)
    assert r.loc[rid, "config.model.width"] == cfg["config"]["model"]["width"]
    assert r.loc[rid, "config.data.mixture.text"] == cfg["config"]["data"]["mixture"]["text"]
    assert r.loc[rid, "config.train.sde.enabled"] == cfg["config"]["train"]["sde"]["enabled"]
    assert r.loc[rid, "N"] == cfg["resolved"]["params_non_embedding"]
    assert r.loc[rid, "flops_per_token"] == cfg["resolved"]["flops_per_token"]
    assert r.loc[rid, "D"] == summ["tokens"] and r.loc[rid, "C"] == summ["flops"]
    for m in ("text", "image", "audio"):
        assert r.loc[rid, f"bits_{m}"] == summ["final_eval"][m]["bits"]
        assert r.loc[rid, f"bits_se_{m}"] == summ["final_eval"][m]["bits_se"]
    assert r.loc[rid, "final_eval_source"] == "summary"
    assert flatten({"a": {"b": 1, "c": {"d": [1, 2]}}, "e": 2}) == {"a.b": 1, "a.c.d": (1, 2), "e": 2}


def test_absent_modality_has_no_values(tmp_path):
    from analysis.loading import modalities_present
    from analysis.synthetic import _Writer

    root = str(tmp_path / "r")
    w = _Writer(root, np.random.default_rng(0))
    final = {m: 3.0 for m in ("text", "image", "audio")}
    curve = lambda steps, tok: {m: 3.0 + 0 * tok for m in ("text", "image", "audio")}
    rid = w.run("bimodal", N=1e6, D=1e7, mixture=(0.5, 0.5, 0.0), final=final, curve=curve)
    with open(os.path.join(root, "bimodal", rid, "eval.jsonl")) as f:
        assert all("bits_audio" not in json.loads(line) for line in f)
    rs = load_runs(root)
    assert rs.issues.empty and len(rs.runs) == 1
    assert modalities_present(rs.runs) == ["text", "image"]
    assert "bits_audio" not in rs.evals.columns and "bits_audio" not in rs.runs.columns


def test_corrupt_and_foreign_directories_are_reported_not_fatal(tmp_path, synth):
    root = tmp_path / "r"
    src = synth[0]
    shutil.copytree(os.path.join(src, "schedules"), root / "schedules")
    rid = sorted(os.listdir(root / "schedules"))[0]
    mpath = root / "schedules" / rid / "metrics.jsonl"
    lines = mpath.read_text().splitlines()
    lines[3] = "{not json"
    mpath.write_text("\n".join(lines) + "\n")
    (root / "schedules" / "stray").mkdir()
    with pytest.warns(UserWarning):
        rs = load_runs(str(root))
    probs = rs.issues.set_index("run_id")["problem"].to_dict()
    assert "malformed line(s) 4" in probs[rid] and "run marked damaged" in probs[rid]
    assert "not a run directory" in probs["stray"]
    assert rs.runs.set_index("run_id").loc["stray", "status"] == "invalid"
    row = rs.runs.set_index("run_id").loc[rid]   # its summary is fine, but its log is damaged
    assert row["status"] == "damaged" and not row["done"] and row["n_metrics"] == len(lines) - 1


def test_empty_root_and_bad_root(tmp_path):
    rs = load_runs(str(tmp_path))
    assert rs.runs.empty and rs.evals.empty and rs.issues.empty
    with pytest.raises(AnalysisError, match="not a directory"):
        load_runs(str(tmp_path / "missing"))


def test_sweep_filter(runset):
    sub = runset.sweep("^mix")
    assert set(sub.runs["sweep"]) == {"mixing"} and len(sub.runs) == 12
    assert set(sub.evals["run_id"]) <= set(sub.runs["run_id"])


def test_synthetic_isoflop_matches_its_law(runset):
    iso = runset.sweep("isoflop").done()
    for m, law in SYNTH_LAWS.items():
        pred = law["E"] + law["A"] / iso["N"] ** law["alpha"] + law["B"] / iso["D"] ** law["beta"]
        rel = (iso[f"bits_{m}"] / pred - 1).abs()
        assert rel.max() < 0.02  # lognormal noise of 0.4 %


def test_analysis_never_imports_jax_or_the_trainer():
    import subprocess
    import sys

    code = ("import sys, analysis, analysis.figures, analysis.cli, analysis.report; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('jax', 'jaxlib', 'flax', 'optax') "
            "or m in ('mdm.train', 'mdm.model', 'mdm.trainer')); print(bad); sys.exit(1 if bad else 0)")
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=repo, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
