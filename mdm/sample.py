"""Old name of `mdm.eval_samples` (the sampling study's entry point); kept for one release.

    python -m mdm.sample ...   ->   python -m mdm.eval_samples ...
"""
from __future__ import annotations

import sys

from mdm.eval_samples import SampleError, main, resolve_checkpoint, run_sampling  # noqa: F401

if __name__ == "__main__":
    print("note: `python -m mdm.sample` is deprecated; use `python -m mdm.eval_samples`",
          file=sys.stderr)
    main()
