"""`make demo`: the lab's main job (see README). Currently: one tiny tri-modal run on the
synthetic source, written to runs/demo/, with its eval ELBO per modality printed."""
from __future__ import annotations

import json
import os
import sys


def main() -> int:
    from absl import flags, logging as absl_logging
    flags.FLAGS.mark_as_parsed()
    absl_logging.set_verbosity(absl_logging.WARNING)
    from experiments.base import get_config
    from mdm.trainer import train
    root = os.environ.get("MDM_DEMO_ROOT", "runs")
    run_dir = os.path.join(root, "demo", "tiny")
    cfg = get_config("tiny")
    summary = train(cfg, run_dir)
    print(json.dumps({m: round(v["bits"], 3) for m, v in summary["final_eval"].items()}))
    print(f"run directory: {run_dir} (status {summary['status']})")
    return 0 if summary["status"] == "done" else 1


if __name__ == "__main__":
    sys.exit(main())
