"""Fault injection: kill, stop, race and starve real training runs, then check that nothing was
lost, duplicated or corrupted. The fast version runs in `make test` (tests/test_faults.py);
the full campaign is

    python -m launch.fault_campaign [--kills 20] [--sigterms 10] [--races 10]
        [--launcher-races 5] [--out DIR]

and prints one table (the README's reliability table is that output):

    trials                 runs trained under each fault
    runs lost              a run that does not end DONE with status done after relaunching
    corrupt checkpoints    a committed checkpoint that does not restore
    dup/missing steps      metrics or eval steps that differ from an uninterrupted run's
    mismatched final evals summary final_eval (or the eval / loss records) not bit-identical
                           to the uninterrupted run's
    double-trained runs    two trainers of the same run both trained it
    leftover temp files    *.tmp.* files or orbax temporary directories after the run ended
    not one clear line     a bad input (launch/bad_inputs.py: bad flags, configs, paths and
                           shards) that did not stop mdm.train with one `error:` line and its
                           exit code (2 or 65) before anything was written

Faults: kill -9 at a uniformly random moment of the run (start-up, compile, steps, saves
included; the window is the reference run's wall time less the compiling its trials load from
the cache; then relaunch until done), SIGTERM at a random moment (expect exit 75 or 0; relaunch),
two trainers of the same run started together (one trains, the other exits 4), two launchers
of the same sweep started together (the run is trained once), and a run on a
tmpfs too small for it (expect exit 1, a summary naming the error and the last good
checkpoint, no temporary files; skipped with the reason when no tmpfs can be mounted).

Every run is the `tiny` preset cut to 60 steps with a checkpoint every 4 steps, so saves
(asynchronous) are frequent and kills often land in one.
"""
from __future__ import annotations

import argparse
import dataclasses
import glob
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

from mdm import run_contract as rc
from mdm.run_claim import CLAIMED_EXIT

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 60
RUN_ARGS = ("--config", "experiments/base.py:tiny",
            f"--config.train.total_tokens={64 * 16 * STEPS}",
            "--config.checkpoint.every=4096",          # every 4 steps
            "--config.eval.every=20480",               # every 20 steps
            "--config.logging.every_steps=5", "--progress=false")
COLUMNS = ("trials", "runs lost", "corrupt checkpoints", "dup/missing steps",
           "mismatched final evals", "double-trained runs", "leftover temp files",
           "not one clear line")


# The same run as RUN_ARGS, as a one-point sweep for the launcher races.
RACE_EXPERIMENT = f"""from experiments.base import get_config as _base
from experiments.sweep import Point, Sweep


def get_config(arg=None):
    c = _base("tiny")
    c.train.total_tokens = {64 * 16 * STEPS}
    c.checkpoint.every = 4096
    c.eval.every = 20480
    c.logging.every_steps = 5
    c.logging.progress = False
    return c


def sweep(arg=None):
    return Sweep("race", [Point("a")])
"""


def train_cmd(workdir: str) -> list[str]:
    return [sys.executable, "-m", "mdm.train", *RUN_ARGS, "--workdir", workdir]


def start(workdir: str, log_path: str) -> subprocess.Popen:
    log = open(log_path, "ab")
    return subprocess.Popen(train_cmd(workdir), cwd=REPO, stdout=log, stderr=log,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


def run_to_end(workdir: str, log_path: str, max_tries: int = 5) -> int:
    """Relaunch until the trainer exits with something other than 'preempted'."""
    code = None
    for _ in range(max_tries):
        code = start(workdir, log_path).wait()
        if code != 75:
            return code
    return code


def _records(path: str) -> list[dict[str, Any]]:
    try:
        records, _ = rc.read_jsonl(path)
    except rc.ContractError:
        return [{"garbled": True}]
    return records


def _summary(d: str) -> dict[str, Any]:
    try:
        with open(os.path.join(d, rc.SUMMARY_FILE)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def leftovers(d: str) -> list[str]:
    pats = [os.path.join(d, "*.tmp*"), os.path.join(d, rc.CHECKPOINT_DIR, "*orbax-checkpoint-tmp*")]
    return sorted(p for pat in pats for p in glob.glob(pat))


@dataclasses.dataclass
class Reference:
    """What an uninterrupted run writes (the bar every faulted run must meet)."""
    metrics: list[dict[str, Any]]
    evals: list[dict[str, Any]]
    final_eval: dict[str, Any]

    @classmethod
    def from_dir(cls, d: str) -> "Reference":
        return cls(_records(os.path.join(d, rc.METRICS_FILE)),
                   _records(os.path.join(d, rc.EVAL_FILE)), _summary(d).get("final_eval", {}))


# Keys that depend on timing, not on what was computed.
_TIMING = ("wall_s", "step_time_s", "tokens_per_s", "tokens_per_s_per_device",
           "model_flops_per_s", "mfu")


def _computed(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k not in _TIMING} for r in records]


def check_run(d: str, ref: Reference, stopped: bool = False) -> dict[str, int]:
    """The table's counts for one finished trial directory. A run `stopped` by SIGTERM logs the
    step it stopped at (an extra record, the only difference allowed); everything at the
    uninterrupted run's steps must be bit-identical to it (timing fields aside)."""
    out = dict.fromkeys(COLUMNS[1:], 0)
    s = _summary(d)
    if not (os.path.exists(os.path.join(d, rc.DONE_FILE)) and s.get("status") == "done"):
        out["runs lost"] = 1
    m, e = _records(os.path.join(d, rc.METRICS_FILE)), _records(os.path.join(d, rc.EVAL_FILE))
    steps_m, steps_e = [r.get("step") for r in m], [r.get("step") for r in e]
    ref_m, ref_e = [r["step"] for r in ref.metrics], [r["step"] for r in ref.evals]
    extra = set(steps_m) - set(ref_m)
    if (len(steps_m) != len(set(steps_m)) or set(ref_m) - set(steps_m) or steps_e != ref_e
            or steps_m != sorted(steps_m) or (extra and not stopped)):
        out["dup/missing steps"] = 1
    elif (s.get("final_eval") != ref.final_eval
          or _computed([r for r in m if r["step"] in set(ref_m)]) != _computed(ref.metrics)
          or _computed(e) != _computed(ref.evals)):
        out["mismatched final evals"] = 1
    if leftovers(d):
        out["leftover temp files"] = 1
    return out


RESTORE_SCRIPT = """
import json, sys
import orbax.checkpoint as ocp
from mdm.checkpointing import Checkpointer
bad = []
for d in json.loads(sys.argv[1]):
    ck = Checkpointer(d)
    for s in ck.all_steps():
        try:
            ck.manager.restore(s, args=ocp.args.StandardRestore())
        except Exception as e:
            bad.append([d, s, f"{type(e).__name__}: {e}"[:200]])
    ck.close()
print(json.dumps(bad))
"""


def corrupt_checkpoints(dirs: list[str]) -> dict[str, int]:
    """Restore every committed checkpoint of every trial in one process; count the failures
    per run directory."""
    ck_dirs = [os.path.join(d, rc.CHECKPOINT_DIR) for d in dirs
               if os.path.isdir(os.path.join(d, rc.CHECKPOINT_DIR))]
    if not ck_dirs:
        return {}
    p = subprocess.run([sys.executable, "-c", RESTORE_SCRIPT, json.dumps(ck_dirs)], cwd=REPO,
                       capture_output=True, text=True, timeout=1800)
    if p.returncode != 0:
        raise RuntimeError(f"checkpoint restore check crashed: {p.stderr[-2000:]}")
    bad: dict[str, int] = {}
    for d, _, _ in json.loads(p.stdout.strip().splitlines()[-1]):
        run = os.path.dirname(d)
        bad[run] = bad.get(run, 0) + 1
    return bad


class Campaign:
    def __init__(self, root: str, seed: int = 0, say=print, parallel: int = 2) -> None:
        self.root = root
        self.parallel = parallel
        self.rng = random.Random(seed)
        self.say = say
        self.rows: dict[str, dict[str, Any]] = {}
        self.dirs: dict[str, list[str]] = {}
        self.notes: list[str] = []
        self._lock = threading.Lock()
        os.makedirs(root, exist_ok=True)
        ref_dir = os.path.join(root, "reference")
        t0 = time.perf_counter()
        code = run_to_end(ref_dir, os.path.join(root, "reference.log"))
        self.ref_wall = time.perf_counter() - t0
        if code != 0:
            raise RuntimeError(f"the reference run failed (exit {code}); see {root}/reference.log")
        self.ref = Reference.from_dir(ref_dir)
        # The trials load the programs the reference compiled from the compilation cache, so
        # their runs are shorter by that compiling (on a cold cache, most of the reference's
        # start-up): a signal window scaled on the reference's whole wall time would put many
        # "kills" after the trial had already finished. (Loads from the cache count in
        # backend_s too: a fraction of a second, inside the window's 10% margin.)
        compiled = _summary(ref_dir).get("startup", {}).get("compile", {})
        cold_s = compiled.get("backend_s", 0.0) if compiled.get("cache_dir") else 0.0
        self.trial_wall = max(self.ref_wall - cold_s, 1.0)

    def _add(self, fault: str, d: str, counts: dict[str, int]) -> None:
        with self._lock:
            row = self.rows.setdefault(fault, dict.fromkeys(COLUMNS, 0))
            row["trials"] += 1
            for k, v in counts.items():
                row[k] += v
            self.dirs.setdefault(fault, []).append(d)

    def _signal_trial(self, fault: str, i: int, sig: int, delay: float) -> None:
        d = os.path.join(self.root, f"{fault.replace(' ', '')}-{i}")
        log = d + ".log"
        p = start(d, log)
        time.sleep(delay)
        if p.poll() is None:
            p.send_signal(sig)
        first = p.wait()
        code = run_to_end(d, log)
        counts = check_run(d, self.ref, stopped=sig == signal.SIGTERM)
        if sig == signal.SIGTERM and first not in (0, 75, -signal.SIGTERM):
            counts["runs lost"] = max(counts["runs lost"], 1)
            self.notes.append(f"{fault}-{i}: SIGTERM gave exit {first}")
        if code != 0:
            self.notes.append(f"{fault}-{i}: relaunch exit {code} (log {log})")
        self._add(fault, d, counts)

    def _signal_delays(self, n: int) -> list[float]:
        """When the signal lands: in [0.5 s, 1.1 x a run's wall time (trial_wall)] after the
        start (so start-up, compile, steps and saves), stratified: trial i uniformly in the
        i-th of n equal slices (then shuffled), so even a few trials span every phase."""
        lo, hi = 0.5, max(self.trial_wall * 1.1, 0.6)
        delays = [lo + (i + self.rng.uniform(0.0, 1.0)) * (hi - lo) / n for i in range(n)]
        self.rng.shuffle(delays)
        return delays

    def _pool(self, jobs: list[tuple[str, Any]]) -> None:
        """Run (name, thunk) jobs `parallel` at a time."""
        with ThreadPoolExecutor(self.parallel) as pool:
            futures = {pool.submit(fn): name for name, fn in jobs}
            for k, f in enumerate(as_completed(futures)):
                f.result()
                self.say(f"{futures[f]} done ({k + 1}/{len(jobs)})")

    def _signal_trials(self, fault: str, n: int, sig: int) -> None:
        """n trials, `parallel` at a time, at the moments of _signal_delays."""
        delays = self._signal_delays(n)
        self._pool([(f"{fault} trial {i + 1}/{n}",
                     lambda i=i: self._signal_trial(fault, i, sig, delays[i])) for i in range(n)])

    def kills(self, n: int) -> None:
        self._signal_trials("kill -9", n, signal.SIGKILL)

    def sigterms(self, n: int) -> None:
        self._signal_trials("SIGTERM", n, signal.SIGTERM)

    def all_trials(self, kills: int, sigterms: int, races: int, launcher_races: int) -> None:
        """The same trials as kills(), sigterms(), races() and launcher_races() one after the
        other, but all in one pool, `parallel` at a time (each trial has its own directory):
        the fast campaign of `make test`, which keeps both cores busy instead of waiting for
        the slowest trial of each kind. Every random draw is made here, in this order, so a
        seed gives the same moments whatever order the trials finish in."""
        kill_at, term_at = self._signal_delays(kills), self._signal_delays(sigterms)
        race_gap = [self.rng.uniform(0.0, 3.0) for _ in range(races)]
        launcher_gap = [self.rng.uniform(0.0, 3.0) for _ in range(launcher_races)]
        exp = self._race_experiment() if launcher_races else ""
        jobs = [(f"kill -9 trial {i + 1}/{kills}",
                 lambda i=i: self._signal_trial("kill -9", i, signal.SIGKILL, kill_at[i]))
                for i in range(kills)]
        jobs += [(f"SIGTERM trial {i + 1}/{sigterms}",
                  lambda i=i: self._signal_trial("SIGTERM", i, signal.SIGTERM, term_at[i]))
                 for i in range(sigterms)]
        jobs += [(f"race trial {i + 1}/{races}", lambda i=i: self._race_trial(i, race_gap[i]))
                 for i in range(races)]
        jobs += [(f"launcher race {i + 1}/{launcher_races}",
                  lambda i=i: self._launcher_race_trial(exp, i, launcher_gap[i]))
                 for i in range(launcher_races)]
        self._pool(jobs)

    def races(self, n: int) -> None:
        """Two trainers of the same run started together (a second launcher, a requeue)."""
        for i in range(n):
            self._race_trial(i, self.rng.uniform(0.0, 3.0))

    def _race_trial(self, i: int, gap: float) -> None:
        """Race i: the second trainer starts `gap` seconds after the first."""
        d = os.path.join(self.root, f"race-{i}")
        a = start(d, d + ".a.log")
        time.sleep(gap)
        b = start(d, d + ".b.log")
        codes = (a.wait(), b.wait())
        counts = check_run(d, self.ref)
        logs = "".join(open(p, errors="replace").read() for p in (d + ".a.log", d + ".b.log"))
        trained = sum(c == 0 for c in codes) - logs.count("already finished")
        if trained > 1:
            counts["double-trained runs"] = 1
        if sorted(codes) not in ([0, CLAIMED_EXIT], [0, 0]):
            self.notes.append(f"race-{i}: exit codes {codes}")
            counts["runs lost"] = max(counts["runs lost"], int(0 not in codes))
        self._add("concurrent trainers", d, counts)
        self.say(f"race trial {i + 1}: exit codes {codes}")

    def _race_experiment(self) -> str:
        exp = os.path.join(self.root, "race_experiment.py")
        with open(exp, "w") as f:
            f.write(RACE_EXPERIMENT)
        return exp

    def launcher_races(self, n: int) -> None:
        """Two `launch.cli run` of the same one-run sweep started together: the run is trained
        once (the second launcher finds it running, or its trainer is refused the claim)."""
        exp = self._race_experiment()
        for i in range(n):
            self._launcher_race_trial(exp, i, self.rng.uniform(0.0, 3.0))

    def _launcher_race_trial(self, exp: str, i: int, gap: float) -> None:
        """Launcher race i: the second launcher starts `gap` seconds after the first."""
        runs = os.path.join(self.root, f"launcher-race-{i}")
        os.makedirs(runs, exist_ok=True)
        cmd = [sys.executable, "-m", "launch.cli", "run", exp, "--runs-root", runs,
               "--executor", "local"]
        procs = []
        for who in ("a", "b"):
            log = open(os.path.join(runs, f"launcher-{who}.log"), "ab")
            procs.append(subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=log))
            if who == "a":
                time.sleep(gap)
        codes = tuple(p.wait() for p in procs)
        sweep = os.path.join(runs, "race")
        dirs = [os.path.join(sweep, r) for r in sorted(os.listdir(sweep))
                if not r.startswith(".")] if os.path.isdir(sweep) else []
        d = dirs[0] if dirs else os.path.join(sweep, "missing")
        counts = check_run(d, self.ref)
        log_path = os.path.join(sweep, ".launch", "logs", os.path.basename(d) + ".log")
        log = open(log_path, errors="replace").read() if os.path.exists(log_path) else ""
        if log.count("process 0/1") > 1:       # each trainer that got the claim logs it
            counts["double-trained runs"] = 1
        if codes != (0, 0):
            self.notes.append(f"launcher race {i}: exit codes {codes}")
        self._add("concurrent launchers", d, counts)
        self.say(f"launcher race {i + 1}: exit codes {codes}, "
                 f"{log.count('process 0/1')} trainer(s) trained it")

    def disk_full(self) -> str | None:
        """A run on a tmpfs 3/4 of its size (room for a checkpoint or two, not for the run); None
        when done, else why it was skipped."""
        mnt = os.path.join(self.root, "small_disk")
        os.makedirs(mnt, exist_ok=True)
        size_kb = max(256, int(_du(os.path.join(self.root, "reference")) * 0.75 / 1024))
        m = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", mnt],
                           capture_output=True, text=True)
        if m.returncode != 0:
            return f"cannot mount a tmpfs here ({m.stderr.strip() or 'mount failed'})"
        try:
            d = os.path.join(mnt, "run")
            code = start(d, os.path.join(self.root, "disk_full.log")).wait()
            s = _summary(d)
            counts = dict.fromkeys(COLUMNS[1:], 0)
            if code != 1 or s.get("status") != "failed" or "error" not in s or \
                    "last_checkpoint" not in s:
                counts["runs lost"] = 1
                self.notes.append(f"disk full: exit {code}, summary {json.dumps(s)[:300]}")
            if leftovers(d):
                counts["leftover temp files"] = 1
                self.notes.append(f"disk full: left {leftovers(d)}")
            kept = os.path.join(self.root, "disk_full_run")
            shutil.copytree(d, kept, dirs_exist_ok=True)
            self._add("full disk", kept, counts)
            self.notes.append(f"disk full ({size_kb} KiB): exit {code}, error "
                              f"{s.get('error', '?')[:120]!r}, last checkpoint "
                              f"{s.get('last_checkpoint')}")
        finally:
            subprocess.run(["umount", mnt], capture_output=True)
        return None

    def bad_inputs(self) -> None:
        """Every case of launch/bad_inputs.py through mdm.train."""
        from launch.bad_inputs import TRAIN_CASES, build_bad_inputs, run_case
        data = build_bad_inputs(os.path.join(self.root, "bad_inputs"))
        for i, case in enumerate(TRAIN_CASES):
            problem = run_case(case, data, os.path.join(self.root, "bad_inputs", f"run-{i}"))
            counts = dict.fromkeys(COLUMNS[1:], 0)
            if problem:
                counts["not one clear line"] = 1
                self.notes.append(f"bad input {case[0]}: {problem[:300]}")
            with self._lock:
                row = self.rows.setdefault("bad input", dict.fromkeys(COLUMNS, 0))
                row["trials"] += 1
                for k, v in counts.items():
                    row[k] += v
        self.say(f"bad inputs: {len(TRAIN_CASES)} cases")

    def finish(self) -> list[dict[str, Any]]:
        """Restore-check every trial's checkpoints; returns the table rows."""
        bad = corrupt_checkpoints([d for ds in self.dirs.values() for d in ds])
        for fault, ds in self.dirs.items():
            self.rows[fault]["corrupt checkpoints"] = sum(bad.get(d, 0) for d in ds)
        return [{"fault": f, **r} for f, r in self.rows.items()]


def _du(path: str) -> int:
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(path) for f in fs)


def format_table(rows: list[dict[str, Any]]) -> str:
    head = ("fault",) + COLUMNS
    body = [[str(r[h]) for h in head] for r in rows]
    total = ["total"] + [str(sum(r[c] for r in rows)) for c in COLUMNS]
    w = [max(len(x) for x in col) for col in zip(head, *body, total)]
    line = lambda cells: "| " + " | ".join(c.ljust(n) for c, n in zip(cells, w)) + " |"
    return "\n".join([line(head), "|" + "|".join("-" * (n + 2) for n in w) + "|",
                      *map(line, body), line(total)])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m launch.fault_campaign", description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--sigterms", type=int, default=10)
    ap.add_argument("--races", type=int, default=10)
    ap.add_argument("--launcher-races", type=int, default=5)
    ap.add_argument("--no-disk-full", action="store_true")
    ap.add_argument("--no-bad-inputs", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="", help="work directory (default: a temporary one, removed)")
    a = ap.parse_args(argv)
    root = a.out or tempfile.mkdtemp(prefix="mdm_faults_")
    say = lambda m: print(f"[faults] {m}", file=sys.stderr, flush=True)
    c = Campaign(root, a.seed, say)
    say(f"reference run: {c.ref_wall:.1f} s ({c.trial_wall:.1f} s without its compiling)")
    c.kills(a.kills)
    c.sigterms(a.sigterms)
    c.races(a.races)
    c.launcher_races(a.launcher_races)
    skipped = None if a.no_disk_full else c.disk_full()
    if not a.no_bad_inputs:
        c.bad_inputs()
    rows = c.finish()
    print(format_table(rows))
    if skipped:
        print(f"full disk: skipped ({skipped})")
    for n in c.notes:
        print(f"note: {n}")
    if not a.out:
        shutil.rmtree(root, ignore_errors=True)
    bad = sum(r[k] for r in rows for k in COLUMNS[1:])
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
