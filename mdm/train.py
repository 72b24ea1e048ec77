"""Command line: train one run (or resume it) into a run directory.

    python -m mdm.train --config experiments/base.py:tiny --workdir runs/demo/tiny \
        --config.optimizer.lr=1e-3 --config.mesh.fsdp=2

Rerunning the same command resumes from the newest checkpoint (a finished run is left as it is,
and says so). Exit codes:

    0   done
    1   failed: a checkpoint save or a log write failed (e.g. a full disk); summary.json names
        the error and the last good checkpoint
    2   bad input: the command line or the config (an unknown --config.a.b field, a value of the
        wrong type, out of range or not finite, a missing or failing config file, a mesh that
        does not fit the devices); checked before anything is written
    3   non-finite loss (summary.json status "nan")
    4   another live process is training this run (mdm.run_claim); nothing was touched
    65  bad data: the token shards named by config.data.path are missing, unfinished, corrupt
        (checksum, truncated chunk, token ids outside their vocabulary) or do not match the
        config (seq_len, vocabulary sizes, a mixture modality they lack); checked at load,
        before the first step (a chunk that breaks later stops the run with 65 too)
    75  preempted (SIGTERM; rerun to resume)

Compiled programs are cached across processes (JAX's persistent compilation cache, in
~/.cache/mdm/jax; MDM_COMPILATION_CACHE=DIR moves it, =off disables it: mdm.startup). The log
gets one `startup:` line (seconds per start-up phase up to the first finished step) and
summary.json its numbers ("startup_s", "startup").

Errors with exit 2 and 65 are one line on stderr, `error: <field or file>: <what is wrong; what
to do>`, never a traceback (mdm.cli_flags).
"""
from __future__ import annotations

import logging
import sys

from absl import flags
from ml_collections import config_flags

from mdm.cli_flags import EXIT_BAD_DATA, EXIT_BAD_INPUT, fail, run

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
    if cfg is None:
        fail("--config FILE[:ARG] is required (e.g. --config experiments/base.py:tiny)")
    if not _WORKDIR.value:
        fail("--workdir DIR is required (the run directory; created, or resumed if it exists)")
    from mdm.config_validation import ConfigError, validate_config
    from mdm.data.shards import ShardError
    try:  # before JAX starts (on every host of a multi-host run: before the handshake)
        validate_config(cfg)
        from mdm import distributed
        distributed.initialize(cfg)  # before any other JAX call
    except ConfigError as e:
        fail(e, EXIT_BAD_INPUT)
    from mdm.startup import StartupClock, enable_compilation_cache
    cache_dir = enable_compilation_cache()      # MDM_COMPILATION_CACHE=off disables it
    from mdm.sharding import MeshError
    from mdm.run_claim import RunClaimed
    from mdm.trainer import CLAIMED_EXIT, EXIT_CODES, train
    try:
        summary = train(cfg, _WORKDIR.value, progress=_PROGRESS.value,
                        clock=StartupClock(cache_dir=cache_dir))
    except (ConfigError, MeshError) as e:
        fail(e, EXIT_BAD_INPUT)
    except ShardError as e:
        fail(e, EXIT_BAD_DATA)
    except RunClaimed as e:
        print(f"claimed: {e}", file=sys.stderr)
        sys.exit(CLAIMED_EXIT)
    print(f"{summary['status']}: {summary['steps']} steps, {summary['tokens']:.3g} tokens -> "
          f"{_WORKDIR.value}")
    sys.exit(EXIT_CODES.get(summary["status"], 1))


def main() -> None:
    run(_main)


if __name__ == "__main__":
    main()
