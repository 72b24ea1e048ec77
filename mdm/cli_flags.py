"""Bad command lines are one line on stderr and an exit code, never a traceback.

The absl entry points (mdm.train, mdm.eval_samples, mdm.plan) parse their flags with `run`
instead of `absl.app.run`; everything absl or ml_collections' config_flags would report as a
traceback or a multi-line "FATAL Flags parsing error" becomes `error: <one line>` and exit 2:

    --config FILE[:ARG] that does not exist, or whose get_config(ARG) fails
    --config.a.b=v naming an unknown field   error: config.a.b: unknown field; known fields of
                                             config.a: ...
    --config.a.b=v of the wrong type, an unknown flag, a missing required flag

`fail` prints such a line (collapsing a multi-line message) and exits; the entry points use it
for ConfigError (EXIT_BAD_INPUT) and for ShardError (EXIT_BAD_DATA) too.
"""
from __future__ import annotations

import importlib.util
import os
import re
import sys
from typing import Any, Callable, NoReturn, Sequence

EXIT_BAD_INPUT = 2   # bad command line or config (nothing was written)
EXIT_BAD_DATA = 65   # token shards missing, corrupt or not matching the config (sysexits EX_DATAERR)


def one_line(msg: str) -> str:
    """A message's lines joined into one (tracebacks inside reduced to their last line)."""
    lines = [ln.strip() for ln in str(msg).splitlines() if ln.strip()]
    if any(ln.startswith("Traceback (most recent call last)") for ln in lines):
        head = lines[0]
        return f"{head} {lines[-1]}" if head != lines[-1] else head
    return " ".join(lines)


def fail(msg: Any, code: int = EXIT_BAD_INPUT) -> NoReturn:
    """Print `error: <msg>` as one line on stderr and exit with `code`."""
    sys.stdout.flush()
    print(f"error: {one_line(str(msg))}", file=sys.stderr)
    sys.stderr.flush()
    sys.exit(code)


def _config_spec(argv: Sequence[str], name: str) -> str | None:
    """The FILE[:ARG] given to --<name> (either --name=X or --name X), or None."""
    for i, a in enumerate(argv):
        m = re.match(rf"^--?{re.escape(name)}(=(.*))?$", a)
        if m:
            if m.group(1) is not None:
                return m.group(2)
            return argv[i + 1] if i + 1 < len(argv) else None
    return None


def _override_paths(argv: Sequence[str], name: str) -> list[str]:
    """Field paths of --<name>.a.b[=v] overrides, in command-line order."""
    out = []
    for a in argv:
        m = re.match(rf"^--?(?:no)?{re.escape(name)}\.([^=]+)", a)
        if m:
            out.append(m.group(1))
    return out


def load_config(spec: str, name: str = "config") -> Any:
    """get_config(ARG) of FILE[:ARG] (as config_flags calls it); any failure is a ValueError
    with a one-line message naming the file."""
    path, *arg = spec.split(":", 1)
    if not os.path.isfile(path):
        raise ValueError(f"--{name} {spec}: no such config file {path!r} (paths are relative to "
                         f"{os.getcwd()})")
    try:
        loader = importlib.util.spec_from_file_location(f"_mdm_cli_{name}", path)
        if loader is None or loader.loader is None:
            raise ImportError("not a Python file")
        module = importlib.util.module_from_spec(loader)
        loader.loader.exec_module(module)
        return module.get_config(*arg)
    except Exception as e:  # the experiment file (or its get_config) raised
        raise ValueError(f"--{name} {spec}: {type(e).__name__}: {one_line(str(e))}") from None


def unknown_field(config: Any, path: str, name: str = "config") -> str | None:
    """The message for an override path the config does not have, or None if it has it."""
    node, parts = config, path.split(".")
    for i, part in enumerate(parts):
        here = ".".join([name, *parts[:i]])
        if "[" in part:  # indexing (config_flags syntax): let config_flags judge it
            return None
        if not hasattr(node, "keys"):
            return (f"{here}.{part}: unknown field; {here} is a {type(node).__name__} "
                    f"({node!r}), not a section")
        if part not in node:
            known = ", ".join(sorted(node.keys()))
            return f"{here}.{part}: unknown field; known fields of {here}: {known}"
        node = node[part]
    return None


def parse_flags(argv: list[str], config_names: Sequence[str] = ("config",)) -> list[str]:
    """absl flag parsing where every failure is `fail(...)` (one line, exit 2)."""
    from absl import flags
    for name in config_names:
        spec = _config_spec(argv, name)
        if spec is not None and not os.path.isfile(spec.split(":", 1)[0]):
            fail(f"--{name} {spec}: no such config file {spec.split(':', 1)[0]!r} (paths are "
                 f"relative to {os.getcwd()})")
    try:
        rest = flags.FLAGS(argv)
    except flags.Error as e:  # wrong type, unknown flag, get_config's ValueError / TypeError
        fail(_diagnose(argv, config_names) or one_line(str(e)))
    except Exception:  # config_flags: AttributeError / KeyError on an unknown field, ...
        msg = _diagnose(argv, config_names)
        if msg is None:
            raise
        fail(msg)
    for name in config_names:  # config_flags defers IOErrors of the config file to first use
        value = getattr(flags.FLAGS, name, None)
        if type(value).__name__ == "_ErrorConfig":
            try:
                value.keys()
            except OSError as e:
                fail(f"--{name}: {one_line(str(e))}")
    return rest


def _diagnose(argv: Sequence[str], config_names: Sequence[str]) -> str | None:
    """Why flag parsing failed, when it is the config file or an override path."""
    for name in config_names:
        spec = _config_spec(argv, name)
        paths = _override_paths(argv, name)
        if spec is None:
            if paths:
                return f"--{name}.{paths[0]} given without --{name} FILE[:ARG]"
            continue
        try:
            config = load_config(spec, name)
        except ValueError as e:
            return str(e)
        for p in paths:
            msg = unknown_field(config, p, name)
            if msg:
                return msg
    return None


def run(main: Callable[[list[str]], Any], argv: list[str] | None = None,
        config_names: Sequence[str] = ("config",)) -> None:
    """absl.app.run(main) with one-line flag errors (module docstring)."""
    from absl import app
    app.run(main, argv, flags_parser=lambda a: parse_flags(a, config_names))
