"""WARC paths to bounded batches of HTML records (the reader as an operator)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import pyarrow as pa

from operators.base import Operator, Resources
from operators.io.schema import RECORD
from operators.stats import Stats
from operators.io.warc import ReaderConfig, failed_kinds, iter_html_records


@dataclass
class ReadResult:
    """What reading one WARC gave: the ledger's per-file outcome and the reader's counts."""
    path: str
    records: int = 0                                      # HTML records read
    error_kinds: list[str] = field(default_factory=list)  # damaged_warc, unreadable_warc, ... (none: read whole)
    stats: dict = field(default_factory=dict)             # the reader's Stats (to_dict)
    image_files: list[str] = field(default_factory=list)   # the flow's staged image records of this WARC


class ReadWarcs(Operator):
    """Input rows carry `warc_path`; yields tables of at most `records_per_batch` HTML records.

    Streams each file: memory is bounded by one batch, whatever the WARC's size. A file that
    reported damage or could not be read counts in `files_failed` (not one with only a warning,
    `operators.io.warc.WARNING_KINDS`).
    """

    name = "read"
    resources = Resources(num_cpus=1.0, batch_size=1)

    def __init__(self, config: ReaderConfig, records_per_batch: int = 64):
        super().__init__()
        self.config = config
        self.records_per_batch = records_per_batch

    def __call__(self, paths: pa.Table) -> Iterator[pa.Table]:
        yielded = False
        for path in paths["warc_path"].to_pylist():
            self.stats.incr("files")
            file_stats = Stats(self.name)
            kinds: set[str] = set()
            buf: list[dict] = []
            for rec in iter_html_records(path, self.config, file_stats):
                buf.append(rec)
                if len(buf) >= self.records_per_batch:
                    kinds |= self._take(file_stats, len(buf))
                    yielded = True
                    yield pa.Table.from_pylist(buf, schema=RECORD)
                    buf = []
            kinds |= self._take(file_stats, len(buf))
            if failed_kinds(kinds):
                self.stats.incr("files_failed")
            if buf:
                yielded = True
                yield pa.Table.from_pylist(buf, schema=RECORD)
        if not yielded:
            # a typed empty table: a task that yields nothing leaves Ray an empty block without
            # columns, which later shuffles cannot concatenate with the others
            yield RECORD.empty_table()

    def _take(self, file_stats: Stats, n_out: int) -> set[str]:
        """Move the file's counts into the operator's; returns the error kinds it reported."""
        kinds = file_stats.error_kinds()
        self.stats.merge(file_stats.drain())
        self.stats.incr("out", n_out)
        return kinds


# An image record of a WARC (operators/io/warc.iter_image_records / iter_records rows).
IMAGE_RECORD = pa.schema([
    pa.field("url", pa.string()), pa.field("warc_path", pa.string()),
    pa.field("warc_record_offset", pa.int64()), pa.field("warc_record_length", pa.int64()),
    pa.field("warc_record_id", pa.string()), pa.field("warc_date", pa.string()),
    pa.field("content_type", pa.string()), pa.field("data", pa.binary()),
])
