"""TPU VM executor: the gcloud commands that run a sweep on one Cloud TPU pod slice.

    1 create   gcloud compute tpus tpu-vm create NAME --zone=Z --accelerator-type=v5p-32
                 --version=RUNTIME [--spot] [--project=P]
    2 install  copy: tar the working tree (without .venv, runs, .git), scp it to every worker,
                 untar and `pip install -e . jax[tpu]` on all workers (--worker=all);
               or a shell command of your own (install="git clone URL ~/mdm-lab && ...")
    3 run      per run, on all workers at once (one process per host; JAX finds the slice from
                 the TPU environment): `test -e RUN/DONE || python3 -m mdm.train ...`
    4 delete   gcloud compute tpus tpu-vm delete NAME --zone=Z --quiet   (delete=true)

Runs execute one after the other on the slice. `remote_root` is the runs root as the workers see
it; it must be one file system for all workers and survive the VM (a GCS FUSE mount or
Filestore), so that a relaunch after a spot preemption resumes from the checkpoints.
`--dry-run` prints the commands and runs nothing.

Options: name, zone, project, accelerator, version, spot, install, remote_repo, remote_root,
python, pip, delete, create.
"""
from __future__ import annotations

import shlex
import shutil
import subprocess
from typing import Any

from launch.executor import Executor, Option
from launch.spec import LaunchError, RunSpec


class TpuExecutor(Executor):
    name = "tpu"
    OPTIONS = {
        "name": Option(str, "", "TPU VM name (default mdm-<sweep>)"),
        "zone": Option(str, "us-central2-b", "zone"),
        "project": Option(str, "", "project (default: gcloud's)"),
        "accelerator": Option(str, "v4-8", "accelerator type, e.g. v5p-32"),
        "version": Option(str, "tpu-ubuntu2204-base", "TPU runtime version"),
        "spot": Option(bool, False, "spot (preemptible) capacity"),
        "install": Option(str, "copy", "'copy' (scp the working tree) or a shell command"),
        "remote_repo": Option(str, "~/mdm-lab", "repository path on the workers"),
        "remote_root": Option(str, "", "runs root on the workers (default: --runs-root)"),
        "python": Option(str, "python3", "interpreter on the workers"),
        "pip": Option(str, "jax[tpu]", "extra pip requirement installed with the package"),
        "delete": Option(bool, True, "delete the VM at the end"),
        "create": Option(bool, True, "create the VM (false: it exists)"),
    }

    def _common(self, spec: RunSpec) -> tuple[str, list[str]]:
        name = self.opts["name"] or ("mdm-" + spec.sweep.lower().replace("_", "-"))[:60]
        flags = [f"--zone={self.opts['zone']}"]
        if self.opts["project"]:
            flags.append(f"--project={self.opts['project']}")
        return name, flags

    def commands(self, specs: list[RunSpec]) -> list[tuple[str, list[str]]]:
        """(step, argv) in order."""
        o = self.opts
        name, flags = self._common(specs[0])
        tpu = ["gcloud", "compute", "tpus", "tpu-vm"]
        out = []
        if o["create"]:
            out.append(("create", tpu + ["create", name, *flags,
                                         f"--accelerator-type={o['accelerator']}",
                                         f"--version={o['version']}"]
                        + (["--spot"] if o["spot"] else [])))
        repo = o["remote_repo"]
        if o["install"] == "copy":
            tgz = f"/tmp/{name}-src.tgz"
            out.append(("pack", ["tar", "-czf", tgz, "--exclude=./.venv", "--exclude=./runs",
                                 "--exclude=./.git", "-C", specs[0].repo, "."]))
            out.append(("copy", tpu + ["scp", tgz, f"{name}:/tmp/", "--worker=all", *flags]))
            setup = (f"mkdir -p {repo} && tar -xzf {tgz} -C {repo} && cd {repo} && "
                     f"{o['python']} -m pip install -q -e . {shlex.quote(o['pip'])}")
        else:
            setup = o["install"]
        out.append(("install", tpu + ["ssh", name, "--worker=all", *flags, f"--command={setup}"]))
        exports = "".join(f"export {k}={shlex.quote(v)} && " for k, v in self.env.items())
        for s in specs:
            rd = s.remote_run_dir(o["remote_root"])
            cmd = (f"cd {repo} && {exports}test -e {shlex.quote(rd)}/DONE || "
                   f"{shlex.join([o['python'], *s.train_args(rd)])}")
            out.append((f"run {s.run_id}", tpu + ["ssh", name, "--worker=all", *flags,
                                                  f"--command={cmd}"]))
        if o["delete"]:
            out.append(("delete", tpu + ["delete", name, *flags, "--quiet"]))
        return out

    def submit(self, specs: list[RunSpec], dry_run: bool = False) -> dict[str, Any]:
        if any(s.hosts > 1 for s in specs):
            self.out("# note: on a TPU slice every worker runs one process; RunSpec.hosts is "
                     "ignored (the slice decides)")
        cmds = self.commands(specs)
        if dry_run:
            for step, argv in cmds:
                self.out(f"# {step}\n{shlex.join(argv)}")
            return {"submitted": 0, "dry_run": True, "commands": [c for _, c in cmds]}
        if shutil.which("gcloud") is None:
            raise LaunchError("executor tpu: `gcloud` is not on PATH (use --dry-run to see the "
                              "commands)")
        ran, rc = 0, 0
        delete = [c for c in cmds if c[0] == "delete"]
        try:
            for step, argv in cmds:
                if step == "delete":
                    continue
                self.out(f"# {step}")
                rc = subprocess.run(argv).returncode
                if rc != 0:
                    self.out(f"{step} failed (exit {rc}); relaunch to resume the remaining runs")
                    break
                ran += step.startswith("run ")
        finally:
            for step, argv in delete:
                self.out(f"# {step}")
                subprocess.run(argv)
        return {"submitted": ran, "rc": rc}
