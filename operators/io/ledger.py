"""The ledger: each input WARC's state in the output store, so reruns and nightly runs skip what is
done and redo what is not.

A crawl splits its WARCs into commit units of `ledger.warcs_per_commit` files (1: every WARC on
its own). Each unit is one run of the flow with its own run id and its own commit (operators/
writer.commit): its documents, rejected rows, index parts and its ledger entries
(`_ledger/<run_id>.jsonl`, one JSON object per WARC) become visible together, or not at all. A
crash anywhere leaves every WARC of the unfinished unit without an entry: the next run redoes it;
a crash after the commit intent is rolled forward with its ledger entries.

Entry fields: warc, state, attempts, errors (error kinds the reader reported), error (a message),
records (HTML records read), documents / rejected (rows written), run_id (the unit's run),
invocation (the `flows.crawl` call that ran it), at (UTC time).

States:
- `done`: read to the end. A file that reported damage (`damaged_warc`, `gzip_not_per_record`,
  ...) is done too, with its error kinds: reading the same bytes again gives the same result.
- `failed`: could not be read (`unreadable_warc`: missing, no access, a network error), or its unit
  raised. Retried by later runs until it has failed `ledger.max_attempts` times, then skipped (and
  listed by `python -m flows.ledger`). Documents a failed file yielded before the error are
  committed; its retry re-reads them and they are dropped as URL duplicates of themselves
  (the dedup index), so they are not published twice while `dedup.index` is on.

The latest entry of a WARC wins: the one with the latest `at` (run ids order the files only to the
second, and two runs can end within one second); entries without `at` follow file order.
"""
from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterable

import pyarrow.fs as pafs

from operators.io.layout import LEDGER_DIR, staging_dir
from operators.io.read import ReadResult
from operators.io.storage import resolve

RETRIED_KINDS = ("unreadable_warc",)   # a file that reported only these (or none read) is `failed`


@dataclass(frozen=True)
class LedgerConfig:
    """The `ledger` config section."""
    enabled: bool = True           # record each WARC's state; a rerun skips finished WARCs
    warcs_per_commit: int = 64     # WARCs per commit unit (1: each WARC commits on its own)
    max_attempts: int = 3          # a WARC that failed this many times is no longer retried
    max_warcs: int | None = None   # process at most this many unfinished WARCs, in input order (nightly)

    def __post_init__(self):
        for key in ("warcs_per_commit", "max_attempts"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"ledger.{key} must be an integer >= 1, got {v!r}")
        if self.max_warcs is not None and (isinstance(self.max_warcs, bool) or not isinstance(self.max_warcs, int)
                                           or self.max_warcs < 1):
            raise ValueError(f"ledger.max_warcs must be null or an integer >= 1, got {self.max_warcs!r}")


def read_ledger(output: str) -> dict[str, dict]:
    """The latest entry of every WARC in `output`'s ledger ({} when there is none)."""
    fs, root = resolve(output)
    base = posixpath.join(root.rstrip("/"), LEDGER_DIR)
    infos = fs.get_file_info(pafs.FileSelector(base, allow_not_found=True))
    latest: dict[str, dict] = {}
    for info in sorted((i for i in infos if i.type == pafs.FileType.File and i.path.endswith(".jsonl")),
                       key=lambda i: i.path):
        with fs.open_input_stream(info.path) as f:
            for line in f.read().decode().splitlines():
                if line.strip():
                    entry = json.loads(line)
                    old = latest.get(entry["warc"])
                    if old is None or not _earlier(entry, old):
                        latest[entry["warc"]] = entry
    return latest


def _earlier(entry: dict, than: dict) -> bool:
    """Whether `entry` was written before `than` by their `at` times (False when either lacks one)."""
    try:
        return datetime.fromisoformat(entry["at"]) < datetime.fromisoformat(than["at"])
    except (KeyError, TypeError, ValueError):
        return False


def finished(entry: dict | None, config: LedgerConfig) -> bool:
    """Whether a WARC with this latest entry is skipped: done, or failed max_attempts times."""
    if entry is None:
        return False
    return entry["state"] == "done" or entry.get("attempts", 0) >= config.max_attempts


def pending(paths: Iterable[str], ledger: dict[str, dict], config: LedgerConfig) -> list[str]:
    """The WARCs of `paths` (in their order) still to do, at most `max_warcs` of them."""
    todo = [p for p in paths if not finished(ledger.get(p), config)]
    return todo[:config.max_warcs] if config.max_warcs else todo


def units(paths: list[str], config: LedgerConfig) -> list[list[str]]:
    """`paths` in commit units of `warcs_per_commit`."""
    k = config.warcs_per_commit
    return [paths[i:i + k] for i in range(0, len(paths), k)]


def entries(paths: list[str], outcomes: dict[str, ReadResult], written: dict[str, list[int]], errors: list[dict],
            ledger: dict[str, dict], run_id: str, invocation: str, unit_error: str | None = None) -> list[dict]:
    """Ledger entries of one unit's WARCs. `outcomes`: each WARC's ReadResult; `written`: path ->
    [documents, rejected] rows the sink wrote; `errors`: the reader's error records (for a
    message); `unit_error`: the unit raised (every WARC of it failed with this message)."""
    now = datetime.now(timezone.utc).isoformat()
    messages: dict[str, str] = {}
    for e in errors:
        if isinstance(e, dict) and e.get("file") and e.get("error") and e["file"] not in messages:
            messages[e["file"]] = f"{e.get('kind')}: {e['error']}"
    out = []
    for p in paths:
        o = outcomes.get(p)
        kinds = sorted(set(o.error_kinds)) if o else []
        if unit_error is not None:
            state, error = "failed", unit_error
        elif o is None:
            state, error = "failed", "the reader reported nothing for this file"
        elif kinds and set(kinds) <= set(RETRIED_KINDS):
            state, error = "failed", messages.get(p, ", ".join(kinds))
        else:
            state, error = "done", (messages.get(p, ", ".join(kinds)) if kinds else None)
        docs, rejected = written.get(p, [0, 0])
        out.append({"warc": p, "state": state, "attempts": (ledger.get(p) or {}).get("attempts", 0) + 1,
                    "errors": kinds, "error": error, "records": o.records if o else 0,
                    "documents": docs, "rejected": rejected, "run_id": run_id, "invocation": invocation, "at": now})
    return out


def stage_entries(output: str, run_id: str, rows: list[dict]) -> str:
    """Write a unit's entries into its staging folder; returns the path relative to the output
    (operators/io/writer.commit moves it to _ledger/<run_id>.jsonl)."""
    fs, root = resolve(output)
    root = root.rstrip("/")
    path = posixpath.join(staging_dir(root, run_id), "ledger", "entries.jsonl")
    fs.create_dir(posixpath.dirname(path), recursive=True)
    with fs.open_output_stream(path) as f:
        f.write("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows).encode())
    return posixpath.relpath(path, root)
