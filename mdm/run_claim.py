"""One owner per run directory: an exclusive claim taken by the trainer itself, so that two
launchers, a requeued SLURM job and a stray manual rerun never train the same run at once.

The claim file `<run dir>/OWNER` (run_contract.OWNER_FILE) holds JSON
{"host", "pid", "started", "heartbeat", "released"} and is held with an exclusive
`fcntl.flock` for the owner's lifetime; the kernel drops the lock when the owner dies, however
it dies (kill -9 included). A claimant:

  1. takes the flock without waiting; failing that, another live process on this host (or on a
     file system that shares locks) owns the run -> RunClaimed;
  2. with the flock, reads the previous content: an unreleased owner on *another* host whose
     heartbeat is younger than `stale_s` (env MDM_CLAIM_STALE_S in the trainer) is presumed alive (flock does not reach across hosts
     on every shared file system) -> RunClaimed; an owner on this host whose pid is gone, or
     whose heartbeat is stale, is provably dead and the claim passes;
  3. writes its own content and refreshes `heartbeat` every `heartbeat_s` while it trains.

The file is never deleted (deleting a locked file lets a second process lock a new inode);
release marks it {"released": true} and drops the flock. `owner_state(run_dir)` is what
`launch.status` uses to tell a live run from a dead one: by pid on the same host, by heartbeat
elsewhere.
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from typing import Any

from mdm import run_contract as rc

CLAIMED_EXIT = 4             # the trainer's exit code when another live process owns the run
DEFAULT_STALE_S = 600.0      # a heartbeat older than this (other hosts) means the owner is gone
DEFAULT_HEARTBEAT_S = 30.0


class RunClaimed(RuntimeError):
    """Another live process owns the run directory; the message says which."""


def pid_alive(pid: int) -> bool:
    """Whether `pid` is a live (not zombie) process on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def read_owner(run_dir: str) -> dict[str, Any]:
    """The claim file's content ({} when absent or unreadable)."""
    try:
        with open(os.path.join(run_dir, rc.OWNER_FILE), encoding="utf-8") as f:
            return json.loads(f.read() or "{}")
    except (OSError, ValueError):
        return {}


def owner_state(run_dir: str, stale_s: float = DEFAULT_STALE_S,
                now: float | None = None) -> tuple[str, dict[str, Any]]:
    """("alive" | "dead" | "released" | "none", the owner record).

    alive: an unreleased owner whose pid runs on this host, or, on another host, whose
    heartbeat is younger than `stale_s`.
    """
    owner = read_owner(run_dir)
    if not owner:
        return "none", owner
    if owner.get("released"):
        return "released", owner
    now = time.time() if now is None else now
    if owner.get("host") == socket.gethostname():
        return ("alive" if pid_alive(int(owner.get("pid", 0) or 0)) else "dead"), owner
    fresh = now - float(owner.get("heartbeat", 0.0)) < stale_s
    return ("alive" if fresh else "dead"), owner


def _describe(owner: dict[str, Any]) -> str:
    age = time.time() - float(owner.get("heartbeat", 0.0))
    return (f"pid {owner.get('pid')} on {owner.get('host')} (heartbeat {age:.0f} s ago, "
            f"since {time.strftime('%H:%M:%S', time.localtime(float(owner.get('started', 0))))})")


class RunClaim:
    """Held for the life of a training process (a context manager)."""

    def __init__(self, run_dir: str, stale_s: float = DEFAULT_STALE_S,
                 heartbeat_s: float = DEFAULT_HEARTBEAT_S) -> None:
        self.run_dir = run_dir
        self.path = os.path.join(run_dir, rc.OWNER_FILE)
        self.stale_s = stale_s
        self.heartbeat_s = heartbeat_s
        self._fd: int | None = None
        self._last_beat = 0.0
        self.record: dict[str, Any] = {}

    def acquire(self) -> "RunClaim":
        os.makedirs(self.run_dir, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise RunClaimed(f"{self.run_dir} is being trained by another process "
                             f"({_describe(read_owner(self.run_dir))}); not starting a second "
                             "copy") from None
        state, owner = owner_state(self.run_dir, self.stale_s)
        if state == "alive" and owner.get("host") != socket.gethostname():
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
            raise RunClaimed(f"{self.run_dir} is owned by {_describe(owner)}; it is presumed "
                             f"alive until its heartbeat is {self.stale_s:.0f} s old")
        now = time.time()
        self._fd = fd
        self.record = {"host": socket.gethostname(), "pid": os.getpid(), "started": now,
                       "heartbeat": now, "released": False,
                       "previous_owner": owner if state in ("dead", "released") else None}
        self._write()
        return self

    def _write(self) -> None:
        data = json.dumps(self.record, sort_keys=True).encode()
        os.lseek(self._fd, 0, os.SEEK_SET)
        os.ftruncate(self._fd, 0)
        os.write(self._fd, data)
        os.fsync(self._fd)

    def heartbeat(self, force: bool = False) -> None:
        """Refresh the heartbeat (at most every `heartbeat_s` unless forced)."""
        now = time.time()
        if self._fd is None or (not force and now - self._last_beat < self.heartbeat_s):
            return
        self._last_beat = now
        self.record["heartbeat"] = now
        try:
            self._write()
        except OSError:    # a full disk must not kill the run from here; the lock still holds
            pass

    def release(self) -> None:
        if self._fd is None:
            return
        self.record.update(released=True, heartbeat=time.time())
        try:
            self._write()
        except OSError:
            pass
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> "RunClaim":
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()
