"""Sweep expansion and executors: a study's grid becomes run specs (one JSON each), which run on
local processes, SLURM (job arrays and multi-node jobs), TPU VMs (gcloud) or GKE (xpk /
JobSet). Idempotent: run ids are content hashes, finished runs (DONE) are skipped and the
others resume from their checkpoints. `launch/` knows configs and commands, never the model.

Command line: `python -m launch.cli {expand,run,status} SWEEP ...` (see launch/cli.py).
"""
