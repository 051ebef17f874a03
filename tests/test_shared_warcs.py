"""Every real WARC in the shared data folder goes through the reader without raising; the
known damaged ones report damage at the right offset; counts match an independent reader."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from warcio.archiveiterator import ArchiveIterator as WarcioIterator

from operators.stats import Stats
from operators.io.warc import ReaderConfig, iter_html_records

pytestmark = pytest.mark.shared

_ROOT = Path(os.environ.get("INTERLEAF_SHARED")
             or Path(__file__).resolve().parent.parent.parent / "shared" / "data")
_PATTERNS = ("warc-*/**/*.warc*", "cc-warc-*/**/*.warc*", "warc-*/**/*.arc*", "cc-warc-*/**/*.arc*")
FILES = sorted({str(p.relative_to(_ROOT)) for pat in _PATTERNS for p in _ROOT.glob(pat)
                if p.is_file()}) if _ROOT.is_dir() else []

KEYS = {"url", "warc_path", "warc_record_offset", "warc_record_length", "warc_record_id",
        "warc_date", "payload_digest", "http_status", "content_type", "charset", "html"}
KNOWN_ERRORS = {"damaged_warc", "unsupported_format", "unreadable_warc", "gzip_not_per_record"}

# HTML rows per file. README-backed: dolma sample-0000 has 22 HTML responses, the resiliparse
# CC excerpt 9 captures, whirlwind 1 page, the SOPA capture 1 HTML page. The rest were counted by
# hand from the files (example.com / iana.org captures).
EXPECTED_HTML = {
    "warc-dolma/tests/data/warc/sample-0000.warc.gz": 22,
    "cc-warc-resiliparse/tests/data/warcfile.warc.gz": 9,
    "cc-warc-whirlwind/whirlwind.warc.gz": 1,
    "cc-warc-whirlwind/whirlwind.warc.wat.gz": 0,
    "cc-warc-whirlwind/whirlwind.warc.wet.gz": 0,
    "warc-ukwa/wikipedia-sopa-blackout-2012/wikipedia-blackout/sopa-wikipedia-homepage.warc.gz": 1,
    "warc-ukwa/small-arcs-and-warcs/IAH-20080430204825-00000-blackbook-truncated.warc.gz": 2,
    "warc-pywb/sample_archive/warcs/example.warc.gz": 2,    # example.com + iana.org 302 page
    "warc-pywb/sample_archive/warcs/dupes.warc.gz": 1,      # the rest are revisits
    "warc-pywb/sample_archive/warcs/example-wget-1-14.warc.gz": 1,
    "warc-warcio/test/data/example.warc": 1,
    "warc-warcio/test/data/example.warc.gz": 1,
    "warc-warcio/test/data/example-iana.org-chunked.warc": 1,
    "warc-warcio/test/data/example-resource.warc.gz": 1,    # an HTML resource record
    "warc-warcio/test/data/example-digest.warc": 0,         # requests only
    "warc-warcio/test/data/example-trunc.warc": 1,
    "cc-warc-resiliparse/tests/data/clipped.warc.gz": 0,
}
# Damaged files: the offset where the damage starts.
#  * clipped.warc.gz: its only gzip member (offset 0) is cut; the record is incomplete.
#  * example-trunc.warc: the response at 1197 declares 2 bytes too few; its block ends at 2560,
#    where b"\x00\x00" stands instead of the CRLF CRLF separator.
# NOT damaged: IAH-...-truncated.warc.gz was cut at a record boundary by its makers ("truncated
# after the 7th record"): gzip -t passes, warcio reads all 23 records without a warning, and the
# last record is complete - there is nothing to detect, so it must read cleanly.
EXPECTED_DAMAGE = {
    "cc-warc-resiliparse/tests/data/clipped.warc.gz": 0,
    "warc-warcio/test/data/example-trunc.warc": 2560,
}


def test_shared_files_found(shared_data):
    assert len(FILES) >= 16, FILES
    assert set(EXPECTED_HTML) <= set(FILES)


def _read(path: str) -> tuple[list[dict], Stats]:
    stats = Stats("read")
    rows = list(iter_html_records(path, ReaderConfig(), stats))
    return rows, stats


def _warcio_count(path: str) -> int:
    with open(path, "rb") as fh:
        return sum(1 for _ in WarcioIterator(fh))


@pytest.mark.parametrize("rel", FILES or ["<none>"])
def test_every_shared_warc(shared_data, rel):
    path = str(shared_data / rel)
    rows, stats = _read(path)  # must not raise
    size = os.path.getsize(path)
    kinds = {e["kind"] for e in stats.errors}
    assert kinds <= KNOWN_ERRORS, stats.errors
    for row in rows:
        assert set(row) == KEYS
        assert row["warc_path"] == path
        assert isinstance(row["html"], str) and row["html"]
        assert 0 <= row["warc_record_offset"] < size
        assert 0 < row["warc_record_length"] <= size - row["warc_record_offset"]
        assert row["url"] == row["url"].strip() and "://" in row["url"]
        assert row["warc_record_id"].startswith("<urn:")
        assert row["charset"]
    offsets = [r["warc_record_offset"] for r in rows]
    assert offsets == sorted(set(offsets))
    if ".arc" in rel and ".warc" not in rel:
        assert "unsupported_format" in kinds
        return
    if rel in EXPECTED_HTML:
        assert len(rows) == EXPECTED_HTML[rel] == stats.counters["html"]
    dmg = [e["offset"] for e in stats.errors if e["kind"] == "damaged_warc"]
    if rel in EXPECTED_DAMAGE:
        assert dmg == [EXPECTED_DAMAGE[rel]], stats.errors
        assert all(r["warc_record_offset"] + r["warc_record_length"] <= dmg[0] for r in rows)
    elif rel in EXPECTED_HTML:
        assert not stats.errors
        # An independent reader sees the same number of records.
        assert stats.counters["records"] == _warcio_count(path)


def test_truncated_heritrix_file_reads_completely(shared_data):
    rel = "warc-ukwa/small-arcs-and-warcs/IAH-20080430204825-00000-blackbook-truncated.warc.gz"
    rows, stats = _read(str(shared_data / rel))
    c = stats.counters
    assert (c["records"], c["records_response"], c["records_request"]) == (23, 8, 7)
    assert [r["url"] for r in rows] == ["http://www.archive.org/", "http://www.archive.org/index.php"]
    assert c["not_html_image"] == 3


def test_common_crawl_rows(shared_data):
    rows, stats = _read(str(shared_data / "cc-warc-resiliparse/tests/data/warcfile.warc.gz"))
    assert all(r["http_status"] == 200 and r["content_type"] == "text/html" for r in rows)
    assert all(r["payload_digest"].startswith("sha1:") for r in rows)
    assert {r["charset"] for r in rows} >= {"utf-8", "gbk"}  # zh pages served as GBK/GB2312
    c = stats.counters
    assert (c["records_warcinfo"], c["records_request"], c["records_response"],
            c["records_metadata"]) == (1, 9, 9, 9)
    assert c["dropped_not_response"] == 19


def test_dolma_urls_lose_angle_brackets(shared_data):
    rows, _ = _read(str(shared_data / "warc-dolma/tests/data/warc/sample-0000.warc.gz"))
    assert rows[0]["url"] == "https://www.semanticscholar.org/research/research-team"
    assert not any(r["url"].startswith("<") or r["url"].endswith(">") for r in rows)


def test_revisits_counted(shared_data):
    _, stats = _read(str(shared_data / "warc-pywb/sample_archive/warcs/dupes.warc.gz"))
    assert stats.counters["records_revisit"] == stats.counters["dropped_revisit"] == 9
