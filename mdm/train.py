"""Command line: train one run (or resume it) into a run directory.

    python -m mdm.train --config experiments/base.py:tiny --workdir runs/demo/tiny \
        --config.optimizer.lr=1e-3 --config.mesh.fsdp=2

Rerunning the same command resumes from the newest checkpoint (a finished run is left as it is).
Exit codes: 0 done, 1 failed (summary.json says why), 2 bad config, 3 non-finite loss (status
"nan"), 4 another live process is training this run (nothing touched), 75 preempted (SIGTERM;
rerun to resume).
"""
from __future__ import annotations

import logging
import sys

from absl import app, flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "experiment config file[:arg]",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "run directory (created; resumed if it exists)")
_PROGRESS = flags.DEFINE_bool("progress", True, "show a progress bar")


def _main(argv: list[str]) -> None:
    del argv
    from absl import logging as absl_logging
    absl_logging.set_verbosity(absl_logging.WARNING)  # orbax logs every save at INFO
    logging.getLogger("mdm").setLevel(logging.INFO)
    cfg = _CONFIG.value
    if cfg is None or not _WORKDIR.value:
        raise app.UsageError("--config and --workdir are required")
    from mdm import distributed
    distributed.initialize(cfg)  # before any other JAX call
    from mdm.config_validation import ConfigError
    from mdm.sharding import MeshError
    from mdm.run_claim import RunClaimed
    from mdm.trainer import CLAIMED_EXIT, EXIT_CODES, train
    try:
        summary = train(cfg, _WORKDIR.value, progress=_PROGRESS.value)
    except (ConfigError, MeshError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except RunClaimed as e:
        print(f"claimed: {e}", file=sys.stderr)
        sys.exit(CLAIMED_EXIT)
    print(f"{summary['status']}: {summary['steps']} steps, {summary['tokens']:.3g} tokens -> "
          f"{_WORKDIR.value}")
    sys.exit(EXIT_CODES.get(summary["status"], 1))


def main() -> None:
    app.run(_main)


if __name__ == "__main__":
    main()
