"""What the ledger says about an output: WARCs done, failed (to be retried), given up.

    python -m flows.ledger OUTPUT [--config C] [--failed] [--json]

Counts per state, documents and rejected rows written, the WARCs that failed with their last
error and attempts, those no longer retried (`ledger.max_attempts`, from --config or the
default), and, with --config, how many of the config's inputs are still to do.
"""
from __future__ import annotations

import argparse
import json
import sys

from flows.config import ConfigError, load_config
from operators.io.ledger import LedgerConfig, finished, read_ledger


def summary(output: str, config: LedgerConfig, inputs: list[str] | None = None) -> dict:
    ledger = read_ledger(output)
    entries = list(ledger.values())
    failed = [e for e in entries if e["state"] == "failed"]
    out = {
        "warcs": len(entries),
        "done": sum(e["state"] == "done" for e in entries),
        "done_with_errors": sum(e["state"] == "done" and bool(e.get("errors")) for e in entries),
        "failed_to_retry": sum(not finished(e, config) for e in failed),
        "given_up": sum(finished(e, config) for e in failed),
        "documents": sum(e.get("documents", 0) for e in entries),
        "rejected": sum(e.get("rejected", 0) for e in entries),
        "failed": sorted(({"warc": e["warc"], "attempts": e.get("attempts"), "error": e.get("error"),
                           "given_up": finished(e, config)} for e in failed), key=lambda r: r["warc"]),
    }
    if inputs is not None:
        out["inputs"] = len(inputs)
        out["inputs_to_do"] = sum(not finished(ledger.get(p), config) for p in inputs)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m flows.ledger", description=__doc__.split("\n\n")[0])
    p.add_argument("output", nargs="?", help="output folder or URI (default: the config's output)")
    p.add_argument("--config", help="run config: its ledger settings, and its inputs to count what is left")
    p.add_argument("--failed", action="store_true", help="list every failed WARC with its last error")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = p.parse_args(argv)
    inputs = None
    try:
        cfg = load_config(args.config, [], output=args.output) if args.config else None
        output = args.output or (cfg.output if cfg else None)
        if not output:
            raise ConfigError("give an OUTPUT or a --config")
        ledger_cfg = cfg.ledger if cfg else LedgerConfig()
        if cfg and cfg.input:
            from operators.io.storage import expand_inputs
            inputs = expand_inputs(cfg.input)
        s = summary(output, ledger_cfg, inputs)
    except (ConfigError, FileNotFoundError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(s, indent=2))
        return 0
    print(f"{output}: {s['warcs']} WARC(s) in the ledger: {s['done']} done ({s['done_with_errors']} with "
          f"recorded damage), {s['failed_to_retry']} failed and to be retried, {s['given_up']} given up "
          f"after {ledger_cfg.max_attempts} attempts; {s['documents']:,} documents, {s['rejected']:,} rejected")
    if inputs is not None:
        print(f"inputs: {s['inputs']}, still to do: {s['inputs_to_do']}")
    rows = s["failed"] if args.failed else [r for r in s["failed"] if r["given_up"]][:20]
    for r in rows:
        print(f"  {'GIVEN UP' if r['given_up'] else 'retry'} {r['warc']} (attempts {r['attempts']}): {r['error']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
