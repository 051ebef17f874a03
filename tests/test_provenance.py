"""Provenance is exact: seek to warc_record_offset, read warc_record_length bytes, and an
independent reader (warcio) finds exactly that record there - for every row of the real Common
Crawl WARCs, the dolma sample and uncompressed WARCs."""
from __future__ import annotations

import io
import zlib

import pytest
from warcio.archiveiterator import ArchiveIterator as WarcioIterator

from operators.stats import Stats
from operators.io.warc import ReaderConfig, iter_html_records

pytestmark = pytest.mark.shared

CASES = [
    ("cc-warc-whirlwind/whirlwind.warc.gz", 1),
    ("cc-warc-resiliparse/tests/data/warcfile.warc.gz", 9),
    ("warc-dolma/tests/data/warc/sample-0000.warc.gz", 22),
    ("warc-warcio/test/data/example.warc", 1),                    # uncompressed
    ("warc-warcio/test/data/example-iana.org-chunked.warc", 1),   # uncompressed
    ("warc-warcio/test/data/example-trunc.warc", 1),              # uncompressed, damaged after
    ("warc-ukwa/small-arcs-and-warcs/IAH-20080430204825-00000-blackbook-truncated.warc.gz", 2),
]


def _gzip_members(chunk: bytes) -> int:
    """Number of complete gzip members that make up `chunk` exactly (asserts no leftovers)."""
    n = 0
    while chunk:
        d = zlib.decompressobj(31)
        d.decompress(chunk)
        assert d.eof, "slice ends inside a gzip member"
        chunk = d.unused_data
        n += 1
    return n


def record_at(path: str, offset: int, length: int) -> tuple[str, str, str]:
    """(record id, target URI, WARC type) of the one record in `length` bytes at `offset`, by warcio."""
    with open(path, "rb") as fh:
        fh.seek(offset)
        chunk = fh.read(length)
    assert len(chunk) == length
    if path.endswith(".gz"):
        assert _gzip_members(chunk) == 1
    records = [(r.rec_headers.get_header("WARC-Record-ID"),
                r.rec_headers.get_header("WARC-Target-URI"),
                r.rec_headers.get_header("WARC-Type"))
               for r in WarcioIterator(io.BytesIO(chunk))]
    assert len(records) == 1
    return records[0]


@pytest.mark.parametrize("rel,n_rows", CASES)
def test_seek_and_read_gives_the_record(shared_data, rel, n_rows):
    path = str(shared_data / rel)
    rows = list(iter_html_records(path, ReaderConfig(), Stats("read")))
    assert len(rows) == n_rows
    for row in rows:
        rid, uri, wtype = record_at(path, row["warc_record_offset"], row["warc_record_length"])
        assert rid == row["warc_record_id"]
        assert uri.strip("<> ") == row["url"]
        assert wtype == "response"


def test_offsets_tile_the_file_between_rows(shared_data):
    """Consecutive rows never overlap and each slice starts where warcio sees a record."""
    path = str(shared_data / "cc-warc-resiliparse/tests/data/warcfile.warc.gz")
    rows = list(iter_html_records(path, ReaderConfig(), Stats("read")))
    with open(path, "rb") as fh:
        starts = {}
        it = WarcioIterator(fh)
        for rec in it:
            starts[it.get_record_offset()] = rec.rec_headers.get_header("WARC-Record-ID")
    for a, b in zip(rows, rows[1:]):
        assert a["warc_record_offset"] + a["warc_record_length"] <= b["warc_record_offset"]
    for r in rows:
        assert starts[r["warc_record_offset"]] == r["warc_record_id"]
        assert (r["warc_record_offset"] + r["warc_record_length"]) in starts
