"""The persistent dedup index: what earlier runs kept, so a later run can deduplicate against it.

Layout, under the output root (beside `documents/` and `rejected/`):

    _index/docs/part-<run_id>-<part>.parquet        one row per document a run kept (DOCS)
    _index/images/part-<run_id>-<part>.parquet      per run: kept documents using each image URL (IMAGES)
    _index/superseded/part-<run_id>-<part>.parquet  earlier-kept documents replaced by a newer fetch (SUPERSEDED)
    _index/_committed/<run_id>.json                 the run's manifest: {"run_id", "committed", "files"}

A run stages its index parts next to its document parts, under `_runs/<run_id>/_staging/index/<itable>/`
(`stage_part`), and `operators.io.writer.commit` moves both into place together.

Crash safety. Readers of the index never list `_index/<itable>/`: they read exactly the files named by the
manifests in `_index/_committed/` (`committed_files`), and a manifest is written (whole: temp name, then move)
only after every file of its run is in place. So:

- a crash before the commit intent (`_runs/<run_id>/commit.json`) is written leaves the run's parts in its
  staging folder: nothing in `documents/`, `rejected/` or the committed index changed; the run is simply
  abandoned (`operators.io.writer.abandoned_runs` lists such runs; `clean_abandoned` removes their staging later);
- a crash after the intent, while files are being moved or before the manifest is written, leaves some files
  at their destination and some in staging. The index still reads as before (no manifest, and files under
  `_index/` that no manifest lists are ignored). `operators.io.writer.recover` redoes the moves from the intent
  (each move is idempotent), then writes the manifest, so the run is rolled forward: its documents and its
  index rows then appear exactly once. Call `recover` before a run reads the index, with no other run
  committing at the same time: `documents/` is read by listing, so between such a crash and `recover` it may
  already show some of the interrupted run's parts.

This module is Ray-free. `read_table` is for small-scale use and tests; a Ray flow reads the paths from
`committed_files` with `ray.data.read_parquet` (filesystem from `operators.io.storage.resolve`).
"""
from __future__ import annotations

import json
import posixpath

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from operators.io.layout import (COMMITTED_DIR, INDEX_DIR, INDEX_FOLDERS, INDEX_PROBE, INDEX_TABLES,  # noqa: F401
                                 manifest_path, staging_dir)
from operators.io.storage import resolve


DOCS = pa.schema([
    ("id", pa.string()),
    ("url_key", pa.string()),
    ("warc_date", pa.int64()),            # unix seconds; null when the record had no date
    ("text_chars", pa.int64()),
    ("num_images", pa.int64()),
    ("text_hash", pa.string()),
    ("minhash_bands", pa.list_(pa.uint64())),
    ("signature", pa.binary()),
])
IMAGES = pa.schema([
    ("url", pa.string()),
    ("documents", pa.int64()),
])
SUPERSEDED = pa.schema([
    ("id", pa.string()),
    ("superseded_by", pa.string()),
    ("run_id", pa.string()),
])
TABLES = {"docs": DOCS, "images": IMAGES, "superseded": SUPERSEDED}
PROBE = INDEX_PROBE      # operators/dedup/probe.py: the parts later units probe (not Parquet)
FOLDERS = INDEX_FOLDERS
assert tuple(TABLES) == INDEX_TABLES, "operators/io/layout.INDEX_TABLES names these tables"


def _check_itable(itable: str) -> pa.Schema:
    if itable not in TABLES:
        raise ValueError(f"unknown index table {itable!r}; expected one of {sorted(TABLES)}")
    return TABLES[itable]


def conform(table: pa.Table | dict, itable: str) -> pa.Table:
    """`table` with exactly the columns of index table `itable`, in order and cast to its types.

    Extra columns are dropped; a missing column is an error naming it.
    """
    schema = _check_itable(itable)
    if isinstance(table, dict):  # plain lists take the schema's types (e.g. uint64 above 2**63)
        table = pa.table({k: v if isinstance(v, (pa.Array, pa.ChunkedArray)) or k not in schema.names
                          else pa.array(v, type=schema.field(k).type) for k, v in table.items()})
    missing = [f.name for f in schema if f.name not in table.column_names]
    if missing:
        raise ValueError(f"index table {itable!r}: missing columns {missing}")
    cols = []
    for f in schema:
        try:
            cols.append(table[f.name].cast(f.type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
            raise ValueError(f"index table {itable!r}: column {f.name!r} "
                             f"({table[f.name].type}) cannot be cast to {f.type}: {e}") from e
    return pa.Table.from_arrays(cols, schema=schema)


def stage_part(output: str, run_id: str, itable: str, part_name: str, table: pa.Table | dict) -> str | None:
    """Write one part of index table `itable` to the run's staging folder.

    Returns its path relative to the output root (as `PartWriter.close()` does), to be passed to
    `operators.io.writer.commit`; a table without rows writes nothing and returns None.
    """

    table = conform(table, itable)
    if table.num_rows == 0:
        return None
    fs, root = resolve(output)
    root = root.rstrip("/")
    path = posixpath.join(staging_dir(root, run_id), "index", itable, f"{part_name}.parquet")
    fs.create_dir(posixpath.dirname(path), recursive=True)
    pq.write_table(table, path, filesystem=fs, compression="zstd")
    return posixpath.relpath(path, root)


def _manifests(output: str) -> list[dict]:
    fs, root = resolve(output)
    folder = posixpath.join(root.rstrip("/"), COMMITTED_DIR)
    infos = fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True))
    out = []
    for info in infos:
        if info.type != pafs.FileType.File or not info.path.endswith(".json"):
            continue  # e.g. a `.tmp` left by a crash while writing a manifest
        with fs.open_input_stream(info.path) as f:
            out.append(json.loads(f.read().decode()))
    return sorted(out, key=lambda m: m["run_id"])


def committed_runs(output: str) -> list[str]:
    """Ids of the runs whose index is committed (they have a manifest), sorted."""
    return [m["run_id"] for m in _manifests(output)]


def committed_files(output: str, itable: str, manifests: list[dict] | None = None) -> list[str]:
    """Paths (in the filesystem of `resolve(output)`) of the committed parts of `itable` (or of
    the probe parts, PROBE), by run id.

    Only files named by a manifest: parts of a run whose commit did not finish are not returned,
    nor parts a later manifest replaced (compaction of probe parts).
    """
    if itable != PROBE:
        _check_itable(itable)
    _, root = resolve(output)
    root = root.rstrip("/")
    manifests = _manifests(output) if manifests is None else manifests
    replaced = {rel for m in manifests for rel in m.get("replaces", {}).get(itable, [])}
    return [posixpath.join(root, rel) for m in manifests for rel in m["files"].get(itable, []) if rel not in replaced]


def manifests(output: str) -> list[dict]:
    """Every committed manifest of the output's index, by run id."""
    return _manifests(output)


def read_table(output: str, itable: str, columns: list[str] | None = None) -> pa.Table:
    """Every committed row of index table `itable` (an empty table of its schema when none)."""
    schema = _check_itable(itable)
    fs, _ = resolve(output)
    parts = [pq.read_table(p, filesystem=fs, schema=schema, columns=columns)
             for p in committed_files(output, itable)]
    if not parts:
        empty = schema.empty_table()
        return empty.select(columns) if columns is not None else empty
    return pa.concat_tables(parts)


__all__ = ["COMMITTED_DIR", "DOCS", "IMAGES", "INDEX_DIR", "SUPERSEDED", "TABLES", "committed_files",
           "committed_runs", "conform", "manifest_path", "read_table", "stage_part"]
