"""Start-up: the persistent compilation cache (mdm.startup) and the start-up breakdown the
trainer logs and writes to summary.json."""
import json
import os
import subprocess
import sys

import jax
import pytest

from mdm import run_contract as rc
from mdm.startup import ENV, enable_compilation_cache, host_tag, resolve_cache_dir

CACHE_OPTIONS = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
                 "jax_persistent_cache_min_entry_size_bytes")


@pytest.fixture
def jax_cache_config():
    """Restore JAX's cache options after the test (nothing compiles in between, so JAX's
    cache, opened at a process's first compile after a directory is set, stays unopened)."""
    saved = {k: getattr(jax.config, k) for k in CACHE_OPTIONS}
    yield
    for k, v in saved.items():
        jax.config.update(k, v)


def test_cache_directory_comes_from_the_environment_or_the_user_cache(monkeypatch, tmp_path,
                                                                      jax_cache_config):
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
    monkeypatch.delenv(ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert resolve_cache_dir() == str(tmp_path / "xdg" / "mdm" / "jax" / host_tag())
    monkeypatch.setenv(ENV, str(tmp_path / "c"))
    want = str(tmp_path / "c" / host_tag())
    assert resolve_cache_dir() == want
    assert resolve_cache_dir(str(tmp_path / "p")) == str(tmp_path / "p" / host_tag())  # argument wins
    assert not os.path.exists(want)
    assert enable_compilation_cache() == want
    assert os.path.isdir(want)                                          # created
    assert jax.config.jax_compilation_cache_dir == want
    assert jax.config.jax_persistent_cache_min_compile_time_secs == 0   # small programs too
    assert jax.config.jax_persistent_cache_min_entry_size_bytes == -1


@pytest.mark.parametrize("value", ["off", "", "OFF", "none"])
def test_cache_is_disabled_by_off_or_empty(monkeypatch, tmp_path, jax_cache_config, value):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv(ENV, value)
    jax.config.update("jax_compilation_cache_dir", None)
    assert resolve_cache_dir() is None
    assert enable_compilation_cache() is None
    assert jax.config.jax_compilation_cache_dir is None
    assert not (tmp_path / "xdg").exists()
    assert enable_compilation_cache("off") is None


PHASES = ("imports", "build", "setup", "state", "eval_setup", "eval_at_start", "first_batch",
          "first_step")


def _check_startup(summary):
    st = summary["startup"]
    assert set(st["phases_s"]) == set(PHASES)           # (summary.json sorts its keys)
    assert all(v >= 0 for v in st["phases_s"].values())
    assert summary["startup_s"] == st["total_s"] > 0
    assert abs(sum(st["phases_s"].values()) - st["total_s"]) < 0.01 * len(PHASES)
    c = st["compile"]
    assert c["programs"] >= 3 and c["seconds"] > 0     # at least init, eval and train steps
    assert 0 <= c["cache_hits"] <= c["programs"]
    return st


def test_startup_breakdown_is_written_to_the_summary(tiny_config, tmp_path):
    from mdm.trainer import train
    c = tiny_config
    c.train.total_tokens = 2 * 16 * 64
    c.eval.update(num_examples=16, at_start=True)
    c.checkpoint.enabled = False
    summary = train(c, str(tmp_path / "run"))
    st = _check_startup(summary)
    assert st["compile"]["cache_dir"] is None          # in-process: the caller's JAX settings
    on_disk = json.loads((tmp_path / "run" / rc.SUMMARY_FILE).read_text())
    assert on_disk["startup"] == st and on_disk["startup_s"] == summary["startup_s"]


def _cli(workdir):
    return [sys.executable, "-m", "mdm.train", "--config", "experiments/base.py:tiny",
            "--workdir", str(workdir), "--progress=false", "--config.train.total_tokens=4096",
            "--config.eval.num_examples=16", "--config.checkpoint.every=0"]


@pytest.mark.slow
def test_two_trainers_compile_into_one_cache_at_once_and_a_third_loads_it(tmp_path, repo_root):
    """Two trainers of the same tiny run start together on an empty cache directory (both
    compile the same programs and write the same entries); both finish, with the same losses.
    A third run then takes every program from the cache, with the same losses again."""
    env = {**os.environ, ENV: str(tmp_path / "cache"), "PYTHONPATH": repo_root}
    env.pop("XLA_FLAGS", None)                    # one CPU device: the launcher's demo runs
    procs = [subprocess.Popen(_cli(tmp_path / f"r{i}"), cwd=repo_root, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i in range(2)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    for p, out in zip(procs, outs):
        assert p.returncode == 0, out[-3000:]
        assert "startup: imports" in out            # the one-line breakdown in the log
    entries = os.listdir(tmp_path / "cache" / host_tag())
    assert any(e.startswith("jit_step-") and e.endswith("-cache") for e in entries), entries
    p = subprocess.run(_cli(tmp_path / "r2"), cwd=repo_root, env=env, capture_output=True,
                       text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    losses = []
    for i in range(3):
        run = tmp_path / f"r{i}"
        summary = json.loads((run / rc.SUMMARY_FILE).read_text())
        st = _check_startup(summary)
        assert st["compile"]["cache_dir"] == str(tmp_path / "cache" / host_tag())
        if i == 2:
            assert st["compile"]["cache_hits"] == st["compile"]["programs"]
        records, _ = rc.read_jsonl(str(run / rc.METRICS_FILE))
        losses.append([r["loss"] for r in records])
    assert losses[0] == losses[1] == losses[2]


def test_demo_report_shows_the_runs_start_up():
    import pandas as pd

    from launch.demo import startup_lines
    runs = pd.DataFrame({"summary.startup_s": [3.0, 5.0],
                         "summary.startup.phases_s.imports": [1.0, 2.0],
                         "summary.startup.phases_s.first_step": [1.5, 2.5],
                         "summary.startup.compile.cache_hits": [9, 0],
                         "summary.startup.compile.programs": [9, 9]})
    line = "".join(startup_lines(runs))
    assert "median over the runs: 4.0 s (imports 1.5, first step 2.0 s)" in line
    assert "9 of 18 compiled programs came from the compilation cache" in line
    assert startup_lines(runs.drop(columns=["summary.startup_s"])) == []
