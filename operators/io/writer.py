"""Parquet output that readers never see half-written.

Parts are written under `<output>/_runs/<run_id>/_staging/<table>/` and only moved into
`<output>/<table>/` when the run commits (`commit`); the run's dedup-index parts (staged under
`_staging/index/<itable>/` by `operators.dedup.index.stage_part`) go to `<output>/_index/<itable>/`
in the same commit. A run that crashes before committing leaves its parts in the staging folder,
which readers of `documents/`, `rejected/` and the index never look at. A move is a rename on a
local filesystem; on an object store each final object is written whole, so no reader sees a
partial file either.

The commit is crash-safe: (1) the list of moves is written whole to `_runs/<run_id>/commit.json`
(the intent), (2) the moves are done, each one safe to redo, (3) the index manifest
`_index/_committed/<run_id>.json` is written last (index readers only read files a manifest
lists), (4) the staging folder is removed. `recover` rolls forward a run that crashed between (1)
and (3). See `operators.dedup.index` for the argument.
"""
from __future__ import annotations

import json
import logging
import posixpath
import time
from dataclasses import dataclass
from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from operators.io.layout import (EXTRA_TABLES, INDEX_DIR, INDEX_FOLDERS, INDEX_TABLES, LEDGER_DIR, RUNS_DIR,  # noqa: F401
                                 TABLES, intent_path, manifest_path, run_dir, staging_dir)
from operators.io.schema import DOCUMENT, validate_documents
from operators.io.storage import resolve
from operators.stats import Stats

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class WriterConfig:
    compression: str = "zstd"       # Parquet codec: zstd, snappy, gzip, none
    row_group_rows: int = 5000      # rows per Parquet row group
    part_rows: int = 20000          # documents per part of documents/: the final pass joins a unit's staged chunks
                                    # up to this (fewer, larger files)
    write_rejected: bool = True     # false: dropped documents are only counted
    abandoned_after_hours: float = 6.0  # staging folders of crashed runs untouched this long are removed

    def __post_init__(self):
        if self.compression not in ("zstd", "snappy", "gzip", "none"):
            raise ValueError(f"writer.compression must be zstd, snappy, gzip or none, not {self.compression!r}")
        if self.row_group_rows < 1:
            raise ValueError("writer.row_group_rows must be >= 1")
        if self.part_rows < 1:
            raise ValueError("writer.part_rows must be >= 1")
        if isinstance(self.abandoned_after_hours, bool) or not isinstance(self.abandoned_after_hours, (int, float)) \
                or self.abandoned_after_hours < 0:
            raise ValueError(f"writer.abandoned_after_hours must be a number >= 0, not {self.abandoned_after_hours!r}")


def split_by_selection(table: pa.Table, select_enabled: bool) -> dict[str, pa.Table]:
    """Kept documents and rejected ones; with selection off every document is kept."""
    if not select_enabled:
        return {"documents": table, "rejected": table.slice(0, 0)}
    dropped = pc.is_valid(table["drop_reason"])
    return {"documents": table.filter(pc.invert(dropped)), "rejected": table.filter(dropped)}


class PartWriter:
    """Writes one task's documents and rejected rows to staged Parquet parts, in row groups of
    `row_group_rows` (what `write` gets is buffered: callers write batches of any size)."""

    def __init__(self, output: str, run_id: str, part_name: str, config: WriterConfig,
                 select_enabled: bool = True):
        self.fs, root = resolve(output)
        self.root = root.rstrip("/")
        self.run_id = run_id
        self.part_name = part_name
        self.config = config
        self.select_enabled = select_enabled
        self.stats = Stats("write")
        self._writers: dict[str, pq.ParquetWriter] = {}
        self._paths: dict[str, str] = {}
        self._pending: dict[str, list[pa.Table]] = {}

    def write(self, table: pa.Table) -> None:
        table = validate_documents(table)
        self.stats.incr("in", table.num_rows)
        for name, part in split_by_selection(table, self.select_enabled).items():
            if part.num_rows == 0 or (name == "rejected" and not self.config.write_rejected):
                continue
            self.stats.incr(f"rows_{name}", part.num_rows)
            pending = self._pending.setdefault(name, [])
            pending.append(part)
            if sum(t.num_rows for t in pending) >= self.config.row_group_rows:
                self._flush(name)

    def _flush(self, name: str) -> None:
        pending = self._pending.pop(name, [])
        if pending:
            self._writer(name).write_table(pa.concat_tables(pending), row_group_size=self.config.row_group_rows)

    def _writer(self, name: str) -> pq.ParquetWriter:
        if name not in self._writers:
            path = posixpath.join(staging_dir(self.root, self.run_id), name, f"{self.part_name}.parquet")
            self.fs.create_dir(posixpath.dirname(path), recursive=True)
            comp = None if self.config.compression == "none" else self.config.compression
            self._writers[name] = pq.ParquetWriter(path, DOCUMENT, filesystem=self.fs, compression=comp)
            self._paths[name] = path
        return self._writers[name]

    def close(self) -> list[str]:
        """Finish the staged files; returns their paths (relative to the output root)."""
        for name in list(self._pending):
            self._flush(name)
        for w in self._writers.values():
            w.close()
        self.stats.incr("files", len(self._paths))
        return [posixpath.relpath(p, self.root) for p in self._paths.values()]


def _destination(rel: str, run_id: str, stage: str) -> str:
    """Where a staged file (relative to the output root) goes when its run commits."""
    parts = posixpath.relpath(rel, stage).split("/") if rel.startswith(stage + "/") else []
    if len(parts) == 2 and parts[0] in TABLES + EXTRA_TABLES:
        return posixpath.join(parts[0], f"part-{run_id}-{parts[1]}")
    if parts == ["ledger", "entries.jsonl"]:   # operators/io/ledger.py: the unit's WARC states
        return posixpath.join(LEDGER_DIR, f"{run_id}.jsonl")
    if len(parts) == 3 and parts[0] == "index" and parts[1] in INDEX_FOLDERS:
        return posixpath.join(INDEX_DIR, parts[1], f"part-{run_id}-{parts[2]}")
    raise ValueError(f"unexpected staged file {rel} (expected {stage}/<documents|rejected>/<file> "
                     f"or {stage}/index/<{'|'.join(INDEX_TABLES)}>/<file>)")


def commit(output: str, run_id: str, staged: list[str], replace: dict[str, str] | None = None) -> list[str]:
    """Move a run's staged parts (documents, rejected, dedup index) into place; returns the final
    paths (relative to the output), sorted.

    Crash-safe: the moves are written first to `_runs/<run_id>/commit.json` (the intent), then done,
    then the index manifest `_index/_committed/<run_id>.json` is written last. A crash before the
    intent changes nothing readers see; a crash after it is rolled forward by `recover`.
    `replace`: staged file -> an existing file it replaces (a retry run rewriting an earlier run's
    document files under their own names).
    """
    _, root = resolve(output)
    root = root.rstrip("/")
    stage = posixpath.relpath(staging_dir(root, run_id), root)
    replace = replace or {}
    moves = [[rel, replace.get(rel) or _destination(rel, run_id, stage)] for rel in sorted(set(staged) | set(replace))]
    write_text(output, intent_path(run_id), json.dumps({"run_id": run_id, "moves": moves}, indent=1))
    _apply_intent(output, run_id, moves)
    return sorted(dst for _, dst in moves)


def _apply_intent(output: str, run_id: str, moves: list[list[str]]) -> None:
    """Steps after the intent, each safe to redo: the moves, the manifest, the staging cleanup."""
    fs, root = resolve(output)
    root = root.rstrip("/")
    made: set[str] = set()
    for src, dst in moves:
        s, d = posixpath.join(root, src), posixpath.join(root, dst)
        if fs.get_file_info(s).type == pafs.FileType.File:
            parent = posixpath.dirname(d)
            if parent not in made:
                fs.create_dir(parent, recursive=True)
                made.add(parent)
            fs.move(s, d)
        elif fs.get_file_info(d).type != pafs.FileType.File:
            raise FileNotFoundError(f"run {run_id}: staged file {src} is missing and was not moved to {dst}")
    files: dict[str, list[str]] = {t: [] for t in INDEX_TABLES}
    prefix = INDEX_DIR + "/"
    for _, dst in moves:
        if dst.startswith(prefix):
            files.setdefault(dst[len(prefix):].split("/", 1)[0], []).append(dst)
    manifest = {"run_id": run_id, "committed": datetime.now(timezone.utc).isoformat(),
                "files": {t: sorted(v) for t, v in files.items()}}
    write_text(output, manifest_path(run_id), json.dumps(manifest, indent=1))
    try:
        fs.delete_dir(staging_dir(root, run_id))
    except (FileNotFoundError, OSError):
        pass


def recover(output: str) -> list[str]:
    """Roll forward every run whose commit was interrupted after its intent was written.

    A run with `_runs/<id>/commit.json` but no `_index/_committed/<id>.json` has its remaining
    moves done, its manifest written and its staging folder removed. Returns the ids recovered,
    sorted. Runs that crashed before their intent (`abandoned_runs`) are left alone. Call it
    before a run reads the index, while no other run is committing.
    """
    fs, root = resolve(output)
    return [run_id for run_id in _run_ids(fs, root.rstrip("/")) if roll_forward(output, run_id)]


def commit_state(output: str, run_id: str) -> str:
    """How far the commit of `run_id` got: "none" (no intent: nothing of it is visible),
    "intent" (interrupted after its intent: `roll_forward` finishes it) or "committed"."""
    fs, root = resolve(output)
    root = root.rstrip("/")
    if fs.get_file_info(posixpath.join(root, manifest_path(run_id))).type == pafs.FileType.File:
        return "committed"
    if fs.get_file_info(posixpath.join(root, intent_path(run_id))).type == pafs.FileType.File:
        return "intent"
    return "none"


def roll_forward(output: str, run_id: str) -> bool:
    """Finish the commit of `run_id` if it was interrupted after its intent; True if it was."""
    if commit_state(output, run_id) != "intent":
        return False
    fs, root = resolve(output)
    with fs.open_input_stream(posixpath.join(root.rstrip("/"), intent_path(run_id))) as f:
        moves = json.loads(f.read().decode())["moves"]
    _apply_intent(output, run_id, moves)
    return True


def abandoned_runs(output: str) -> list[str]:
    """Ids of runs that staged files but never wrote a commit intent (crashed before committing).

    Nothing of theirs is visible; `clean_abandoned` deletes their staging folders after a grace
    period (a run that is still going looks the same).
    """
    fs, root = resolve(output)
    root = root.rstrip("/")
    out = []
    for run_id in _run_ids(fs, root):
        if fs.get_file_info(posixpath.join(root, intent_path(run_id))).type == pafs.FileType.File:
            continue
        if fs.get_file_info(staging_dir(root, run_id)).type == pafs.FileType.Directory:
            out.append(run_id)
    return out


def clean_abandoned(output: str, older_than_seconds: float, now: float | None = None) -> list[dict]:
    """Delete the staging folders of runs that crashed before their commit intent
    (`abandoned_runs`: nothing of theirs is visible) once nothing in them changed for
    `older_than_seconds` (a run that is still going writes there). Returns {run_id, files, bytes}
    per folder removed; a folder that cannot be removed is left for the next run (logged)."""
    fs, root = resolve(output)
    root = root.rstrip("/")
    now = time.time() if now is None else now
    removed = []
    for run_id in abandoned_runs(output):
        folder = staging_dir(root, run_id)
        try:
            infos = fs.get_file_info(pafs.FileSelector(folder, recursive=True, allow_not_found=True))
            files = [i for i in infos if i.type == pafs.FileType.File]
            newest = max((i.mtime.timestamp() for i in files if i.mtime is not None), default=None)
            if newest is not None and now - newest < older_than_seconds:
                continue
            fs.delete_dir(folder)
        except OSError as e:
            log.warning("the abandoned staging folder of run %s was not removed: %s", run_id, e)
            continue
        removed.append({"run_id": run_id, "files": len(files), "bytes": sum(i.size or 0 for i in files)})
    return removed


def _run_ids(fs: pafs.FileSystem, root: str) -> list[str]:
    infos = fs.get_file_info(pafs.FileSelector(posixpath.join(root, RUNS_DIR), allow_not_found=True))
    return sorted(posixpath.basename(i.path) for i in infos if i.type == pafs.FileType.Directory)


def write_text(output: str, rel_path: str, text: str) -> None:
    """Write a small text file (run records) whole: temp name, then move."""
    write_bytes(output, rel_path, text.encode())


def write_bytes(output: str, rel_path: str, data: bytes) -> None:
    """Write a small file (a record, a chart) whole: temp name, then move."""
    fs, root = resolve(output)
    path = posixpath.join(root.rstrip("/"), rel_path)
    fs.create_dir(posixpath.dirname(path), recursive=True)
    tmp = path + ".tmp"
    with fs.open_output_stream(tmp) as f:
        f.write(data)
    fs.move(tmp, path)


def ensure_dir(output: str) -> None:
    fs, root = resolve(output)
    fs.create_dir(root, recursive=True)


__all__ = ["WriterConfig", "PartWriter", "commit", "commit_state", "recover", "roll_forward", "abandoned_runs",
           "clean_abandoned",
           "write_text", "run_dir", "split_by_selection"]
