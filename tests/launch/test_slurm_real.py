"""The SLURM executor against a real SLURM: a one-node cluster on localhost, started by this test.

Debian's slurmctld, slurmd, slurm-client and munge are installed when missing (apt-get, as
root), munged / slurmctld / slurmd are started with every file under a temporary directory and
random ports (SlurmUser=root, proctrack/linuxproc, task/none, select/cons_tres with CR_Core, no
accounting; slurmd with `-N localhost`), and stopped by PID at the end. Then, through
`python -m launch.cli run ... --executor slurm`:
  * the demo `smoke` sweep (runs of 8 and 12 steps) as one job array, with train.max_steps=10
    so that the longer run stops early with exit 75 and the worker requeues it (`scontrol
    requeue`): the requeued attempt resumes from the checkpoint and finishes;
  * the demo `mh` sweep: one run as a 2-task job (srun, one process per "host", 2 fake CPU
    devices each): JAX forms one jax.distributed world from the SLURM environment.
Checks: every run has DONE, the requeued run's log shows the restart, the 2-task run's
config.json has num_processes == 2 and 4 devices, and `status` reports everything done.

Skipped, with the reason printed, when the machine does not allow it (not root, no apt-get and
no SLURM binaries, a failed install, or daemons that do not come up).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge")
BINARIES = ("slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "srun", "munged")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _have_binaries() -> bool:
    return all(shutil.which(b) or os.path.exists(f"/usr/sbin/{b}") for b in BINARIES)


def _which(b: str) -> str:
    return shutil.which(b) or f"/usr/sbin/{b}"


def ensure_slurm() -> str:
    """'' when SLURM and munge are usable, else the reason they are not."""
    if _have_binaries():
        return ""
    if os.geteuid() != 0:
        return "SLURM is not installed and installing it needs root"
    if shutil.which("apt-get") is None:
        return "SLURM is not installed and there is no apt-get"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    r = subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES],
                       capture_output=True, text=True, env=env, timeout=600)
    if r.returncode != 0:
        upd = subprocess.run(["apt-get", "update", "-q"], capture_output=True, text=True,
                             env=env, timeout=600)
        r = subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends",
                            *PACKAGES], capture_output=True, text=True, env=env, timeout=600)
        if r.returncode != 0:
            return f"apt-get install {' '.join(PACKAGES)} failed: {(r.stderr or upd.stderr)[-300:]}"
    return "" if _have_binaries() else "SLURM binaries missing after the install"


class Cluster:
    """munged + slurmctld + slurmd on localhost; every file under `root`."""

    def __init__(self, root: str, cpus: int = 4):
        self.root = root
        self.procs: list[subprocess.Popen] = []
        self.conf = os.path.join(root, "slurm.conf")
        self.sock = os.path.join(root, "munge.socket")
        self.cpus = cpus
        self.env = dict(os.environ, SLURM_CONF=self.conf)
        self._held_since: dict[str, float] = {}

    def _spawn(self, argv: list[str], log: str) -> subprocess.Popen:
        p = subprocess.Popen(argv, stdout=open(os.path.join(self.root, log), "w"),
                             stderr=subprocess.STDOUT, env=self.env, start_new_session=True)
        self.procs.append(p)
        return p

    def start(self, timeout: float = 60) -> str:
        """Start the daemons; '' when the node is idle, else the reason it is not."""
        r = self.root
        for d in ("state", "spool", "munge"):
            os.makedirs(os.path.join(r, d), exist_ok=True)
        key = os.path.join(r, "munge", "munge.key")
        with open(key, "wb") as f:
            f.write(os.urandom(128))
        os.chmod(key, 0o600)
        os.chmod(os.path.join(r, "munge"), 0o700)
        self._spawn([_which("munged"), "--foreground", "--force", f"--socket={self.sock}",
                     f"--key-file={key}", f"--pid-file={r}/munge/munged.pid",
                     f"--log-file={r}/munge/munged.log", f"--seed-file={r}/munge/seed"],
                    "munged.out")
        node = (f"NodeName=localhost CPUs={self.cpus} Sockets=1 CoresPerSocket={self.cpus} "
                "ThreadsPerCore=1 RealMemory=4000 State=UNKNOWN")
        conf = f"""
ClusterName=mdmtest
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.sock}
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool
SlurmctldPidFile={r}/slurmctld.pid
SlurmdPidFile={r}/slurmd.pid
SlurmctldLogFile={r}/slurmctld.log
SlurmdLogFile={r}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
SlurmdParameters=config_overrides
KillWait=10
MinJobAge=600
InactiveLimit=0
SlurmctldTimeout=60
SlurmdTimeout=60
{node}
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"""
        with open(self.conf, "w") as f:
            f.write(conf)
        deadline = time.time() + 10
        while not os.path.exists(self.sock) and time.time() < deadline:
            time.sleep(0.1)
        self._spawn([_which("slurmctld"), "-D", "-f", self.conf], "slurmctld.out")
        time.sleep(1.0)
        self._spawn([_which("slurmd"), "-D", "-N", "localhost", "-f", self.conf], "slurmd.out")
        deadline = time.time() + timeout
        last = ""
        while time.time() < deadline:
            if any(p.poll() is not None for p in self.procs):
                break
            q = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True,
                               env=self.env)
            last = (q.stdout + q.stderr).strip()
            if q.returncode == 0 and last.split() and last.split()[0] in ("idle", "mixed"):
                return ""
            time.sleep(0.5)
        return f"the one-node cluster did not come up (sinfo: {last!r}); {self.logs()}"

    def logs(self, n: int = 1500) -> str:
        out = []
        for name in ("munged.out", "slurmctld.log", "slurmd.log", "slurmctld.out", "slurmd.out"):
            p = os.path.join(self.root, name)
            if os.path.exists(p):
                with open(p, errors="replace") as f:
                    out.append(f"--- {name}\n{f.read()[-n:]}")
        return "\n".join(out)

    def queue_empty(self) -> bool:
        q = subprocess.run(["squeue", "-h", "-o", "%i %T"], capture_output=True, text=True,
                           env=self.env)
        return q.returncode == 0 and not q.stdout.strip()

    def release_requeued(self) -> list[str]:
        """Slurm holds a requeued batch job for ~2 minutes (EligibleTime = requeue + 121 s);
        make such jobs eligible now so that the test does not wait."""
        q = subprocess.run(["squeue", "-h", "-t", "PD", "-o", "%i %r"], capture_output=True,
                           text=True, env=self.env)
        held = [l.split()[0] for l in q.stdout.splitlines() if l.strip().endswith("BeginTime")]
        now = time.time()
        for j in held:
            self._held_since.setdefault(j, now)
        # wait a few seconds after the requeue: released at once, slurmctld can allocate the job
        # while its old credential is still being revoked and kill it ("Job credential revoked")
        ids = [j for j in held if now - self._held_since[j] >= 5.0]
        for j in ids:
            subprocess.run(["scontrol", "update", f"JobId={j}", "StartTime=now"],
                           capture_output=True, env=self.env)
        return ids

    def stop(self) -> None:
        """Stop every daemon this cluster started, by PID (slurmd first)."""
        for p in reversed(self.procs):
            if p.poll() is None:
                try:
                    os.kill(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for p in reversed(self.procs):
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.kill(p.pid, signal.SIGKILL)
                p.wait(timeout=5)


def _skip(request, reason: str):
    tr = request.config.pluginmanager.get_plugin("terminalreporter")
    if tr is not None:
        tr.write_line(f"\n[real SLURM test skipped] {reason}")
    pytest.skip(reason)


def _cli(env, *args, timeout=300):
    return subprocess.run([sys.executable, "-m", "launch.cli", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_slurm_array_requeue_and_two_task_job(tmp_path, request):
    reason = ensure_slurm()
    if reason:
        _skip(request, reason)
    cluster = Cluster(str(tmp_path / "slurm"))
    os.makedirs(cluster.root)
    try:
        reason = cluster.start()
        if reason:
            _skip(request, reason)
        runs = tmp_path / "runs"
        runs.mkdir()
        env = dict(cluster.env)
        env.pop("XLA_FLAGS", None)  # the runs get theirs through --env
        common = ["--runs-root", str(runs), "--executor", "slurm",
                  "--env", "JAX_PLATFORMS=cpu", "--opt", "signal_grace_s=30"]
        one = "--xla_force_host_platform_device_count=1"
        two = ("--xla_force_host_platform_device_count=2 "
               "--xla_cpu_collective_call_terminate_timeout_seconds=60")
        p = _cli(env, "run", "experiments/demo.py:smoke", *common, "--env", f"XLA_FLAGS={one}",
                 "--set", "train.max_steps=10")
        assert p.returncode == 0, p.stdout + p.stderr
        assert "submitted array job" in p.stdout
        p = _cli(env, "run", "experiments/demo.py:mh", *common, "--env", f"XLA_FLAGS={two}",
                 "--opt", "ntasks_per_node=2")
        assert p.returncode == 0, p.stdout + p.stderr
        assert "submitted multihost job" in p.stdout

        # A requeued job leaves the queue for a moment before it reappears as pending, so the
        # queue must stay empty for several polls in a row before the jobs count as finished;
        # two polls are enough once every submitted run has its DONE (a requeued run has none
        # until its last attempt ends).
        def every_run_done() -> bool:
            specs = [(runs / sw, f[:-len(".json")]) for sw in ("demo-smoke", "demo-mh")
                     if (runs / sw / ".launch" / "specs").is_dir()
                     for f in os.listdir(runs / sw / ".launch" / "specs") if f.endswith(".json")]
            return len(specs) == 3 and all((sw / r / "DONE").exists() for sw, r in specs)

        deadline = time.time() + 600
        empty_polls = 0
        while time.time() < deadline and empty_polls < 8:
            cluster.release_requeued()
            empty_polls = empty_polls + 1 if cluster.queue_empty() else 0
            if empty_polls >= 2 and every_run_done():
                break
            time.sleep(1)
        slurm_out = "\n".join(
            f"--- {f}\n" + (runs / sw / ".launch" / "slurm" / f).read_text()[-3000:]
            for sw in ("demo-smoke", "demo-mh") if (runs / sw / ".launch" / "slurm").exists()
            for f in os.listdir(runs / sw / ".launch" / "slurm") if f.endswith(".out"))
        assert cluster.queue_empty(), "jobs still queued after 600 s\n" + slurm_out
        logs = {}
        for sw in ("demo-smoke", "demo-mh"):
            for f in (runs / sw / ".launch" / "logs").iterdir():
                logs[sw, f.stem] = f.read_text()
        run_dirs = [runs / sw / r for sw in ("demo-smoke", "demo-mh")
                    for r in os.listdir(runs / sw) if not r.startswith(".")]
        assert len(run_dirs) == 3
        for d in run_dirs:
            log = logs.get((d.parent.name, d.name), "")
            assert (d / "DONE").exists(), \
                f"{d.name} not done\n{log[-3000:]}\n{slurm_out}\n{cluster.logs()}"
        # the 12-step run stopped at max_steps=10 (exit 75), was requeued and resumed; the
        # 8-step run finished in one attempt
        for d in run_dirs:
            if d.parent.name == "demo-smoke":
                log = logs["demo-smoke", d.name]
                lines = (d / "metrics.jsonl").read_text().splitlines()
                steps = [json.loads(line)["step"] for line in lines]
                assert steps == sorted(set(steps)) and steps[-1] in (8, 12)
                if steps[-1] == 12:
                    assert "scontrol requeue" in log and log.count(": start on") == 2, log[-3000:]
                    assert "resumed from the checkpoint at step 10" in log
                else:
                    assert "scontrol requeue" not in log, log[-3000:]
                    assert log.count(": start on") == 1, log[-3000:]
        # the 2-task job formed one jax.distributed world of 2 processes x 2 devices
        (mh,) = [d for d in run_dirs if d.parent.name == "demo-mh"]
        resolved = json.loads((mh / "config.json").read_text())["resolved"]
        assert resolved["num_processes"] == 2 and resolved["num_devices"] == 4, resolved
        mh_log = logs["demo-mh", mh.name]
        assert "process 0/2" in mh_log and "process 1/2" in mh_log, mh_log[-3000:]
        st = _cli(env, "status", "experiments/demo.py:smoke", "--runs-root", str(runs), "--json")
        assert [r["status"] for r in json.loads(st.stdout)] == ["done", "done"], st.stdout
    finally:
        cluster.stop()
    assert all(p.poll() is not None for p in cluster.procs)


if __name__ == "__main__":  # bring a cluster up by hand: python tests/launch/test_slurm_real.py DIR
    root = sys.argv[1]
    os.makedirs(root, exist_ok=True)
    print(ensure_slurm() or "slurm installed")
    c = Cluster(root)
    print(c.start() or f"cluster up: export SLURM_CONF={c.conf}; pids "
          f"{[p.pid for p in c.procs]}")
