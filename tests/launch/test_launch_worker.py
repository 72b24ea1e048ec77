"""launch/worker.py with a stand-in trainer: DONE skip, SIGTERM forwarded (exit 75), requeue
under SLURM, multi-process commands; an edited spec (unknown entry point, foreign repo) is
refused and nothing runs.

The stand-in trainer is not an entry point the worker's command line accepts, so these tests call
`worker.run` with an explicit allow-list and directory (FAKE_ALLOW), in-process or from a small
`python -c` driver."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from launch import worker
from launch.expand import VALIDATORS, plan
from launch.spec import ENTRYPOINTS, REPO, LaunchError, RunSpec

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


def fake_allow(spec):
    return {"entrypoints": ("fake_trainer",), "repo": spec.repo}


DRIVER = ("import sys; from launch import worker; from launch.spec import RunSpec; "
          "s = RunSpec.read(sys.argv[1]); "
          "sys.exit(worker.run(s, entrypoints=('fake_trainer',), repo=s.repo))")


def _worker(spec, env):
    return subprocess.Popen([sys.executable, "-c", DRIVER, spec.spec_path],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=REPO)


def test_done_runs_are_skipped(tmp_path):
    spec = make_spec(tmp_path)
    os.makedirs(spec.run_dir)
    open(os.path.join(spec.run_dir, "DONE"), "w").close()
    assert worker.run(spec, **fake_allow(spec)) == 0
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


# --- edited specs are refused ------------------------------------------------------------------
PLANTED = "import pathlib, sys; pathlib.Path({marker!r}).write_text(' '.join(sys.argv))\n"


def _cli_worker(spec_path):
    return subprocess.run([sys.executable, "-m", "launch.worker", spec_path], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def _assert_nothing_ran(spec, marker, p):
    assert p.returncode == worker.REFUSED != 0, p.stdout + p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "refused" in lines[0] and "nothing was started" in lines[0], lines
    assert not marker.exists()
    for path in (spec.log_path, spec.state_path, spec.run_dir):
        assert not os.path.exists(path), path


@pytest.mark.parametrize("entrypoint", ["os", "fake_trainer", "planted", "mdm.train.x"])
def test_a_spec_with_an_unknown_entry_point_is_refused(tmp_path, entrypoint):
    spec = make_spec(tmp_path)
    marker = tmp_path / "MARKER"
    (tmp_path / "repo" / "planted.py").write_text(PLANTED.format(marker=str(marker)))
    spec.entrypoint, spec.repo = entrypoint, REPO       # an edited spec, launcher's own repo
    spec.write()
    p = _cli_worker(spec.spec_path)
    _assert_nothing_ran(spec, marker, p)
    assert f"entry point {entrypoint!r} is not one the worker runs" in p.stderr
    with pytest.raises(LaunchError, match="is not one the worker runs"):
        worker.run(spec)
    assert not os.path.exists(spec.log_path)


def test_a_spec_with_a_foreign_repo_is_refused(tmp_path):
    """A known entry point, but `repo` names a directory holding its own mdm/train.py: run from
    there, `python -m mdm.train` would import the planted module."""
    spec = make_spec(tmp_path)
    marker = tmp_path / "MARKER"
    foreign = tmp_path / "foreign"
    (foreign / "mdm").mkdir(parents=True)
    (foreign / "mdm" / "__init__.py").write_text("")
    (foreign / "mdm" / "train.py").write_text(PLANTED.format(marker=str(marker)))
    spec.entrypoint, spec.repo = "mdm.train", str(foreign)
    spec.write()
    p = _cli_worker(spec.spec_path)
    _assert_nothing_ran(spec, marker, p)
    assert f"repo {str(foreign)!r} is not this launcher's repository" in p.stderr
    with pytest.raises(LaunchError, match="is not this launcher's repository"):
        worker.run(spec)


def test_an_unreadable_spec_is_one_line_and_exit_2(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    p = _cli_worker(str(bad))
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, p.stderr


def test_launcher_specs_pass_the_check_and_the_allow_list_matches_the_validators(tmp_path):
    assert set(ENTRYPOINTS) == set(VALIDATORS)
    _, specs = plan("experiments/demo.py:smoke", str(tmp_path))
    for s in specs:
        assert worker.check_spec(s) == REPO
    assert REPO == os.path.dirname(os.path.dirname(os.path.abspath(worker.__file__)))
