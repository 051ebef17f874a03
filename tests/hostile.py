"""A generated corpus of hostile input, with control pages among it (issue 12's list):

    manifest = write_hostile_warcs(folder)   # folder/hostile.warc.gz and four broken files

`hostile.warc.gz` (one gzip member per record, as Common Crawl writes them) holds control
articles (`manifest["control"]`: each must come through as a kept document) between pages built
to hurt: nesting 60,000 deep one tag per line, a 20 MB single-line page, 200,000 <img> tags, a
srcset of 100,000 candidates, a 6 MB attribute before the article, NUL bytes and invalid UTF-8,
a UTF-16 charset lie, gzip, brotli and zstd bombs (1 GB of zeros), broken chunked encoding, a 1 MB header
line, a garbage status line, a record whose Content-Length is shorter than its payload, and a
corrupt gzip member among good ones (`manifest["hostile"]`: URL -> what it is). The other files:
an empty `.warc.gz`, a file that is not a WARC, a WARC cut in the middle of a record, and a
whole-file gzip WARC. Used by tests/test_hostile.py and `bench/flow_memory.py`.
"""
from __future__ import annotations

import gzip
import uuid
import zlib
from pathlib import Path

SENTENCES = [
    "The council approved the new budget on Tuesday after a long debate about schools and roads.",
    "Residents who spoke at the meeting asked for more buses on weekends and better lighting.",
    "The mayor promised a study of the bus routes before the summer holidays begin.",
    "Two members voted against the plan, saying it spends too much on outside consultants.",
    "The library will open longer hours next year, including on Sunday afternoons.",
    "A new bridge over the river is expected to be finished by the end of next spring.",
    "Local farmers reported a good harvest despite the dry weather in early August.",
    "The school board hired twelve new teachers to reduce the size of the largest classes.",
    "Police said the number of break-ins fell by a third compared with the previous year.",
    "The football club opened its new stadium with a friendly match against an old rival.",
    "Volunteers planted more than four hundred trees along the northern edge of the park.",
    "The hospital added a second emergency room to shorten the waiting times at night.",
    "Shop owners on the main street welcomed the decision to close it to cars on Saturdays.",
    "The museum is showing paintings by artists who lived in the valley a century ago.",
    "Engineers found cracks in the old water tower, which will be replaced within two years.",
    "The town will hold its first food market in the square on the last Friday of each month.",
    "Students from the technical college built a small solar car and raced it across the state.",
    "A storm knocked down power lines on Monday, and some homes were without light for a day.",
    "The theatre group is looking for actors for its winter play about the town's founders.",
    "Cyclists asked for a separate lane on the busy road that leads to the railway station.",
]


def article_html(i: int) -> str:
    """A distinct article (no near-duplicate of another i): 8 of the sentences, in an order and
    choice of its own, and a sentence of its own."""
    import random
    rng = random.Random(i)
    picked = rng.sample(SENTENCES, 8)
    paras = [" ".join(picked[k:k + 2]) for k in range(0, 8, 2)]
    paras.append(f"This is report number {i} of the series, filed from the newsroom on a quiet afternoon.")
    return "".join(f"<p>{p}</p>" for p in paras)


def article_page(title: str, i: int) -> bytes:
    return (f"<html><head><title>{title}</title></head><body><article><h1>{title}</h1>{article_html(i)}"
            f"</article></body></html>").encode()


def _http(body: bytes, headers: list[tuple[str, str]] | None = None, status: bytes = b"HTTP/1.1 200 OK") -> bytes:
    headers = headers if headers is not None else [("Content-Type", "text/html; charset=utf-8")]
    head = status + b"\r\n" + b"".join(f"{k}: {v}".encode("latin-1") + b"\r\n" for k, v in headers)
    return head + b"\r\n" + body


def _record(url: str, block: bytes, declared: int | None = None) -> bytes:
    fields = [("WARC-Type", "response"), ("WARC-Record-ID", f"<urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, url)}>"),
              ("WARC-Target-URI", url), ("WARC-Date", "2024-05-01T00:00:00Z"),
              ("Content-Type", "application/http; msgtype=response"),
              ("Content-Length", str(len(block) if declared is None else declared))]
    head = b"WARC/1.0\r\n" + b"".join(f"{k}: {v}".encode() + b"\r\n" for k, v in fields)
    return head + b"\r\n" + block + b"\r\n\r\n"


def _bomb(kind: str, size: int = 1 << 30) -> bytes:
    zeros = b"\x00" * (1 << 20)
    if kind == "gzip":
        z = zlib.compressobj(9, zlib.DEFLATED, 31)
        return b"".join([z.compress(b"<html><body>")] + [z.compress(zeros) for _ in range(size >> 20)]) + z.flush()
    if kind == "zstd":
        import zstandard
        z = zstandard.ZstdCompressor(level=3).compressobj()
        return b"".join([z.compress(b"<html><body>")] + [z.compress(zeros) for _ in range(size >> 20)]) + z.flush()
    import brotli
    c = brotli.Compressor(quality=1)
    return b"".join([c.process(b"<html><body>")] + [c.process(zeros) for _ in range(size >> 20)]) + c.finish()


def hostile_pages() -> list[tuple[str, str, bytes, int | None]]:
    """(url, what it is, HTTP block, declared Content-Length or None) of each hostile record."""
    base = "http://hostile.example/"
    arts = iter(article_html(1000 + k).encode() for k in range(100))   # each page its own article
    chunked = b"5\r\n<html\r\nZZZ\r\nnot a chunk size" + next(arts)
    pages = [
        ("deep", "nesting 60,000 deep, one tag per line",
         _http(b"<html><body>" + b"<div>\n" * 60_000 + next(arts) + b"</div>\n" * 60_000 + b"</body></html>"), None),
        ("single-line", "a 20 MB page on one line", _http(b"<html><body><p>" + b"word " * 4_000_000 + b"</p></body></html>"), None),
        ("many-images", "200,000 <img> tags",
         _http(b"<html><body>" + b"".join(b'<img src="/i/%d.jpg" width="300" height="200">' % i for i in range(200_000))
               + next(arts) + b"</body></html>"), None),
        ("srcset", "a srcset of 100,000 candidates",
         _http(b'<html><body><img src="/a.jpg" srcset="' + b", ".join(b"/s/%d.jpg %dw" % (i, i + 1) for i in range(100_000))
               + b'">' + next(arts) + b"</body></html>"), None),
        ("big-attribute", "a 6 MB attribute before the article",
         _http(b'<html><body><div data-state="' + b"A" * 6_000_000 + b'"></div><article>' + next(arts) + b"</article></body></html>"), None),
        ("nul-bytes", "NUL bytes and invalid UTF-8 in the text",
         _http(b"<html><body><article>" + next(arts).replace(b" the ", b" th\x00e\xff\xfe ") + b"</article></body></html>"), None),
        ("charset-lie", "charset=utf-16 on single-byte text",
         _http(b"<html><body><article>" + next(arts) + b"</article></body></html>", [("Content-Type", "text/html; charset=utf-16")]), None),
        ("gzip-bomb", "Content-Encoding gzip: 1 GB of zeros",
         _http(_bomb("gzip"), [("Content-Type", "text/html"), ("Content-Encoding", "gzip")]), None),
        ("brotli-bomb", "Content-Encoding br: 1 GB of zeros",
         _http(_bomb("br"), [("Content-Type", "text/html"), ("Content-Encoding", "br")]), None),
        ("zstd-bomb", "Content-Encoding zstd: 1 GB of zeros",
         _http(_bomb("zstd"), [("Content-Type", "text/html"), ("Content-Encoding", "zstd")]), None),
        ("broken-chunked", "broken chunked encoding",
         _http(chunked, [("Content-Type", "text/html"), ("Transfer-Encoding", "chunked")]), None),
        ("huge-header", "a 1 MB HTTP header line",
         _http(b"<html><body><article>" + next(arts) + b"</article></body></html>",
               [("Content-Type", "text/html"), ("X-Junk", "j" * 1_000_000)]), None),
        ("garbage-status", "a garbage status line",
         _http(b"<html><body><article>" + next(arts) + b"</article></body></html>", status=b"\x00\xffGARBAGE 99999 ???"), None),
    ]
    out = [(base + name, what, block, declared) for name, what, block, declared in pages]
    short = _http(article_page("Cut short", 1001))
    out.append((base + "short-length", "a Content-Length shorter than the payload", short, len(short) - 40))
    return out


def write_hostile_warcs(folder: str | Path) -> dict:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    control = [f"http://control.example/article-{i}" for i in range(6)]
    hostile = hostile_pages()
    members: list[bytes] = []
    corrupt_at = None
    for i, (url, _what, block, declared) in enumerate(hostile):
        members.append(gzip.compress(_record(control[i % len(control)], _http(article_page(f"Control {i}", i))))
                       if i < len(control) else b"")
        members.append(gzip.compress(_record(url, block, declared)))
        if i == 3:   # a corrupt gzip member among good ones
            bad = bytearray(gzip.compress(_record("http://hostile.example/corrupt-member",
                                                  _http(article_page("Corrupt", 1002)))))
            for j in range(12, 40):
                bad[j] ^= 0x55
            corrupt_at = sum(len(m) for m in members)
            members.append(bytes(bad))
    (folder / "hostile.warc.gz").write_bytes(b"".join(m for m in members if m))
    (folder / "empty.warc.gz").write_bytes(b"")
    (folder / "not-a-warc.warc.gz").write_bytes(b"this is a failed download's error page, not a WARC\n" * 100)
    ok = gzip.compress(_record("http://control.example/cut-0", _http(article_page("Before the cut", 2000))))
    cut = gzip.compress(_record("http://hostile.example/cut", _http(article_page("Cut", 2001) * 50)))
    (folder / "cut.warc.gz").write_bytes(ok + cut[: len(cut) // 2])
    whole = b"".join(_record(f"http://control.example/whole-{i}", _http(article_page(f"Whole {i}", 3000 + i)))
                     for i in range(3))
    (folder / "whole-gzip.warc.gz").write_bytes(gzip.compress(whole))
    return {"control": control + ["http://control.example/cut-0"] + [f"http://control.example/whole-{i}" for i in range(3)],
            "hostile": {url: what for url, what, _b, _d in hostile} | {"http://hostile.example/corrupt-member": "a corrupt gzip member"},
            "corrupt_member_offset": corrupt_at,
            "files": sorted(str(p) for p in folder.glob("*.warc.gz"))}
