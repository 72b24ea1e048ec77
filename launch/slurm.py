"""SLURM executor: one sbatch job array for the single-host runs of a sweep, one multi-node job
per multi-host run, requeued on preemption.

Single-host runs (RunSpec.hosts == 1) -> one array, element i runs spec i:

    #SBATCH --array=0-(n-1)[%max_parallel]  --ntasks=1  --requeue  --signal=B:TERM@<grace>
    exec python -m launch.worker "${SPECS[$SLURM_ARRAY_TASK_ID]}"

Multi-host runs -> `--nodes=hosts/ntasks_per_node --ntasks-per-node=...` and the worker starts
`srun --ntasks=hosts python -m mdm.train ...`: one task per host, and each task initialises
jax.distributed from the SLURM step environment (mdm/distributed.py). Where node names do not
resolve, set `coordinator=head` (the first node's name, port from the job id) or
`coordinator=HOST[:PORT]`: the processes then get explicit coordinator / process id flags.

Preemption: `--signal=B:TERM@grace` delivers SIGTERM to the batch step `grace` seconds before
the time limit (and the scheduler sends SIGTERM on preemption); the worker forwards it to the
trainer (through srun for multi-host runs), which checkpoints and exits 75; the worker then
runs `scontrol requeue` on its job (array element), and the requeued job resumes from the
checkpoint once Slurm makes it eligible again (about 2 minutes after a requeue).
`--requeue` also lets the scheduler requeue the job itself (PreemptMode=REQUEUE). Logs:
.launch/slurm/<job>_<index>.out (worker messages) and .launch/logs/<run id>.log (the run).

Options: partition, account, qos, time, gres, cpus_per_task, mem, ntasks_per_node,
max_parallel, signal_grace_s, max_requeues, coordinator, python, setup (shell lines run first,
';'-separated, e.g. "module load cuda;source .venv/bin/activate"), sbatch (extra #SBATCH
arguments, ';'-separated), job_name.
"""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from typing import Any

from launch.executor import Executor, Option
from launch.spec import LAUNCH_DIR, LaunchError, RunSpec, write_state


class SlurmExecutor(Executor):
    name = "slurm"
    OPTIONS = {
        "partition": Option(str, "", "partition (default: the cluster's)"),
        "account": Option(str, "", "account"),
        "qos": Option(str, "", "quality of service"),
        "time": Option(str, "", "time limit, e.g. 04:00:00"),
        "gres": Option(str, "", "generic resources per node, e.g. gpu:8"),
        "cpus_per_task": Option(int, 0, "CPUs per task (0: default)"),
        "mem": Option(str, "", "memory per node, e.g. 64G"),
        "ntasks_per_node": Option(int, 1, "processes per node for multi-host runs"),
        "max_parallel": Option(int, 0, "array elements running at once (0: no limit)"),
        "signal_grace_s": Option(int, 120, "SIGTERM this many seconds before the time limit"),
        "max_requeues": Option(int, 20, "requeues after exit 75 before giving up"),
        "coordinator": Option(str, "", "'' (auto from SLURM), 'head', or HOST[:PORT]"),
        "python": Option(str, sys.executable, "interpreter on the compute nodes"),
        "setup": Option(str, "", "';'-separated shell lines run before the worker"),
        "sbatch": Option(str, "", "';'-separated extra sbatch arguments, e.g. --exclusive"),
        "job_name": Option(str, "", "job name (default mdm-<sweep>)"),
    }

    def check(self) -> None:
        if self.opts["ntasks_per_node"] < 1:
            raise LaunchError("executor slurm: ntasks_per_node must be >= 1")
        if self.opts["max_parallel"] < 0:
            raise LaunchError("executor slurm: max_parallel must be >= 0")

    # --- scripts -----------------------------------------------------------------------------
    def _header(self, spec: RunSpec, out: str, extra: list[str]) -> list[str]:
        o = self.opts
        lines = ["#!/bin/bash", f"#SBATCH --job-name={o['job_name'] or 'mdm-' + spec.sweep}",
                 f"#SBATCH --output={out}", "#SBATCH --open-mode=append", "#SBATCH --requeue",
                 f"#SBATCH --signal=B:TERM@{o['signal_grace_s']}"]
        lines += [f"#SBATCH {x}" for x in extra]
        for key, flag in (("partition", "--partition"), ("account", "--account"),
                          ("qos", "--qos"), ("time", "--time"), ("gres", "--gres"),
                          ("mem", "--mem")):
            if o[key]:
                lines.append(f"#SBATCH {flag}={o[key]}")
        if o["cpus_per_task"]:
            lines.append(f"#SBATCH --cpus-per-task={o['cpus_per_task']}")
        lines += [f"#SBATCH {x.strip()}" for x in o["sbatch"].split(";") if x.strip()]
        return lines

    def _body(self, spec: RunSpec) -> list[str]:
        lines = ["set -eo pipefail", f"cd {shlex.quote(spec.repo)}"]
        lines += [x.strip() for x in self.opts["setup"].split(";") if x.strip()]
        lines += [f"export {k}={shlex.quote(v)}" for k, v in self.env.items()]
        return lines

    def _worker(self, spec_ref: str) -> str:
        o = self.opts
        extra = f" --max-requeues {o['max_requeues']}"
        if o["coordinator"]:
            extra += f" --coordinator {shlex.quote(o['coordinator'])}"
        return f"exec {shlex.quote(o['python'])} -m launch.worker {spec_ref}{extra}"

    def array_script(self, specs: list[RunSpec]) -> str:
        s0 = specs[0]
        out = os.path.join(s0.sweep_dir, LAUNCH_DIR, "slurm", "%A_%a.out")
        throttle = f"%{self.opts['max_parallel']}" if self.opts["max_parallel"] else ""
        lines = self._header(s0, out, [f"--array=0-{len(specs) - 1}{throttle}", "--ntasks=1"])
        lines += self._body(s0)
        lines.append("SPECS=(")
        lines += [f"  {shlex.quote(s.spec_path)}" for s in specs]
        lines.append(")")
        lines.append(self._worker('"${SPECS[$SLURM_ARRAY_TASK_ID]}"'))
        return "\n".join(lines) + "\n"

    def multihost_script(self, spec: RunSpec) -> str:
        tpn = self.opts["ntasks_per_node"]
        if spec.hosts % tpn:
            raise LaunchError(f"executor slurm: run {spec.run_id} wants {spec.hosts} processes, "
                              f"not a multiple of ntasks_per_node={tpn}")
        out = os.path.join(spec.sweep_dir, LAUNCH_DIR, "slurm", f"{spec.run_id}-%j.out")
        lines = self._header(spec, out, [f"--nodes={spec.hosts // tpn}",
                                         f"--ntasks-per-node={tpn}", f"--ntasks={spec.hosts}"])
        lines += self._body(spec)
        lines.append(self._worker(shlex.quote(spec.spec_path)))
        return "\n".join(lines) + "\n"

    # --- submission --------------------------------------------------------------------------
    def jobs(self, specs: list[RunSpec]) -> list[tuple[str, str, list[RunSpec]]]:
        """(kind, script text, specs) for each sbatch submission."""
        single = [s for s in specs if s.hosts <= 1]
        out = []
        if single:
            out.append(("array", self.array_script(single), single))
        for s in specs:
            if s.hosts > 1:
                out.append(("multihost", self.multihost_script(s), [s]))
        return out

    def submit(self, specs: list[RunSpec], dry_run: bool = False) -> dict[str, Any]:
        jobs = self.jobs(specs)
        if dry_run:
            for kind, script, ss in jobs:
                self.out(f"# sbatch --parsable <<'EOF'   ({kind}: {len(ss)} run(s))")
                self.out(script + "EOF")
            return {"submitted": 0, "dry_run": True, "scripts": [j[1] for j in jobs]}
        if shutil.which("sbatch") is None:
            raise LaunchError("executor slurm: `sbatch` is not on PATH (use --dry-run to see "
                              "the scripts)")
        job_ids = []
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for i, (kind, script, ss) in enumerate(jobs):
            d = os.path.join(ss[0].sweep_dir, LAUNCH_DIR, "slurm")
            os.makedirs(d, exist_ok=True)
            path = os.path.join(d, f"{stamp}-{i}-{kind}.sh")
            with open(path, "w") as f:
                f.write(script)
            r = subprocess.run(["sbatch", "--parsable", path], capture_output=True, text=True)
            if r.returncode != 0:
                raise LaunchError(f"sbatch {path} failed: {r.stderr.strip() or r.stdout.strip()}")
            jid = r.stdout.strip().split(";")[0]
            job_ids.append(jid)
            for k, s in enumerate(ss):
                write_state(s, "queued", job_id=f"{jid}_{k}" if kind == "array" else jid)
            self.out(f"submitted {kind} job {jid}: {len(ss)} run(s) ({path})")
        return {"submitted": len(specs), "job_ids": job_ids}
