"""Build or show the compiled copies of the hottest modules (`operators/native.py`).

    python -m flows.native build     # make setup runs it; modules already built for their source are skipped
    python -m flows.native status    # compiled / source / off, per module
"""
from __future__ import annotations

import argparse
import sys

from operators import native


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m flows.native", description=__doc__.split("\n")[0])
    ap.add_argument("command", choices=("build", "status"))
    args = ap.parse_args(argv)
    what = native.build() if args.command == "build" else native.status()
    for name, state in what.items():
        print(f"{native.PACKAGE}.{name}: {state}")
    # a failed build is not an error: that module runs as Python, with the same output
    return 0


if __name__ == "__main__":
    sys.exit(main())
