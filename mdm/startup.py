"""Process start-up: JAX's persistent compilation cache, and a clock of where start-up goes.

    from mdm.startup import enable_compilation_cache
    enable_compilation_cache()        # every entry point that compiles, before its first compile

The cache (the one place it is configured): compiled XLA executables are written to disk and
a later process that compiles the same program (same HLO, jaxlib, XLA flags, devices) loads
it instead of compiling. Where, in order:

    enable_compilation_cache(path)          an explicit path ("off" or "" disables)
    MDM_COMPILATION_CACHE=DIR | off | ""    the environment (off / "" / 0 / none: disabled)
    JAX_COMPILATION_CACHE_DIR (JAX's own)   left as the user set it
    $XDG_CACHE_HOME/mdm/jax or ~/.cache/mdm/jax   the default

A user cache directory rather than one under the runs root: the executables depend on the code
and the machine, not on a study, every runs root (tests, the demo, a sweep) reuses the same
programs, and a runs root stays data that can be copied or shared. Entries go to a
subdirectory named after the host CPU (model and instruction-set flags): XLA:CPU code is
compiled for the host's instruction set, and this lab's home directory moves between hosts of
different CPUs. The cache is trusted code: never point it at a directory others can write.

Settings: jax_persistent_cache_min_compile_time_secs = 0 and min_entry_size_bytes = -1, so
every program is cached (a CPU run's programs compile in well under JAX's default 1 s
threshold, yet together they are most of its start-up); no size limit (JAX's LRU eviction
needs the `filelock` package, absent here; the entries of a demo grid are a few MB in all).

Concurrent processes (read from jax/_src/compilation_cache.py and lru_cache.py, JAX 0.10.2):
an entry is written with a plain open("wb") + write, not atomically, and without a lock when
no size limit is set; it is a zlib (or zstd) stream of the serialized executable. What keeps
concurrent trainers on one directory safe: a put first checks that the key is absent; a
reader that catches an entry mid-write gets a decode error (zlib checks its length and
adler32), which JAX turns into a warning and a fresh compile, never a wrong executable; two
writers of one key write the same kind of complete stream, and zlib ignores any tail a longer
earlier write left. The cost is a warning and a recompile in a race window of milliseconds
(tests/test_startup.py runs two trainers at once on one directory). A process killed while
writing leaves a truncated entry that is recompiled (with a warning) on every later use of
that program; delete the directory to clear it.

The clock (`StartupClock`) measures from the process's start (Linux /proc; else from this
module's import) through named phases, and counts compiles and cache hits with
jax.monitoring listeners: the trainer prints it as one line and writes it to summary.json.
"""
from __future__ import annotations

import hashlib
import os
import platform
import threading
import time
from typing import Any

ENV = "MDM_COMPILATION_CACHE"
OFF = ("", "off", "0", "none", "false", "no")
_IMPORTED = time.time()


def default_cache_root() -> str:
    """$XDG_CACHE_HOME/mdm/jax, or ~/.cache/mdm/jax."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "mdm", "jax")


def host_tag() -> str:
    """A short name for the host CPU: machine type + a hash of the CPU model and its flags."""
    ident = platform.machine() + platform.processor()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:                    # the first processor's block
                if not line.strip():
                    break
                if line.split(":", 1)[0].strip() in ("model name", "flags", "Features",
                                                     "CPU part", "CPU implementer"):
                    ident += line
    except OSError:
        pass
    return f"{platform.machine() or 'cpu'}-{hashlib.sha1(ident.encode()).hexdigest()[:10]}"


def resolve_cache_dir(path: str | None = None) -> str | None:
    """The directory enable_compilation_cache configures (None: disabled, or left to JAX's
    own JAX_COMPILATION_CACHE_DIR)."""
    if path is None:
        path = os.environ.get(ENV)
    if path is None:
        if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
            return None                       # the user configured JAX's cache directly
        path = default_cache_root()
    if path.strip().lower() in OFF:
        return None
    return os.path.join(os.path.abspath(os.path.expanduser(path)), host_tag())


def enable_compilation_cache(path: str | None = None) -> str | None:
    """Turn JAX's persistent compilation cache on (module docstring); returns the directory
    in use, None when disabled. Call before the process's first compile: JAX opens its cache
    at the first compile, so a later call only affects later processes."""
    import jax
    d = resolve_cache_dir(path)
    if d is None:
        if path is None and os.environ.get(ENV) is None:
            return jax.config.jax_compilation_cache_dir   # JAX_COMPILATION_CACHE_DIR, as set
        return None
    os.makedirs(d, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", d)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    return d


def process_start_time() -> float:
    """The process's start as a time.time() value (Linux: from /proc, 10 ms resolution);
    elsewhere the time this module was imported."""
    try:
        with open("/proc/self/stat", "rb") as f:
            stat = f.read().decode()
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        start_ticks = int(stat.rsplit(")", 1)[1].split()[19])   # field 22: starttime
        age = uptime - start_ticks / os.sysconf("SC_CLK_TCK")
        if 0 <= age < 1e6:
            return time.time() - age
    except (OSError, ValueError, IndexError):
        pass
    return _IMPORTED


class CompileStats:
    """Counts JAX compiles from jax.monitoring events while `active`: programs compiled or
    loaded (backend compile requests), persistent-cache hits, and seconds spent tracing,
    lowering and compiling (a cache hit's load counts as compile time)."""

    EVENTS = {"/jax/core/compile/jaxpr_trace_duration": "trace_s",
              "/jax/core/compile/jaxpr_to_mlir_module_duration": "lower_s",
              "/jax/core/compile/backend_compile_duration": "compile_s"}
    _registered = False
    _lock = threading.Lock()
    _instances: list["CompileStats"] = []

    def __init__(self) -> None:
        self.totals = {"trace_s": 0.0, "lower_s": 0.0, "compile_s": 0.0, "programs": 0,
                       "cache_hits": 0}
        self.active = True
        with CompileStats._lock:
            CompileStats._instances.append(self)
            if not CompileStats._registered:
                from jax import monitoring
                monitoring.register_event_duration_secs_listener(CompileStats._on_duration)
                monitoring.register_event_listener(CompileStats._on_event)
                CompileStats._registered = True

    def stop(self) -> None:
        self.active = False
        with CompileStats._lock:
            if self in CompileStats._instances:
                CompileStats._instances.remove(self)

    @classmethod
    def _on_duration(cls, event: str, duration: float, **kw: Any) -> None:
        key = cls.EVENTS.get(event)
        if key is None:
            return
        for s in list(cls._instances):
            s.totals[key] += duration
            if key == "compile_s":
                s.totals["programs"] += 1

    @classmethod
    def _on_event(cls, event: str, **kw: Any) -> None:
        if event == "/jax/compilation_cache/cache_hits":
            for s in list(cls._instances):
                s.totals["cache_hits"] += 1


class StartupClock:
    """Seconds from the process's start through named phases, plus the compiles in them.

        clock = StartupClock()          # phase boundaries are the times of the marks
        clock.mark("imports")           # process start -> now
        ...
        clock.mark("first_step")
        clock.record()                  # {"total_s", "phases_s", "compile": {...}}
        clock.line()                    # "startup: imports 2.1s, ... (compile ..., 3 cache hits)"
    """

    def __init__(self, t0: float | None = None, cache_dir: str | None = None) -> None:
        self.t0 = process_start_time() if t0 is None else t0
        self._last = self.t0
        self.phases: dict[str, float] = {}
        self.cache_dir = cache_dir
        self.compiles = CompileStats()

    def mark(self, phase: str) -> float:
        """End `phase` now (it began at the previous mark); returns its seconds."""
        now = time.time()
        dt = max(0.0, now - self._last)
        self.phases[phase] = self.phases.get(phase, 0.0) + dt
        self._last = now
        return dt

    def stop(self) -> dict[str, Any]:
        self.compiles.stop()
        return self.record()

    def record(self) -> dict[str, Any]:
        c = self.compiles.totals
        return {"total_s": round(self._last - self.t0, 3),
                "phases_s": {k: round(v, 3) for k, v in self.phases.items()},
                "compile": {"seconds": round(c["trace_s"] + c["lower_s"] + c["compile_s"], 3),
                            "backend_s": round(c["compile_s"], 3), "programs": c["programs"],
                            "cache_hits": c["cache_hits"], "cache_dir": self.cache_dir}}

    def line(self) -> str:
        r = self.record()
        c = r["compile"]
        phases = ", ".join(f"{k.replace('_', ' ')} {v:.2f}s" for k, v in r["phases_s"].items())
        cache = (f"{c['cache_hits']}/{c['programs']} from the cache" if self.cache_dir
                 else "cache off")
        return (f"startup: {phases}; total {r['total_s']:.2f}s to the first step "
                f"(tracing + compiling {c['seconds']:.2f}s, {c['programs']} programs, {cache})")
