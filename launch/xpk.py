"""GKE executor: an xpk command (or a JobSet manifest for kubectl) per run, on TPU or GPU node
pools.

mode=xpk (default), one workload per run:

    xpk workload create --cluster=C --workload=NAME --command="..." --project=P --zone=Z
        --tpu-type=v5p-32 --num-slices=S            (device starting with v<digit>: TPU)
        --device-type=h100-80gb-8 --num-nodes=N     (otherwise a GPU node type; N = hosts)
        --docker-image=IMG | --base-docker-image=IMG --script-dir=REPO
        --priority=medium --max-restarts=R

mode=jobset: a JobSet (jobset.x-k8s.io/v1alpha2) per run, printed as YAML in a dry run and
otherwise applied with `kubectl apply -f`: one Indexed Job of `hosts` pods (TPU: node
selectors gke-tpu-accelerator / gke-tpu-topology and google.com/tpu chips; GPU:
gke-accelerator and nvidia.com/gpu), with `failurePolicy.maxRestarts` restarting the whole
group after a preemption.

The command in the container: `cd REPO && test -e RUN/DONE || python3 -m mdm.train ...`. On TPU
JAX reads the slice from the environment GKE provides. On GPU the processes get explicit
coordinator flags: from xpk's JAX_COORDINATOR_ADDRESS / JAX_COORDINATOR_PORT / NNODES /
NODE_RANK, or (JobSet) from the first pod's stable host name and JOB_COMPLETION_INDEX.
`remote_root` (the runs root in the container, e.g. a GCS FUSE mount) must be shared and
persistent. `--dry-run` prints the commands / manifests and runs nothing.

Options: mode, cluster, project, zone, device, num_slices, topology, chips_per_host,
gpus_per_node, docker_image, base_docker_image, remote_repo, remote_root, python, priority,
max_restarts, namespace.
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import tempfile
from typing import Any

from launch.executor import Executor, Option
from launch.spec import LAUNCH_DIR, LaunchError, RunSpec

TPU_ACCEL = {"v4": "tpu-v4-podslice", "v5p": "tpu-v5p-slice", "v5e": "tpu-v5-lite-podslice",
             "v5litepod": "tpu-v5-lite-podslice", "v6e": "tpu-v6e-slice"}
GPU_ACCEL = {"h100-80gb": "nvidia-h100-80gb", "h100-mega-80gb": "nvidia-h100-mega-80gb",
             "a100-80gb": "nvidia-a100-80gb", "a100-40gb": "nvidia-tesla-a100",
             "h200-141gb": "nvidia-h200-141gb", "l4": "nvidia-l4"}


def workload_name(spec: RunSpec, limit: int = 40) -> str:
    """Lower-case [a-z0-9-], starts with a letter, at most `limit` chars, ends with the hash."""
    h = spec.config_hash.lower()
    stem = re.sub(r"[^a-z0-9-]+", "-", f"{spec.sweep}-{spec.name}".lower()).strip("-")
    stem = stem[: limit - len(h) - 1].rstrip("-")
    name = f"{stem}-{h}" if stem else f"w-{h}"
    return name if name[0].isalpha() else ("w" + name)[:limit]


class XpkExecutor(Executor):
    name = "xpk"
    OPTIONS = {
        "mode": Option(str, "xpk", "xpk (xpk workload create) or jobset (kubectl manifest)"),
        "cluster": Option(str, "", "GKE cluster (xpk)"),
        "project": Option(str, "", "project"),
        "zone": Option(str, "", "zone"),
        "device": Option(str, "v5p-8", "TPU type (v5p-32) or GPU node type (h100-80gb-8)"),
        "num_slices": Option(int, 1, "TPU slices (multislice over DCN)"),
        "topology": Option(str, "", "TPU topology for jobset mode, e.g. 2x2x4"),
        "chips_per_host": Option(int, 4, "TPU chips per host (jobset mode)"),
        "gpus_per_node": Option(int, 8, "GPUs per node (jobset mode)"),
        "docker_image": Option(str, "", "image containing the repository"),
        "base_docker_image": Option(str, "python:3.11-slim", "base image xpk builds on with "
                                    "--script-dir (when docker_image is empty)"),
        "remote_repo": Option(str, "/app", "repository path in the container"),
        "remote_root": Option(str, "", "runs root in the container (default: --runs-root)"),
        "python": Option(str, "python3", "interpreter in the container"),
        "priority": Option(str, "medium", "xpk priority"),
        "max_restarts": Option(int, 10, "restarts after failures / preemptions"),
        "namespace": Option(str, "default", "namespace (jobset mode)"),
    }

    def check(self) -> None:
        if self.opts["mode"] not in ("xpk", "jobset"):
            raise LaunchError("executor xpk: mode must be xpk or jobset, got "
                              f"{self.opts['mode']!r}")
        if self.opts["mode"] == "jobset" and not self.opts["docker_image"]:
            raise LaunchError("executor xpk: mode=jobset needs docker_image")

    @property
    def is_tpu(self) -> bool:
        return bool(re.match(r"^v\d", self.opts["device"]))

    def container_command(self, spec: RunSpec, gpu_env: str = "xpk") -> str:
        o = self.opts
        rd = spec.remote_run_dir(o["remote_root"])
        exports = "".join(f"export {k}={shlex.quote(v)} && " for k, v in self.env.items())
        cmd = f"cd {o['remote_repo']} && {exports}test -e {shlex.quote(rd)}/DONE || " + \
            shlex.join([o["python"], *spec.train_args(rd)])
        if not self.is_tpu and spec.hosts > 1:
            if gpu_env == "xpk":
                cmd += (" --config.multihost.coordinator=$JAX_COORDINATOR_ADDRESS:"
                        "$JAX_COORDINATOR_PORT --config.multihost.num_processes=$NNODES"
                        " --config.multihost.process_id=$NODE_RANK")
            else:
                cmd += (f" --config.multihost.coordinator=$COORDINATOR:1234"
                        f" --config.multihost.num_processes={spec.hosts}"
                        " --config.multihost.process_id=$JOB_COMPLETION_INDEX")
        return cmd

    def xpk_command(self, spec: RunSpec) -> list[str]:
        o = self.opts
        argv = ["xpk", "workload", "create", f"--workload={workload_name(spec)}",
                f"--command={self.container_command(spec)}"]
        for k in ("cluster", "project", "zone"):
            if o[k]:
                argv.append(f"--{k}={o[k]}")
        if self.is_tpu:
            argv += [f"--tpu-type={o['device']}", f"--num-slices={o['num_slices']}"]
        else:
            argv += [f"--device-type={o['device']}", f"--num-nodes={spec.hosts}"]
        if o["docker_image"]:
            argv.append(f"--docker-image={o['docker_image']}")
        else:
            argv += [f"--base-docker-image={o['base_docker_image']}", f"--script-dir={spec.repo}"]
        argv += [f"--priority={o['priority']}", f"--max-restarts={o['max_restarts']}"]
        return argv

    def jobset(self, spec: RunSpec) -> dict[str, Any]:
        o = self.opts
        name = workload_name(spec, 40)
        if self.is_tpu:
            gen = o["device"].split("-")[0]
            if gen not in TPU_ACCEL:
                raise LaunchError(f"executor xpk: unknown TPU generation in {o['device']!r}; "
                                  f"known: {', '.join(TPU_ACCEL)}")
            chips = int(o["device"].split("-")[-1]) if o["device"].split("-")[-1].isdigit() else 0
            if gen in ("v4", "v5p"):
                chips //= 2  # v4 / v5p types count TensorCores, two per chip
            hosts = max(1, chips // o["chips_per_host"])
            selector = {"cloud.google.com/gke-tpu-accelerator": TPU_ACCEL[gen]}
            if o["topology"]:
                selector["cloud.google.com/gke-tpu-topology"] = o["topology"]
            resources = {"google.com/tpu": o["chips_per_host"]}
            replicas = o["num_slices"]
            env = []
        else:
            base = o["device"].rsplit("-", 1)[0]
            selector = {"cloud.google.com/gke-accelerator": GPU_ACCEL.get(base, base)}
            resources = {"nvidia.com/gpu": o["gpus_per_node"]}
            hosts, replicas = spec.hosts, 1
            env = [{"name": "COORDINATOR", "value": f"{name}-workers-0-0.{name}"}]
        container = {"name": "train", "image": o["docker_image"],
                     "command": ["bash", "-c", self.container_command(spec, gpu_env="jobset")],
                     "resources": {"limits": resources}}
        if env:
            container["env"] = env
        return {
            "apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSet",
            "metadata": {"name": name, "namespace": o["namespace"],
                         "labels": {"mdm/sweep": spec.sweep[:63], "mdm/hash": spec.config_hash},
                         "annotations": {"mdm/run-id": spec.run_id,
                                         "alpha.jobset.sigs.k8s.io/exclusive-topology":
                                             "cloud.google.com/gke-nodepool"}},
            "spec": {
                "failurePolicy": {"maxRestarts": o["max_restarts"]},
                "network": {"enableDNSHostnames": True},
                "replicatedJobs": [{
                    "name": "workers", "replicas": replicas,
                    "template": {"spec": {
                        "parallelism": hosts, "completions": hosts, "backoffLimit": 0,
                        "completionMode": "Indexed",
                        "template": {"spec": {"restartPolicy": "Never", "nodeSelector": selector,
                                              "containers": [container]}}}}}]}}

    def submit(self, specs: list[RunSpec], dry_run: bool = False) -> dict[str, Any]:
        import yaml
        if self.opts["mode"] == "xpk":
            cmds = [self.xpk_command(s) for s in specs]
            if dry_run:
                for s, c in zip(specs, cmds):
                    self.out(f"# {s.run_id}\n{shlex.join(c)}")
                return {"submitted": 0, "dry_run": True, "commands": cmds}
            if shutil.which("xpk") is None:
                raise LaunchError("executor xpk: `xpk` is not on PATH (pip install xpk; or use "
                                  "--dry-run to see the commands)")
            for c in cmds:
                r = subprocess.run(c)
                if r.returncode != 0:
                    raise LaunchError(f"xpk failed (exit {r.returncode}): {shlex.join(c[:4])}")
            return {"submitted": len(specs)}
        docs = [self.jobset(s) for s in specs]
        text = yaml.safe_dump_all(docs, sort_keys=False)
        if dry_run:
            self.out(text)
            return {"submitted": 0, "dry_run": True, "manifests": docs}
        if shutil.which("kubectl") is None:
            raise LaunchError("executor xpk: `kubectl` is not on PATH (use --dry-run to see the "
                              "manifests)")
        d = os.path.join(specs[0].sweep_dir, LAUNCH_DIR, "k8s")
        os.makedirs(d, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", dir=d, delete=False) as f:
            f.write(text)
        r = subprocess.run(["kubectl", "apply", "-f", f.name])
        if r.returncode != 0:
            raise LaunchError(f"kubectl apply -f {f.name} failed (exit {r.returncode})")
        return {"submitted": len(specs), "manifest": f.name}
