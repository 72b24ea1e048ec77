"""The executor interface: every backend takes the pending run specs of one sweep and runs or
submits them; options are declared (name -> type, default, help) so that an option that does
not exist, or a value of the wrong type, is an error before anything is submitted.

    ex = make_executor("slurm", {"partition": "gpu", "time": "04:00:00"}, env={"K": "V"})
    ex.submit(specs, dry_run=True)      # prints what it would do, writes and runs nothing

Executors: local (launch/local.py), slurm (launch/slurm.py), tpu (launch/tpu.py),
xpk (launch/xpk.py).
"""
from __future__ import annotations

import dataclasses
import importlib
import shlex
import sys
from typing import Any, Callable, Mapping

from experiments.sweep import SweepError, parse_scalar
from launch.spec import LaunchError, RunSpec
from mdm.run_claim import CLAIMED_EXIT  # noqa: F401 (a run another process owns: skipped)


@dataclasses.dataclass(frozen=True)
class Option:
    type: type
    default: Any
    help: str = ""


def parse_option(name: str, text: Any, opt: Option, executor: str) -> Any:
    if not isinstance(text, str):
        return text
    try:   # the same reading of bool / int / float text as config arguments
        return parse_scalar(text, opt.type(), name, f"executor {executor}")
    except SweepError:
        raise LaunchError(f"executor {executor}: option {name}={text!r} is not a valid "
                          f"{opt.type.__name__}") from None


class Executor:
    name = ""
    OPTIONS: dict[str, Option] = {}

    def __init__(self, options: Mapping[str, Any] | None = None,
                 env: Mapping[str, str] | None = None, out: Callable[[str], None] = print):
        self.opts = {k: o.default for k, o in self.OPTIONS.items()}
        for k, v in (options or {}).items():
            if k not in self.OPTIONS:
                raise LaunchError(f"executor {self.name} has no option {k!r}; its options: "
                                  + ", ".join(f"{n} ({o.help})" for n, o in self.OPTIONS.items()))
            self.opts[k] = parse_option(k, v, self.OPTIONS[k], self.name)
        self.env = dict(env or {})
        self.out = out
        self.check()

    def check(self) -> None:
        """Validate option combinations (raise LaunchError)."""

    def submit(self, specs: list[RunSpec], dry_run: bool = False) -> dict[str, Any]:
        raise NotImplementedError

    def env_exports(self) -> str:
        return "".join(f"export {k}={shlex.quote(v)}\n" for k, v in self.env.items())


EXECUTORS = {"local": "launch.local:LocalExecutor", "slurm": "launch.slurm:SlurmExecutor",
             "tpu": "launch.tpu:TpuExecutor", "xpk": "launch.xpk:XpkExecutor"}


def executor_class(name: str) -> type[Executor]:
    if name not in EXECUTORS:
        raise LaunchError(f"unknown executor {name!r}; choose from {', '.join(EXECUTORS)}")
    mod, cls = EXECUTORS[name].split(":")
    return getattr(importlib.import_module(mod), cls)


def make_executor(name: str, options: Mapping[str, Any] | None = None,
                  env: Mapping[str, str] | None = None,
                  out: Callable[[str], None] = print) -> Executor:
    return executor_class(name)(options, env, out)


def parse_kv(items: list[str], what: str) -> dict[str, str]:
    out = {}
    for it in items or []:
        k, sep, v = it.partition("=")
        if not sep or not k.strip():
            raise LaunchError(f"{what} {it!r}: expected KEY=VALUE")
        out[k.strip()] = v
    return out


def worker_argv(spec: RunSpec, python: str = sys.executable, *extra: str) -> list[str]:
    return [python, "-m", "launch.worker", spec.spec_path, *extra]
