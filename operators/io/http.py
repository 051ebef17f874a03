"""HTTP payload helpers for the WARC reader: header parsing, de-chunking, content decoding,
HTML sniffing and charset resolution. Pure Python + C codecs, no Ray, no FastWARC.

Everything here works on bytes that came out of a WARC record block and never raises on bad
input: a step that cannot make sense of its input returns None (or the input unchanged) and the
caller decides what to count.
"""
from __future__ import annotations

import codecs
import re
import zlib

import brotli
from resiliparse.parse.encoding import detect_encoding, map_encoding_to_html5

# ---------------------------------------------------------------------------------------------
# HTTP header block
# ---------------------------------------------------------------------------------------------

MAX_HEADER_BYTES = 64 << 10
_STATUS = re.compile(r"HTTP/[\d.]*\s*(\d{3})(?!\d)", re.I)


class HttpMessage:
    """A parsed HTTP response: status (or None), lower-cased header dict, raw body bytes."""

    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int | None, headers: dict[str, str], body: bytes):
        self.status = status
        self.headers = headers
        self.body = body


def parse_http_response(block: bytes) -> HttpMessage | None:
    """Split an `application/http` record block into status, headers and body.

    Accepts CRLF or bare-LF line ends. Returns None when the block has no recognisable
    `HTTP/x.y NNN` status line or no end of header (the caller counts `bad_http`). Repeated
    headers are joined with ', ' (Set-Cookie is irrelevant here).
    """
    if not block.startswith((b"HTTP/", b"http/")):
        return None
    end = block.find(b"\r\n\r\n", 0, MAX_HEADER_BYTES)
    sep = 4
    lf = block.find(b"\n\n", 0, MAX_HEADER_BYTES if end == -1 else end)
    if lf != -1 and (end == -1 or lf < end):
        end, sep = lf, 2
    if end == -1:
        # Headers only, no body (e.g. a 304 or a HEAD-like capture) - or garbage.
        if len(block) < MAX_HEADER_BYTES and block.rstrip().count(b"\n") < 200:
            end, sep = len(block), 0
        else:
            return None
    head = block[:end].decode("latin-1")
    lines = head.split("\n")
    m = _STATUS.match(lines[0])
    if m is None:
        return None
    status = int(m.group(1))
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon:
            continue  # obs-fold continuation or junk: irrelevant for the fields we read
        name = name.strip().lower()
        value = value.strip()
        if name in headers:
            headers[name] = headers[name] + ", " + value
        else:
            headers[name] = value
    return HttpMessage(status, headers, block[end + sep:])


def split_content_type(value: str | None) -> tuple[str | None, str | None]:
    """`text/html; charset=UTF-8` -> ('text/html', 'UTF-8'). Unparseable MIME -> None."""
    if not value:
        return None, None
    mime, _, params = value.partition(";")
    mime = mime.strip().lower()
    if "/" not in mime or " " in mime:
        mime = None
    charset = None
    if params:
        m = _CHARSET_PARAM.search(params)
        if m:
            charset = m.group(1).strip("\"' ")
    return mime or None, charset or None


_CHARSET_PARAM = re.compile(r"charset\s*=\s*[\"']?\s*([^\"';,\s]+)", re.I)

# ---------------------------------------------------------------------------------------------
# Transfer- and content-encoding
# ---------------------------------------------------------------------------------------------

_HEX = frozenset(b"0123456789abcdefABCDEF")


def dechunk(body: bytes) -> bytes | None:
    """Decode a `Transfer-Encoding: chunked` body; None when it is not validly chunked.

    A body that simply ends early (no terminating 0-chunk, or a last chunk cut short: a
    truncated capture) is accepted with what it has. A size line that is not hex, or a chunk
    not followed by CRLF (wrong chunk sizes), returns None so the caller keeps the raw body.
    """
    out = []
    pos = 0
    n = len(body)
    while pos < n:
        eol = body.find(b"\n", pos, pos + 1024)
        if eol == -1:
            if not out:
                return None
            break  # cut inside a size line
        line = body[pos:eol].strip()
        size_txt = line.split(b";", 1)[0].strip()
        if not size_txt or not _HEX.issuperset(size_txt):
            return None
        size = int(size_txt, 16)
        start = eol + 1
        if size == 0:
            break
        stop = start + size
        if stop >= n:  # truncated inside the last chunk
            out.append(body[start:stop])
            break
        out.append(body[start:stop])
        if body.startswith(b"\r\n", stop):
            pos = stop + 2
        elif body.startswith(b"\n", stop):
            pos = stop + 1
        else:
            return None  # chunk size does not match the data
    else:
        if not out:
            return None
    return b"".join(out)


def looks_chunked(body: bytes) -> bool:
    """Cheap test: the body starts with a hex size line."""
    eol = body.find(b"\n", 0, 32)
    if eol <= 0:
        return False
    size_txt = body[:eol].strip().split(b";", 1)[0].strip()
    return bool(size_txt) and _HEX.issuperset(size_txt)


def _inflate(data: bytes, wbits: int, limit: int) -> bytes | None:
    """Inflate tolerating a missing trailer (truncated capture); None on a data error or when
    nothing came out."""
    try:
        d = zlib.decompressobj(wbits)
        out = d.decompress(data, limit)
        if not d.eof and not d.unconsumed_tail:
            out += d.flush()
    except zlib.error:
        return None
    return out or None


def decode_content(body: bytes, encoding: str | None, limit: int) -> tuple[bytes | None, bool]:
    """Undo `Content-Encoding`, trusting magic bytes over the header.

    Returns (decoded, ok). `ok` is False when the body claimed or looked encoded and could not
    be decoded; `decoded` is then None. A header naming an encoding whose magic bytes are absent
    (Common Crawl stores payloads already decoded but keeps the header) returns the body as is.
    At most `limit` bytes are produced, for every encoding (a decompression bomb is cut there,
    never produced whole and cut afterwards); chunked transfer coding (`dechunk`) only shrinks.
    """
    enc = (encoding or "").strip().lower()
    if body[:2] == b"\x1f\x8b":  # gzip, whatever the header says
        out = _inflate(body, 16 + zlib.MAX_WBITS, limit)
        return (out, True) if out is not None else (None, False)
    if not enc or enc == "identity":
        return body, True
    if "gzip" in enc or "deflate" in enc:
        if "deflate" in enc:
            # zlib-wrapped (RFC 1950, what the spec says) or raw deflate (what IIS sends).
            if len(body) >= 2 and body[0] & 0x0F == 8 and (body[0] << 8 | body[1]) % 31 == 0:
                out = _inflate(body, zlib.MAX_WBITS, limit)
                if out is not None:
                    return out, True
            if _looks_texty(body):
                return body, True  # already decoded
            out = _inflate(body, -zlib.MAX_WBITS, limit)
            return (out, True) if out is not None else (None, False)
        return body, True  # 'gzip' without the magic: already decoded
    if enc in ("br", "brotli"):
        if _looks_texty(body):
            return body, True
        try:   # the output buffer stops growing at `limit`: a bomb is cut before it is produced
            out = brotli.Decompressor().process(body, output_buffer_limit=limit)
        except brotli.error:
            return None, False
        return (out[:limit], True) if out else (None, False)
    if enc == "zstd":
        if _looks_texty(body):
            return body, True
        import zstandard
        try:   # read at most `limit` bytes: the frames are decoded as far as that, no further
            with zstandard.ZstdDecompressor().stream_reader(body, read_across_frames=True) as reader:
                out = reader.read(limit)
        except zstandard.ZstdError:
            return None, False
        return (out, True) if out else (None, False)
    # compress, sdch, x-gzip variants handled above; anything else: keep as is when it looks
    # like text, else report failure.
    if _looks_texty(body):
        return body, True
    return None, False


def _looks_texty(data: bytes) -> bool:
    """The first bytes look like markup or text (no NULs, mostly printable)."""
    head = data[:256]
    if not head:
        return True
    if b"\x00" in head:
        return False
    stripped = head.lstrip()
    if stripped.startswith(b"<"):
        return True
    bad = sum(1 for b in head if b < 9 or 13 < b < 32)
    return bad <= len(head) // 50


# ---------------------------------------------------------------------------------------------
# HTML sniffing
# ---------------------------------------------------------------------------------------------

HTML_MIMES = frozenset({"text/html", "application/xhtml+xml", "application/vnd.wap.xhtml+xml"})
# Declared types that say little about the payload: sniff these (and an absent one).
SNIFF_MIMES = frozenset({
    "application/octet-stream", "binary/octet-stream", "application/unknown", "unknown/unknown",
    "application/x-unknown", "application/x-unknown-content-type", "text/plain", "text/xml",
    "application/xml", "application/download", "application/force-download", "*/*",
    "application/binary", "text/x-unknown", "text/unknown", "application/x-download",
})
_BINARY_MAGIC = (b"%PDF", b"\x89PNG", b"GIF8", b"\xff\xd8\xff", b"PK\x03\x04", b"RIFF",
                 b"\x00\x00\x01\x00", b"wOFF", b"wOF2", b"OggS", b"ID3", b"\x1a\x45\xdf\xa3",
                 b"BM", b"%!PS", b"\xd0\xcf\x11\xe0")
_HTML_START = re.compile(
    rb"<(?:!doctype\s+html|html|head|body|title|meta|script|iframe|h1|div|font|table|a|style|b|"
    rb"br|p|link|!--)(?=[\s>/]|-)", re.I)
_SKIP_PROLOG = re.compile(rb"(?:\s+|<\?xml[^>]*>|<!--.*?-->)*", re.S)


def has_binary_magic(data: bytes) -> bool:
    return data.startswith(_BINARY_MAGIC)


def sniff_html(data: bytes) -> bool:
    """Does the payload start like an HTML document? (WHATWG-style sniff on the first bytes,
    after whitespace, a BOM, an XML declaration and comments.)"""
    head = data[:2048]
    if head.startswith(b"\xef\xbb\xbf"):
        head = head[3:]
    elif head[:2] in (b"\xff\xfe", b"\xfe\xff"):
        try:
            head = head.decode("utf-16").encode("utf-8", "replace")
        except UnicodeDecodeError:
            return False
    m = _SKIP_PROLOG.match(head)
    rest = head[m.end():] if m else head
    if _HTML_START.match(rest):
        return True
    # A document that starts with prose but contains an <html> / <body> tag early on.
    low = head[:1024].lower()
    return b"<html" in low or b"<body" in low or b"<!doctype html" in low


# ---------------------------------------------------------------------------------------------
# Charsets
# ---------------------------------------------------------------------------------------------

# What browsers actually use for a label (superset codecs), keyed by Python codec name.
_SUPERSETS = {
    "shift_jis": "cp932", "euc_kr": "cp949", "gb2312": "gbk", "big5": "big5hkscs",
    "iso8859-1": "cp1252", "latin-1": "cp1252", "ascii": "cp1252", "iso8859-9": "cp1254",
    "iso8859-11": "cp874", "tis-620": "cp874", "utf-16-le": "utf-16-le", "utf-16-be": "utf-16-be",
}
_charset_cache: dict[str, str | None] = {}


def normalize_charset(label: str | bytes | None) -> str | None:
    """A usable Python codec name for a charset label (WHATWG mapping, e.g. latin-1 and
    iso-8859-1 -> cp1252, utf8 -> utf-8, shift_jis -> cp932), or None for a bogus label."""
    if not label:
        return None
    if isinstance(label, bytes):
        label = label.decode("ascii", "ignore")
    key = label.strip().strip("\"'").strip().lower()
    if key in _charset_cache:
        return _charset_cache[key]
    name = None
    if key and len(key) < 40:
        try:
            name = map_encoding_to_html5(key, fallback_utf8=False)
        except Exception:  # noqa: BLE001 - resiliparse may raise on odd input
            name = None
        if name is None:
            try:
                name = codecs.lookup(key).name
                name = map_encoding_to_html5(name, fallback_utf8=False) or name
            except (LookupError, Exception):  # noqa: BLE001
                name = None
        if name is not None:
            try:
                info = codecs.lookup(name)
                name = info.name
                if not _is_text_codec(info):
                    name = None
            except LookupError:
                name = None
        if name is not None:
            name = _SUPERSETS.get(name, name)
            if name in ("utf_8", "utf8"):
                name = "utf-8"
    if len(_charset_cache) < 10_000:
        _charset_cache[key] = name
    return name


def _is_text_codec(info: codecs.CodecInfo) -> bool:
    # Exclude bytes->bytes codecs (base64, zlib, rot13 ...) that codecs.lookup also knows.
    return getattr(info, "_is_text_encoding", True)


_META_CHARSET = re.compile(rb"""<meta[^>]+?charset\s*=\s*["']?\s*([a-zA-Z0-9_:.+-]+)""", re.I)


def meta_charset(head: bytes) -> str | None:
    """Charset declared by `<meta charset>` or `<meta http-equiv=content-type content=...>` in
    the given bytes (the caller passes the first ~4 KB)."""
    m = _META_CHARSET.search(head)
    return m.group(1).decode("ascii", "ignore") if m else None


_ASCII_PROBE = "".join(map(chr, range(32, 127))) + "\t\r\n"
_ascii_compat: dict[str, bool] = {}


def _ascii_compatible(codec: str) -> bool:
    """Does the codec decode ASCII bytes as ASCII? (Not EBCDIC, UTF-16/32, UTF-7 ...)"""
    ok = _ascii_compat.get(codec)
    if ok is None:
        try:
            ok = _ASCII_PROBE.encode("ascii").decode(codec) == _ASCII_PROBE
        except (UnicodeDecodeError, LookupError):
            ok = False
        _ascii_compat[codec] = ok
    return ok


_BOMS = ((b"\xef\xbb\xbf", "utf-8", 3), (b"\xff\xfe", "utf-16-le", 2), (b"\xfe\xff", "utf-16-be", 2))


def decode_html(body: bytes, header_charset: str | None) -> tuple[str, str]:
    """Decode an HTML payload; returns (text, codec used).

    Order: a BOM (unambiguous; wins, as in browsers), then the HTTP header charset, then the
    `<meta charset>` / `<meta http-equiv=content-type>` charset in the first 4 KB, then
    detection (strict UTF-8, then resiliparse's uchardet-based `detect_encoding`).
    A declared charset the bytes do not decode with falls through to the next step; a bogus
    label is ignored, and so is a UTF-16 label (header or `<meta>`) on bytes that cannot be
    UTF-16 (no NUL where markup would have one every other byte). One deliberate exception to
    "declaration first": a payload that is valid
    UTF-8 *and* contains non-ASCII bytes is decoded as UTF-8 even when a legacy single/multi-byte
    charset is declared - random legacy text is practically never valid UTF-8, whereas UTF-8
    pages labelled latin-1/windows-1252 are common on the web. The final decode uses
    errors='replace', so it never fails.
    """
    for bom, codec, n in _BOMS:
        if body.startswith(bom):
            return body[n:].decode(codec, "replace"), codec
    declared = []
    cs = normalize_charset(header_charset)
    if cs and cs.startswith("utf-16") and b"\x00" not in body[:1024]:
        cs = None   # a UTF-16 label on bytes without a NUL: single-byte text (UTF-16 markup is half NULs)
    if cs:
        declared.append(cs)
    cs = normalize_charset(meta_charset(body[:4096]))
    if cs and cs not in declared:
        # A <meta> readable as ASCII cannot be inside a UTF-16 stream: browsers use UTF-8.
        declared.append("utf-8" if cs.startswith("utf-16") else cs)
    if not declared or not declared[0].startswith(("utf-16", "utf-7")):
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            # Nothing declared, UTF-8 declared, or non-ASCII bytes that form valid UTF-8.
            if not declared or declared[0] == "utf-8" or len(text) != len(body):
                return text, "utf-8"
            if _ascii_compatible(declared[0]):
                return text, declared[0]  # pure ASCII: same text, no second decode
    for codec in declared:
        try:
            return body.decode(codec), codec
        except (UnicodeDecodeError, LookupError):
            continue
    detected = None
    try:
        detected = normalize_charset(detect_encoding(body[:65536]))
    except Exception:  # noqa: BLE001 - never let detection kill a record
        detected = None
    if detected and detected != "utf-8":
        try:
            return body.decode(detected), detected
        except (UnicodeDecodeError, LookupError):
            pass
    # Nothing decodes cleanly: trust the declaration, else the detector, else UTF-8, lossy.
    codec = declared[0] if declared else (detected or "utf-8")
    return body.decode(codec, "replace"), codec
