"""The sampling-defaults study: mdm.eval_samples (one setting -> a contract run directory with
sample metrics) and analysis.sampling_defaults (runs -> the best setting per task,
defaults.json, a table)."""
import json
import math
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from mdm import run_contract as rc
from analysis.sampling_defaults import StudyError, choose_defaults, main as study_main

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECTION = {"steps": 64, "temperature": 1.0, "guidance": 0.0, "sampler": "ancestral",
           "top_p": 1.0, "unmask_schedule": "linear"}


# --- choose_defaults on hand-built frames (the answer is known) ----------------------------------
def _row(section, metrics, done=True, run_id=None, **setting):
    """One runs-frame row: a setting of `section` and summary.sampling.<key>.<metric> values."""
    row = {"run_id": run_id or f"r{np.random.randint(1 << 30)}", "done": done,
           "status": "done" if done else "running"}
    for sec in ("text", "image", "audio"):
        for k, v in SECTION.items():
            row[f"config.sampling.{sec}.{k}"] = v
    for k, v in setting.items():
        row[f"config.sampling.{section}.{k}"] = v
    for k, v in metrics.items():
        row[f"summary.sampling.{k}"] = v
    return row


def _frame():
    rows = [
        # t2i: higher attribute accuracy wins; the unfinished run's 0.99 must not count
        _row("image", {"t2i.attribute_accuracy": 0.40, "t2i.seconds_per_sample": 0.1},
             steps=16, sampler="ancestral", guidance=0.0),
        _row("image", {"t2i.attribute_accuracy": 0.80, "t2i.seconds_per_sample": 0.3},
             steps=32, sampler="confidence", guidance=2.0),
        _row("image", {"t2i.attribute_accuracy": 0.60}, steps=64, sampler="confidence",
             guidance=0.0),
        _row("image", {"t2i.attribute_accuracy": 0.99}, done=False, steps=16,
             sampler="margin", guidance=5.0),
        # caption from the same image runs: lower CER wins
        _row("image", {"i2t.cer": 0.9}, steps=16, sampler="ancestral", guidance=0.0),
        _row("image", {"i2t.cer": 0.5}, steps=64, sampler="ancestral", guidance=3.0),
        # t2s: higher word accuracy; two seeds of one setting average to 0.6 < 0.7
        _row("audio", {"t2s.word_accuracy": 0.9}, steps=16, guidance=1.0),
        _row("audio", {"t2s.word_accuracy": 0.3}, steps=16, guidance=1.0),
        _row("audio", {"t2s.word_accuracy": 0.7}, steps=64, guidance=3.0, sampler="confidence"),
        # text: a tie on bigram_js goes to fewer steps
        _row("text", {"text.bigram_js": 0.30}, steps=64, temperature=0.7),
        _row("text", {"text.bigram_js": 0.30}, steps=16, temperature=0.9),
        _row("text", {"text.bigram_js": 0.45}, steps=32, temperature=1.0),
    ]
    return pd.DataFrame(rows)


def test_choose_defaults_picks_the_known_best_setting_per_task():
    from mdm.samplers import SamplerConfig
    d = choose_defaults(_frame())
    assert set(d) == {"t2i", "i2t", "t2s", "text"}  # no run scored s2t
    assert d["t2i"] == dict(method="confidence", steps=32, temperature=1.0, guidance=2.0,
                            top_p=1.0, schedule="linear")
    assert (d["i2t"]["steps"], d["i2t"]["guidance"]) == (64, 3.0)
    assert (d["t2s"]["steps"], d["t2s"]["guidance"], d["t2s"]["method"]) == (64, 3.0, "confidence")
    assert (d["text"]["steps"], d["text"]["temperature"]) == (16, 0.9)
    for kw in d.values():
        assert isinstance(SamplerConfig(**kw), SamplerConfig)
        assert isinstance(kw["steps"], int) and isinstance(kw["guidance"], float)


def test_choose_defaults_t2i_falls_back_to_the_mean_attribute_accuracy():
    rows = [_row("image", {"t2i.digit": 1.0, "t2i.shape": 0.0, "t2i.colour": 0.0,
                           "t2i.position": 0.0, "t2i.size": 0.0}, steps=16),       # mean 0.2
            _row("image", {"t2i.digit": 0.5, "t2i.shape": 0.5, "t2i.colour": 0.5,
                           "t2i.position": 0.5, "t2i.size": 0.5}, steps=32)]       # mean 0.5
    assert choose_defaults(pd.DataFrame(rows))["t2i"]["steps"] == 32


def test_choose_defaults_bad_input():
    assert choose_defaults(pd.DataFrame([{"run_id": "a", "done": True}])) == {}
    no_settings = pd.DataFrame([{"run_id": "a", "done": True, "summary.sampling.t2s.word_accuracy": 0.3}])
    with pytest.raises(StudyError, match="setting column"):
        choose_defaults(no_settings)
    with pytest.raises(StudyError, match="unknown task"):
        choose_defaults(_frame(), tasks=("t2v",))


# --- the study CLI on hand-written run directories -------------------------------------------------
def _write_run(root, sweep, run_id, section, metrics, checkpoint="/ck/a", **setting):
    from experiments.sampling import sampling_section
    d = os.path.join(root, sweep, run_id)
    os.makedirs(d)
    s = sampling_section().to_dict()
    s["checkpoint"], s["num_samples"] = checkpoint, 8
    s[section].update(setting)
    resolved = {k: 1 for k in rc.RESOLVED_KEYS}
    rc.write_json_atomic(os.path.join(d, rc.CONFIG_FILE), {
        "config": {"sampling": s}, "resolved": resolved, "run_id": run_id, "sweep": sweep})
    rc.append_jsonl(os.path.join(d, rc.METRICS_FILE), {k: 1.0 for k in rc.METRICS_KEYS})
    rc.write_json_atomic(os.path.join(d, rc.SUMMARY_FILE), {
        "status": "done", "steps": 1, "tokens": 1, "flops": 1, "wall_s": 1, "final_eval": {},
        "sampling": metrics})
    open(os.path.join(d, rc.DONE_FILE), "w").close()
    rc.validate_run_dir(d)


def test_study_cli_writes_defaults_and_markdown(tmp_path, capsys):
    root = str(tmp_path / "runs")
    _write_run(root, "sampling-image", "a", "image",
               {"t2i": {"attribute_accuracy": 0.25, "seconds_per_sample": 0.1}}, steps=16)
    _write_run(root, "sampling-image", "b", "image",
               {"t2i": {"attribute_accuracy": 0.75, "seconds_per_sample": 0.2}}, steps=32,
               guidance=2.0, sampler="confidence")
    _write_run(root, "sampling-text", "c", "text", {"text": {"bigram_js": 0.4}}, steps=16)
    _write_run(root, "sampling-text", "d", "text", {"text": {"bigram_js": 0.2}}, steps=64,
               temperature=0.7)
    _write_run(root, "other", "e", "text", {"text": {"bigram_js": 0.0}}, steps=8)  # not the study
    out = str(tmp_path / "out")
    assert study_main([root, "--out", out]) == 0
    d = json.load(open(os.path.join(out, "defaults.json")))
    assert d["defaults"]["t2i"] == dict(method="confidence", steps=32, temperature=1.0,
                                        guidance=2.0, top_p=1.0, schedule="linear")
    assert d["defaults"]["text"]["steps"] == 64 and d["defaults"]["text"]["temperature"] == 0.7
    assert d["decided_by"]["t2i"]["value"] == 0.75 and d["decided_by"]["t2i"]["runner_up"] == 0.25
    assert d["decided_by"]["text"]["metric"] == "text.bigram_js"
    assert d["n_runs"] == 4 and d["checkpoint"] == "/ck/a" and d["num_samples"] == [8]
    assert d["python"]["t2i"].startswith("SamplerConfig(method='confidence', steps=32")
    md = open(os.path.join(out, "sampling_table.md")).read()
    assert "| t2i | t2i.attribute_accuracy | higher | confidence | 32 |" in md
    assert "### text: text.bigram_js (lower is better)" in md
    table = pd.read_csv(os.path.join(out, "sampling_table.csv"))
    t2i = table[table["task"] == "t2i"]
    assert list(t2i["mean"]) == [0.75, 0.25] and list(t2i["rank"]) == [1, 2]
    assert "| t2i |" in capsys.readouterr().out


def test_study_cli_bad_input(tmp_path, capsys):
    root = str(tmp_path / "runs")
    os.makedirs(root)
    assert study_main([root]) == 2
    assert "no finished runs" in capsys.readouterr().err
    assert study_main([str(tmp_path / "nowhere")]) == 2
    assert "not a directory" in capsys.readouterr().err
    _write_run(root, "sampling-text", "a", "text", {"text": {"bigram_js": 0.4}}, checkpoint="/ck/a")
    _write_run(root, "sampling-text", "b", "text", {"text": {"bigram_js": 0.3}}, checkpoint="/ck/b",
               steps=16)
    assert study_main([root, "--out", str(tmp_path / "o")]) == 2
    assert "choose one with --checkpoint" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "o")
    assert study_main([root, "--checkpoint", "/ck/b", "--out", str(tmp_path / "o")]) == 0
    assert json.load(open(tmp_path / "o" / "defaults.json"))["defaults"]["text"]["steps"] == 16


# --- mdm.eval_samples: configuration and checkpoint errors (no model needed) ------------------------------
def _cfg(arg="checkpoint=/nowhere"):
    from experiments.sampling import get_config
    return get_config(arg)


def test_sampling_sections_map_to_sampler_configs():
    from mdm.generation_tasks import TASKS, validate
    c = _cfg("checkpoint=/x,modality=audio,steps=24,guidance=2,sampler=confidence,"
             "tasks=t2s+s2t+text+i2t")
    c.sampling.audio.unmask_schedule = "cosine"
    c.sampling.audio.top_p = 0.9
    s = validate(c)
    assert list(s) == ["t2s", "s2t", "text", "i2t"]
    a = s["t2s"]
    assert (a.method, a.steps, a.guidance, a.schedule, a.top_p, a.temperature) == \
        ("confidence", 24, 2.0, "cosine", 0.9, 1.0)
    assert s["s2t"] == a                                  # s2t uses the audio section too
    assert s["text"].guidance == 0.0 and s["text"].steps == 128
    assert s["i2t"].guidance == 3.0                       # image section default
    # one task vocabulary: plain text plus the token space's task tokens
    from mdm.token_space import TASKS as TOKEN_TASKS
    assert set(TASKS) == {"text"} | {t.lower() for t in TOKEN_TASKS}


@pytest.mark.parametrize("field,value,message", [
    ("image.steps", 0, "config.sampling.image.steps"),
    ("audio.temperature", 0.0, "config.sampling.audio.temperature"),
    ("text.sampler", "beam", "config.sampling.text.sampler"),
    ("image.unmask_schedule", "quadratic", "config.sampling.image.unmask_schedule"),
    ("image.guidance", -1.0, "config.sampling.image.guidance"),
    ("tasks", "t2i+t2v", "config.sampling.tasks"),
    ("checkpoint", "", "config.sampling.checkpoint"),
])
def test_bad_sampling_values_name_the_field(field, value, message):
    from mdm.config_validation import ConfigError
    from mdm.generation_tasks import validate
    c = _cfg()
    node = c.sampling
    *head, last = field.split(".")
    for h in head:
        node = node[h]
    node[last] = value
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        validate(c)


def _fake_run(tmp_path, source, steps=(), name=""):
    d = tmp_path / (name or f"run_{source}")
    (d / "checkpoints").mkdir(parents=True)
    for s in steps:
        (d / "checkpoints" / str(s)).mkdir()
    (d / "config.json").write_text(json.dumps({"config": {"data": {"source": source,
                                                                    "path": "/x"}},
                                               "resolved": {}, "run_id": "r"}))
    return str(d)


def test_unusable_checkpoints_are_clear_errors(tmp_path):
    from mdm.eval_samples import SampleError, resolve_checkpoint
    with pytest.raises(SampleError, match="does not exist"):
        resolve_checkpoint(str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(SampleError, match="not a run directory"):
        resolve_checkpoint(str(tmp_path / "empty"))
    with pytest.raises(SampleError, match="trained on 'synthetic' data, which has no tokenizers"):
        resolve_checkpoint(_fake_run(tmp_path, "synthetic", [10]))
    with pytest.raises(SampleError, match="no checkpoint to sample from"):
        resolve_checkpoint(_fake_run(tmp_path, "shards"))
    ok = _fake_run(tmp_path, "shards", (20, 40), name="ok")
    assert resolve_checkpoint(ok)[2] == 40 and resolve_checkpoint(ok, 20)[2] == 20
    with pytest.raises(SampleError, match=r"no checkpoint at step 30; available: \[20, 40\]"):
        resolve_checkpoint(ok, 30)


@pytest.mark.parametrize("module", ["mdm.eval_samples", "mdm.sample"])   # new name, old alias
def test_sample_cli_reports_a_missing_checkpoint_with_exit_2(tmp_path, module):
    out = tmp_path / "out"
    p = subprocess.run([sys.executable, "-m", module, "--config",
                        "experiments/sampling.py:checkpoint=" + str(tmp_path / "nowhere"),
                        "--workdir", str(out)], cwd=REPO, capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 2, p.stderr[-2000:]
    assert "does not exist" in p.stderr and not out.exists()


# --- mdm.eval_samples on a trained tiny demo model ---------------------------------------------------------
@pytest.mark.slow
def test_sample_writes_a_contract_run_dir_with_finite_metrics(tiny_demo_run, tmp_path):
    from mdm.eval_samples import run_sampling
    c = _cfg(f"checkpoint={tiny_demo_run},modality=image,steps=4,guidance=1,sampler=confidence,"
             "tasks=text+t2i+t2s+i2t+s2t,num_samples=2")
    c.sampling.text.steps = c.sampling.audio.steps = 4
    c.sampling.batch_size = 1                       # two chunks per task
    work = str(tmp_path / "sampling" / "pt")
    summary = run_sampling(c, work)
    assert rc.validate_run_dir(work)["status"] == "done"
    s = summary["sampling"]
    want = {"text": "bigram_js", "t2i": "attribute_accuracy", "t2s": "word_accuracy", "i2t": "cer",
            "s2t": "cer"}
    for task, metric in want.items():
        assert s[task] and all(math.isfinite(v) for v in s[task].values()), (task, s[task])
        assert metric in s[task] and s[task]["seconds_per_sample"] > 0
        meta = json.load(open(os.path.join(work, "samples", task, "samples.json")))
        assert meta["sampler"]["steps"] == 4 and len(meta["files"]) == 2
    attrs = [s["t2i"][a] for a in ("digit", "shape", "colour", "position", "size") if a in s["t2i"]]
    assert s["t2i"]["attribute_accuracy"] == pytest.approx(np.mean(attrs))
    assert 0 <= s["t2i"]["attribute_accuracy"] <= 1 and s["t2s"]["mcd_db"] > 0
    assert s["tokens_per_second"] > 0 and s["seconds_per_sample"] > 0
    cfg = json.load(open(os.path.join(work, "config.json")))
    ck = json.load(open(os.path.join(tiny_demo_run, "config.json")))
    assert cfg["run_id"] == "pt" and cfg["sweep"] == "sampling" and cfg["study"] == "sampling"
    assert cfg["config"]["sampling"]["image"]["guidance"] == 1.0
    assert cfg["resolved"]["params_total"] == ck["resolved"]["params_total"]
    assert cfg["resolved"]["samplers"]["t2i"]["guidance"] == 1.0
    assert cfg["resolved"]["samplers"]["text"]["guidance"] == 0.0
    ck_sum = json.load(open(os.path.join(tiny_demo_run, "summary.json")))
    assert summary["steps"] == ck_sum["steps"] and summary["final_eval"] == ck_sum["final_eval"]


@pytest.mark.slow
def test_two_point_study_through_the_launcher(tiny_demo_run, tmp_path, capsys):
    from analysis import load_runs
    from launch import cli
    root = tmp_path / "runs"
    root.mkdir()
    sweep = (f"experiments/sampling.py:modality=image,steps=2+6,temperature=1.0,guidance=0,"
             f"sampler=confidence,checkpoint={tiny_demo_run}")
    assert cli.main(["run", sweep, "--runs-root", str(root), "--executor", "local",
                     "--set", "sampling.num_samples=2"]) == 0
    capsys.readouterr()
    runs = load_runs(str(root), warn=False).done()
    assert len(runs) == 2 and set(runs["config.sampling.image.steps"]) == {2, 6}
    for d in runs["run_dir"]:
        rc.validate_run_dir(d)
    acc = runs["summary.sampling.t2i.attribute_accuracy"].to_numpy(float)
    assert np.isfinite(acc).all()
    best = runs.sort_values(["summary.sampling.t2i.attribute_accuracy",
                             "config.sampling.image.steps"], ascending=[False, True]).iloc[0]
    d = choose_defaults(runs)
    assert set(d) == {"t2i"}
    assert d["t2i"]["steps"] == best["config.sampling.image.steps"]
    out = str(tmp_path / "study")
    assert study_main([str(root), "--out", out]) == 0
    written = json.load(open(os.path.join(out, "defaults.json")))
    assert written["defaults"] == d and written["checkpoint"] == os.path.abspath(tiny_demo_run)
    assert written["decided_by"]["t2i"]["value"] == pytest.approx(acc.max())
    assert "### t2i: t2i.attribute_accuracy (higher is better)" in \
        open(os.path.join(out, "sampling_table.md")).read()


def test_intervals_mark_settings_beyond_noise_and_the_module_text_is_the_choice():
    """With per-prompt intervals (summary.sampling.<task>.<metric>_lo/_hi) a setting is marked
    'beyond noise' only when its interval and the best's are disjoint; module_source writes the
    chosen SamplerConfigs (parsed here, never run)."""
    import ast

    from analysis.sampling_defaults import module_source, study
    rows = []
    for task, sec, metric, vals in (
            ("t2i", "image", "attribute_accuracy", [(0.8, 0.7, 0.9), (0.75, 0.65, 0.85),
                                                    (0.3, 0.2, 0.4)]),
            ("i2t", "image", "cer", [(0.2, 0.1, 0.3), (0.9, 0.8, 1.0)]),
            ("t2s", "audio", "word_accuracy", [(0.5, 0.4, 0.6), (0.45, 0.35, 0.55)]),
            ("s2t", "audio", "cer", [(0.3, 0.2, 0.4), (0.35, 0.25, 0.45)]),
            ("text", "text", "bigram_js", [(0.3, 0.28, 0.32), (0.5, 0.48, 0.52)])):
        for i, (v, lo, hi) in enumerate(vals):
            rows.append(_row(sec, {f"{task}.{metric}": v, f"{task}.{metric}_lo": lo,
                                   f"{task}.{metric}_hi": hi}, steps=16 * (i + 1)))
    res = study(pd.DataFrame(rows))
    t = res["tables"]["t2i"]
    assert list(t["beyond_noise"]) == [False, False, True]      # 0.75 overlaps, 0.3 does not
    assert res["decided_by"]["t2i"]["interval"] == [0.7, 0.9]
    assert res["decided_by"]["t2i"]["beyond_noise"] == 1
    assert res["decided_by"]["t2s"]["beyond_noise"] == 0
    src = module_source(res, {"checkpoint": "/ck", "num_samples": [100], "n_runs": len(rows)})
    tree = ast.parse(src)
    d = next(n for n in tree.body if isinstance(n, ast.AnnAssign)).value
    got = {k.value: {kw.arg: kw.value.value for kw in v.keywords} for k, v in zip(d.keys, d.values)}
    assert set(got) == {"t2i", "t2s", "i2t", "s2t", "text"}
    assert got["t2i"]["steps"] == 16 and got["i2t"]["steps"] == 16 and got["text"]["steps"] == 16
    assert "/ck" in src and "0.8 [0.7, 0.9]" in src
    with pytest.raises(StudyError):
        module_source({"defaults": {"t2i": {}}, "decided_by": {}}, {})
