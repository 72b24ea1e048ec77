"""Damaged runs: a malformed line in the middle of a log, a config.json without the resolved
values the fits need, an unreadable summary.json. Each run is marked damaged (not done) with one
clear issue row per cause, and every fit that leaves a run out names it, with its reason, in its
warnings."""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import warnings

import pandas as pd
import pytest

from analysis import results as R
from analysis.isoflop import fit_isoflop
from analysis.loading import load_runs, select_done
from analysis.report import analyse
from analysis.results import load_result
from mdm.run_contract import ContractError, read_jsonl, scan_jsonl


def _corrupt_line(path, index, text="{garbage"):
    lines = open(path).read().splitlines()
    lines[index] = text
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return len(lines)


@pytest.fixture(scope="module")
def damaged(synth, tmp_path_factory):
    """The synthetic isoflop sweep with five done runs damaged in five ways."""
    src, info = synth
    root = tmp_path_factory.mktemp("damaged") / "root"
    shutil.copytree(os.path.join(src, "isoflop"), root / "isoflop")
    skip = {info["torn_run"], info["unfinished_run"], info["preempted_run"]}
    ids = [r for r in info["run_ids"]["isoflop"] if r not in skip]
    # spread over budgets so that every budget keeps >= 3 distinct model sizes
    names = ["log", "eval", "flops", "params", "summary"]
    picked = dict(zip(names, ids[::6][:5]))
    d = {k: root / "isoflop" / rid for k, rid in picked.items()}
    n_lines = _corrupt_line(d["log"] / "metrics.jsonl", 2)
    _corrupt_line(d["eval"] / "eval.jsonl", 1, "[1, 2, 3]")            # valid JSON, not an object
    for key, field in (("flops", "flops_per_token"), ("params", "params_non_embedding")):
        cfg = json.loads((d[key] / "config.json").read_text())
        del cfg["resolved"][field]
        (d[key] / "config.json").write_text(json.dumps(cfg))
    (d["summary"] / "summary.json").write_text('{"status": "done", "steps": 1')   # unreadable
    return str(root), picked, n_lines


@pytest.fixture(scope="module")
def rs(damaged):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_runs(damaged[0])


def test_damaged_runs_are_marked_damaged_not_done(damaged, rs):
    _, picked, n_lines = damaged
    runs = rs.runs.set_index("run_id")
    for key, rid in picked.items():
        assert runs.loc[rid, "status"] == "damaged" and not runs.loc[rid, "done"], key
    dmg = runs["damage"].to_dict()
    assert "metrics.jsonl line 3 is not valid JSON" in dmg[picked["log"]]
    assert "eval.jsonl line 2 is a JSON list, not an object" in dmg[picked["eval"]]
    assert "['flops_per_token']" in dmg[picked["flops"]]
    assert "['params_non_embedding']" in dmg[picked["params"]]
    assert "summary.json unreadable" in dmg[picked["summary"]]
    healthy = runs[~runs.index.isin(picked.values())]
    assert set(healthy["status"]) == {"done", "running", "preempted"}
    assert (healthy["damage"] == "").all()
    # the damaged log's other lines, before and after the bad one, are still curves
    assert runs.loc[picked["log"], "n_metrics"] == n_lines - 1
    steps = rs.metrics.loc[rs.metrics["run_id"] == picked["log"], "step"]
    assert steps.is_monotonic_increasing and steps.max() == runs.loc[picked["log"], "steps"]


def test_one_clear_issue_row_per_damage(damaged, rs):
    _, picked, _ = damaged
    iss = rs.issues
    for key, rid in picked.items():
        rows = iss[iss["run_id"] == rid]
        assert len(rows) == 1, (key, rows.to_dict(orient="records"))
        assert rows["problem"].iloc[0].endswith("run marked damaged"), rows["problem"].iloc[0]
    row = iss[iss["run_id"] == picked["summary"]].iloc[0]
    assert row["file"] == "summary.json" and row["problem"].startswith("unreadable (")
    assert iss[iss["run_id"] == picked["log"]].iloc[0]["problem"].startswith(
        "malformed line(s) 3 (not valid JSON")


def test_the_load_warning_names_the_damaged_runs(damaged):
    root, picked, _ = damaged
    with pytest.warns(UserWarning, match=r"5 damaged \(") as rec:
        load_runs(root)
    msg = str(rec[0].message)
    assert all(rid in msg for rid in picked.values())


def test_select_done_gives_the_damage_as_the_reason(damaged, rs):
    _, picked, _ = damaged
    done, excluded = select_done(rs.runs)
    assert not set(picked.values()) & set(done["run_id"])
    why = {e["run_id"]: e["reason"] for e in excluded}
    assert why[picked["log"]].startswith("status damaged (metrics.jsonl line 3 is not valid JSON")
    assert why[picked["summary"]].startswith("status damaged (summary.json unreadable")


def test_fits_exclude_and_name_every_damaged_run(damaged, rs):
    _, picked, _ = damaged
    out = analyse(rs, studies=("isoflop",), n_bootstrap=0)
    assert out["isoflop"], out["skipped"]
    for m, fit in out["isoflop"].items():
        why = {e["run_id"]: e["reason"] for e in fit.excluded}
        (line,) = [w for w in fit.warnings if w.startswith("excluded from the fit")]
        for key, rid in picked.items():
            assert why[rid].startswith("status damaged ("), (m, key, why.get(rid))
            assert rid in line, (m, key)
        assert "status damaged (summary.json unreadable" in line
        assert not set(picked.values()) & set(fit.run_ids)


def test_a_direct_fit_names_the_run_it_drops_for_a_missing_resolved_value(damaged, rs):
    """A caller passing rows by hand: the run without params_non_embedding has no N; the fit
    leaves it out and says so in its warnings, not only in `excluded`."""
    _, picked, _ = damaged
    done, _ = select_done(rs.runs)
    frame = pd.concat([done, rs.runs[rs.runs["run_id"] == picked["params"]]])
    fit = fit_isoflop(frame, loss="bits_text")
    assert {"run_id": picked["params"], "reason": "N is missing, non-finite or <= 0"} \
        in fit.excluded
    (line,) = [w for w in fit.warnings if w.startswith("excluded from the fit")]
    assert f"N is missing, non-finite or <= 0: {picked['params']}" in line
    # the line survives a JSON round trip once, and follows later additions to `excluded`
    back = load_result(fit.to_dict())
    assert back.warnings == fit.warnings
    fit.excluded = [{"run_id": "r-extra", "reason": "status running"}] + fit.excluded
    (line,) = [w for w in fit.warnings if w.startswith("excluded from the fit")]
    assert "status running: r-extra" in line and picked["params"] in line


def test_every_result_with_excluded_names_them_in_its_warnings():
    classes = [c for c in R._REGISTRY.values() if dataclasses.is_dataclass(c)
               and {"excluded", "warnings"} <= {f.name for f in dataclasses.fields(c)}]
    assert {"ChinchillaFit", "IsoFlopFit", "ModalityLaws", "MixingFit", "BatchSizeFit",
            "CollapseResult", "LeastSquaresFit"} <= {c.__name__ for c in classes}
    for cls in classes:
        required = {f.name: None for f in dataclasses.fields(cls)
                    if f.default is dataclasses.MISSING
                    and f.default_factory is dataclasses.MISSING}
        r = cls(**required, excluded=[{"run_id": "a", "reason": "x"}], warnings=["w"])
        assert r.warnings == ["w", "excluded from the fit (1 run): x: a"], cls
        r.excluded += [{"run_id": "b", "reason": "x"}, {"run_id": "c", "reason": "y"}]
        assert r.warnings == ["w", "excluded from the fit (3 runs): x: a, b; y: c"], cls
        r.excluded = []
        assert r.warnings == ["w"], cls


def test_scan_jsonl_keeps_good_lines_and_read_jsonl_still_refuses(tmp_path):
    p = tmp_path / "m.jsonl"
    p.write_text('{"step": 1}\n{bad\n\n7\n{"step": 4}\n{"step": 5, "lo')
    recs, torn, bad = scan_jsonl(str(p))
    assert [r["step"] for r in recs] == [1, 4] and torn == 1
    assert [i for i, _ in bad] == [2, 4] and "not an object" in bad[1][1]
    with pytest.raises(ContractError, match="line 2 is not valid JSON"):
        read_jsonl(str(p))
    p.write_text('{"step": 1}\n{"step": 2, "lo')
    with pytest.warns(UserWarning, match="torn last line"):
        assert read_jsonl(str(p)) == ([{"step": 1}], 1)
    assert scan_jsonl(str(tmp_path / "none.jsonl")) == ([], 0, [])
