"""Run specs: everything needed to start (or resume) one run, as one JSON file.

    {"version": 1, "sweep": "demo", "run_id": "s1-t5e4-3f9c2a1b", "name": "s1-t5e4",
     "config_hash": "3f9c2a1b", "experiment": "experiments/demo.py", "arg": "size=s1,...",
     "overrides": {"train.max_steps": 5}, "hosts": 1, "entrypoint": "mdm.train",
     "repo": "/abs/repo", "runs_root": "/abs/runs", "run_dir": "/abs/runs/demo/s1-t5e4-3f9c2a1b",
     "config": {...the resolved config...}, "created": "2026-..."}

The command a spec runs (`train_args`) is the trainer's own command line:

    python -m mdm.train --config experiments/demo.py:size=s1,... --workdir RUN_DIR
        --config.run_id=RUN_ID --config.sweep=SWEEP [--config.a.b=v ...] --progress=false

Launcher files live beside the runs, never inside a run directory (which belongs to the trainer,
mdm/run_contract.py), in `<runs root>/<sweep>/.launch/`: specs/<run id>.json, logs/<run id>.log
(the run's output, appended across attempts), state/<run id>.json (what the launcher last did:
queued / running / exited with a code, pid, host, job id), and the generated sbatch scripts.
Dot-prefixed, so analysis loaders skip it.

Standard library only: the worker imports this module on compute nodes.
"""
from __future__ import annotations

import dataclasses
import json
import os
import socket
import time
from typing import Any

SPEC_VERSION = 1
LAUNCH_DIR = ".launch"
# The only modules a run spec may name as its entry point (`python -m ENTRYPOINT`); the worker
# refuses any other. launch/expand.py VALIDATORS has one config check per entry point.
ENTRYPOINTS: tuple[str, ...] = ("mdm.train", "mdm.eval_samples", "mdm.sample")
# The launcher's own repository: the parent of this `launch` package. Runs start here, never in
# a directory a spec names.
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class LaunchError(ValueError):
    """A launch request is invalid; nothing was submitted. The message says what to change."""


@dataclasses.dataclass
class RunSpec:
    sweep: str
    run_id: str
    name: str
    config_hash: str
    experiment: str                   # experiment file, relative to `repo` when inside it
    arg: str
    overrides: dict[str, Any]
    hosts: int
    entrypoint: str
    repo: str
    runs_root: str
    run_dir: str
    config: dict[str, Any]
    created: str = ""
    version: int = SPEC_VERSION

    # --- paths -------------------------------------------------------------------------------
    @property
    def sweep_dir(self) -> str:
        return os.path.join(self.runs_root, self.sweep)

    def launch_path(self, kind: str, suffix: str = ".json") -> str:
        return os.path.join(self.sweep_dir, LAUNCH_DIR, kind, self.run_id + suffix)

    @property
    def spec_path(self) -> str:
        return self.launch_path("specs")

    @property
    def log_path(self) -> str:
        return self.launch_path("logs", ".log")

    @property
    def state_path(self) -> str:
        return self.launch_path("state")

    def remote_run_dir(self, remote_root: str | None) -> str:
        if not remote_root:
            return self.run_dir
        return f"{remote_root.rstrip('/')}/{self.sweep}/{self.run_id}"

    # --- the command -------------------------------------------------------------------------
    def train_args(self, run_dir: str | None = None) -> list[str]:
        """Arguments after `python`: -m ENTRYPOINT --config FILE:ARG --workdir DIR ..."""
        out = ["-m", self.entrypoint, "--config",
               f"{self.experiment}:{self.arg}" if self.arg else self.experiment,
               "--workdir", run_dir or self.run_dir,
               f"--config.run_id={self.run_id}", f"--config.sweep={self.sweep}"]
        out += [f"--config.{k}={render_value(v)}" for k, v in sorted(self.overrides.items())]
        out.append("--progress=false")
        return out

    # --- JSON --------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def write(self, path: str | None = None) -> str:
        path = path or self.spec_path
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_json(path, self.to_dict())
        return path

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunSpec":
        if d.get("version") != SPEC_VERSION:
            raise LaunchError(f"run spec version {d.get('version')} is not {SPEC_VERSION}")
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    @classmethod
    def read(cls, path: str) -> "RunSpec":
        with open(path) as f:
            return cls.from_dict(json.load(f))


def render_value(v: Any) -> str:
    """A value as ml_collections' config_flags reads it back exactly."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return repr(tuple(v))
    return str(v)


def write_json(path: str, obj: Any) -> None:
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
    os.replace(tmp, path)


def write_state(spec: RunSpec, state: str, **fields: Any) -> None:
    """Record what the launcher did with a run: queued, running, exited (rc)."""
    os.makedirs(os.path.dirname(spec.state_path), exist_ok=True)
    rec = {"state": state, "time": time.time(), "host": socket.gethostname(), **fields}
    write_json(spec.state_path, rec)


def read_state(spec: RunSpec) -> dict[str, Any]:
    try:
        with open(spec.state_path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}
