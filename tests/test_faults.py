"""Reliability under faults: one owner per run, logs consistent with the state a run restarts
from, and the fast version of the fault-injection campaign (launch/fault_campaign.py)."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from mdm import run_contract as rc
from mdm.run_claim import RunClaim, RunClaimed, owner_state
from mdm.run_logger import RunWriter

HOLD = """
import sys, time
from mdm.run_claim import RunClaim
c = RunClaim(sys.argv[1]).acquire()
print("held", flush=True)
time.sleep(600)
"""


def _hold(run_dir: str, repo_root: str) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-c", HOLD, run_dir], cwd=repo_root,
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "held"
    return p


def test_a_live_owner_keeps_the_run_and_a_killed_one_releases_it(tmp_path, repo_root):
    d = str(tmp_path / "run")
    p = _hold(d, repo_root)
    try:
        assert owner_state(d)[0] == "alive"
        with pytest.raises(RunClaimed, match=f"pid {p.pid} on {socket.gethostname()}"):
            RunClaim(d).acquire()
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    assert owner_state(d)[0] == "dead"                   # same host, pid gone
    with RunClaim(d) as c:                               # the kernel dropped the dead owner's lock
        assert c.record["previous_owner"]["pid"] == p.pid
        assert owner_state(d)[0] == "alive"
    assert owner_state(d)[0] == "released"


def test_an_owner_on_another_host_is_trusted_until_its_heartbeat_is_stale(tmp_path):
    d = tmp_path / "run"
    d.mkdir()
    rec = {"host": "elsewhere", "pid": 1, "started": time.time(), "heartbeat": time.time(),
           "released": False}
    (d / rc.OWNER_FILE).write_text(json.dumps(rec))
    assert owner_state(str(d), stale_s=60)[0] == "alive"
    with pytest.raises(RunClaimed, match="presumed alive"):
        RunClaim(str(d), stale_s=60).acquire()
    rec["heartbeat"] = time.time() - 120
    (d / rc.OWNER_FILE).write_text(json.dumps(rec))
    assert owner_state(str(d), stale_s=60)[0] == "dead"
    RunClaim(str(d), stale_s=60).acquire().release()


def _write_lines(path, lines):
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def test_a_restart_makes_the_logs_match_the_state_it_starts_from(tmp_path):
    d = tmp_path / "run"
    w = RunWriter(str(d))
    m, e = str(d / rc.METRICS_FILE), str(d / rc.EVAL_FILE)
    rec = lambda s: json.dumps({"step": s, "loss": 1.0 / s})
    # steps 5..20, a restart (without cleanup) appended 5 again, a garbled line, a torn tail
    _write_lines(m, [rec(5), rec(10), '{"step": 15, "lo', rec(5), rec(10), rec(15), rec(20)[:9]])
    _write_lines(e, [json.dumps({"step": 0}), json.dumps({"step": 10}), json.dumps({"step": 20})])
    (d / rc.SUMMARY_FILE).write_text("{}")
    (d / rc.DONE_FILE).write_text("x")
    report = w.start_from(10)
    kept = rc.read_jsonl(m)[0]
    assert [r["step"] for r in kept] == [5, 10]           # the later history wins, no duplicates
    assert report["garbled_metrics.jsonl"] == 2
    assert [r["step"] for r in rc.read_jsonl(e)[0]] == [0, 10]
    assert not (d / rc.SUMMARY_FILE).exists() and not (d / rc.DONE_FILE).exists()
    w.start_from(None)                                   # no checkpoint: the logs restart empty
    assert not os.path.exists(m) and not os.path.exists(e)


def test_status_reads_the_owner_not_file_times(tmp_path, repo_root):
    """A run whose trainer died is not 'running' even though it wrote files a second ago."""
    from launch.spec import RunSpec
    from launch.status import run_status
    d = tmp_path / "runs" / "sw" / "r1"
    d.mkdir(parents=True)
    (d / rc.METRICS_FILE).write_text(json.dumps({"step": 1, "tokens": 10, "loss": 2.0}) + "\n")
    spec = RunSpec(sweep="sw", run_id="r1", name="r1", config_hash="0", experiment="x.py", arg="",
                   overrides={}, hosts=1, entrypoint="mdm.train", repo=repo_root,
                   runs_root=str(tmp_path / "runs"), run_dir=str(d), config={}, created="")
    p = _hold(str(d), repo_root)
    try:
        assert run_status(spec)["status"] == "running"
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    st = run_status(spec)
    assert st["status"] == "failed" and st["detail"] == "died without a summary"


# --- the fault-injection campaign, fast version -------------------------------------------------
@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    """The campaign's processes (trainers, launchers, the restore check) see 2 fake CPU
    devices instead of the session's 8: still a state on several devices, for about 30% less
    CPU per trainer (measured: the fast campaign 112 -> 83 s of CPU)."""
    from launch.fault_campaign import Campaign
    env = pytest.MonkeyPatch()
    env.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=2 "
               "--xla_cpu_collective_call_terminate_timeout_seconds=60")
    try:
        yield Campaign(str(tmp_path_factory.mktemp("faults")), seed=1,
                       say=lambda m: print(f"[faults] {m}", flush=True))
    finally:
        env.undo()


@pytest.mark.slow
def test_kills_sigterms_and_races_lose_nothing(campaign):
    """3 kill -9 at random moments (start-up, steps, asynchronous saves), 2 SIGTERM, a pair of
    concurrent trainers and a pair of concurrent launchers: every run ends done, with the
    uninterrupted run's exact steps, losses and final eval, restorable checkpoints, one trainer
    per run and no temporary files."""
    from launch.fault_campaign import COLUMNS, format_table
    # the full campaign (python -m launch.fault_campaign) runs 20 and 10, kind after kind; here
    # the 7 trials share one pool, two at a time
    campaign.all_trials(kills=3, sigterms=2, races=1, launcher_races=1)
    rows = campaign.finish()
    table = format_table(rows)
    print(table, *campaign.notes, sep="\n")
    assert {r["fault"]: r["trials"] for r in rows} == {"kill -9": 3, "SIGTERM": 2,
                                                        "concurrent trainers": 1,
                                                        "concurrent launchers": 1}
    assert all(r[c] == 0 for r in rows for c in COLUMNS[1:]), table + "\n" + "\n".join(campaign.notes)


@pytest.mark.slow
def test_a_full_disk_fails_cleanly_with_a_summary(campaign):
    reason = campaign.disk_full()
    if reason:
        pytest.skip(f"full-disk trial: {reason}")
    from launch.fault_campaign import COLUMNS, format_table
    rows = [r for r in campaign.finish() if r["fault"] == "full disk"]
    print(format_table(rows), *campaign.notes, sep="\n")
    assert rows and all(rows[0][c] == 0 for c in COLUMNS[1:]), "\n".join(campaign.notes)
