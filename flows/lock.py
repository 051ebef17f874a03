"""Who holds an output's writer lock, and clearing a stale one.

    python -m flows.lock OUTPUT            # the holder (run id, host, pid, started, expires) or "free"
    python -m flows.lock OUTPUT --clear    # remove the lock: only after making sure its run is gone

A run holds `<OUTPUT>/_lock.json` while it writes (operators/io/lock.py). A killed run's lock expires
by itself `lock.lease_seconds` after its last renewal; `--clear` is for not waiting that long.
Exit status: 0 free (or cleared), 1 held by a live run, 2 bad arguments.
"""
from __future__ import annotations

import argparse
import json
import sys
import time


def main(argv: list[str] | None = None) -> int:
    from operators.io.lock import clear_lock, read_lock
    p = argparse.ArgumentParser(prog="python -m flows.lock", description=__doc__.split("\n\n")[0])
    p.add_argument("output", help="output folder or URI")
    p.add_argument("--clear", action="store_true", help="remove the lock whoever holds it")
    args = p.parse_args(argv)
    try:
        doc = clear_lock(args.output) if args.clear else read_lock(args.output)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    live = bool(doc) and not doc.get("released") and doc.get("expires", 0) > time.time()
    if args.clear:
        print(f"cleared the lock of {args.output}" + (f" (held by run {doc.get('holder')}, "
                                                      f"{'live' if live else 'expired or released'})" if doc else
                                                      " (there was none)"))
        return 0
    if not live:
        print(f"{args.output}: free" + (f" (last holder: run {doc.get('holder')}, "
                                        f"{'released' if doc.get('released') else 'expired'})" if doc else ""))
        return 0
    print(json.dumps({k: doc.get(k) for k in ("holder", "host", "pid", "started", "renewed", "command")}
                     | {"expires_in_seconds": round(doc["expires"] - time.time())}, indent=2))
    return 1


if __name__ == "__main__":
    sys.exit(main())
