"""The launcher's Python API (what `launch.cli` and the demo / showcase pipelines call).

    from launch.api import plan, run_sweep
    sweep, specs = plan("experiments/demo.py:grid", "runs", sets={"data.seq_len": "128"})
    result = run_sweep("experiments/demo.py:grid", "runs", executor="local", parallel=2)
    result.failed     # run ids that did not finish (local executor: exit status != 0)

`run_sweep` skips runs whose directory has DONE and (unless include_running) runs that look
alive; every other run starts, or resumes from its newest checkpoint.
"""
from __future__ import annotations

import dataclasses
import fnmatch
import sys
from typing import Any, Callable, Mapping

from launch.executor import CLAIMED_EXIT, executor_class
from launch.expand import plan
from launch.spec import LaunchError, RunSpec
from launch.status import run_status

__all__ = ["plan", "run_sweep", "SweepRun", "LaunchError"]


@dataclasses.dataclass
class SweepRun:
    """What `run_sweep` did: the sweep's specs, those launched, those skipped by status."""
    name: str
    specs: list[RunSpec]
    launched: list[RunSpec]
    skipped: dict[str, int]
    result: dict[str, Any]            # the executor's own report

    @property
    def failed(self) -> list[str]:
        return sorted(r for r, code in (self.result.get("results") or {}).items()
                      if code not in (0, CLAIMED_EXIT))

    @property
    def claimed(self) -> list[str]:
        """Runs another live process was already training (skipped, not failed)."""
        return sorted(r for r, code in (self.result.get("results") or {}).items()
                      if code == CLAIMED_EXIT)

    @property
    def ok(self) -> bool:
        return not self.failed


def run_sweep(expr: str, runs_root: str, sets: Mapping[str, str] | None = None, *,
              executor: str = "local", options: Mapping[str, str] | None = None,
              env: Mapping[str, str] | None = None, parallel: int | None = None,
              hosts: int | None = None, sweep_name: str | None = None, dry_run: bool = False,
              only: str | None = None, limit: int | None = None,
              include_running: bool = False,
              out: Callable[[str], None] = lambda m: print(m, file=sys.stderr)) -> SweepRun:
    """Plan `expr` under `runs_root` and run (local) or submit its missing runs.

    Raises LaunchError (before anything is written or submitted) on a bad request.
    """
    cls = executor_class(executor)
    opts = dict(options or {})
    if parallel is not None:
        key = {"local": "parallel", "slurm": "max_parallel"}.get(executor)
        if key is None:
            raise LaunchError(f"--parallel does not apply to the {executor} executor")
        opts[key] = str(parallel)
    ex = cls(opts, dict(env or {}))
    sweep, specs = plan(expr, runs_root, sets or {}, hosts, sweep_name,
                        require_entrypoint=not dry_run)
    if only:
        specs = [s for s in specs if fnmatch.fnmatch(s.run_id, only)]
    pending, skipped = [], {"done": 0, "running": 0, "queued": 0}
    for s in specs:
        st = run_status(s)["status"]
        if st == "done" or (st in ("running", "queued") and not include_running):
            skipped[st] += 1
        else:
            pending.append(s)
    if limit is not None:
        pending = pending[:limit]
    name = sweep_name or sweep.name
    note = ", ".join(f"{n} {k}" for k, n in skipped.items() if n)
    out(f"sweep {name}: {len(specs)} runs, {len(pending)} to launch"
        f"{' (skipped: ' + note + ')' if note else ''}")
    result: dict[str, Any] = {}
    if pending:
        if not dry_run:
            for s in pending:
                s.write()
        result = ex.submit(pending, dry_run=dry_run)
    return SweepRun(name, specs, pending, skipped, result)
