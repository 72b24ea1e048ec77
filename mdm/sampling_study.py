"""Old name of `python -m analysis.sampling_defaults` (the sampling study's tables and
choices moved to the analysis package); kept for one release as a command-line alias only.

The library does not import the analysis package: this re-executes the new command.
"""
from __future__ import annotations

import os
import sys

if __name__ == "__main__":
    print("note: `python -m mdm.sampling_study` is deprecated; use "
          "`python -m analysis.sampling_defaults`", file=sys.stderr, flush=True)
    os.execv(sys.executable, [sys.executable, "-m", "analysis.sampling_defaults", *sys.argv[1:]])
