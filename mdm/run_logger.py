"""Writes the run directory of the contract (mdm.run_contract); process 0 only.

Every line is appended and flushed; summary.json is written atomically; DONE last.
On resume, records past the restored step are dropped (they will be logged again), so that a
resumed run's metrics.jsonl equals an uninterrupted one's.
"""
from __future__ import annotations

import datetime
import json
import os
import subprocess
from typing import Any

from mdm import __version__
from mdm import run_contract as rc


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
                     sweep: str) -> None:
        if not self.enabled:
            return
        obj = {"config": config, "resolved": resolved, "run_id": run_id, "sweep": sweep,
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

    def truncate_after(self, step: int) -> None:
        """Drop metrics / eval records with step > `step` (resume from a checkpoint at `step`)."""
        if not self.enabled:
            return
        for name in (rc.METRICS_FILE, rc.EVAL_FILE):
            p = self.path(name)
            records, _ = rc.read_jsonl(p)
            kept = [r for r in records if r.get("step", 0) <= step]
            tmp = p + ".tmp"
            with open(tmp, "w") as f:
                for r in kept:
                    f.write(json.dumps(r, sort_keys=True) + "\n")
            os.replace(tmp, p)
        for name in (rc.SUMMARY_FILE, rc.DONE_FILE):
            if os.path.exists(self.path(name)):
                os.remove(self.path(name))

    def summary(self, summary: dict[str, Any]) -> None:
        if self.enabled:
            rc.write_json_atomic(self.path(rc.SUMMARY_FILE), summary)

    def done(self) -> None:
        if self.enabled:
            with open(self.path(rc.DONE_FILE), "w") as f:
                f.write(datetime.datetime.now(datetime.timezone.utc).isoformat() + "\n")
