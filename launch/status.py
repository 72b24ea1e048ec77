"""The state of a sweep's runs, read from the run directories and the launcher's records.

    status   meaning
    done     DONE is present (summary.json status "done")
    running  the trainer's claim (OWNER, mdm.run_claim) is held: its pid is alive on this host,
             or its heartbeat is younger than `stale_s` (another host); for runs without a
             claim file, a launcher pid alive on this host or a file written within `stale_s`
    queued   submitted to a scheduler (SLURM, xpk) and not started since
    preempted  stopped by SIGTERM or train.max_steps (summary status "preempted"): relaunch
             resumes it from its checkpoint
    failed   stopped with a non-finite loss ("nan"), an error exit, or died without a summary
    missing  nothing on disk yet

Per run: tokens reached and planned, the last logged training loss, the final (or latest) eval
bits per token. Standard library only (mdm.run_contract and mdm.run_claim are pure Python).
"""
from __future__ import annotations

import json
import os
import socket
import time
from typing import Any, Iterable

from launch.spec import RunSpec, read_state
from mdm import run_contract as rc
from mdm.run_claim import CLAIMED_EXIT, owner_state, pid_alive

STATUSES = ("done", "running", "queued", "preempted", "failed", "missing")
# mdm.train's exit codes (mdm/train.py) as the status table explains them
EXIT_MEANINGS = {1: "failed, see summary.json", 2: "bad config", 3: "non-finite loss",
                 CLAIMED_EXIT: "another process owns the run", 65: "bad token shards"}


def _mtime(path: str) -> float:
    try:
        return os.path.getmtime(path)
    except OSError:
        return 0.0


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
    metrics = rc.last_record(os.path.join(d, rc.METRICS_FILE))
    if metrics:
        row["tokens"], row["loss"] = metrics.get("tokens"), metrics.get("loss")
    ev = rc.last_record(os.path.join(d, rc.EVAL_FILE))
    if ev:
        row["bits"] = ev.get("bits")
    cfg_path = os.path.join(d, rc.CONFIG_FILE)
    if os.path.exists(cfg_path):
        try:
            with open(cfg_path) as f:
                row["total_tokens"] = json.load(f)["resolved"]["total_tokens"]
        except (OSError, ValueError, KeyError):
            pass
    if os.path.exists(os.path.join(d, rc.DONE_FILE)):
        row["status"] = "done"
        return row
    # The trainer's own claim decides first: alive by pid on this host, by heartbeat elsewhere.
    owner_is, owner = owner_state(d, stale_s, now)
    if owner_is == "alive":
        row["status"], row["detail"] = "running", f"pid {owner.get('pid')} on {owner.get('host')}"
        return row
    claimed_before = owner_is in ("dead", "released")   # a trainer ran here and is gone
    summary, summary_t = {}, _mtime(os.path.join(d, rc.SUMMARY_FILE))
    if summary_t:
        try:
            with open(os.path.join(d, rc.SUMMARY_FILE)) as f:
                summary = json.load(f)
        except (OSError, ValueError):
            summary = {}
    run_activity = max(_mtime(os.path.join(d, f)) for f in
                       (rc.CONFIG_FILE, rc.METRICS_FILE, rc.EVAL_FILE))
    activity = max(run_activity, _mtime(spec.log_path))
    st = state.get("state")
    if st == "running" and not claimed_before:
        if state.get("host") == socket.gethostname() and state.get("pid"):
            alive = pid_alive(int(state["pid"]))
        else:
            alive = now - max(activity, state.get("time", 0)) < stale_s
        if alive:
            row["status"] = "running"
            return row
    if st == "queued" and state.get("time", 0) >= run_activity:
        row["status"], row["detail"] = "queued", str(state.get("job_id", ""))
        return row
    # written to lately, by no known exit (only for runs whose trainer predates the claim file)
    fresh = st != "exited" and now - activity < stale_s and not claimed_before
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
            code = state.get("rc")
            row["detail"] = (f"exit {code}" + (f" ({EXIT_MEANINGS[code]})" if code in EXIT_MEANINGS
                                               else "") if code is not None
                             else "died without a summary")
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
