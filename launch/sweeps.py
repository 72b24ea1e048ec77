"""Sweep resolution: load an experiment file, resolve each Point into its config (typed
overrides), hash the config into a run id and expand a Sweep into run configs.

Run ids (`run_id`): the point's readable name + "-" + the first 8 hex digits of the SHA-256 of
the canonical JSON (sorted keys, no spaces) of the *resolved* config, i.e. get_config(arg) with
the overrides applied, leaving out the fields in HASH_EXCLUDE: where the run is written
(run_id, sweep), which study it is filed under (study), how many processes run it (multihost)
and how it is watched or chunked (logging.progress, train.max_steps), none of which change what a finished run computed. So a
run id names an experiment: the same point expands to the same id on any machine and in any
process, and changing any studied value (or a default in experiments/base.py) gives a new id.
"""
from __future__ import annotations

import ast
import dataclasses
import hashlib
import importlib.util
import json
import math
import os
import sys
from types import ModuleType
from typing import Any, Iterable, Mapping

import ml_collections as mlc

from experiments.sweep import Point, Sweep, SweepError, parse_scalar, safe_name

HASH_EXCLUDE: tuple[str, ...] = ("run_id", "sweep", "study", "multihost", "logging.progress",
                                 "train.max_steps")
HASH_LEN = 8


# --- resolving a point into a config --------------------------------------------------------

def load_module(path: str) -> ModuleType:
    """Import an experiment file by path (like ml_collections' config_flags)."""
    if not os.path.isfile(path):
        raise SweepError(f"experiment file {path!r} does not exist")
    name = "_mdm_experiment_" + safe_name(os.path.abspath(path)).replace(".", "_")
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    try:
        spec.loader.exec_module(mod)
    except BaseException:
        del sys.modules[name]
        raise
    for fn in ("get_config",):
        if not hasattr(mod, fn):
            raise SweepError(f"{path}: an experiment file defines get_config(arg)")
    return mod


def get_sweep(mod: ModuleType, arg: str | None = None) -> Sweep:
    fn = getattr(mod, "sweep", None) or getattr(mod, "get_sweep", None)
    if fn is None:
        raise SweepError(f"{mod.__file__}: defines no sweep(arg) / get_sweep(arg)")
    sw = fn(arg)
    if not isinstance(sw, Sweep):
        raise SweepError(f"{mod.__file__}: sweep() must return an experiments.sweep.Sweep")
    return sw


def _coerce(text: str, like: Any, field: str) -> Any:
    """A command-line string -> the type of the existing field (as config_flags does)."""
    if isinstance(like, (tuple, list)):
        try:
            v = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            raise SweepError(f"config.{field}: {text!r} is not a tuple literal") from None
        return tuple(v) if isinstance(v, (tuple, list)) else (v,)
    try:
        return parse_scalar(text, like, field, f"config.{field}")
    except SweepError:
        raise SweepError(f"config.{field}: {text!r} is not a valid {type(like).__name__}") \
            from None


def apply_overrides(cfg: mlc.ConfigDict, overrides: Mapping[str, Any],
                    from_strings: bool = False) -> mlc.ConfigDict:
    """Set 'a.b' fields in place; an unknown field or a value of the wrong type is an error."""
    for key, value in overrides.items():
        *path, last = key.split(".")
        node = cfg
        for i, p in enumerate(path):
            if not isinstance(node, mlc.ConfigDict) or p not in node:
                raise SweepError(f"unknown config field config.{'.'.join(path[:i + 1])} "
                                 f"(in override {key}={value!r})")
            node = node[p]
        if not isinstance(node, mlc.ConfigDict) or last not in node:
            raise SweepError(f"unknown config field config.{key}")
        if isinstance(node[last], mlc.ConfigDict):
            raise SweepError(f"config.{key} is a section; override its fields")
        if from_strings and isinstance(value, str):
            value = _coerce(value, node[last], key)
        try:
            node[last] = value
        except (TypeError, ValueError) as e:
            raise SweepError(f"config.{key}: cannot set {value!r}: {e}") from None
    return cfg


def resolve(mod: ModuleType, point: Point) -> mlc.ConfigDict:
    """get_config(point.arg) with the point's overrides applied."""
    cfg = mod.get_config(point.arg or None)
    return apply_overrides(cfg, point.overrides)


def canonical_config(cfg: mlc.ConfigDict | Mapping[str, Any]) -> dict[str, Any]:
    """The config as plain JSON data without the HASH_EXCLUDE fields."""
    d = cfg.to_dict() if isinstance(cfg, mlc.ConfigDict) else json.loads(json.dumps(cfg))
    d = json.loads(json.dumps(d, sort_keys=True))  # tuples -> lists, keys ordered
    for key in HASH_EXCLUDE:
        *path, last = key.split(".")
        node = d
        for p in path:
            node = node.get(p, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.pop(last, None)
    return d


def config_hash(cfg: mlc.ConfigDict | Mapping[str, Any], n: int = HASH_LEN) -> str:
    """First n hex digits of SHA-256 over the canonical JSON of the config."""
    for path, v in _floats(canonical_config(cfg)):
        if not math.isfinite(v):
            raise SweepError(f"config.{path}: must be a finite number, got {v} (a config with a "
                             "non-finite float cannot be hashed)")
    text = json.dumps(canonical_config(cfg), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def _floats(d: Any, path: str = "") -> Iterable[tuple[str, float]]:
    """(dotted path, value) of every float in plain JSON data."""
    if isinstance(d, dict):
        for k, v in d.items():
            yield from _floats(v, f"{path}.{k}" if path else str(k))
    elif isinstance(d, list):
        for i, v in enumerate(d):
            yield from _floats(v, f"{path}[{i}]")
    elif isinstance(d, float):
        yield path, d


@dataclasses.dataclass
class Expanded:
    point: Point
    config: mlc.ConfigDict
    run_id: str
    config_hash: str


def expand(mod: ModuleType, sw: Sweep, extra_overrides: Mapping[str, Any] | None = None,
           from_strings: bool = False) -> list[Expanded]:
    """Resolve every point; raises SweepError on duplicate run ids or identical configs."""
    out: list[Expanded] = []
    seen_ids: dict[str, str] = {}
    seen_hash: dict[str, str] = {}
    seen_names: set[str] = set()
    for p in sw.points:
        if p.hosts < 1:
            raise SweepError(f"sweep {sw.name}: point {p.name!r} wants {p.hosts} hosts")
        try:
            cfg = resolve(mod, p)
            if extra_overrides:
                apply_overrides(cfg, extra_overrides, from_strings=from_strings)
        except SweepError as e:
            raise SweepError(f"sweep {sw.name}, point {p.name!r}: {e}") from None
        h = config_hash(cfg)
        rid = f"{safe_name(p.name)}-{h}"
        if rid in seen_ids:
            raise SweepError(f"sweep {sw.name}: duplicate run id {rid!r} (points {seen_ids[rid]!r} "
                             f"and {p.name!r} have the same name and config)")
        if p.name in seen_names:
            raise SweepError(f"sweep {sw.name}: two points are named {p.name!r} (with different "
                             "configs); give every point a distinct readable name")
        full = config_hash(cfg, 64)
        if full in seen_hash:
            raise SweepError(f"sweep {sw.name}: points {seen_hash[full]!r} and {p.name!r} resolve "
                             "to the same config (the grid repeats a run)")
        seen_ids[rid] = p.name
        seen_names.add(p.name)
        seen_hash[full] = p.name
        out.append(Expanded(p, cfg, rid, h))
    if not out:
        raise SweepError(f"sweep {sw.name} has no points")
    return out
