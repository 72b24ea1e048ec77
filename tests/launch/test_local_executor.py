"""The local executor end to end with the real trainer: a sweep stopped early resumes from its
checkpoints when relaunched, finished runs are skipped, and the trainer resolves exactly the
config the launcher hashed."""
import json
import os
import subprocess
import sys
import time

import pytest

from experiments import ladder
from launch.sweeps import config_hash, load_module

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _cli(*args, timeout=400):
    env = dict(os.environ, XLA_FLAGS="")  # the runs get their own through --env
    return subprocess.run([sys.executable, "-m", "launch.cli", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_local_sweep_resumes_and_skips_done_runs(tmp_path):
    root = tmp_path / "runs"
    root.mkdir()
    common = ["experiments/demo.py:smoke", "--runs-root", str(root), "--parallel", "2",
              "--env", "XLA_FLAGS=--xla_force_host_platform_device_count=1"]
    # 1. run one of the two, stopped after 5 steps (exit 75, as a preemption would)
    p = _cli("run", *common, "--only", "w16-t24576-*", "--set", "train.max_steps=5")
    assert p.returncode == 1, p.stderr[-3000:]
    st = json.loads(_cli("status", *common[:3], "--json").stdout)
    assert [r["status"] for r in st] == ["missing", "preempted"]
    assert st[1]["tokens"] == 5 * 2048
    # 2. relaunch the grid: same run ids (max_steps only chunks a run); the stopped run resumes
    #    from step 5, the missing one starts, two at a time under one progress bar
    p = _cli("run", *common)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "2 runs, 2 to launch" in p.stderr and "2/2" in p.stderr
    mod = load_module(os.path.join(REPO, "experiments/demo.py"))
    for r, resumed in zip(st, (False, True)):
        d = root / "demo-smoke" / r["run_id"]
        assert (d / "DONE").exists()
        lines = (d / "metrics.jsonl").read_text().splitlines()
        steps = [json.loads(line)["step"] for line in lines]
        assert steps == sorted(set(steps)) and steps[-1] == (12 if resumed else 8)
        log = (root / "demo-smoke" / ".launch" / "logs" / f"{r['run_id']}.log").read_text()
        assert log.count(": start on") == 1 + resumed
        assert ("resumed from the checkpoint at step 5" in log) == resumed
        # the trainer resolved the config the launcher hashed, and logs the ladder's FLOPs
        cfg = json.loads((d / "config.json").read_text())
        assert r["run_id"].endswith("-" + config_hash(cfg["config"]))
        assert cfg["run_id"] == r["run_id"] and cfg["sweep"] == "demo-smoke"
        spec = json.loads((root / "demo-smoke" / ".launch" / "specs" /
                           f"{r['run_id']}.json").read_text())
        assert cfg["resolved"]["flops_per_token"] == ladder.flops_per_token(
            mod.get_config(spec["arg"]))
    # 3. relaunch again: nothing to do
    t0 = time.time()
    p = _cli("run", *common)
    assert p.returncode == 0 and "0 to launch (skipped: 2 done)" in p.stderr
    assert time.time() - t0 < 60
    out = _cli("status", *common[:3]).stdout
    assert "demo-smoke: 2 runs: 2 done" in out


def test_cpu_groups_give_each_concurrent_run_its_own_cpus(monkeypatch):
    from launch import local
    monkeypatch.setattr(local.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 5}, raising=False)
    g = local.cpu_groups(2)
    assert g == [{0, 1}, {2, 3}]                      # disjoint, equal shares
    assert local.cpu_groups(1) == [] and local.cpu_groups(6) == []   # nothing to split / too few


def test_worker_pins_itself_to_the_cpus_the_executor_gave_it(monkeypatch):
    from launch import worker
    got = []
    monkeypatch.setattr(worker.os, "sched_setaffinity", lambda pid, cpus: got.append(cpus),
                        raising=False)
    monkeypatch.setenv(worker.AFFINITY_ENV, "2,3")
    worker.pin_from_env()
    monkeypatch.setenv(worker.AFFINITY_ENV, "")
    worker.pin_from_env()                              # unset: no pinning
    assert got == [{2, 3}]
