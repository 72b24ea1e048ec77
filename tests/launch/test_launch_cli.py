"""launch/: specs, dry runs of every executor, status, and bad input rejected before anything
is written or submitted."""
import json
import os
import shlex
import time

import pytest
import yaml

from launch import cli
from launch.executor import make_executor
from launch.expand import plan
from launch.spec import LaunchError, RunSpec, write_state
from launch.status import run_status

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch):
    monkeypatch.chdir(REPO)


def run_cli(capsys, *args):
    rc = cli.main(list(args))
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_expand_writes_nothing_and_specs_round_trip(tmp_path, capsys):
    rc, out, _ = run_cli(capsys, "expand", "experiments/demo.py", "--runs-root", str(tmp_path),
                         "--json")
    assert rc == 0 and os.listdir(tmp_path) == []
    specs = [RunSpec.from_dict(d) for d in json.loads(out)]
    from experiments.demo import KINDS
    n = len(KINDS["grid"]["sizes"])                 # one WSD run per size
    assert len(specs) == n and len({s.run_id for s in specs}) == n
    s = specs[0]
    assert s.run_dir == os.path.join(str(tmp_path), "demo", s.run_id)
    assert s.experiment == "experiments/demo.py" and s.entrypoint == "mdm.train"
    args = s.train_args()
    assert args[:4] == ["-m", "mdm.train", "--config", f"experiments/demo.py:{s.arg}"]
    assert f"--config.run_id={s.run_id}" in args and "--config.sweep=demo" in args
    path = s.write(str(tmp_path / "x.json"))
    assert RunSpec.read(path) == s


def test_set_overrides_are_typed_and_change_the_id(tmp_path):
    _, a = plan("experiments/demo.py:smoke", str(tmp_path))
    _, b = plan("experiments/demo.py:smoke", str(tmp_path), {"optimizer.lr": "1e-3"})
    _, c = plan("experiments/demo.py:smoke", str(tmp_path), {"train.max_steps": "3"})
    assert [s.run_id for s in a] != [s.run_id for s in b]
    assert [s.run_id for s in a] == [s.run_id for s in c]  # max_steps only chunks a run
    assert b[0].overrides == {"optimizer.lr": 1e-3}
    assert "--config.optimizer.lr=0.001" in b[0].train_args()
    assert "--config.train.max_steps=3" in c[0].train_args()


@pytest.mark.parametrize("args,message", [
    (["run", "experiments/demo.py", "--runs-root", "{missing}"], "does not exist"),
    (["run", "experiments/demo.py", "--set", "model.no_such_field=3"],
     "unknown config field config.model.no_such_field"),
    (["run", "experiments/demo.py", "--set", "train.physical_batch=big"],
     "config.train.physical_batch: 'big' is not a valid int"),
    (["run", "experiments/demo.py", "--set", "model.num_heads=3"], "config.model.num_heads"),
    (["run", "experiments/demo.py", "--executor", "slurm", "--opt", "partitoin=gpu"],
     "executor slurm has no option 'partitoin'"),
    (["run", "experiments/demo.py", "--executor", "slurm", "--opt", "max_requeues=many"],
     "max_requeues='many' is not a valid int"),
    (["run", "experiments/demo.py", "--executor", "lsf"], "unknown executor 'lsf'"),
    (["run", "experiments/demo.py", "--executor", "tpu", "--parallel", "2"],
     "--parallel does not apply"),
    (["run", "experiments/demo.py:nope"], "unknown sweep 'nope'"),
    (["run", "experiments/demo.py:grid,sise=s1"], "unknown key 'sise'"),
    (["run", "experiments/missing.py"], "does not exist"),
    (["run", "experiments/sampling.py"], "config.sampling.checkpoint: empty"),
    (["run", "experiments/demo.py", "--hosts", "0"], "--hosts must be >= 1"),
    (["run", "experiments/demo.py", "--set", "multihost.num_processes=2"], "set by the launcher"),
    (["run", "experiments/demo.py", "--sweep-name", "a/b"], "must use only"),
])
def test_bad_input_is_an_error_before_anything_is_written(tmp_path, capsys, args, message):
    root = tmp_path / "runs"
    root.mkdir()
    args = [a.replace("{missing}", str(tmp_path / "nowhere")) for a in args]
    if "--runs-root" not in args:
        args += ["--runs-root", str(root)]
    rc, out, err = run_cli(capsys, *args)
    assert rc == 2 and message in err, err
    assert os.listdir(root) == [] and not (tmp_path / "nowhere").exists()


def test_duplicate_run_ids_are_an_error(tmp_path, capsys):
    exp = tmp_path / "dup.py"
    exp.write_text("from experiments.base import get_config as base\n"
                   "from experiments.sweep import Point, Sweep\n"
                   "def get_config(arg=None):\n    return base('tiny')\n"
                   "def sweep(arg=None):\n"
                   "    return Sweep('dup', [Point('a'), Point('a')])\n")
    rc, _, err = run_cli(capsys, "run", str(exp), "--runs-root", str(tmp_path))
    assert rc == 2 and "duplicate run id" in err
    assert os.listdir(tmp_path) == ["dup.py"]


def test_slurm_dry_run_prints_an_array_and_a_multinode_job(tmp_path, capsys):
    rc, out, _ = run_cli(capsys, "run", "experiments/demo.py:smoke", "--runs-root",
                         str(tmp_path), "--executor", "slurm", "--dry-run", "--opt",
                         "partition=gpu", "--opt", "time=01:00:00", "--opt", "gres=gpu:8",
                         "--env", "XLA_FLAGS=--foo bar", "--parallel", "4")
    assert rc == 0 and os.listdir(tmp_path) == []
    for line in ("#SBATCH --array=0-1%4", "#SBATCH --partition=gpu", "#SBATCH --time=01:00:00",
                 "#SBATCH --gres=gpu:8", "#SBATCH --requeue", "#SBATCH --signal=B:TERM@120",
                 "export XLA_FLAGS='--foo bar'", '"${SPECS[$SLURM_ARRAY_TASK_ID]}"',
                 "-m launch.worker"):
        assert line in out, line
    rc, out, _ = run_cli(capsys, "run", "experiments/demo.py:mh", "--runs-root", str(tmp_path),
                         "--executor", "slurm", "--dry-run", "--hosts", "4", "--opt",
                         "ntasks_per_node=2", "--opt", "coordinator=head")
    assert rc == 0
    assert "#SBATCH --nodes=2" in out and "#SBATCH --ntasks-per-node=2" in out
    assert "#SBATCH --ntasks=4" in out and "--coordinator head" in out
    assert "--array" not in out


def test_tpu_dry_run_prints_the_gcloud_sequence(tmp_path, capsys):
    rc, out, _ = run_cli(capsys, "run", "experiments/demo.py:smoke", "--runs-root",
                         str(tmp_path), "--executor", "tpu", "--dry-run", "--opt",
                         "accelerator=v5p-32", "--opt", "zone=us-east5-a", "--opt", "spot=true",
                         "--opt", "remote_root=/gcs/b/runs", "--env", "XLA_FLAGS=x")
    assert rc == 0 and os.listdir(tmp_path) == []
    cmds = [l for l in out.splitlines() if l.startswith(("gcloud", "tar"))]
    steps = [l.split()[4] if l.startswith("gcloud") else "tar" for l in cmds]
    assert steps == ["create", "tar", "scp", "ssh", "ssh", "ssh", "delete"], steps
    assert "--accelerator-type=v5p-32" in cmds[0] and "--spot" in cmds[0]
    run = shlex.split(cmds[4])
    assert "--worker=all" in run and "--zone=us-east5-a" in run
    command = [a for a in run if a.startswith("--command=")][0]
    assert "test -e /gcs/b/runs/demo-smoke/" in command and "/DONE ||" in command
    assert "--workdir /gcs/b/runs/demo-smoke/" in command and "export XLA_FLAGS=x" in command


def test_xpk_dry_runs_for_tpu_gpu_and_jobset(tmp_path, capsys):
    rc, out, _ = run_cli(capsys, "run", "experiments/demo.py:smoke", "--runs-root",
                         str(tmp_path), "--executor", "xpk", "--dry-run", "--opt", "cluster=c1",
                         "--opt", "device=v5p-32", "--opt", "num_slices=2")
    assert rc == 0
    cmds = [shlex.split(l) for l in out.splitlines() if l.startswith("xpk")]
    assert len(cmds) == 2
    assert {"--cluster=c1", "--tpu-type=v5p-32", "--num-slices=2"} <= set(cmds[0])
    names = [a.split("=", 1)[1] for c in cmds for a in c if a.startswith("--workload=")]
    assert all(len(n) <= 40 and n[0].isalpha() and n == n.lower() for n in names)
    assert len(set(names)) == 2
    rc, out, _ = run_cli(capsys, "run", "experiments/demo.py:mh", "--runs-root", str(tmp_path),
                         "--executor", "xpk", "--dry-run", "--opt", "device=h100-80gb-8")
    (cmd,) = [shlex.split(l) for l in out.splitlines() if l.startswith("xpk")]
    assert "--device-type=h100-80gb-8" in cmd and "--num-nodes=2" in cmd
    command = [a for a in cmd if a.startswith("--command=")][0]
    assert "--config.multihost.process_id=$NODE_RANK" in command
    rc, out, _ = run_cli(capsys, "run", "experiments/demo.py:mh", "--runs-root", str(tmp_path),
                         "--executor", "xpk", "--dry-run", "--opt", "mode=jobset", "--opt",
                         "device=h100-80gb-8", "--opt", "docker_image=img:1")
    (doc,) = list(yaml.safe_load_all(out))
    job = doc["spec"]["replicatedJobs"][0]["template"]["spec"]
    assert doc["kind"] == "JobSet" and job["parallelism"] == 2
    assert job["completionMode"] == "Indexed"
    pod = job["template"]["spec"]
    assert pod["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"}
    assert "JOB_COMPLETION_INDEX" in pod["containers"][0]["command"][2]
    rc, out, _ = run_cli(capsys, "run", "experiments/demo.py:smoke", "--runs-root",
                         str(tmp_path), "--executor", "xpk", "--dry-run", "--opt", "mode=jobset",
                         "--opt", "device=v5p-32", "--opt", "docker_image=img:1", "--opt",
                         "topology=2x2x4")
    docs = list(yaml.safe_load_all(out))
    pod = docs[0]["spec"]["replicatedJobs"][0]["template"]["spec"]
    assert pod["parallelism"] == 4  # v5p-32 = 16 chips = 4 hosts of 4 chips
    assert pod["template"]["spec"]["nodeSelector"]["cloud.google.com/gke-tpu-topology"] == "2x2x4"
    assert os.listdir(tmp_path) == []


def test_executor_without_its_tool_fails_before_submitting(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    _, specs = plan("experiments/demo.py:smoke", str(tmp_path))
    for name in ("slurm", "tpu", "xpk"):
        with pytest.raises(LaunchError, match="is not on PATH"):
            make_executor(name, out=lambda s: None).submit(specs)
    assert os.listdir(tmp_path) == []


def _write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def test_status_reads_run_directories(tmp_path, capsys):
    grid = "experiments/demo.py:grid,sizes=w8+w16+w32+w48+w64+w96+w128+w160+w192,band=0+0"
    _, specs = plan(grid, str(tmp_path))
    done, pre, nan, dead, live, queued, missing = specs[:7]
    metric = json.dumps({"step": 5, "tokens": 5120, "loss": 2.5}) + "\n"
    for s in (done, pre, nan, dead, live):
        _write(os.path.join(s.run_dir, "config.json"), json.dumps(
            {"resolved": {"total_tokens": 25600}}))
        _write(os.path.join(s.run_dir, "metrics.jsonl"), metric + '{"step": 6, "tok')  # torn
    _write(os.path.join(done.run_dir, "eval.jsonl"), json.dumps({"bits": 3.5}) + "\n")
    for s, st in ((done, "done"), (pre, "preempted"), (nan, "nan")):
        _write(os.path.join(s.run_dir, "summary.json"), json.dumps({"status": st, "tokens": 5120}))
    _write(os.path.join(done.run_dir, "DONE"), "")
    old = time.time() - 3600
    os.utime(os.path.join(dead.run_dir, "metrics.jsonl"), (old, old))
    os.utime(os.path.join(dead.run_dir, "config.json"), (old, old))
    write_state(dead, "exited", rc=1)
    write_state(live, "running", pid=os.getpid())
    write_state(queued, "queued", job_id="77_3")
    got = {s.run_id: run_status(s) for s in specs[:7]}
    assert [got[s.run_id]["status"] for s in (done, pre, nan, dead, live, queued, missing)] == \
        ["done", "preempted", "failed", "failed", "running", "queued", "missing"]
    assert got[done.run_id]["tokens"] == 5120 and got[done.run_id]["loss"] == 2.5
    assert got[done.run_id]["bits"] == 3.5 and got[done.run_id]["total_tokens"] == 25600
    assert got[nan.run_id]["detail"] == "nan" and got[dead.run_id]["detail"].startswith("exit 1")
    rc, out, _ = run_cli(capsys, "status", grid, "--runs-root", str(tmp_path))
    assert rc == 0
    assert "demo: 9 runs: 1 done, 1 running, 1 queued, 1 preempted, 2 failed, 3 missing" in out
    # `run` skips done, running and queued runs
    rc, out, err = run_cli(capsys, "run", grid, "--runs-root", str(tmp_path), "--dry-run")
    assert "9 runs, 6 to launch (skipped: 1 done, 1 running, 1 queued)" in err


def test_a_sweep_whose_entrypoint_does_not_exist_is_refused(tmp_path, capsys):
    exp = tmp_path / "future.py"
    exp.write_text(
        "from experiments.base import get_config as _g\n"
        "from experiments.sweep import Point, Sweep\n"
        "def get_config(arg=None):\n    return _g('tiny')\n"
        "def sweep(arg=None):\n"
        "    return Sweep('future', [Point('a', '')], entrypoint='mdm.no_such_entrypoint')\n")
    root = tmp_path / "runs"
    root.mkdir()
    rc, out, err = run_cli(capsys, "run", str(exp), "--runs-root", str(root))
    assert rc == 2 and "mdm.no_such_entrypoint`, which does not exist yet" in err, err
    assert os.listdir(root) == []


def test_a_sweep_whose_entrypoint_the_worker_does_not_run_is_refused(tmp_path, capsys):
    exp = tmp_path / "other.py"
    exp.write_text(
        "from experiments.base import get_config as _g\n"
        "from experiments.sweep import Point, Sweep\n"
        "def get_config(arg=None):\n    return _g('tiny')\n"
        "def sweep(arg=None):\n"
        "    return Sweep('other', [Point('a', '')], entrypoint='os')\n")
    root = tmp_path / "runs"
    root.mkdir()
    rc, out, err = run_cli(capsys, "run", str(exp), "--runs-root", str(root))
    assert rc == 2 and "`python -m os`, which is not an entry point the worker runs" in err, err
    assert os.listdir(root) == []
