"""Each run records its study (config.json "study", from its experiment file) and the analysis
selects runs by that record, whatever their sweeps are called; `--sweep ANALYSIS=REGEX` still
overrides, and runs that record nothing fall back to sweep-name matching with a note. Runs are
fabricated by analysis.synthetic (no training)."""
from __future__ import annotations

import json
import os
import warnings

import pytest

from analysis import cli
from analysis.loading import load_runs
from analysis.report import STUDY_SOURCES, make_all_figures
from analysis.synthetic import write_synthetic_runs
from mdm.run_contract import STUDIES


@pytest.fixture(scope="module")
def two_studies(tmp_path_factory):
    """A scaling study filed under "demo" (what `make demo` writes) and a mixing study filed
    under "my-mixtures": neither name matches the other study's sweep pattern."""
    root = str(tmp_path_factory.mktemp("studies") / "runs")
    write_synthetic_runs(root, sweeps=("isoflop", "mixing"),
                         names={"isoflop": "demo", "mixing": "my-mixtures"},
                         studies={"isoflop": "scaling", "mixing": "mixing"})
    os.makedirs(os.path.join(root, "demo_report", "samples"))      # the demo's report lives here too
    return root


def _figures(root, tmp_path, *extra):
    out = tmp_path / "figs"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rc = cli.figures_main([root, "--out", str(out), "--bootstrap", "0", *extra])
    return rc, out


def test_every_recorded_study_is_drawn_without_sweep_options(two_studies, tmp_path, capsys):
    rc, out = _figures(two_studies, tmp_path)
    assert rc == 0
    res = json.loads(capsys.readouterr().out)
    assert res["studies"] == {"scaling": 30, "mixing": 12}
    assert set(res["figures"]) == {"loss_vs_compute", "frontier", "mixing"}
    assert all(os.path.exists(p) for ps in res["figures"].values() for p in ps)
    assert res["notes"] == []          # every run records its study (the report folder is no run)
    # the scaling study's grid is not an IsoFLOP design: that analysis says what it wants
    assert "isoflop study" in res["skipped"]["isoflop"]
    fits = json.load(open(out / "fits.json"))
    assert fits["laws"]["kind"] == "modality_laws" and fits["studies"]["mixing"] == 12


def test_sweep_override_still_selects_by_sweep_name(two_studies, tmp_path, capsys):
    rc, _ = _figures(two_studies, tmp_path, "--sweep", "mixing=^nothing$",
                     "--sweep", "scaling=^demo$")
    assert rc == 0
    res = json.loads(capsys.readouterr().out)
    assert set(res["figures"]) == {"loss_vs_compute", "frontier"}
    assert "mixing" in res["skipped"]
    assert any("sweep overrides" in n for n in res["notes"])
    # an override for an analysis that does not exist is one clear error
    rc, _ = _figures(two_studies, tmp_path, "--sweep", "mixes=my-mixtures")
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "unknown analysis ['mixes']" in err


def test_runs_without_a_record_fall_back_to_sweep_names_with_a_note(tmp_path):
    root = str(tmp_path / "runs")
    write_synthetic_runs(root, sweeps=("mixing", "schedules"),
                         names={"schedules": "old-grid"})       # no study recorded
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = make_all_figures(root, str(tmp_path / "a"), n_bootstrap=0)
        # "mixing" matches its pattern; "old-grid" matches none until it is named
        assert set(res["figures"]) == {"mixing"} and res["studies"] == {}
        assert len(res["notes"]) == 1 and "18 run(s) record no study" in res["notes"][0]
        res = make_all_figures(root, str(tmp_path / "b"), n_bootstrap=0,
                               sweeps={"schedules": "old-grid"})
    assert set(res["figures"]) == {"mixing", "schedules"}


def test_an_unknown_recorded_study_is_an_issue_and_the_sweep_name_decides(tmp_path):
    root = tmp_path / "runs"
    write_synthetic_runs(str(root), sweeps=("schedules",), studies={"schedules": "noise_schedule"})
    run = next((root / "schedules").iterdir())
    cfg = json.loads((run / "config.json").read_text())
    cfg["study"] = "noise_schedules"                                # a typo
    (run / "config.json").write_text(json.dumps(cfg))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rs = load_runs(str(root))
    row = rs.runs.set_index("run_id").loc[run.name]
    assert row["study"] == ""
    problems = list(rs.issues.loc[rs.issues["run_id"] == run.name, "problem"])
    assert any("unknown study 'noise_schedules'" in p for p in problems)
    assert dict(rs.runs["study"].value_counts()) == {"noise_schedule": 5, "": 1}


def test_every_analysed_study_is_a_known_study():
    assert {s for v in STUDY_SOURCES.values() for s in v} <= set(STUDIES)


def test_isoflop_records_feed_both_the_profiles_and_the_laws(tmp_path):
    root = str(tmp_path / "runs")
    write_synthetic_runs(root, sweeps=("isoflop",), names={"isoflop": "profiles"},
                         studies={"isoflop": "isoflop"})
    from analysis.report import analyse
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = analyse(root, n_bootstrap=0, studies=("laws", "isoflop"))
    assert res["skipped"] == {} and res["studies"] == {"isoflop": 30}
    assert len(res["isoflop"]["text"].budgets) == 4 and set(res["laws"].fits) == {"text", "image", "audio"}
