"""Command line: expand a sweep, run what is missing, show where it stands.

    python -m launch.cli expand experiments/demo.py --runs-root runs [--json]
    python -m launch.cli run    experiments/demo.py --runs-root runs --executor local --parallel 2
    python -m launch.cli run    experiments/scaling.py:isoflop,mix=text \\
        --runs-root /shared/runs --executor slurm --opt partition=gpu --opt gres=gpu:8 \\
        --opt time=24:00:00 --dry-run
    python -m launch.cli run    experiments/scaling.py:grid --executor tpu \\
        --opt accelerator=v5p-32 \\
        --opt remote_root=/gcs/bucket/runs --runs-root /gcs/bucket/runs --dry-run
    python -m launch.cli run    experiments/batch_size.py --executor xpk --opt cluster=c \\
        --opt device=h100-80gb-8 --hosts 2 --runs-root runs --dry-run
    python -m launch.cli status experiments/demo.py --runs-root runs [--json]

SWEEP is an experiment file and its sweep argument (FILE[:ARG]). Common flags:
  --runs-root DIR     must exist (default: $MDM_RUNS_ROOT or ./runs); runs go to
                      DIR/<sweep>/<run id>
  --set a.b=v         a config override for every run (typed and checked against the config;
                      part of the run id, except run_id / sweep / multihost / train.max_steps /
                      logging.progress)
  --hosts N           processes (hosts) per run, overriding the sweep's
  --sweep-name NAME   the directory under the runs root (default: the sweep's own name)
run only:
  --executor local|slurm|tpu|xpk, --opt key=value (executor options; an unknown one is an
  error listing the valid ones), --env K=V (environment of the runs), --parallel N (local: runs
  at once; slurm: array throttle), --dry-run (print, write and submit nothing), --only GLOB
  (run ids matching), --limit N, --include-running (also relaunch runs that look alive).

`run` skips runs whose directory has DONE and (unless --include-running) runs that are alive;
every other run starts, or resumes from its newest checkpoint. Exit status: 0 when everything
launched finished (local) or was submitted, 1 when a local run failed or stopped early
(exit 75: relaunch to resume), 2 on a bad request (nothing written or submitted).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from launch.expand import parse_sets
from launch.spec import LaunchError

DEFAULT_ROOT = os.environ.get("MDM_RUNS_ROOT", "runs")


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m launch.cli",
                                 description="expand, run and watch experiment sweeps")
    sub = ap.add_subparsers(dest="cmd", required=True)

    def common(p):
        p.add_argument("sweep", help="experiment file and sweep argument: FILE[:ARG]")
        p.add_argument("--runs-root", default=DEFAULT_ROOT)
        p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE")
        p.add_argument("--hosts", type=int, default=None)
        p.add_argument("--sweep-name", default=None)
        p.add_argument("--json", action="store_true", help="machine-readable output")

    common(sub.add_parser("expand", help="print the run specs of a sweep"))
    r = sub.add_parser("run", help="run or submit the sweep's missing runs")
    common(r)
    r.add_argument("--executor", default="local")
    r.add_argument("--opt", action="append", default=[], metavar="KEY=VALUE")
    r.add_argument("--env", action="append", default=[], metavar="KEY=VALUE")
    r.add_argument("--parallel", type=int, default=None)
    r.add_argument("--dry-run", action="store_true")
    r.add_argument("--only", default=None, metavar="GLOB")
    r.add_argument("--limit", type=int, default=None)
    r.add_argument("--include-running", action="store_true")
    s = sub.add_parser("status", help="table of the sweep's runs")
    common(s)
    s.add_argument("--stale", type=float, default=600.0,
                   help="seconds without output after which a run is no longer 'running'")
    return ap


def _plan(a, require_entrypoint: bool):
    from launch.expand import plan
    return plan(a.sweep, a.runs_root, parse_sets(a.set), a.hosts, a.sweep_name,
                require_entrypoint=require_entrypoint)


def cmd_expand(a) -> int:
    sweep, specs = _plan(a, require_entrypoint=False)
    if a.json:
        print(json.dumps([s.to_dict() for s in specs], indent=1))
    else:
        print(f"sweep {specs[0].sweep}: {len(specs)} runs -> {specs[0].sweep_dir}")
        for s in specs:
            print(f"{s.run_id}  hosts={s.hosts}  {s.experiment}:{s.arg}"
                  + "".join(f" --config.{k}={v}" for k, v in s.overrides.items()))
    return 0


def cmd_run(a) -> int:
    from launch.api import run_sweep
    from launch.executor import parse_kv
    res = run_sweep(a.sweep, a.runs_root, parse_sets(a.set), executor=a.executor,
                    options=parse_kv(a.opt, "--opt"), env=parse_kv(a.env, "--env"),
                    parallel=a.parallel, hosts=a.hosts, sweep_name=a.sweep_name,
                    dry_run=a.dry_run, only=a.only, limit=a.limit,
                    include_running=a.include_running)
    return 1 if a.executor == "local" and not a.dry_run and res.failed else 0


def cmd_status(a) -> int:
    from launch.status import format_table, sweep_status
    sweep, specs = _plan(a, require_entrypoint=False)
    rows = sweep_status(specs, a.stale)
    if a.json:
        print(json.dumps(rows, indent=1))
    else:
        print(format_table(rows, specs[0].sweep))
    return 0


def main(argv: list[str] | None = None) -> int:
    a = _parser().parse_args(argv)
    try:
        return {"expand": cmd_expand, "run": cmd_run, "status": cmd_status}[a.cmd](a)
    except LaunchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
