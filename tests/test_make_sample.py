"""The built-in sample WARC (flows/make_sample.py): deterministic, readable by warcio, digests right,
manifest true to the file, and the page features later stages rely on are really there."""
from __future__ import annotations

import base64
import difflib
import gzip
import hashlib
import re
import struct
import zlib
from html.parser import HTMLParser
from urllib.parse import urljoin

import pytest

from flows.make_sample import write_sample_warc

warcio = pytest.importorskip("warcio")
from warcio.archiveiterator import ArchiveIterator  # noqa: E402

REQUIRED_LANGS = {"en", "de", "fr", "es", "ja", "ru", "ar"}


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    path = tmp_path_factory.mktemp("sample") / "sample.warc.gz"
    manifest = write_sample_warc(path)
    return path, manifest


@pytest.fixture(scope="module")
def records(sample):
    """Every record read by warcio with digest checking on (a mismatch raises)."""
    out = []
    with open(sample[0], "rb") as f:
        for r in ArchiveIterator(f, check_digests="raise"):
            raw = r.raw_stream.read()  # payload as stored (still chunked / gzipped); whole block if no HTTP
            out.append(dict(type=r.rec_type, h=r.rec_headers, http=r.http_headers, raw=raw,
                            passed=r.digest_checker.passed, problems=list(r.digest_checker.problems),
                            content=None))
    with open(sample[0], "rb") as f:  # second pass: decoded content (dechunked, gunzipped)
        for rec, r in zip(out, ArchiveIterator(f)):
            rec["content"] = r.content_stream().read()
    return out


def _sha1_b32(data: bytes) -> str:
    return "sha1:" + base64.b32encode(hashlib.sha1(data).digest()).decode()


def _members(data: bytes):
    """Split a .warc.gz into its gzip members (independently of any WARC library)."""
    while data:
        d = zlib.decompressobj(31)
        yield d.decompress(data) + d.flush()
        assert d.eof, "truncated gzip member"
        data = d.unused_data


def _responses(records, uri):
    return [r for r in records if r["type"] == "response" and r["h"].get_header("WARC-Target-URI") == uri]


def _html_of(records, page):
    (rec,) = _responses(records, page["url"])
    return rec["content"].decode(page["charset"])


def test_deterministic(tmp_path):
    m1 = write_sample_warc(tmp_path / "a" / "one.warc.gz")
    m2 = write_sample_warc(tmp_path / "b" / "two.warc.gz")
    b1, b2 = (tmp_path / "a" / "one.warc.gz").read_bytes(), (tmp_path / "b" / "two.warc.gz").read_bytes()
    assert b1 == b2
    assert {k: v for k, v in m1.items() if k != "path"} == {k: v for k, v in m2.items() if k != "path"}
    assert not list((tmp_path / "a").glob("*.tmp")), "temporary file left behind"


def test_cli_writes_file(tmp_path):
    from flows.make_sample import main
    out = tmp_path / "deep" / "dir" / "sample.warc.gz"
    assert main(["--out", str(out), "--manifest", str(tmp_path / "m.json")]) == 0
    assert out.read_bytes()[:2] == b"\x1f\x8b" and (tmp_path / "m.json").exists()


def test_warcio_reads_every_record_with_valid_digests(sample, records):
    path, manifest = sample
    assert records[0]["type"] == "warcinfo"
    counts = {}
    for r in records:
        counts[r["type"]] = counts.get(r["type"], 0) + 1
        assert not r["problems"], r["problems"]
        if r["h"].get_header("WARC-Block-Digest") and r["type"] != "revisit":
            assert r["passed"] is True, (r["type"], r["h"].get_header("WARC-Target-URI"))
    assert counts == manifest["records"]
    assert {"warcinfo", "request", "response", "revisit", "metadata"} <= set(counts)


def test_raw_layout_one_gzip_member_per_record_exact_lengths_and_digests(sample):
    data = sample[0].read_bytes()
    n = 0
    for member in _members(data):
        n += 1
        head, sep, rest = member.partition(b"\r\n\r\n")
        assert sep and head.startswith(b"WARC/1.0\r\n")
        fields = dict(line.split(": ", 1) for line in head.decode().split("\r\n")[1:])
        length = int(fields["Content-Length"])
        block, tail = rest[:length], rest[length:]
        assert tail == b"\r\n\r\n", "Content-Length must be exact and the record end with CRLFCRLF"
        assert fields["WARC-Block-Digest"] == _sha1_b32(block)
        assert re.fullmatch(r"<urn:uuid:[0-9a-f-]{36}>", fields["WARC-Record-ID"])
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", fields["WARC-Date"])
        if fields["WARC-Type"] == "response":
            assert fields["Content-Type"] == "application/http; msgtype=response"
            assert fields["WARC-Payload-Digest"] == _sha1_b32(block.partition(b"\r\n\r\n")[2])
            assert fields["WARC-Identified-Payload-Type"]
    assert n == sum(sample[1]["records"].values())


def test_common_crawl_order_request_before_response(records):
    ids = [r["h"].get_header("WARC-Record-ID") for r in records]
    assert len(set(ids)) == len(ids)
    info_id = ids[0]
    for i, r in enumerate(records):
        if i:
            assert r["h"].get_header("WARC-Warcinfo-ID") == info_id
        if r["type"] in ("response", "revisit"):
            req = records[i - 1]
            assert req["type"] == "request"
            assert req["h"].get_header("WARC-Target-URI") == r["h"].get_header("WARC-Target-URI")
            assert r["h"].get_header("WARC-Concurrent-To") == req["h"].get_header("WARC-Record-ID")


def test_html_pages_match_manifest(records, sample):
    manifest = sample[1]
    pages = manifest["html_pages"]
    articles = [p for p in pages if p["kind"] in ("article", "near_copy")]
    assert len(articles) >= 12
    assert REQUIRED_LANGS <= {p["lang"] for p in articles}
    assert sum(p["words"] >= 300 for p in articles if p["lang"] != "ja") >= len(articles) - 3
    assert all(p["chars"] >= 600 for p in articles if p["lang"] == "ja")
    for p in pages:
        (rec,) = _responses(records, p["url"])
        assert rec["http"].get_statuscode() == str(p["status"])
        assert rec["h"].get_header("WARC-Identified-Payload-Type") == "text/html"
        html = _html_of(records, p)
        assert f'<html lang="{p["lang"]}"' in html
        assert f"<title>{p['title']}" in html
        assert ('<link rel="canonical"' in html) == p["canonical"]
        assert 'id="cookie-banner" class="cookie-consent"' in html
    assert sum(p["canonical"] for p in articles) >= len(articles) - 2
    assert {p["kind"] for p in pages} >= {"article", "near_copy", "404"}
    ar = next(p for p in pages if p["lang"] == "ar")
    assert '<html lang="ar" dir="rtl">' in _html_of(records, ar)


def test_charsets(records, sample):
    pages = {p["charset"]: p for p in sample[1]["html_pages"]}
    cp = pages["windows-1252"]
    (rec,) = _responses(records, cp["url"])
    assert rec["http"].get_header("Content-Type") == "text/html"  # declared only in <meta>
    with pytest.raises(UnicodeDecodeError):
        rec["content"].decode("utf-8")
    text = rec["content"].decode("windows-1252")
    assert 'charset=windows-1252"' in text and "ü" in text and "€" in text and cp["lang"] == "de"
    header_declared = [p for p in sample[1]["html_pages"] if p["charset"] in ("shift_jis", "koi8-r")]
    assert header_declared
    for p in header_declared:
        (rec,) = _responses(records, p["url"])
        assert p["charset"].replace("_", "").lower() in rec["http"].get_header("Content-Type").replace("_", "").lower()
        with pytest.raises(UnicodeDecodeError):
            rec["content"].decode("utf-8")
        assert p["title"] in rec["content"].decode(p["charset"])


def test_content_and_transfer_encoding(records, sample):
    pages = sample[1]["html_pages"]
    gz = next(p for p in pages if p["content_encoding"] == "gzip")
    (rec,) = _responses(records, gz["url"])
    assert rec["http"].get_header("Content-Encoding") == "gzip" and rec["raw"][:2] == b"\x1f\x8b"
    assert gzip.decompress(rec["raw"]) == rec["content"]
    ch = next(p for p in pages if p["transfer_encoding"] == "chunked")
    (rec,) = _responses(records, ch["url"])
    assert rec["http"].get_header("Transfer-Encoding") == "chunked" and rec["http"].get_header("Content-Length") is None
    assert re.match(rb"[0-9a-f]+\r\n<!DOCTYPE html>", rec["raw"]) and rec["raw"].endswith(b"0\r\n\r\n")
    assert rec["content"].startswith(b"<!DOCTYPE html>") and rec["content"].rstrip().endswith(b"</html>")


class _Imgs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.base, self.tags = None, []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "base" and self.base is None:
            self.base = a.get("href")
        if tag in ("img", "source"):
            self.tags.append((tag, a))

    def urls(self, page_url):
        base = urljoin(page_url, self.base) if self.base else page_url
        out = set()
        for _, a in self.tags:
            for k in ("src", "data-src"):
                if a.get(k) and not a[k].startswith("data:"):
                    out.add(urljoin(base, a[k]))
            for k in ("srcset", "data-srcset"):
                for cand in (a.get(k) or "").split(","):
                    if cand.strip():
                        out.add(urljoin(base, cand.split()[0]))
        return out


def _parsed(records, sample):
    res = {}
    for p in sample[1]["html_pages"]:
        parser = _Imgs()
        parser.feed(_html_of(records, p))
        res[p["url"]] = parser
    return res


def test_image_records_are_real_pngs_referenced_by_pages(records, sample):
    parsed = _parsed(records, sample)
    referenced = set().union(*(pp.urls(u) for u, pp in parsed.items()))
    assert len(sample[1]["image_records"]) >= 2
    for url in sample[1]["image_records"]:
        assert url in referenced, url
        (rec,) = _responses(records, url)
        assert rec["http"].get_header("Content-Type") == "image/png"
        data = rec["content"]
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        pos, idat, dims = 8, b"", None
        while pos < len(data):
            (n,) = struct.unpack(">I", data[pos:pos + 4])
            tag, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
            assert struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])[0] == zlib.crc32(tag + body)
            if tag == b"IHDR":
                dims = struct.unpack(">II", body[:8])
            idat += body if tag == b"IDAT" else b""
            pos += 12 + n
        w, h = dims
        assert len(zlib.decompress(idat)) == h * (1 + 3 * w)


def test_image_markup_variety(records, sample):
    parsed = _parsed(records, sample)
    tags = [(t, a) for pp in parsed.values() for t, a in pp.tags]
    imgs = [a for t, a in tags if t == "img"]
    assert any(pp.base for pp in parsed.values())
    assert any(a.get("src", "").startswith("data:") for a in imgs)
    assert any(a.get("width") == "1" and a.get("height") == "1" for a in imgs)
    assert any(a.get("width") == "16" and a.get("height") == "16" for a in imgs)
    assert any("data-src" in a for a in imgs)
    assert any(re.search(r"\d+w(,|$)", a.get("srcset", "")) for a in imgs)
    assert any(t == "source" and "srcset" in a for t, a in tags)
    srcs = [a.get("src", "") + " " + a.get("data-src", "") for a in imgs]
    for prefix in ("../img/", "/img/", "img/"):
        assert any(s.startswith(prefix) or f" {prefix}" in s for s in srcs), prefix
    assert all(a.get("alt") is not None for a in imgs)
    html = "".join(_html_of(records, p) for p in sample[1]["html_pages"])
    assert html.count("<figcaption>") >= 5


def test_main_text_containers(records, sample):
    kinds = {p["container"] for p in sample[1]["html_pages"]}
    assert kinds >= {"article", "div", "bare"}
    for p in sample[1]["html_pages"]:
        html = _html_of(records, p)
        if p["container"] == "bare":
            assert not re.search(r"<(article|main|section|nav|header|footer|aside)\b", html)
            assert 'class="content"' not in html
        elif p["container"] == "div":
            assert '<div class="content">' in html and "<article" not in html
        else:
            assert "<article" in html and "<nav" in html and "<footer" in html
    assert any('class="comment-list"' in _html_of(records, p) for p in sample[1]["html_pages"])


def test_near_copy(records, sample):
    orig_url, copy_url = sample[1]["near_copy_of"]
    pages = {p["url"]: p for p in sample[1]["html_pages"]}
    assert pages[copy_url]["kind"] == "near_copy" and pages[orig_url]["kind"] == "article"

    def paras(p):
        return " ".join(re.findall(r"<p>([^<]{200,})</p>", _html_of(records, p)))
    a, b = paras(pages[orig_url]), paras(pages[copy_url])
    assert a != b and difflib.SequenceMatcher(None, a, b).ratio() > 0.9
    assert _html_of(records, pages[orig_url]) != _html_of(records, pages[copy_url])


def test_redirect_404_revisit_metadata_and_other_types(records, sample):
    m = sample[1]
    src, target = m["redirect"]
    (rec,) = _responses(records, src)
    assert rec["http"].get_statuscode() == "301" and rec["http"].get_header("Location") == target
    assert any(p["status"] == 404 for p in m["html_pages"])
    (rev,) = [r for r in records if r["type"] == "revisit"]
    assert rev["h"].get_header("WARC-Profile").endswith("/revisit/identical-payload-digest")
    assert rev["h"].get_header("WARC-Refers-To-Target-URI") == m["revisit_of"]
    (orig,) = _responses(records, m["revisit_of"])
    assert rev["h"].get_header("WARC-Payload-Digest") == orig["h"].get_header("WARC-Payload-Digest")
    assert rev["h"].get_header("WARC-Refers-To") == orig["h"].get_header("WARC-Record-ID")
    (meta,) = [r for r in records if r["type"] == "metadata"]
    assert meta["h"].get_header("WARC-Concurrent-To") == orig["h"].get_header("WARC-Record-ID")
    types = {r["h"].get_header("WARC-Identified-Payload-Type") for r in records if r["type"] == "response"}
    assert {"text/html", "image/png", "application/json", "text/css"} <= types
    for url in m["other_records"]:
        assert len(_responses(records, url)) == 1


def test_photo_records_are_real_jpegs_and_one_is_absent(records, sample):
    from operators.images.decode import decode
    parsed = _parsed(records, sample)
    referenced = set().union(*(pp.urls(u) for u, pp in parsed.items()))
    manifest = sample[1]
    assert len(manifest["photo_records"]) >= 10
    for url in manifest["photo_records"]:
        assert url in referenced, url
        (rec,) = _responses(records, url)
        assert rec["http"].get_header("Content-Type") == "image/jpeg"
        d = decode(rec["content"])
        assert d.ok and d.format == "jpeg" and (d.width, d.height) == (320, 240)
    assert manifest["absent_image"] in referenced and not _responses(records, manifest["absent_image"])
