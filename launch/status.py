"""The state of a sweep's runs, read from the run directories and the launcher's records.

    status   meaning
    done     DONE is present (summary.json status "done")
    running  a launcher process or job is on it: its recorded pid is alive on this host, or the
             run wrote a file within the last `stale_s` seconds (another host)
    queued   submitted to a scheduler (SLURM, xpk) and not started since
    preempted  stopped by SIGTERM or train.max_steps (summary status "preempted"): relaunch
             resumes it from its checkpoint
    failed   stopped with a non-finite loss ("nan"), an error exit, or died without a summary
    missing  nothing on disk yet

Per run: tokens reached and planned, the last logged training loss, the final (or latest) eval
bits per token. Standard library only.
"""
from __future__ import annotations

import json
import os
import socket
import time
from typing import Any, Iterable

from launch.spec import RunSpec, read_state

STATUSES = ("done", "running", "queued", "preempted", "failed", "missing")


def _mtime(path: str) -> float:
    try:
        return os.path.getmtime(path)
    except OSError:
        return 0.0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie (exited, not yet reaped) is not running
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def _last_jsonl(path: str) -> dict[str, Any]:
    """The last complete JSON line of a file (reads the tail only)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 65536))
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return {}
    for line in reversed(lines):
        try:
            return json.loads(line)
        except ValueError:
            continue
    return {}


def run_status(spec: RunSpec, stale_s: float = 600.0, now: float | None = None) -> dict[str, Any]:
    now = time.time() if now is None else now
    d = spec.run_dir
    row: dict[str, Any] = {"run_id": spec.run_id, "name": spec.name, "status": "missing",
                           "detail": "", "tokens": None,
                           "total_tokens": spec.config.get("train", {}).get("total_tokens"),
                           "loss": None, "bits": None, "job": None}
    state = read_state(spec)
    if state.get("job_id"):
        row["job"] = state["job_id"]
    metrics = _last_jsonl(os.path.join(d, "metrics.jsonl"))
    if metrics:
        row["tokens"], row["loss"] = metrics.get("tokens"), metrics.get("loss")
    ev = _last_jsonl(os.path.join(d, "eval.jsonl"))
    if ev:
        row["bits"] = ev.get("bits")
    cfg_path = os.path.join(d, "config.json")
    if os.path.exists(cfg_path):
        try:
            with open(cfg_path) as f:
                row["total_tokens"] = json.load(f)["resolved"]["total_tokens"]
        except (OSError, ValueError, KeyError):
            pass
    if os.path.exists(os.path.join(d, "DONE")):
        row["status"] = "done"
        return row
    summary, summary_t = {}, _mtime(os.path.join(d, "summary.json"))
    if summary_t:
        try:
            with open(os.path.join(d, "summary.json")) as f:
                summary = json.load(f)
        except (OSError, ValueError):
            summary = {}
    run_activity = max(_mtime(os.path.join(d, f)) for f in
                       ("config.json", "metrics.jsonl", "eval.jsonl"))
    activity = max(run_activity, _mtime(spec.log_path))
    st = state.get("state")
    if st == "running":
        if state.get("host") == socket.gethostname() and state.get("pid"):
            alive = _pid_alive(int(state["pid"]))
        else:
            alive = now - max(activity, state.get("time", 0)) < stale_s
        if alive:
            row["status"] = "running"
            return row
    if st == "queued" and state.get("time", 0) >= run_activity:
        row["status"], row["detail"] = "queued", str(state.get("job_id", ""))
        return row
    fresh = st != "exited" and now - activity < stale_s  # written to lately, by no known exit
    if summary and not (fresh and run_activity > summary_t + 1):
        s = summary.get("status")
        row["status"] = "preempted" if s == "preempted" else "failed"
        row["detail"] = s if s != "preempted" else "resumable"
        if row["tokens"] is None:
            row["tokens"] = summary.get("tokens")
        return row
    if activity:
        if fresh:
            row["status"] = "running"
        else:
            row["status"] = "failed"
            rc = state.get("rc")
            row["detail"] = f"exit {rc}" if rc is not None else "died without a summary"
    return row


def sweep_status(specs: Iterable[RunSpec], stale_s: float = 600.0) -> list[dict[str, Any]]:
    now = time.time()
    return [run_status(s, stale_s, now) for s in specs]


def _num(x: Any, f: str) -> str:
    return "-" if x is None else format(x, f)


def format_table(rows: list[dict[str, Any]], sweep: str = "") -> str:
    head = ("run id", "status", "tokens", "of", "loss", "bits", "detail")
    body = [(r["run_id"], r["status"], _num(r["tokens"], ".3g"), _num(r["total_tokens"], ".3g"),
             _num(r["loss"], ".4f"), _num(r["bits"], ".4f"), r["detail"] or "") for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()
    counts = {s: sum(r["status"] == s for r in rows) for s in STATUSES}
    total = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    out = [line(head), line(["-" * w for w in widths])] + [line(b) for b in body]
    out.append(f"{sweep + ': ' if sweep else ''}{len(rows)} runs: {total}")
    return "\n".join(out)
