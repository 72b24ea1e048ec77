"""Sweep -> run specs: load the experiment file, resolve and validate every point's config,
hash it into a run id, and place it under the runs root.

    specs = plan("experiments/demo.py:smoke", runs_root="runs", sets={"train.max_steps": "5"})

Every error (a missing runs root, an unknown config field, an impossible value, duplicate run
ids, a sweep whose entry point does not exist yet) is raised as LaunchError before anything is
written or submitted.
"""
from __future__ import annotations

import datetime
import importlib
import importlib.util
import os
from typing import Any, Mapping, Sequence

from experiments.sweep import SweepError, safe_name
from launch import sweeps
from launch.spec import ENTRYPOINTS, REPO, LaunchError, RunSpec


def split_sweep_expr(expr: str) -> tuple[str, str]:
    """'experiments/demo.py:smoke,mix=text' -> ('experiments/demo.py', 'smoke,mix=text')."""
    path, _, arg = expr.partition(":")
    if not path.endswith(".py"):
        raise LaunchError(f"sweep {expr!r}: expected an experiment file, e.g. "
                          "experiments/demo.py or experiments/scaling.py:isoflop")
    return path, arg


def parse_sets(items: Sequence[str]) -> dict[str, str]:
    """['a.b=1', 'c=x'] -> {'a.b': '1', 'c': 'x'} (typed later, against the config)."""
    out = {}
    for it in items:
        k, sep, v = it.partition("=")
        k = k.strip()
        if k.startswith("config."):
            k = k[len("config."):]
        if not sep or not k:
            raise LaunchError(f"--set {it!r}: expected FIELD=VALUE, e.g. train.max_steps=5")
        if k.split(".")[0] in ("run_id", "sweep", "multihost"):
            raise LaunchError(f"--set {k}: set by the launcher (use --sweep-name / --hosts)")
        out[k] = v
    return out


def _rel(path: str, repo: str) -> str:
    ap = os.path.abspath(path)
    return os.path.relpath(ap, repo) if ap.startswith(repo + os.sep) else ap


def plan(expr: str, runs_root: str, sets: Mapping[str, str] | None = None,
         hosts: int | None = None, sweep_name: str | None = None,
         require_entrypoint: bool = True) -> tuple[Any, list[RunSpec]]:
    """(the Sweep, one RunSpec per point) for `expr` under `runs_root`."""
    path, arg = split_sweep_expr(expr)
    if not runs_root or not os.path.isdir(runs_root):
        raise LaunchError(f"runs root {runs_root!r} does not exist or is not a directory; "
                          "create it (mkdir -p) or pass another --runs-root")
    if hosts is not None and hosts < 1:
        raise LaunchError(f"--hosts must be >= 1, got {hosts}")
    try:
        mod = sweeps.load_module(path)
        sweep = sweeps.get_sweep(mod, arg or None)
        expanded = sweeps.expand(mod, sweep, sets or {}, from_strings=True)
    except (SweepError, ValueError, TypeError) as e:
        raise LaunchError(f"{expr}: {e}") from None
    name = sweep_name or sweep.name
    if _safe(name) != name:
        raise LaunchError(f"sweep name {name!r} must use only [A-Za-z0-9._-]")
    if require_entrypoint and not entrypoint_exists(sweep.entrypoint):
        raise LaunchError(f"{expr}: the sweep runs `python -m {sweep.entrypoint}`, which does not "
                          "exist yet; expand or --dry-run it, or launch it once it is built")
    if require_entrypoint and sweep.entrypoint not in ENTRYPOINTS:
        raise LaunchError(f"{expr}: the sweep runs `python -m {sweep.entrypoint}`, which is not "
                          f"an entry point the worker runs ({', '.join(ENTRYPOINTS)}); add it to "
                          "launch/spec.py ENTRYPOINTS and launch/expand.py VALIDATORS")
    from mdm.config_validation import ConfigError
    validator = _validator(sweep.entrypoint) if require_entrypoint or \
        sweep.entrypoint == "mdm.train" else None
    root = os.path.abspath(runs_root)
    created = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    specs = []
    for e in expanded:
        try:
            if validator is not None:
                validator(e.config)
        except ConfigError as err:
            raise LaunchError(f"{expr}, point {e.point.name!r}: {err}") from None
        overrides = dict(e.point.overrides)
        overrides.update({k: _lookup(e.config, k) for k in (sets or {})})
        specs.append(RunSpec(
            sweep=name, run_id=e.run_id, name=e.point.name, config_hash=e.config_hash,
            experiment=_rel(path, REPO), arg=e.point.arg, overrides=overrides,
            hosts=hosts or e.point.hosts, entrypoint=sweep.entrypoint, repo=REPO,
            runs_root=root, run_dir=os.path.join(root, name, e.run_id),
            config=e.config.to_dict(), created=created))
    return sweep, specs


def _safe(name: str) -> str:
    try:
        return safe_name(name)
    except SweepError:
        return ""


# entry point -> the function that checks a run's config before anything is written; the same
# modules as launch/spec.py ENTRYPOINTS (the worker's allow-list)
VALIDATORS: dict[str, str] = {
    "mdm.train": "mdm.config_validation:validate_config",
    "mdm.eval_samples": "mdm.generation_tasks:validate",
    "mdm.sample": "mdm.generation_tasks:validate",     # the old name of mdm.eval_samples
}


def _validator(entrypoint: str) -> Any:
    if entrypoint not in VALIDATORS:
        return None
    mod, fn = VALIDATORS[entrypoint].split(":")
    return getattr(importlib.import_module(mod), fn)


def entrypoint_exists(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def _lookup(cfg: Any, key: str) -> Any:
    node = cfg
    for p in key.split("."):
        node = node[p]
    return node
