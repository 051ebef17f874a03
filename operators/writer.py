"""Parquet output that readers never see half-written.

Parts are written under `<output>/_runs/<run_id>/_staging/<table>/` and only moved into
`<output>/<table>/` when the run commits (`commit`). A run that crashes leaves its parts in the
staging folder, which readers of `documents/` and `rejected/` never look at. A move is a rename on
a local filesystem; on an object store each final object is written whole, so no reader sees a
partial file either.
"""
from __future__ import annotations

import posixpath
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from operators.schema import DOCUMENT, validate_documents
from operators.stats import Stats
from operators.storage import resolve

TABLES = ("documents", "rejected")


@dataclass(frozen=True)
class WriterConfig:
    compression: str = "zstd"       # Parquet codec: zstd, snappy, gzip, none
    row_group_rows: int = 5000      # rows per Parquet row group
    write_rejected: bool = True     # false: dropped documents are only counted

    def __post_init__(self):
        if self.compression not in ("zstd", "snappy", "gzip", "none"):
            raise ValueError(f"writer.compression must be zstd, snappy, gzip or none, not {self.compression!r}")
        if self.row_group_rows < 1:
            raise ValueError("writer.row_group_rows must be >= 1")


def run_dir(output: str, run_id: str) -> str:
    return posixpath.join(output.rstrip("/"), "_runs", run_id)


def staging_dir(output: str, run_id: str) -> str:
    return posixpath.join(run_dir(output, run_id), "_staging")


def split_by_selection(table: pa.Table, select_enabled: bool) -> dict[str, pa.Table]:
    """Kept documents and rejected ones; with selection off every document is kept."""
    if not select_enabled:
        return {"documents": table, "rejected": table.slice(0, 0)}
    dropped = pc.is_valid(table["drop_reason"])
    return {"documents": table.filter(pc.invert(dropped)), "rejected": table.filter(dropped)}


class PartWriter:
    """Writes one task's documents and rejected rows to staged Parquet parts."""

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

    def write(self, table: pa.Table) -> None:
        table = validate_documents(table)
        self.stats.incr("in", table.num_rows)
        for name, part in split_by_selection(table, self.select_enabled).items():
            if part.num_rows == 0 or (name == "rejected" and not self.config.write_rejected):
                continue
            self.stats.incr(f"rows_{name}", part.num_rows)
            self._writer(name).write_table(part, row_group_size=self.config.row_group_rows)

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
        for w in self._writers.values():
            w.close()
        self.stats.incr("files", len(self._paths))
        return [posixpath.relpath(p, self.root) for p in self._paths.values()]


def commit(output: str, run_id: str, staged: list[str]) -> list[str]:
    """Move staged parts into their tables; returns the final paths (relative to the output)."""
    fs, root = resolve(output)
    root = root.rstrip("/")
    stage = posixpath.relpath(staging_dir(root, run_id), root)
    final = []
    for rel in sorted(staged):
        table, fname = posixpath.relpath(rel, stage).split("/", 1)
        if table not in TABLES:
            raise ValueError(f"unexpected staged file {rel}")
        dest = posixpath.join(table, f"part-{run_id}-{fname}")
        fs.create_dir(posixpath.join(root, table), recursive=True)
        fs.move(posixpath.join(root, rel), posixpath.join(root, dest))
        final.append(dest)
    try:
        fs.delete_dir(posixpath.join(root, stage))
    except (FileNotFoundError, OSError):
        pass
    return final


def write_text(output: str, rel_path: str, text: str) -> None:
    """Write a small text file (run records) whole: temp name, then move."""
    fs, root = resolve(output)
    path = posixpath.join(root.rstrip("/"), rel_path)
    fs.create_dir(posixpath.dirname(path), recursive=True)
    tmp = path + ".tmp"
    with fs.open_output_stream(tmp) as f:
        f.write(text.encode())
    fs.move(tmp, path)


def ensure_dir(output: str) -> None:
    fs, root = resolve(output)
    fs.create_dir(root, recursive=True)


__all__ = ["WriterConfig", "PartWriter", "commit", "write_text", "run_dir", "split_by_selection"]
