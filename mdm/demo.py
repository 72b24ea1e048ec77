"""Old name of `python -m launch.demo` (the demo pipeline moved to the launch layer); kept for
one release as a command-line alias only. The library does not import the launcher: this
re-executes the new command.
"""
from __future__ import annotations

import os
import sys

if __name__ == "__main__":
    print("note: `python -m mdm.demo` is deprecated; use `make demo` or `python -m launch.demo`",
          file=sys.stderr, flush=True)
    os.execv(sys.executable, [sys.executable, "-m", "launch.demo", *sys.argv[1:]])
