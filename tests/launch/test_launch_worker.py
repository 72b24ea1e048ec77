"""launch/worker.py with a stand-in trainer: DONE skip, SIGTERM forwarded (exit 75), requeue
under SLURM, multi-process commands."""
import json
import os
import signal
import subprocess
import sys
import time

from launch import worker
from launch.spec import RunSpec

FAKE = '''
import os, signal, sys, time
args = sys.argv[1:]
workdir = args[args.index("--workdir") + 1]
os.makedirs(workdir, exist_ok=True)
mode = os.environ.get("FAKE_MODE", "wait")
print("fake trainer", " ".join(args), flush=True)
if mode == "exit75":
    sys.exit(75)
stop = []
signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
open(os.path.join(workdir, "started"), "w").close()
deadline = time.time() + 60
while not stop and time.time() < deadline:
    time.sleep(0.05)
print("checkpointed, preempted", flush=True)
sys.exit(75)
'''


def make_spec(tmp_path, hosts=1) -> RunSpec:
    repo = tmp_path / "repo"
    repo.mkdir(exist_ok=True)
    (repo / "fake_trainer.py").write_text(FAKE)
    root = tmp_path / "runs"
    spec = RunSpec(sweep="sw", run_id="r-0123abcd", name="r", config_hash="0123abcd",
                   experiment="experiments/demo.py", arg="size=s0", overrides={"a.b": 1.5},
                   hosts=hosts, entrypoint="fake_trainer", repo=str(repo), runs_root=str(root),
                   run_dir=str(root / "sw" / "r-0123abcd"), config={})
    spec.write()
    return spec


def _worker(spec, env):
    return subprocess.Popen([sys.executable, "-m", "launch.worker", spec.spec_path],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))


def test_done_runs_are_skipped(tmp_path):
    spec = make_spec(tmp_path)
    os.makedirs(spec.run_dir)
    open(os.path.join(spec.run_dir, "DONE"), "w").close()
    assert worker.run(spec) == 0
    assert not os.path.exists(spec.log_path)


def test_sigterm_is_forwarded_and_slurm_requeues(tmp_path):
    spec = make_spec(tmp_path)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "scontrol").write_text(f"#!/bin/sh\necho \"$@\" >> {tmp_path}/scontrol.calls\n")
    (bindir / "scontrol").chmod(0o755)
    env = dict(os.environ, PATH=f"{bindir}:{os.environ['PATH']}", SLURM_JOB_ID="4242",
               SLURM_ARRAY_JOB_ID="4240", SLURM_ARRAY_TASK_ID="2", SLURM_RESTART_COUNT="1")
    p = _worker(spec, env)
    started = os.path.join(spec.run_dir, "started")
    deadline = time.time() + 60
    while not os.path.exists(started) and time.time() < deadline:
        time.sleep(0.05)
    state = json.load(open(spec.state_path))
    assert state["state"] == "running" and state["job_id"] == "4240_2"
    p.send_signal(signal.SIGTERM)
    out, _ = p.communicate(timeout=60)
    assert p.returncode == 75, out
    assert (tmp_path / "scontrol.calls").read_text().split() == ["requeue", "4240_2"]
    log = open(spec.log_path).read()
    assert "checkpointed, preempted" in log and "scontrol requeue 4240_2 (restart 2)" in log
    assert "--config.a.b=1.5" in log and "--config.run_id=r-0123abcd" in log
    assert json.load(open(spec.state_path))["state"] == "queued"
    # the requeue budget is respected
    env["SLURM_RESTART_COUNT"] = "20"
    env["FAKE_MODE"] = "exit75"
    p = _worker(spec, env)
    out, _ = p.communicate(timeout=60)
    assert p.returncode == 75 and "not requeued" in out
    assert (tmp_path / "scontrol.calls").read_text().split() == ["requeue", "4240_2"]


def test_multi_process_commands(tmp_path, monkeypatch):
    spec = make_spec(tmp_path, hosts=2)
    for k in [k for k in os.environ if k.startswith("SLURM_")]:
        monkeypatch.delenv(k)
    cmds = worker.commands(spec, "py")
    assert len(cmds) == 2
    assert [c[-1] for c in cmds] == ["--config.multihost.process_id=0",
                                     "--config.multihost.process_id=1"]
    assert all("--config.multihost.num_processes=2" in c for c in cmds)
    monkeypatch.setenv("SLURM_JOB_ID", "7")
    (cmd,) = worker.commands(spec, "py")
    assert cmd[:2] == ["srun", "--ntasks=2"] and cmd[-1] == spec.train_args()[-1]
    (cmd,) = worker.commands(spec, "py", coordinator="10.1.2.3")
    assert cmd[-3:-1] == ["bash", "-c"]
    assert "--config.multihost.coordinator=10.1.2.3:20007" in cmd[-1]
    assert "process_id=$SLURM_PROCID" in cmd[-1] and "num_processes=$SLURM_NTASKS" in cmd[-1]
