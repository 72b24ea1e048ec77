"""What a study file needs to define its grid: typed config arguments, product / zip helpers,
and the Point / Sweep records. Resolving, hashing and expanding sweeps is the launcher's job
(launch/sweeps.py); this module imports nothing from the lab.

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
"""
from __future__ import annotations

import dataclasses
import itertools
import re
from typing import Any, Iterable, Mapping

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


def parse_scalar(text: str, like: Any, key: str, where: str) -> Any:
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
            out[key] = tuple(parse_scalar(v, elem, key, where) for v in split_list(val))
        else:
            out[key] = parse_scalar(val, like, key, where)
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
