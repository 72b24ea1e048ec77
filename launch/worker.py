"""Run one spec to completion (or to preemption): what every executor executes per run.

    python -m launch.worker RUNS/<sweep>/.launch/specs/<run id>.json [--max-requeues 20]
        [--coordinator HOST[:PORT] | --coordinator head] [--no-requeue]

0. The spec is checked before anything else: its entry point must be one of the known ones
   (launch/spec.py ENTRYPOINTS: mdm.train, mdm.eval_samples, mdm.sample) and its `repo` must be
   this launcher's own repository (the parent of the installed `launch` package). An edited spec
   (another module, a foreign directory) is refused with one line on stderr and exit 2; nothing
   is started, logged or written.
1. A run whose directory has DONE is skipped (exit 0): rerunning the trainer on a finished run
   would only rewrite its summary.
2. The run's command (RunSpec.train_args) is started from the launcher's repository root with
   its output appended to .launch/logs/<run id>.log, and .launch/state/<run id>.json says
   "running".
     * 1 host: one process;
     * N hosts inside a SLURM allocation: `srun --ntasks=N` (one task per host); jax.distributed
       is initialised from the SLURM environment (mdm/distributed.py), or, with --coordinator,
       from an explicit address (where node names do not resolve; `head` = the first node of
       the allocation) and SLURM_PROCID / SLURM_NTASKS;
     * N hosts outside SLURM: N local processes with an explicit coordinator on 127.0.0.1.
3. SIGTERM / SIGINT / SIGUSR1 are forwarded to the run as SIGTERM: the trainer saves a
   checkpoint and exits 75. srun forwards them to its tasks.
4. Exit 75 (preempted, or stopped early by train.max_steps) inside a SLURM job: the job is put
   back in the queue with `scontrol requeue` of this job (ARRAYID_TASK for an array element:
   the element's own SLURM_JOB_ID can equal the array's id, which would requeue every element),
   at most --max-requeues times (SLURM_RESTART_COUNT); the next attempt resumes from the
   checkpoint. Slurm makes a requeued batch job eligible again about 2 minutes later.

Exit code: the run's (0 done, 2 bad config or a refused spec, 3 NaN, 4 another process owns the
run, 65 bad token shards, 75 preempted, other: failure).
Standard library only (no JAX import in this process).
"""
from __future__ import annotations

import argparse
import os
import shlex
import signal
import socket
import subprocess
import sys
import time

from launch.spec import ENTRYPOINTS, REPO, LaunchError, RunSpec, write_state
from mdm import run_contract as rc

PREEMPTED = 75
REFUSED = 2


def _say(log, msg: str) -> None:
    line = f"[launch {time.strftime('%H:%M:%S')}] {msg}"
    print(line, flush=True)
    if log is not None:
        log.write(line + "\n")
        log.flush()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def slurm_job_label() -> str:
    e = os.environ
    if "SLURM_ARRAY_JOB_ID" in e and "SLURM_ARRAY_TASK_ID" in e:
        return f"{e['SLURM_ARRAY_JOB_ID']}_{e['SLURM_ARRAY_TASK_ID']}"
    return e.get("SLURM_JOB_ID", "")


def _head_node() -> str:
    nodelist = os.environ.get("SLURM_JOB_NODELIST", "")
    try:
        out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True,
                             text=True, timeout=30, check=True).stdout.split()
        return out[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return nodelist.split(",")[0]


def commands(spec: RunSpec, python: str, coordinator: str = "") -> list[list[str]]:
    """The processes to start for a spec (one, or one per host outside SLURM)."""
    base = [python, *spec.train_args()]
    if spec.hosts <= 1:
        return [base]
    if os.environ.get("SLURM_JOB_ID"):
        srun = ["srun", f"--ntasks={spec.hosts}", "--kill-on-bad-exit=1", "--export=ALL"]
        if not coordinator:
            return [srun + base]  # JAX reads the world from the SLURM step environment
        host = _head_node() if coordinator == "head" else coordinator
        if ":" not in host:
            host = f"{host}:{20000 + int(os.environ['SLURM_JOB_ID']) % 20000}"
        tail = (f" --config.multihost.coordinator={shlex.quote(host)}"
                " --config.multihost.num_processes=$SLURM_NTASKS"
                " --config.multihost.process_id=$SLURM_PROCID")
        return [srun + ["bash", "-c", "exec " + shlex.join(base) + tail]]
    addr = coordinator or f"127.0.0.1:{_free_port()}"
    return [base + [f"--config.multihost.coordinator={addr}",
                    f"--config.multihost.num_processes={spec.hosts}",
                    f"--config.multihost.process_id={i}"] for i in range(spec.hosts)]


def check_spec(spec: RunSpec, entrypoints: tuple[str, ...] = ENTRYPOINTS, repo: str = REPO
               ) -> str:
    """The directory to start the run in (the launcher's own repository). Raises LaunchError
    (one line) when the spec names an entry point outside `entrypoints` or a `repo` other than
    `repo`: such a spec was edited or written by another launcher, and is never run."""
    if not isinstance(spec.entrypoint, str) or spec.entrypoint not in entrypoints:
        raise LaunchError(f"run spec {spec.run_id!r}: refused: entry point {spec.entrypoint!r} "
                          f"is not one the worker runs ({', '.join(entrypoints)}); nothing was "
                          "started")
    if not isinstance(spec.repo, str) or \
            os.path.realpath(spec.repo) != os.path.realpath(repo):
        raise LaunchError(f"run spec {spec.run_id!r}: refused: repo {spec.repo!r} is not this "
                          f"launcher's repository ({repo}); nothing was started (re-plan the "
                          "sweep from this checkout)")
    if not isinstance(spec.hosts, int) or isinstance(spec.hosts, bool) or spec.hosts < 1:
        raise LaunchError(f"run spec {spec.run_id!r}: refused: hosts {spec.hosts!r} is not a "
                          "positive integer; nothing was started")
    return repo


def _combine(codes: list[int]) -> int:
    if all(c == 0 for c in codes):
        return 0
    for special in (3, 2, PREEMPTED):
        if special in codes:
            return special
    return next(c for c in codes if c != 0)


def run(spec: RunSpec, python: str = sys.executable, coordinator: str = "",
        requeue: bool = True, max_requeues: int = 20, grace_s: float = 60.0, *,
        entrypoints: tuple[str, ...] = ENTRYPOINTS, repo: str = REPO) -> int:
    """Run `spec` (see the module docstring). `entrypoints` and `repo` are the allow-list and
    the directory runs start in; the command line always uses the defaults. A refused spec
    raises LaunchError before anything is started or written."""
    cwd = check_spec(spec, entrypoints, repo)
    if os.path.exists(os.path.join(spec.run_dir, rc.DONE_FILE)):
        _say(None, f"{spec.run_id}: already done ({spec.run_dir}/DONE), skipped")
        return 0
    os.makedirs(os.path.dirname(spec.log_path), exist_ok=True)
    log = open(spec.log_path, "a")
    job = slurm_job_label()
    cmds = commands(spec, python, coordinator)
    _say(log, f"{spec.run_id}: start on {socket.gethostname()}"
              f"{' (SLURM job ' + job + ')' if job else ''}: {shlex.join(cmds[0])}")
    procs = [subprocess.Popen(c, cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL) for c in cmds]
    write_state(spec, "running", pid=os.getpid(), child_pids=[p.pid for p in procs],
                job_id=job or None)
    signalled = {"n": 0}

    def forward(signum, frame):
        signalled["n"] += 1
        _say(log, f"signal {signum}: asking the run to checkpoint and stop (SIGTERM)")
        for p in procs:
            if p.poll() is None:
                try:
                    p.send_signal(signal.SIGTERM)
                except ProcessLookupError:
                    pass

    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
        signal.signal(s, forward)
    first_bad = None
    while any(p.poll() is None for p in procs):
        time.sleep(0.2)
        bad = [p for p in procs if p.poll() not in (None, 0)]
        if bad and first_bad is None:
            first_bad = time.time()
        if first_bad is not None and time.time() - first_bad > grace_s:
            _say(log, "a process failed and the others did not stop: terminating them")
            for p in procs:
                if p.poll() is None:
                    p.kill()
    code = _combine([p.returncode for p in procs])
    _say(log, f"{spec.run_id}: exit {code}")
    write_state(spec, "exited", rc=code, job_id=job or None)
    if code == PREEMPTED and requeue and os.environ.get("SLURM_JOB_ID"):
        restarts = int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0)
        if restarts >= max_requeues:
            _say(log, f"not requeued: already restarted {restarts} times (--max-requeues)")
        else:
            # an array element is named ARRAYID_TASK: the plain job id of one element can equal
            # the array's id, which scontrol reads as the whole array
            jid = job or os.environ["SLURM_JOB_ID"]
            write_state(spec, "queued", job_id=job or jid, requeues=restarts + 1)
            _say(log, f"preempted: scontrol requeue {jid} (restart {restarts + 1})")
            log.flush()
            r = subprocess.run(["scontrol", "requeue", jid], capture_output=True, text=True)
            if r.returncode != 0:
                _say(log, f"scontrol requeue failed: {r.stderr.strip()}")
                write_state(spec, "exited", rc=code, job_id=job or None)
    log.close()
    return code


AFFINITY_ENV = "MDM_CPU_AFFINITY"   # "0,1": the CPUs this worker and its trainer may use


def pin_from_env() -> None:
    """Restrict this worker (and the trainer processes it starts, which inherit it) to the CPUs
    in $MDM_CPU_AFFINITY, set by the local executor so concurrent runs do not share cores."""
    v = os.environ.get(AFFINITY_ENV, "")
    if v and hasattr(os, "sched_setaffinity"):
        try:
            os.sched_setaffinity(0, {int(c) for c in v.split(",")})
        except (ValueError, OSError) as e:
            print(f"launch.worker: ignoring {AFFINITY_ENV}={v!r}: {e}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    pin_from_env()
    ap = argparse.ArgumentParser(prog="python -m launch.worker", description=__doc__.split("\n")[0])
    ap.add_argument("spec", help="run spec JSON")
    ap.add_argument("--coordinator", default="", help="explicit jax.distributed coordinator "
                    "HOST[:PORT], or 'head' (first node of the SLURM allocation)")
    ap.add_argument("--max-requeues", type=int, default=20)
    ap.add_argument("--no-requeue", action="store_true")
    ap.add_argument("--python", default=sys.executable)
    a = ap.parse_args(argv)
    try:
        spec = RunSpec.read(a.spec)
        check_spec(spec)
    except (OSError, ValueError, TypeError) as e:          # LaunchError, JSON, missing fields
        print(f"launch.worker: {a.spec}: {e}".splitlines()[0], file=sys.stderr, flush=True)
        return REFUSED
    return run(spec, a.python, a.coordinator, not a.no_requeue, a.max_requeues)


if __name__ == "__main__":
    sys.exit(main())
