"""Writes the run directory of the contract (mdm.run_contract); process 0 only.

Every line is appended and flushed; summary.json is written atomically; DONE last.
Every (re)start makes the logs match the state it starts from (`start_from`): with no
checkpoint the logs restart empty; from a checkpoint at step s, records past s are dropped (they
will be logged again) together with any torn or garbled line a kill or a full disk left, so a
resumed run's metrics.jsonl equals an uninterrupted one's and a stale summary / DONE never
survives a restart.
"""
from __future__ import annotations

import datetime
import json
import os
import subprocess
from typing import Any

from mdm import __version__
from mdm import run_contract as rc

RESERVE_FILE = ".summary_reserve"   # space set aside for summary.json (see RunWriter.reserve)


def code_version() -> str:
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True,
                             text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=here, capture_output=True,
                               text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha, dirty = "", ""
    return f"mdm {__version__}" + (f" git {sha}{'+dirty' if dirty else ''}" if sha else "")


class RunWriter:
    """`tensorboard=True` mirrors every metrics/eval record into TensorBoard event files under
    <run_dir>/tensorboard (needs the `tensorboard` extra: pip install 'mdm-lab[tensorboard]')."""

    def __init__(self, run_dir: str, enabled: bool = True, tensorboard: bool = False) -> None:
        self.run_dir = run_dir
        self.enabled = enabled
        self._tb = None
        if enabled:
            os.makedirs(run_dir, exist_ok=True)
        if enabled and tensorboard:
            try:
                from tensorboardX import SummaryWriter
            except ImportError:
                raise RuntimeError("config.logging.tensorboard=True needs tensorboardX: "
                                   "pip install 'mdm-lab[tensorboard]'") from None
            self._tb = SummaryWriter(os.path.join(run_dir, "tensorboard"))

    def _mirror(self, prefix: str, record: dict[str, Any]) -> None:
        if self._tb is None:
            return
        step = int(record.get("step", 0))
        for k, v in record.items():
            if k != "step" and isinstance(v, (int, float)):
                self._tb.add_scalar(f"{prefix}/{k}", v, step)
        self._tb.flush()

    def path(self, name: str) -> str:
        return os.path.join(self.run_dir, name)

    def write_config(self, config: dict[str, Any], resolved: dict[str, Any], run_id: str,
                     sweep: str, study: str = "") -> None:
        if not self.enabled:
            return
        obj = {"config": config, "resolved": resolved, "run_id": run_id, "sweep": sweep,
               "study": study,
               "code_version": code_version(),
               "created": datetime.datetime.now(datetime.timezone.utc).isoformat()}
        rc.write_json_atomic(self.path(rc.CONFIG_FILE), obj)

    def metrics(self, record: dict[str, Any]) -> None:
        if self.enabled:
            rc.append_jsonl(self.path(rc.METRICS_FILE), record)
            self._mirror("train", record)

    def eval(self, record: dict[str, Any]) -> None:
        if self.enabled:
            rc.append_jsonl(self.path(rc.EVAL_FILE), record)
            self._mirror("eval", record)

    def start_from(self, step: int | None) -> dict[str, int]:
        """Make the logs consistent with a (re)start at `step` (None: no checkpoint, a fresh
        start). Keeps the metrics / eval records with step <= `step` that parse as JSON
        objects, in increasing step order (where a log written by an older version restarted
        without cleaning up, the later history wins); drops everything else (later steps, torn
        or garbled lines) and any summary.json / DONE. Returns {"dropped_<file>": n, "garbled_<file>": n}."""
        report: dict[str, int] = {}
        if not self.enabled:
            return report
        for name in (rc.METRICS_FILE, rc.EVAL_FILE):
            p = self.path(name)
            if not os.path.exists(p):
                continue
            kept, dropped, garbled = [], 0, 0
            if step is not None:
                with open(p, "r", encoding="utf-8", errors="replace") as f:
                    for line in f:
                        if not line.strip():
                            continue
                        try:
                            r = json.loads(line)
                        except ValueError:
                            garbled += 1
                            continue
                        if not (isinstance(r, dict) and r.get("step", 0) <= step):
                            dropped += 1
                            continue
                        while kept and kept[-1].get("step", 0) >= r.get("step", 0):
                            kept.pop()          # an earlier restart rewound the history here
                            dropped += 1
                        kept.append(r)
            if kept:
                tmp = p + ".tmp"
                try:
                    with open(tmp, "w", encoding="utf-8") as f:
                        for r in kept:
                            f.write(json.dumps(r, sort_keys=True) + "\n")
                        f.flush()
                        os.fsync(f.fileno())
                    os.replace(tmp, p)
                except BaseException:
                    if os.path.exists(tmp):
                        os.remove(tmp)
                    raise
            else:
                os.remove(p)
            report[f"dropped_{name}"], report[f"garbled_{name}"] = dropped, garbled
        for name in (rc.SUMMARY_FILE, rc.DONE_FILE):
            if os.path.exists(self.path(name)):
                os.remove(self.path(name))
        return report

    def truncate_after(self, step: int) -> None:
        """Resume from a checkpoint at `step` (start_from(step))."""
        self.start_from(step)

    def reserve(self, nbytes: int = 1 << 16) -> None:
        """Set disk space aside for the summary: a run that dies of a full disk frees it and
        can still write summary.json (and say why it failed)."""
        if self.enabled:
            with open(self.path(RESERVE_FILE), "wb") as f:
                f.write(b"\0" * nbytes)
                f.flush()
                os.fsync(f.fileno())

    def summary(self, summary: dict[str, Any]) -> None:
        """Write summary.json atomically (freeing the reserved space first)."""
        if self.enabled:
            if os.path.exists(self.path(RESERVE_FILE)):
                os.remove(self.path(RESERVE_FILE))
            rc.write_json_atomic(self.path(rc.SUMMARY_FILE), summary)

    def done(self) -> None:
        if self.enabled:
            with open(self.path(rc.DONE_FILE), "w") as f:
                f.write(datetime.datetime.now(datetime.timezone.utc).isoformat() + "\n")
