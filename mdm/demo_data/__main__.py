"""python -m mdm.demo_data [--out DIR] [--seed N] [--scale small|tiny] [--force]"""
from __future__ import annotations

import argparse
import json
import sys


def main(argv: list[str] | None = None) -> int:
    from mdm.demo_data.scales import SCALES
    p = argparse.ArgumentParser(prog="python -m mdm.demo_data",
                                description="Build the embedded demo data set.")
    p.add_argument("--out", default="demo_out/data", help="output directory")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scale", default="small", choices=sorted(SCALES))
    p.add_argument("--force", action="store_true", help="rebuild every stage")
    args = p.parse_args(argv)
    from mdm.demo_data.build import build_demo_dataset
    ds = build_demo_dataset(args.out, args.seed, args.scale, force=args.force)
    s = ds.summary
    print(json.dumps({"root": s["root"], "metrics": s["metrics"], "checkers": s["checkers"],
                      "timings_seconds": s["timings_seconds"]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
