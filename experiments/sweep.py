"""Sweeps: typed config arguments, product / zip helpers, resolution and content-hashed run ids.

A study file in experiments/ has

    ARGS = dict(size="s2", tokens=2e8, mix="tri")   # the typed fields of its config argument
    def get_config(arg: str | None = None) -> ml_collections.ConfigDict
    def sweep(arg: str | None = None) -> Sweep       # the grid, beside the config

`get_config("size=s3,tokens=2e8,mix=text")` parses the argument into those typed fields
(`parse_arg`): the type of each default decides how a value is read (bool, int, float, str, or
a tuple of them written `a+b+c`); an unknown key is an error naming the known ones. The same
string is what `python -m mdm.train --config experiments/scaling.py:size=s3,...` receives.

A Sweep is a name (the directory under the runs root) and a list of Points: a readable name, the
config argument, `--config.a.b=v` overrides, and the number of hosts (processes) the run wants.

    points = [Point(f"{s}-t{fmt(t)}", format_arg(size=s, tokens=t))
              for s, t in product(size=["s0", "s1"], tokens=[1e5, 2e5])]   # 4 points
    zip_(size=["s0", "s1"], tokens=[1e5, 2e5])                                # 2 points

Run ids (`run_id`): the point's readable name + "-" + the first 8 hex digits of the SHA-256 of
the canonical JSON (sorted keys, no spaces) of the *resolved* config, i.e. get_config(arg) with
the overrides applied, leaving out the fields in HASH_EXCLUDE: where the run is written
(run_id, sweep), how many processes run it (multihost) and how it is watched or chunked
(logging.progress, train.max_steps), none of which change what a finished run computed. So a
run id names an experiment: the same point expands to the same id on any machine and in any
process, and changing any studied value (or a default in experiments/base.py) gives a new id.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import itertools
import json
import math
import os
import re
import sys
from types import ModuleType
from typing import Any, Iterable, Mapping

import ml_collections as mlc

HASH_EXCLUDE: tuple[str, ...] = ("run_id", "sweep", "multihost", "logging.progress",
                                 "train.max_steps")
HASH_LEN = 8
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


class SweepError(ValueError):
    """A config argument, override or sweep is malformed; the message says what to change."""


# --- typed config arguments -----------------------------------------------------------------

class Args(dict):
    """The parsed config argument: a dict with attribute access (`a.size`)."""

    def __getattr__(self, k: str) -> Any:
        try:
            return self[k]
        except KeyError:
            raise AttributeError(k) from None


def _parse_scalar(text: str, like: Any, key: str, where: str) -> Any:
    t = text.strip()
    try:
        if isinstance(like, bool):
            low = t.lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if isinstance(like, int):
            f = float(t)
            if not f.is_integer():
                raise ValueError
            return int(f)
        if isinstance(like, float):
            return float(t)
        return t
    except ValueError:
        raise SweepError(f"{where}: {key}={text!r} is not a valid {type(like).__name__}") from None


def split_list(text: str) -> list[str]:
    """'a+b+c' -> ['a', 'b', 'c'] ('1e+5' stays one number: a '+' right after a mantissa's
    'e' and before a digit is an exponent sign; 'image+audio' splits)."""
    return [p for p in re.split(r"(?<![0-9.][eE])\+(?![0-9])|(?<![eE])\+", text) if p != ""]


def parse_arg(arg: str | None, defaults: Mapping[str, Any], positional: str | None = None,
              where: str = "config argument") -> Args:
    """Parse 'k=v,k2=v2' into the typed fields of `defaults`.

    A tuple default takes '+'-separated values of its first element's type. `positional` names
    the field a bare first item sets (e.g. `experiments/scaling.py:isoflop,mix=text`).
    """
    out = Args(defaults)
    items = [s for s in (arg or "").split(",") if s.strip()]
    for i, item in enumerate(items):
        if "=" not in item:
            if i == 0 and positional:
                key, val = positional, item
            else:
                raise SweepError(f"{where}: {item!r} is not key=value; known keys: "
                                 f"{', '.join(sorted(defaults))}")
        else:
            key, val = item.split("=", 1)
        key = key.strip()
        if key not in defaults:
            raise SweepError(f"{where}: unknown key {key!r}; known keys: "
                             f"{', '.join(sorted(defaults))}")
        like = defaults[key]
        if isinstance(like, tuple):
            elem = like[0] if like else ""
            out[key] = tuple(_parse_scalar(v, elem, key, where) for v in split_list(val))
        else:
            out[key] = _parse_scalar(val, like, key, where)
    return out


def fmt(x: Any) -> str:
    """Compact, stable text for names and arguments: 2e8 -> '2e8', 0.25 -> '0.25', 3 -> '3'."""
    if isinstance(x, bool):
        return "true" if x else "false"
    if isinstance(x, float):
        if x != 0 and (abs(x) >= 1e4 or abs(x) < 1e-3):
            m, e = f"{x:.6e}".split("e")
            m = m.rstrip("0").rstrip(".")
            return f"{m}e{int(e)}"
        if x.is_integer():
            return str(int(x))
        return f"{x:.6g}"
    if isinstance(x, (tuple, list)):
        return "+".join(fmt(v) for v in x)
    return str(x)


def fmt_exact(x: Any) -> str:
    """Like fmt, but a float always reads back exactly (3.23485696e8 stays 323485696)."""
    if isinstance(x, (tuple, list)):
        return "+".join(fmt_exact(v) for v in x)
    s = fmt(x)
    if isinstance(x, float) and not isinstance(x, bool) and float(s) != x:
        return str(int(x)) if x.is_integer() and abs(x) < 1e18 else repr(x)
    return s


def format_arg(**fields: Any) -> str:
    """format_arg(size="s3", tokens=2e8) -> 'size=s3,tokens=2e8' (in the given order; numbers
    are written so that they read back exactly)."""
    for k, v in fields.items():
        if isinstance(v, str) and ("," in v or "=" in v):
            raise SweepError(f"format_arg: {k}={v!r} contains ',' or '='")
    return ",".join(f"{k}={fmt_exact(v)}" for k, v in fields.items())


def safe_name(name: str) -> str:
    """A name usable as a directory, job or file name: [A-Za-z0-9._-] only."""
    s = _SAFE.sub("_", name).strip("._-")
    if not s:
        raise SweepError(f"run name {name!r} has no usable characters")
    return s


# --- grids ----------------------------------------------------------------------------------

def product(**axes: Iterable[Any]) -> list[dict[str, Any]]:
    """Cartesian product, first axis slowest: product(a=[1, 2], b=[3]) -> [{a:1,b:3}, {a:2,b:3}]."""
    keys = list(axes)
    vals = [list(v) for v in axes.values()]
    return [dict(zip(keys, combo)) for combo in itertools.product(*vals)]


def zip_(**axes: Iterable[Any]) -> list[dict[str, Any]]:
    """Element-wise: zip_(a=[1, 2], b=[3, 4]) -> [{a:1,b:3}, {a:2,b:4}]; lengths must match."""
    vals = {k: list(v) for k, v in axes.items()}
    lens = {k: len(v) for k, v in vals.items()}
    if len(set(lens.values())) > 1:
        raise SweepError(f"zip_: axes have different lengths {lens}")
    n = next(iter(lens.values()), 0)
    return [{k: v[i] for k, v in vals.items()} for i in range(n)]


def chain(*grids: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Concatenate grids."""
    return [p for g in grids for p in g]


@dataclasses.dataclass(frozen=True)
class Point:
    name: str                                   # readable: "s2-t2e6-mix_text"
    arg: str = ""                               # the config argument
    overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # "a.b" -> value
    hosts: int = 1                              # processes (one per host) the run wants


@dataclasses.dataclass
class Sweep:
    name: str                                   # directory under the runs root
    points: list[Point]
    entrypoint: str = "mdm.train"               # the module each run executes
    description: str = ""


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
        raise SweepError(f"{mod.__file__}: sweep() must return experiments.sweep.Sweep")
    return sw


def _coerce(text: str, like: Any, field: str) -> Any:
    """A command-line string -> the type of the existing field (as config_flags does)."""
    if isinstance(like, (tuple, list)):
        import ast
        try:
            v = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            raise SweepError(f"config.{field}: {text!r} is not a tuple literal") from None
        return tuple(v) if isinstance(v, (tuple, list)) else (v,)
    try:
        return _parse_scalar(text, like, field, f"config.{field}")
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
    for v in _floats(canonical_config(cfg)):
        if not math.isfinite(v):
            raise SweepError("a config with a non-finite float cannot be hashed")
    text = json.dumps(canonical_config(cfg), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def _floats(d: Any) -> Iterable[float]:
    if isinstance(d, dict):
        for v in d.values():
            yield from _floats(v)
    elif isinstance(d, list):
        for v in d:
            yield from _floats(v)
    elif isinstance(d, float):
        yield d


def run_id(name: str, cfg: mlc.ConfigDict | Mapping[str, Any]) -> str:
    return f"{safe_name(name)}-{config_hash(cfg)}"


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
