"""Unit tests for operators/io/warc.py on small WARCs built here in memory (one gzip member per
record, like Common Crawl, or uncompressed)."""
from __future__ import annotations

import gzip
import io
import uuid
import zlib

import brotli
import pytest
from warcio.archiveiterator import ArchiveIterator as WarcioIterator

from operators.stats import Stats
from operators.io.warc import ReaderConfig, iter_html_records

KEYS = {"url", "warc_path", "warc_record_offset", "warc_record_length", "warc_record_id",
        "warc_date", "payload_digest", "http_status", "content_type", "charset", "html"}
PAGE = b"<!doctype html><html><head><title>T</title></head><body><p>Hello</p></body></html>"


# -- building WARCs ---------------------------------------------------------------------------

def http(body: bytes = PAGE, status: int = 200, headers=(("Content-Type", "text/html"),),
         nl: bytes = b"\r\n") -> bytes:
    head = b"HTTP/1.1 %d X" % status + nl
    for k, v in headers:
        head += f"{k}: {v}".encode("latin-1") + nl
    return head + nl + body


def record(block: bytes = None, wtype: str = "response", uri: str | None = "http://example.com/",
           date: str | None = "2024-01-01T00:00:00Z", version: str = "WARC/1.0",
           rid: str | None = None, content_type: str | None = "application/http; msgtype=response",
           extra: dict | None = None, nl: bytes = b"\r\n") -> bytes:
    block = http() if block is None else block
    rid = rid or f"<urn:uuid:{uuid.uuid4()}>"
    fields = [("WARC-Type", wtype), ("WARC-Record-ID", rid)]
    if uri is not None:
        fields.append(("WARC-Target-URI", uri))
    if date is not None:
        fields.append(("WARC-Date", date))
    if content_type:
        fields.append(("Content-Type", content_type))
    fields += list((extra or {}).items())
    fields.append(("Content-Length", str(len(block))))
    head = version.encode() + nl + b"".join(f"{k}: {v}".encode() + nl for k, v in fields)
    return head + nl + block + nl + nl


def write(tmp_path, records: list[bytes], gz: bool = True, name: str = "t") -> tuple[str, list]:
    """Write records; returns (path, start offset of each record)."""
    path = tmp_path / (name + (".warc.gz" if gz else ".warc"))
    data, offsets = b"", []
    for r in records:
        offsets.append(len(data))
        data += gzip.compress(r) if gz else r
    path.write_bytes(data)
    return str(path), offsets


def read(path, **cfg) -> tuple[list[dict], Stats]:
    stats = Stats("read")
    rows = list(iter_html_records(path, ReaderConfig(**cfg), stats))
    return rows, stats


def damage(stats: Stats) -> list[dict]:
    return [e for e in stats.errors if e["kind"] == "damaged_warc"]


# -- basic shape ------------------------------------------------------------------------------

@pytest.mark.parametrize("gz", [True, False])
def test_basic_rows_and_provenance(tmp_path, gz):
    recs = [
        record(b"software: test\r\n", wtype="warcinfo", uri=None,
               content_type="application/warc-fields"),
        record(b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n", wtype="request",
               content_type="application/http; msgtype=request"),
        record(http(status=200, headers=[("Content-Type", "text/html; charset=UTF-8")]),
               uri="http://example.com/a", rid="<urn:uuid:aaaa>",
               extra={"WARC-Payload-Digest": "sha1:ABC"}),
        record(b"x" * 10, wtype="metadata", content_type="application/warc-fields"),
        record(http(status=404), uri="http://example.com/b", rid="<urn:uuid:bbbb>"),
    ]
    path, offs = write(tmp_path, recs, gz=gz)
    rows, stats = read(path)
    assert [r["url"] for r in rows] == ["http://example.com/a", "http://example.com/b"]
    a, b = rows
    assert set(a) == KEYS
    assert a["warc_path"] == path
    assert a["warc_record_id"] == "<urn:uuid:aaaa>"
    assert a["warc_date"] == "2024-01-01T00:00:00Z"
    assert a["payload_digest"] == "sha1:ABC" and b["payload_digest"] is None
    assert (a["http_status"], b["http_status"]) == (200, 404)
    assert a["content_type"] == "text/html" and a["charset"] == "utf-8"
    assert a["html"] == PAGE.decode()
    # provenance: offsets are record starts, lengths run to the next record (or EOF)
    size = len(open(path, "rb").read())
    assert (a["warc_record_offset"], a["warc_record_length"]) == (offs[2], offs[3] - offs[2])
    assert (b["warc_record_offset"], b["warc_record_length"]) == (offs[4], size - offs[4])
    c = stats.counters
    assert c["records"] == 5 and c["html"] == 2
    assert (c["records_warcinfo"], c["records_request"], c["records_metadata"],
            c["records_response"]) == (1, 1, 1, 2)
    assert c["dropped_not_response"] == 3
    assert not stats.errors


def test_streams_without_holding_the_file(tmp_path):
    import os
    import tracemalloc
    page = b"<html><body>" + os.urandom(75_000).hex().encode() + b"</body></html>"  # 150 KB
    path, _ = write(tmp_path, [record(http(page), uri=f"http://example.com/{i}")
                               for i in range(150)], gz=False)  # ~22 MB
    it = iter_html_records(path, ReaderConfig(), Stats("s"))
    tracemalloc.start()
    try:
        n = sum(1 for _ in it)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert n == 150
    assert peak < 3_000_000, peak  # a few records' worth, not the file


# -- HTTP body decoding -----------------------------------------------------------------------

def chunked(data: bytes, size: int = 10) -> bytes:
    out = b""
    for i in range(0, len(data), size):
        out += b"%x\r\n" % len(data[i:i + size]) + data[i:i + size] + b"\r\n"
    return out + b"0\r\n\r\n"


@pytest.mark.parametrize("headers,body", [
    ([("Transfer-Encoding", "chunked")], chunked(PAGE)),
    ([("Content-Encoding", "gzip")], gzip.compress(PAGE)),
    ([("Content-Encoding", "deflate")], zlib.compress(PAGE)),
    ([("Content-Encoding", "deflate")], zlib.compress(PAGE)[2:-4]),
    ([("Content-Encoding", "br")], brotli.compress(PAGE)),
    ([("Transfer-Encoding", "chunked"), ("Content-Encoding", "gzip")], chunked(gzip.compress(PAGE))),
    # Common Crawl: encodings removed, headers kept
    ([("Transfer-Encoding", "chunked"), ("Content-Encoding", "gzip")], PAGE),
    ([("X-Crawler-Content-Encoding", "gzip")], PAGE),
])
def test_body_decoding(tmp_path, headers, body):
    path, _ = write(tmp_path, [record(http(body, headers=[("Content-Type", "text/html")] + headers))])
    rows, stats = read(path)
    assert [r["html"] for r in rows] == [PAGE.decode()]


def test_wrong_chunk_sizes_fall_back_to_raw_body(tmp_path):
    body = b"5\r\n" + PAGE + b"\r\n0\r\n\r\n"   # size says 5, chunk is longer
    path, _ = write(tmp_path, [record(http(body, headers=[("Content-Type", "text/html"),
                                                          ("Transfer-Encoding", "chunked")]))])
    rows, stats = read(path)
    assert len(rows) == 1 and PAGE.decode() in rows[0]["html"]
    assert stats.counters["fallback_raw_body"] == 1


def test_bad_non_chunked_body_is_used_raw(tmp_path):
    path, _ = write(tmp_path, [record(http(PAGE, headers=[("Content-Type", "text/html"),
                                                          ("Transfer-Encoding", "chunked")]))])
    rows, _ = read(path)
    assert [r["html"] for r in rows] == [PAGE.decode()]


def test_undecodable_content_encoding(tmp_path):
    bad_gzip = b"\x1f\x8b\x08\x00" + b"\xff" * 50
    recs = [record(http(bad_gzip, headers=[("Content-Type", "text/html"),
                                           ("Content-Encoding", "gzip")])),
            record(http(PAGE, headers=[("Content-Type", "text/html"),
                                       ("Content-Encoding", "zstd")]))]
    path, _ = write(tmp_path, recs)
    rows, stats = read(path)
    assert [r["html"] for r in rows] == [PAGE.decode()]  # unknown coding, body is HTML: kept
    assert stats.counters["dropped_decode_error"] == 1


# -- charsets ---------------------------------------------------------------------------------

CAFE = "<html><body><p>Café crème brûlée – “quotes” naïve façade.</p></body></html>"
RU = ("<html><head><meta charset=\"koi8-r\"><title>Новости</title></head>"
      "<body><p>Съешь же ещё этих мягких французских булок, да выпей чаю.</p></body></html>")
JA = ("<html><body><p>" + "日本語のテキストです。こんにちは世界。東京都の天気は晴れです。" * 4
      + "</p></body></html>")


@pytest.mark.parametrize("ctype,body,text,charset", [
    ("text/html; charset=windows-1252", CAFE.encode("cp1252"), CAFE, "cp1252"),
    ("text/html; charset=ISO-8859-1", CAFE.encode("cp1252"), CAFE, "cp1252"),
    ("text/html", RU.encode("koi8-r"), RU, "koi8-r"),                    # <meta>
    ("text/html; charset=bogus", RU.encode("koi8-r"), RU, "koi8-r"),     # bogus -> <meta>
    ("text/html", JA.encode("shift_jis"), JA, "shift_jis"),              # detection
    ("text/html", CAFE.encode("cp1252"), CAFE, "cp1252"),                # detection
    ("text/html; charset=utf8", CAFE.encode("utf-8"), CAFE, "utf-8"),
])
def test_charsets(tmp_path, ctype, body, text, charset):
    path, _ = write(tmp_path, [record(http(body, headers=[("Content-Type", ctype)]))])
    rows, _ = read(path)
    assert len(rows) == 1
    assert rows[0]["html"] == text
    assert rows[0]["charset"] == charset or (charset == "shift_jis" and rows[0]["charset"] == "cp932")


def test_undecodable_bytes_never_crash(tmp_path):
    body = b"<html><body>" + bytes(range(128, 256)) * 3 + b"</body></html>"
    path, _ = write(tmp_path, [record(http(body, headers=[("Content-Type",
                                                           "text/html; charset=utf-8")]))])
    rows, _ = read(path)
    assert len(rows) == 1 and rows[0]["html"].startswith("<html><body>")


# -- HTML or not ------------------------------------------------------------------------------

def test_missing_or_uninformative_content_type_is_sniffed(tmp_path):
    recs = [record(http(PAGE, headers=[])),
            record(http(PAGE, headers=[("Content-Type", "application/octet-stream")])),
            record(http(b"just text, no markup", headers=[])),
            record(http(b"\x89PNG\r\n\x1a\n....", headers=[]))]
    path, _ = write(tmp_path, recs)
    rows, stats = read(path)
    assert len(rows) == 2
    assert [r["content_type"] for r in rows] == [None, "application/octet-stream"]
    assert stats.counters["sniffed_html"] == 2
    assert stats.counters["dropped_not_html"] == 2
    rows, stats = read(path, sniff=False)
    assert rows == [] and stats.counters["dropped_not_html"] == 4


def test_non_html_counted_by_top_level_type(tmp_path):
    recs = [record(http(b"\x89PNG\r\n\x1a\n", headers=[("Content-Type", "image/png")])),
            record(http(b"\xff\xd8\xff\xe0", headers=[("Content-Type", "image/jpeg")])),
            record(http(b"%PDF-1.4", headers=[("Content-Type", "application/pdf")])),
            record(http(b'{"a":1}', headers=[("Content-Type", "application/json")])),
            record(http(b"p{}", headers=[("Content-Type", "text/css")])),
            record(http(b"%PDF-1.4", headers=[("Content-Type", "text/html")])),  # lying type
            record(http(PAGE, headers=[("Content-Type", "application/xhtml+xml")]))]
    path, _ = write(tmp_path, recs)
    rows, stats = read(path)
    assert [r["content_type"] for r in rows] == ["application/xhtml+xml"]
    c = stats.counters
    assert c["dropped_not_html"] == 6
    assert (c["not_html_image"], c["not_html_application"], c["not_html_text"]) == (2, 2, 2)


def test_revisit_request_post_counted(tmp_path):
    recs = [record(http(PAGE), wtype="revisit",
                   extra={"WARC-Profile": "http://netpreserve.org/warc/1.0/revisit/identical-payload-digest"}),
            record(b"POST /form HTTP/1.1\r\nHost: example.com\r\nContent-Length: 3\r\n\r\na=1",
                   wtype="request", content_type="application/http; msgtype=request"),
            record(http(PAGE), uri="http://example.com/form")]
    path, _ = write(tmp_path, recs)
    rows, stats = read(path)
    assert [r["url"] for r in rows] == ["http://example.com/form"]
    c = stats.counters
    assert (c["records_revisit"], c["dropped_revisit"]) == (1, 1)
    assert (c["records_request"], c["dropped_not_response"]) == (1, 1)


def test_resource_record_with_html(tmp_path):
    recs = [record(PAGE, wtype="resource", content_type="text/html"),
            record(b"plain", wtype="resource", content_type="text/plain")]
    path, _ = write(tmp_path, recs)
    rows, stats = read(path)
    assert len(rows) == 1 and rows[0]["http_status"] is None
    assert rows[0]["content_type"] == "text/html" and rows[0]["html"] == PAGE.decode()


def test_response_without_http_header(tmp_path):
    recs = [record(PAGE), record(b"\x00\x01 not http at all"),
            record(b"HTTP/1.1 twohundred\r\nContent-Type: text/html\r\n\r\n" + PAGE)]
    path, _ = write(tmp_path, recs)
    rows, stats = read(path)
    assert len(rows) == 1 and rows[0]["http_status"] is None and rows[0]["html"] == PAGE.decode()
    assert stats.counters["dropped_bad_http"] == 2


def test_too_large(tmp_path):
    big = b"<html><body>" + b"x" * 5000 + b"</body></html>"
    path, _ = write(tmp_path, [record(http(big)), record(http(PAGE)),
                               record(http(gzip.compress(big), headers=[
                                   ("Content-Type", "text/html"), ("Content-Encoding", "gzip")]))])
    rows, stats = read(path, max_payload_bytes=1000)
    assert [r["html"] for r in rows] == [PAGE.decode()]
    assert stats.counters["dropped_too_large"] == 2


def test_empty_payload_dropped(tmp_path):
    path, _ = write(tmp_path, [record(http(b""))])
    rows, stats = read(path)
    assert rows == [] and stats.counters["dropped_empty"] == 1


# -- WARC header oddities ---------------------------------------------------------------------

@pytest.mark.parametrize("version", ["WARC/0.17", "WARC/0.18", "WARC/1.1"])
def test_old_and_new_version_lines(tmp_path, version):
    path, _ = write(tmp_path, [record(version=version), record(version=version)])
    rows, stats = read(path)
    assert len(rows) == 2 and not stats.errors


@pytest.mark.parametrize("date,expect", [
    ("2009-03-65T08:43:19-0800", None),      # ClueWeb09's famous day 65
    ("garbage", None),
    (None, None),
    ("2024-01-01T10:20:30.123456Z", "2024-01-01T10:20:30Z"),
])
def test_dates(tmp_path, date, expect):
    path, _ = write(tmp_path, [record(date=date)])
    rows, stats = read(path)
    assert len(rows) == 1 and rows[0]["warc_date"] == expect
    assert stats.counters["bad_warc_date"] == (1 if expect is None else 0)


@pytest.mark.parametrize("raw,clean", [
    ("<https://example.com/x>", "https://example.com/x"),
    ("  http://example.com/y \t", "http://example.com/y"),
    ("http://example.com/a b", "http://example.com/a%20b"),
    (None, None), ("", None), ("not a uri", None), ("example.com/page", None), ("http://", None),
])
def test_target_uri(tmp_path, raw, clean):
    path, _ = write(tmp_path, [record(uri=raw)])
    rows, stats = read(path)
    assert [r["url"] for r in rows] == ([clean] if clean else [])
    assert stats.counters["dropped_bad_uri"] == (0 if clean else 1)


def test_bare_lf_line_ends(tmp_path):
    recs = [record(http(nl=b"\n"), nl=b"\n"), record(http(nl=b"\n"), nl=b"\n")]
    path, _ = write(tmp_path, recs, gz=False)
    rows, stats = read(path)
    assert len(rows) == 2 and not stats.errors


# -- damage -----------------------------------------------------------------------------------

def test_truncated_gzip_member_at_end(tmp_path):
    path, offs = write(tmp_path, [record(), record(), record(http(PAGE * 50))])
    data = open(path, "rb").read()
    open(path, "wb").write(data[:-40])
    rows, stats = read(path)
    assert len(rows) == 2
    assert damage(stats) == [{"kind": "damaged_warc", "file": path, "offset": offs[2],
                              "error": damage(stats)[0]["error"]}]
    assert rows[1]["warc_record_offset"] + rows[1]["warc_record_length"] == offs[2]


def _corrupt(path: str, offs: list[int], *members: int) -> None:
    data = bytearray(open(path, "rb").read())
    for m in members:
        for i in range(offs[m] + 12, offs[m] + 40):
            data[i] ^= 0x55
    open(path, "wb").write(bytes(data))


def test_corrupt_gzip_member_in_the_middle_is_skipped_and_reading_resumes(tmp_path):
    """Per-record gzip resynchronises at the next member: the good records after a corrupt one
    are kept (they used to be lost), each with its exact byte range; the damage is recorded."""
    path, offs = write(tmp_path, [record(uri=f"http://example.com/{i}") for i in range(5)])
    _corrupt(path, offs, 2)
    rows, stats = read(path)
    assert [r["warc_record_offset"] for r in rows] == [offs[0], offs[1], offs[3], offs[4]]
    assert [r["url"] for r in rows] == [f"http://example.com/{i}" for i in (0, 1, 3, 4)]
    [d] = damage(stats)
    assert d["offset"] == offs[2] and f"reading resumes at the gzip member at {offs[3]}" in d["error"]
    assert rows[1]["warc_record_length"] == offs[2] - offs[1] and rows[2]["warc_record_length"] == offs[4] - offs[3]
    assert stats.counters["resumed_after_damage"] == 1
    data = open(path, "rb").read()
    for r in rows:   # each range is exactly one gzip member holding the record
        member = data[r["warc_record_offset"]:r["warc_record_offset"] + r["warc_record_length"]]
        assert gzip.decompress(member).startswith(b"WARC/1.0")


def test_several_corrupt_members_and_a_corrupt_last_one(tmp_path):
    path, offs = write(tmp_path, [record(uri=f"http://example.com/{i}") for i in range(6)])
    _corrupt(path, offs, 1, 2, 5)
    rows, stats = read(path)
    assert [r["url"] for r in rows] == [f"http://example.com/{i}" for i in (0, 3, 4)]
    assert [d["offset"] for d in damage(stats)] == [offs[1], offs[5]]
    assert rows[-1]["warc_record_length"] == offs[5] - offs[4]


@pytest.mark.parametrize("cut_into", [30, 150, 300])  # into the header / HTTP head / body
def test_cut_uncompressed_file(tmp_path, cut_into):
    path, offs = write(tmp_path, [record(), record(), record(http(PAGE * 5))], gz=False)
    data = open(path, "rb").read()
    open(path, "wb").write(data[:offs[2] + cut_into])
    rows, stats = read(path)
    assert len(rows) == 2
    assert [e["offset"] for e in damage(stats)] == [offs[2]]
    assert rows[1]["warc_record_offset"] + rows[1]["warc_record_length"] == offs[2]


def test_cut_inside_skipped_record_is_found(tmp_path):
    path, offs = write(tmp_path, [record(), record(b"m" * 500, wtype="metadata")], gz=True)
    data = open(path, "rb").read()
    open(path, "wb").write(data[:offs[1] + 60])
    rows, stats = read(path)
    assert len(rows) == 1 and [e["offset"] for e in damage(stats)] == [offs[1]]


def test_garbage_between_records(tmp_path):
    a, b = record(), record()
    path = tmp_path / "g.warc"
    path.write_bytes(a + b"\x00\x00junk\r\n" + b)
    rows, stats = read(str(path))
    assert len(rows) == 1
    assert [e["offset"] for e in damage(stats)] == [len(a)]
    assert rows[0]["warc_record_length"] == len(a)


def test_gzip_garbage_after_last_member(tmp_path):
    path, offs = write(tmp_path, [record(), record()])
    size = len(open(path, "rb").read())
    open(path, "ab").write(b"trailing junk")
    rows, stats = read(path)
    assert len(rows) == 2 and [e["offset"] for e in damage(stats)] == [size]


def test_not_a_warc(tmp_path):
    p = tmp_path / "x.warc"
    p.write_bytes(b"hello, this is not a WARC file\n" * 20)
    rows, stats = read(str(p))
    assert rows == [] and [e["offset"] for e in damage(stats)] == [0]


def test_arc_file_is_unsupported(tmp_path):
    arc = (b"filedesc://x.arc 0.0.0.0 20080430204825 text/plain 76\n"
           b"1 0 Heritrix\nURL IP-address Archive-date Content-type Archive-length\n\n\n"
           b"http://example.com/ 1.2.3.4 20080430204826 text/html 20\n<html>hi</html>\n\n")
    for name, data in (("a.arc", arc), ("a.arc.gz", gzip.compress(arc))):
        p = tmp_path / name
        p.write_bytes(data)
        rows, stats = read(str(p))
        assert rows == []
        assert [(e["kind"], e["format"]) for e in stats.errors] == [("unsupported_format", "arc")]


def test_unreadable_file(tmp_path):
    rows, stats = read(str(tmp_path / "missing.warc.gz"))
    assert rows == [] and [e["kind"] for e in stats.errors] == ["unreadable_warc"]


def test_empty_file_is_unreadable_so_that_the_ledger_retries_it(tmp_path):
    p = tmp_path / "e.warc.gz"
    p.write_bytes(b"")   # a typical failed download
    rows, stats = read(str(p))
    assert rows == [] and [(e["kind"], e["error"]) for e in stats.errors] == [
        ("unreadable_warc", "empty file (0 bytes): a failed download?")]


def test_whole_file_gzip_has_no_offsets(tmp_path):
    p = tmp_path / "w.warc.gz"
    p.write_bytes(gzip.compress(record() + record() + record()))
    rows, stats = read(str(p))
    assert len(rows) == 3
    assert {(r["warc_record_offset"], r["warc_record_length"]) for r in rows} == {(-1, -1)}
    assert [e["kind"] for e in stats.errors] == ["gzip_not_per_record"]


# -- provenance on the synthetic files, read back with warcio ----------------------------------

@pytest.mark.parametrize("gz", [True, False])
def test_provenance_synthetic(tmp_path, gz):
    recs = []
    for i in range(20):
        recs.append(record(b"GET / HTTP/1.1\r\n\r\n", wtype="request",
                           content_type="application/http; msgtype=request"))
        recs.append(record(http(PAGE * (i + 1)), uri=f"http://example.com/{i}",
                           rid=f"<urn:uuid:{i:08d}>"))
    path, _ = write(tmp_path, recs, gz=gz)
    rows, _ = read(path)
    assert len(rows) == 20
    with open(path, "rb") as fh:
        for row in rows:
            fh.seek(row["warc_record_offset"])
            chunk = fh.read(row["warc_record_length"])
            got = [r.rec_headers.get_header("WARC-Record-ID")
                   for r in WarcioIterator(io.BytesIO(chunk))]
            assert got == [row["warc_record_id"]]


# -- lenient continuation after a strict parse failure -----------------------------------------

def _set_length(rec: bytes, delta: int) -> bytes:
    i = rec.index(b"Content-Length: ") + 16
    j = rec.index(b"\r\n", i)
    return rec[:i] + str(int(rec[i:j]) + delta).encode() + rec[j:]


@pytest.mark.parametrize("gz", [True, False])
def test_bare_lf_record_in_the_middle_reads_on(tmp_path, gz):
    recs = [record(), record(http(nl=b"\n"), nl=b"\n", uri="http://example.com/lf"), record()]
    path, offs = write(tmp_path, recs, gz=gz)
    rows, stats = read(path)
    assert [r["warc_record_offset"] for r in rows] == offs
    assert rows[1]["url"] == "http://example.com/lf" and rows[1]["http_status"] == 200
    assert stats.counters["records"] == 3 and not stats.errors


def test_clueweb_style_records(tmp_path):
    """WARC/0.18, CRLF WARC headers but bare-LF HTTP headers, ClueWeb09's malformed dates."""
    recs = [record(http(nl=b"\n", headers=[("Content-Type", "text/html")]), version="WARC/0.18",
                   date="2009-03-65T08:43:19-0800", uri=f"http://example.jp/{i}")
            for i in range(3)]
    path, offs = write(tmp_path, recs, gz=True)
    rows, stats = read(path)
    assert [(r["url"], r["http_status"], r["content_type"], r["warc_date"]) for r in rows] == [
        (f"http://example.jp/{i}", 200, "text/html", None) for i in range(3)]
    assert stats.counters["bad_warc_date"] == 3 and not stats.errors


def test_content_length_too_short_is_damage(tmp_path):
    a, b, c = record(), record(), record()
    p = tmp_path / "short.warc"
    p.write_bytes(a + _set_length(b, -1) + c)
    rows, stats = read(str(p))
    assert len(rows) == 2
    assert [e["offset"] for e in damage(stats)] == [len(a) + len(b) - 5]


def test_extra_blank_lines_between_records_are_fine(tmp_path):
    a, b = record(), record()
    p = tmp_path / "blank.warc"
    p.write_bytes(a + b"\r\n\r\n" + b + b"\r\n")
    rows, stats = read(str(p))
    assert [r["warc_record_offset"] for r in rows] == [0, len(a) + 4] and not stats.errors


def test_gzip_member_without_trailer_is_damage(tmp_path):
    path, offs = write(tmp_path, [record(), record()])
    data = open(path, "rb").read()
    open(path, "wb").write(data[:-4])  # cut inside the last member's CRC/size trailer
    rows, stats = read(path)
    assert len(rows) == 1 and stats.counters["html"] == 1
    assert [e["offset"] for e in damage(stats)] == [offs[1]]


def test_image_records(tmp_path):
    from operators.io.warc import iter_image_records
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 40
    jpg = b"\xff\xd8\xff\xe0" + b"\x00" * 40
    recs = [record(http(png, headers=[("Content-Type", "image/png")]), uri="http://example.com/a.png"),
            record(http(jpg, headers=[("Content-Type", "application/octet-stream"),
                                      ("Content-Encoding", "gzip")]).replace(jpg, gzip.compress(jpg)),
                   uri="http://example.com/b.jpg"),
            record(http(png, status=404, headers=[("Content-Type", "image/png")]), uri="http://example.com/404.png"),
            record(http(b"<html>not an image</html>", headers=[("Content-Type", "image/jpeg")]),
                   uri="http://example.com/fake.jpg"),
            record(http(PAGE), uri="http://example.com/page"),
            record(png, wtype="resource", content_type="image/png", uri="http://example.com/res.png")]
    path, offsets = write(tmp_path, recs)
    stats = Stats("read_images")
    rows = list(iter_image_records(path, ReaderConfig(), stats))
    assert [(r["url"], r["data"]) for r in rows] == [("http://example.com/a.png", png), ("http://example.com/b.jpg", jpg),
                                                    ("http://example.com/res.png", png)]
    assert [r["warc_record_offset"] for r in rows] == [offsets[0], offsets[1], offsets[5]]
    assert rows[0]["warc_record_length"] == offsets[1] - offsets[0]
    c = stats.counters
    assert c["images"] == 3 and c["dropped_image_http_status"] == 1 and c["dropped_not_image"] == 2


# -- spans: one WARC read by several tasks ------------------------------------------------------

def read_spans(path: str, cuts: list[int]) -> tuple[list[list[dict]], list, Stats]:
    from operators.io.warc import Span, iter_records
    stats = Stats("read")
    bounds = [0] + cuts + [None]
    spans, rows = [], []
    for lo, hi in zip(bounds, bounds[1:]):
        span = Span(lo, hi)
        rows.append(list(iter_records(path, ReaderConfig(), stats, span=span)))
        spans.append(span)
    return rows, spans, stats


@pytest.mark.parametrize("cuts", [[1], [500], [700, 1400, 2100], list(range(50, 4000, 50))])
def test_spans_of_a_per_record_gzip_warc_read_every_record_once_with_exact_offsets(tmp_path, cuts):
    """Cut anywhere (inside a member, between members, in a run of spans holding no member
    start): each record is read by exactly one span, as a whole-file read gives it, and each
    span's `next` is the next one's `first` (the chain the flow checks)."""
    path, offs = write(tmp_path, [record(http(PAGE * (1 + i % 3)), uri=f"http://example.com/{i}") for i in range(8)])
    whole, _ = read(path)
    parts, spans, stats = read_spans(path, cuts)
    assert [r for p in parts for r in p] == whole and not stats.errors
    size = len(open(path, "rb").read())
    for a, b in zip(spans, spans[1:]):
        assert a.next == (b.first if b.first is not None else size)
    assert spans[0].first == 0 and spans[-1].next == size and not any(s.whole for s in spans)
    for p, s in zip(parts, spans):
        assert all(s.start <= r["warc_record_offset"] < (s.end or size) for r in p)


@pytest.mark.parametrize("kind", ["uncompressed", "whole-file gzip"])
def test_a_warc_that_cannot_be_split_is_read_whole_by_the_first_span(tmp_path, kind):
    recs = [record(uri=f"http://example.com/{i}") for i in range(5)]
    if kind == "uncompressed":
        path, _ = write(tmp_path, recs, gz=False)
    else:
        path = str(tmp_path / "w.warc.gz")
        open(path, "wb").write(gzip.compress(b"".join(recs)))
    whole, whole_stats = read(path)
    parts, spans, stats = read_spans(path, [300, 900])
    assert parts[0] == whole and parts[1] == [] and parts[2] == []
    assert spans[0].whole and [e["kind"] for e in stats.errors] == [e["kind"] for e in whole_stats.errors]


def test_a_corrupt_member_inside_a_span_and_file_errors_only_once(tmp_path):
    path, offs = write(tmp_path, [record(uri=f"http://example.com/{i}") for i in range(6)])
    _corrupt(path, offs, 2)
    whole, whole_stats = read(path)
    parts, spans, stats = read_spans(path, [offs[2] + 5, offs[4] + 5])
    assert [r for p in parts for r in p] == whole
    assert [d["offset"] for d in damage(stats)] == [offs[2]]
    assert spans[0].next == spans[1].first == offs[3]
    missing = str(tmp_path / "missing.warc.gz")
    _, _, stats = read_spans(missing, [100, 200])
    assert [e["kind"] for e in stats.errors] == ["unreadable_warc"]   # once, by the span at 0


def test_a_content_length_shorter_than_the_payload_in_a_gzip_member_is_recorded(tmp_path):
    """The member holds the whole page but the header declares less: the row would be cut
    mid-word (read short with no error; the same fault uncompressed was already recorded)."""
    short = record(http(PAGE * 3)).replace(b"Content-Length: %d" % len(http(PAGE * 3)),
                                           b"Content-Length: %d" % (len(http(PAGE * 3)) - 40))
    recs = [record(uri="http://example.com/0"), short, record(uri="http://example.com/2")]
    path, offs = write(tmp_path, recs)
    rows, stats = read(path)
    assert [r["url"] for r in rows] == ["http://example.com/0", "http://example.com/2"]   # the cut row left out
    [d] = damage(stats)
    assert d["offset"] == offs[1] and "after its Content-Length" in d["error"]
    assert stats.counters["html"] == 2
    path, offs = write(tmp_path, [record(uri="http://example.com/0"), short], name="last")   # the last member too
    rows, stats = read(path)
    assert [r["url"] for r in rows] == ["http://example.com/0"] and [d["offset"] for d in damage(stats)] == [offs[1]]
    good, _ = write(tmp_path, [record(), record(), record()], name="good")   # exact lengths: no false alarm
    rows, stats = read(good)
    assert len(rows) == 3 and not stats.errors


def test_a_refused_record_is_recorded_with_its_file_offset_and_url_as_a_warning(tmp_path):
    from operators.io.warc import failed_kinds
    big = record(http(PAGE * 200), uri="http://example.com/big")
    path, offs = write(tmp_path, [record(uri="http://example.com/0"), big, record(uri="http://example.com/2")])
    rows, stats = read(path, max_payload_bytes=5_000)
    assert [r["url"] for r in rows] == ["http://example.com/0", "http://example.com/2"]
    [e] = stats.errors
    assert (e["kind"], e["offset"], e["url"], e["reason"]) == ("record_refused", offs[1], "http://example.com/big",
                                                                "too_large")
    assert e["file"] == path and stats.counters["dropped_too_large"] == 1
    assert not failed_kinds(["record_refused"])   # a warning: the file was read, it is not failed
