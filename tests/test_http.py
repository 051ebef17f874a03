"""Unit tests for operators/io/http.py: HTTP header parsing, de-chunking, content decoding,
HTML sniffing and charset resolution."""
from __future__ import annotations

import gzip
import zlib

import brotli
import zstandard
import pytest

from operators.io import http as H

PAGE = b"<!doctype html><html><head><title>t</title></head><body><p>Hello</p></body></html>"


# -- header block -----------------------------------------------------------------------------

def test_parse_http_response_crlf():
    block = b"HTTP/1.1 404 Not Found\r\nContent-Type: text/html\r\nX-A: 1\r\nx-a: 2\r\n\r\nbody"
    msg = H.parse_http_response(block)
    assert msg.status == 404
    assert msg.headers["content-type"] == "text/html"
    assert msg.headers["x-a"] == "1, 2"
    assert msg.body == b"body"


def test_parse_http_response_bare_lf_and_no_reason():
    msg = H.parse_http_response(b"HTTP/1.0 200\nContent-Type: text/html\n\n<html>")
    assert (msg.status, msg.headers["content-type"], msg.body) == (200, "text/html", b"<html>")


def test_parse_http_response_rejects_non_http():
    assert H.parse_http_response(b"<html>no header</html>") is None
    assert H.parse_http_response(b"HTTP/1.1 OK\r\n\r\nx") is None  # no numeric status


def test_split_content_type():
    assert H.split_content_type("Text/HTML; Charset=\"ISO-8859-1\"") == ("text/html", "ISO-8859-1")
    assert H.split_content_type("text/html;charset=utf-8;q=1") == ("text/html", "utf-8")
    assert H.split_content_type(None) == (None, None)
    assert H.split_content_type("garbage") == (None, None)


# -- transfer / content encoding --------------------------------------------------------------

def chunk(data: bytes, size: int = 7) -> bytes:
    out = b""
    for i in range(0, len(data), size):
        piece = data[i:i + size]
        out += b"%x\r\n" % len(piece) + piece + b"\r\n"
    return out + b"0\r\n\r\n"


def test_dechunk_roundtrip():
    assert H.dechunk(chunk(PAGE)) == PAGE
    assert H.dechunk(b"5;ext=1\r\nhello\r\n0\r\n\r\n") == b"hello"


def test_dechunk_truncated_keeps_what_it_has():
    body = chunk(PAGE)[:-20]
    out = H.dechunk(body)
    assert out is not None and PAGE.startswith(out) and len(out) > 40


def test_dechunk_wrong_sizes_or_not_chunked_returns_none():
    assert H.dechunk(b"3\r\nhello\r\n0\r\n\r\n") is None   # size too small: no CRLF after chunk
    assert H.dechunk(PAGE) is None                         # not chunked at all
    assert not H.looks_chunked(PAGE)
    assert H.looks_chunked(chunk(PAGE))


@pytest.mark.parametrize("enc,data", [
    ("gzip", gzip.compress(PAGE)),
    ("x-gzip", gzip.compress(PAGE)),
    ("deflate", zlib.compress(PAGE)),                       # zlib-wrapped (RFC 1950)
    ("deflate", zlib.compress(PAGE)[2:-4]),                 # raw deflate (IIS)
    ("br", brotli.compress(PAGE)),
    ("zstd", zstandard.ZstdCompressor().compress(PAGE)),
    ("zstd", zstandard.ZstdCompressor().compress(PAGE[:500]) + zstandard.ZstdCompressor().compress(PAGE[500:])),
    (None, gzip.compress(PAGE)),                            # header lost, magic says gzip
    ("gzip", PAGE),                                         # header kept, body already decoded
    ("br", PAGE),
    ("deflate", PAGE),
    ("zstd", PAGE),
])
def test_decode_content(enc, data):
    out, ok = H.decode_content(data, enc, 10_000_000)
    assert ok and out == PAGE


def test_decode_content_truncated_gzip_keeps_prefix():
    out, ok = H.decode_content(gzip.compress(PAGE * 50)[:-30], "gzip", 10_000_000)
    assert ok and out and (PAGE * 50).startswith(out)


def test_decode_content_failures():
    assert H.decode_content(b"\x1f\x8b\x08garbage-not-deflate", "gzip", 10**6) == (None, False)
    assert H.decode_content(b"\x00\x01\x02binary", "br", 10**6) == (None, False)
    assert H.decode_content(b"\x28\xb5\x2f\xfd\x00garbage", "zstd", 10**6) == (None, False)


def test_decode_content_limit():
    out, ok = H.decode_content(gzip.compress(b"a" * 100_000), "gzip", 1000)
    assert ok and len(out) == 1000


@pytest.mark.parametrize("enc", ["br", "gzip", "deflate", "zstd"])
def test_decode_content_bombs_are_cut_before_they_are_produced(enc):
    """256 MB of zeros in a few hundred bytes (br) or ~250 KB (gzip, deflate): the output stops
    at the limit, and the decoder never holds much more than that (it used to inflate brotli
    whole and cut afterwards: gigabytes for a few KB)."""
    import tracemalloc
    zeros = b"\x00" * (1 << 20)
    if enc == "br":
        c = brotli.Compressor(quality=1)
        bomb = b"".join([c.process(b"<html>")] + [c.process(zeros) for _ in range(256)]) + c.finish()
    elif enc == "zstd":
        z = zstandard.ZstdCompressor(level=3).compressobj()
        bomb = b"".join([z.compress(b"<html>")] + [z.compress(zeros) for _ in range(256)]) + z.flush()
    else:
        z = zlib.compressobj(9, zlib.DEFLATED, 31 if enc == "gzip" else 15)
        bomb = b"".join([z.compress(b"<html>")] + [z.compress(zeros) for _ in range(256)]) + z.flush()
    tracemalloc.start()
    try:
        out, ok = H.decode_content(bomb, enc, 1_000_000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert ok and len(out) == 1_000_000 and out.startswith(b"<html>")
    assert peak < 16_000_000, peak


# -- sniffing ---------------------------------------------------------------------------------

@pytest.mark.parametrize("data", [
    b"<!DOCTYPE html><html>", b"  \n<html lang=en>", b"\xef\xbb\xbf<!doctype HTML>",
    b"<?xml version='1.0'?>\n<!DOCTYPE html PUBLIC>", b"<!-- c --><head><title>x",
    b"<body>", b"<div class=x>", b"<p>para", "<html>".encode("utf-16"),
])
def test_sniff_html_yes(data):
    assert H.sniff_html(data)


@pytest.mark.parametrize("data", [
    b"%PDF-1.4", b"\x89PNG\r\n\x1a\n", b'{"a": 1}', b"body { color: red }", b"function f() {}",
    b"<?xml version='1.0'?><rss version='2.0'>", b"plain text", b"<pre>", b"",
])
def test_sniff_html_no(data):
    assert not H.sniff_html(data)


# -- charsets ---------------------------------------------------------------------------------

@pytest.mark.parametrize("label,codec", [
    ("latin-1", "cp1252"), ("ISO-8859-1", "cp1252"), ("iso_8859-1", "cp1252"),
    ("us-ascii", "cp1252"), ("utf8", "utf-8"), ("UTF-8", "utf-8"), ("'utf-8'", "utf-8"),
    ("Shift_JIS", "cp932"), ("x-sjis", "cp932"), ("gb2312", "gbk"), ("euc-kr", "cp949"),
    ("koi8-r", "koi8-r"), ("windows-1251", "cp1251"), ("ISO-8859-9", "cp1254"),
])
def test_normalize_charset(label, codec):
    assert H.normalize_charset(label) == codec


@pytest.mark.parametrize("label", ["bogus", "", None, "base64", "zlib", "x" * 100, "utf-99"])
def test_normalize_charset_bogus(label):
    assert H.normalize_charset(label) is None


def test_meta_charset_both_forms():
    assert H.meta_charset(b'<meta charset="koi8-r">') == "koi8-r"
    assert H.meta_charset(
        b'<meta http-equiv="Content-Type" content="text/html; charset=Shift_JIS">') == "Shift_JIS"
    assert H.meta_charset(b"<p>charset=utf-8</p>") is None


CAFE = "Café crème brûlée – “quotes” naïve façade. "


def test_decode_html_header_charset():
    text, codec = H.decode_html(CAFE.encode("cp1252"), "windows-1252")
    assert (text, codec) == (CAFE, "cp1252")


def test_decode_html_meta_charset():
    ru = "<html><head><meta charset=koi8-r></head><body>Привет, мир! Съешь же ещё</body></html>"
    text, codec = H.decode_html(ru.encode("koi8-r"), None)
    assert (text, codec) == (ru, "koi8-r")


def test_decode_html_bogus_header_falls_through_to_meta():
    ru = "<meta http-equiv=content-type content='text/html; charset=windows-1251'>Москва"
    text, codec = H.decode_html(ru.encode("cp1251"), "no-such-charset")
    assert (text, codec) == (ru, "cp1251")


def test_decode_html_detection_shift_jis():
    ja = "<html><body>" + "日本語のテキストです。こんにちは世界。東京都の天気は晴れです。" * 5 + "</body></html>"
    text, codec = H.decode_html(ja.encode("shift_jis"), None)
    assert text == ja and codec in ("shift_jis", "cp932")


def test_decode_html_detection_cp1252():
    text, codec = H.decode_html(("<p>" + CAFE * 3).encode("cp1252"), None)
    assert text == "<p>" + CAFE * 3 and codec == "cp1252"


def test_decode_html_bom_wins():
    text, codec = H.decode_html(b"\xef\xbb\xbf<p>caf\xc3\xa9</p>", "iso-8859-1")
    assert (text, codec) == ("<p>café</p>", "utf-8")
    text, codec = H.decode_html("<p>é</p>".encode("utf-16-le"), None)
    assert codec != "utf-16-le"  # no BOM: not guessed as UTF-16 ...
    text, codec = H.decode_html(b"\xff\xfe" + "<p>é</p>".encode("utf-16-le"), None)
    assert (text, codec) == ("<p>é</p>", "utf-16-le")  # ... with a BOM it is


def test_decode_html_utf16_header_on_single_byte_text_is_ignored():
    """`charset=utf-16` in the header on bytes that are not UTF-16 (no NULs) was read as UTF-16:
    CJK mojibake, then a wrong language. The same lie in <meta> was already ignored."""
    text, codec = H.decode_html(CAFE.encode("cp1252"), "utf-16")
    assert (text, codec) == (CAFE, "cp1252")
    text, codec = H.decode_html(CAFE.encode("utf-8"), "UTF-16LE")
    assert (text, codec) == (CAFE, "utf-8")
    real = "<html><body><p>" + CAFE + "</p></body></html>"   # real UTF-16 without a BOM keeps its label
    assert H.decode_html(real.encode("utf-16-le"), "utf-16le") == (real, "utf-16-le")


def test_decode_html_utf8_mislabelled_latin1():
    text, codec = H.decode_html(CAFE.encode("utf-8"), "iso-8859-1")
    assert (text, codec) == (CAFE, "utf-8")


def test_decode_html_ascii_keeps_declared_codec():
    assert H.decode_html(b"<p>plain</p>", "iso-8859-1") == ("<p>plain</p>", "cp1252")
    assert H.decode_html(b"<p>plain</p>", "utf-8") == ("<p>plain</p>", "utf-8")


def test_decode_html_never_raises_on_garbage():
    junk = bytes(range(256)) * 20
    text, codec = H.decode_html(junk, "utf-8")
    assert isinstance(text, str) and codec
