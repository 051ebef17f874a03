"""One I/O layer for every input: local paths, object-store URIs (s3://, gs://, ... through
pyarrow.fs), http(s):// URLs (Range requests) and Common Crawl path manifests (warc.paths.gz).

    open_input(path, io)          a seekable binary file (pyarrow NativeFile API: read, read_at,
                                  seek, tell, size, close), transient errors retried
    expand_inputs(patterns, ...)  globs, folders, single files and manifests -> WARC locations
    read_manifest(uri, base)      a Common Crawl `*.paths(.gz)` manifest -> WARC locations, in order

Retries (`IOOptions`, set from the `reader` config section): on S3 the AWS SDK's standard retry
strategy with `retries + 1` attempts (its own exponential backoff with jitter: throttling / SlowDown,
5xx, resets, timeouts); over HTTP(S) `HttpFile` retries a failed request for the same byte range,
waiting `retry_backoff * 2**n` seconds (x0.5..1.5 jitter, at most 60 s, longer when the server asks with
Retry-After); a 404 / 410 is not retried and raises FileNotFoundError naming the URL. S3 endpoint,
region and credentials come from the standard AWS environment variables and profiles
(AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL included); nothing here prints or records them.
"""
from __future__ import annotations

import glob
import gzip
import http.client
import io as _io
import os
import posixpath
import random
import re
import ssl
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Iterable

import pyarrow.fs as pafs

DEFAULT_CC_BASE = "https://data.commoncrawl.org/"
MANIFEST_SUFFIXES = (".paths.gz", ".paths")


@dataclass(frozen=True)
class IOOptions:
    """How inputs are opened; `ReaderConfig.io` builds one from the `reader` config section."""
    retries: int = 5              # retries after the first try of a request (0: no retry)
    retry_backoff: float = 1.0    # seconds before the first HTTP retry; doubles per retry (jitter)
    s3_anonymous: bool = False    # unsigned S3 requests (public buckets), no credential lookup

    def __post_init__(self):
        if isinstance(self.retries, bool) or not isinstance(self.retries, int) or self.retries < 0:
            raise ValueError(f"retries must be an integer >= 0, got {self.retries!r}")
        if (isinstance(self.retry_backoff, bool) or not isinstance(self.retry_backoff, (int, float))
                or not 0 <= self.retry_backoff <= 600):
            raise ValueError(f"retry_backoff must be a number of seconds in 0..600, got {self.retry_backoff!r}")


def is_uri(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def is_http(path: str) -> bool:
    return path[:8].lower().startswith(("http://", "https://"))


def resolve(path: str, io: IOOptions | None = None) -> tuple[pafs.FileSystem, str]:
    """The filesystem and the path within it, for a local path or a URI (not http(s)).

    With `io`, an S3 filesystem gets its retry strategy and anonymity (everything else - region,
    endpoint, credentials - as `FileSystem.from_uri` resolves it); without, from_uri's defaults."""
    if path.startswith("file://"):
        path = path[len("file://"):]
    if is_http(path):
        raise ValueError(f"{path!r}: http(s) URLs have no filesystem here; open them with open_input")
    if is_uri(path):
        fs, p = pafs.FileSystem.from_uri(path)
        if io is not None and isinstance(fs, pafs.S3FileSystem):
            fs = _s3_with(fs, io)
        return fs, p
    return pafs.LocalFileSystem(), os.path.abspath(path)


def _s3_with(fs: pafs.S3FileSystem, io: IOOptions) -> pafs.S3FileSystem:
    """`fs` rebuilt with `io`'s retries and anonymity. The options come from pyarrow's own pickling
    support (`__reduce__`), so the region, endpoint (AWS_ENDPOINT_URL_S3) and the rest are exactly
    what from_uri resolved; no credential is read here (explicit keys are never in a from_uri fs)."""
    _, (kwargs,) = fs.__reduce__()
    kwargs = dict(kwargs)
    if not (kwargs.get("proxy_options") or {}).get("scheme"):
        kwargs.pop("proxy_options", None)
    kwargs["retry_strategy"] = pafs.AwsStandardS3RetryStrategy(max_attempts=io.retries + 1)
    if io.s3_anonymous:
        kwargs.update(anonymous=True, access_key=None, secret_key=None, session_token=None,
                      role_arn=None)
    return pafs.S3FileSystem(**kwargs)


def open_input(path: str, io: IOOptions | None = None):
    """A seekable binary file for reading (local, object store or http(s)), with the pyarrow
    NativeFile methods the readers use (read, read_at, seek, tell, size, close).

    Transient errors are retried as `io` says (default `IOOptions()`); a missing file raises
    FileNotFoundError (http(s): 404/410) or pyarrow's OSError naming it."""
    io = io or IOOptions()
    if is_http(path):
        return HttpFile(path, io)
    fs, p = resolve(path, io)
    return fs.open_input_file(p)


# -------------------------------------------------------------------------------------------------
# HTTP(S): a seekable file over Range requests
# -------------------------------------------------------------------------------------------------

HTTP_TIMEOUT = 60.0          # seconds: connect, and each socket read
HTTP_FIRST_BLOCK = 64 << 10  # the first request (it also learns the size): small, as side handles read little
HTTP_BLOCK = 8 << 20         # bytes per request while reading on: one WARC of 1 GB = ~128 requests
HTTP_MAX_REQUEST = 64 << 20  # a larger read() is split into requests of this size (each retried alone)
MAX_RETRY_WAIT = 60.0
USER_AGENT = "interleaf/0.1 (WARC reader; Python-urllib)"
_TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)", re.I)


class _Transient(Exception):
    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class HttpFile(_io.RawIOBase):
    """Read-only, seekable file over HTTP(S) Range requests (standard library only).

    Sequential reads fetch `HTTP_BLOCK` bytes per request and keep only that block in memory, so a
    1 GB WARC streams in ~8 MB pieces; `read_at` fetches exactly the bytes asked for (unless they
    are in the block held). Every request asks for a byte range; a server that ignores Range is
    served only if the whole file fits in the first block. Each request is retried on transient
    failures (429, 5xx, 408, resets, timeouts, truncated bodies) for the same range; 404/410 raise
    FileNotFoundError naming the URL; other statuses raise OSError. `retried` counts the retries.
    Proxies (HTTP(S)_PROXY, NO_PROXY) and redirects are urllib's.
    """

    def __init__(self, url: str, io: IOOptions | None = None):
        super().__init__()
        self.url = url
        self.io = io or IOOptions()
        self.retried = 0
        self._pos = 0
        self._buf = b""
        self._buf_start = 0
        self._size = -1
        self._buf = self._get(0, HTTP_FIRST_BLOCK)  # learns the size; FileNotFoundError here
        if self._size < 0:
            raise OSError(f"{url}: the server gives no file size (Content-Range bytes a-b/*)")

    # -- NativeFile-like API -----------------------------------------------------------------------
    def size(self) -> int:
        return self._size

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self._size}.get(whence)
        if base is None:
            raise ValueError(f"invalid whence {whence!r}")
        pos = base + offset
        if pos < 0:
            raise ValueError(f"negative seek position {pos}")
        self._pos = pos
        return pos

    def read(self, n: int = -1) -> bytes:
        self._check_open()
        if n is None or n < 0:
            n = self._size - self._pos
        n = min(n, max(self._size - self._pos, 0))
        if n <= 0:
            return b""
        out = []
        while n > 0:
            rel = self._pos - self._buf_start
            if not 0 <= rel < len(self._buf):
                start = self._pos
                self._buf = b""  # drop the old block before fetching the next
                self._buf = self._get(start, max(min(n, HTTP_MAX_REQUEST), HTTP_BLOCK))
                self._buf_start, rel = start, 0
                if not self._buf:
                    break
            piece = self._buf[rel:rel + n]
            out.append(piece)
            self._pos += len(piece)
            n -= len(piece)
        return out[0] if len(out) == 1 else b"".join(out)

    def readinto(self, b) -> int:
        data = self.read(len(b))
        b[:len(data)] = data
        return len(data)

    def readall(self) -> bytes:
        return self.read(-1)

    def read_at(self, n: int, offset: int) -> bytes:
        """`n` bytes at `offset` (fewer at the end of the file); the position is not moved."""
        self._check_open()
        n = min(n, max(self._size - offset, 0))
        if n <= 0:
            return b""
        rel = offset - self._buf_start
        if 0 <= rel and rel + n <= len(self._buf):
            return self._buf[rel:rel + n]
        return self._get(offset, n)

    def close(self) -> None:
        self._buf = b""
        super().close()

    def _check_open(self):
        if self.closed:
            raise ValueError(f"I/O operation on closed file {self.url}")

    # -- requests ----------------------------------------------------------------------------------
    def _get(self, start: int, n: int) -> bytes:
        """Bytes [start, start + n) (fewer at the end of the file), retried on transient errors."""
        attempt = 0
        while True:
            try:
                return self._request(start, n)
            except _Transient as e:
                if attempt >= self.io.retries:
                    raise OSError(f"{self.url}: {e} (bytes {start}-{start + n - 1}; gave up after "
                                  f"{attempt + 1} tries)") from e
                attempt += 1
                self.retried += 1
                wait = self.io.retry_backoff * 2 ** (attempt - 1) * random.uniform(0.5, 1.5)
                if e.retry_after is not None:
                    wait = max(wait, e.retry_after)
                time.sleep(min(wait, MAX_RETRY_WAIT))

    def _request(self, start: int, n: int) -> bytes:
        req = urllib.request.Request(self.url, headers={
            "Range": f"bytes={start}-{start + n - 1}", "Accept-Encoding": "identity",
            "User-Agent": USER_AGENT})
        try:
            with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT) as r:
                status = r.status
                if status == 206:
                    m = _CONTENT_RANGE.match(r.headers.get("Content-Range") or "")
                    if not m or int(m.group(1)) != start:
                        raise OSError(f"{self.url}: bad Content-Range {r.headers.get('Content-Range')!r} "
                                      f"for bytes={start}-{start + n - 1}")
                    if m.group(3) != "*":
                        self._size = int(m.group(3))
                    want = int(m.group(2)) - start + 1
                    data = r.read(want)
                    if len(data) < want:
                        raise _Transient(f"body cut at {len(data)} of {want} bytes")
                    return data
                if status == 200:
                    # Range ignored: the whole file. Usable only when it fits in the first block.
                    length = r.headers.get("Content-Length")
                    if length is None or int(length) > HTTP_FIRST_BLOCK:
                        raise OSError(f"{self.url}: the server ignores Range requests (HTTP 200 for "
                                      f"bytes={start}-{start + n - 1}); cannot stream this file")
                    data = r.read()
                    if len(data) < int(length):
                        raise _Transient(f"body cut at {len(data)} of {length} bytes")
                    self._size = len(data)
                    return data[start:start + n]
                raise OSError(f"{self.url}: unexpected HTTP {status}")
        except urllib.error.HTTPError as e:
            code = e.code
            retry_after = _retry_after(e.headers.get("Retry-After") if e.headers else None)
            e.close()
            if code in (404, 410):
                raise FileNotFoundError(f"{self.url}: HTTP {code} (not found)") from None
            if code == 416:  # the range starts at or after the end of the file
                m = re.search(r"/(\d+)", e.headers.get("Content-Range") or "") if e.headers else None
                if m:
                    self._size = int(m.group(1))
                elif start == 0:
                    self._size = 0  # an empty file
                return b""
            if code in _TRANSIENT_STATUS or code >= 500:
                raise _Transient(f"HTTP {code} {e.reason}", retry_after) from None
            raise OSError(f"{self.url}: HTTP {code} {e.reason}") from None
        except urllib.error.URLError as e:
            reason = e.reason
            if isinstance(reason, (ssl.SSLCertVerificationError, ValueError)) or not isinstance(reason, OSError):
                raise OSError(f"{self.url}: {reason}") from None
            raise _Transient(f"{type(reason).__name__}: {reason}") from None
        except (ConnectionError, TimeoutError, http.client.HTTPException) as e:
            # resets, timeouts, RemoteDisconnected / IncompleteRead / BadStatusLine
            raise _Transient(f"{type(e).__name__}: {e}") from None
        except ssl.SSLError as e:  # a TLS record cut by a reset
            raise _Transient(f"{type(e).__name__}: {e}") from None


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None  # an HTTP date: the backoff decides


# -------------------------------------------------------------------------------------------------
# Common Crawl manifests and input expansion
# -------------------------------------------------------------------------------------------------

def is_manifest(path: str) -> bool:
    return path.lower().endswith(MANIFEST_SUFFIXES)


def read_manifest(uri: str, base: str = DEFAULT_CC_BASE, io: IOOptions | None = None) -> list[str]:
    """The WARC locations a Common Crawl manifest (`warc.paths.gz`: gzip or plain text, local, s3://
    or http(s)://) lists, in its order, without duplicates. Each line is a path relative to the crawl
    bucket (`crawl-data/CC-MAIN-.../warc/....warc.gz`) and gets `base` in front (a URL prefix such
    as https://data.commoncrawl.org/ or s3://commoncrawl/, or a local folder); lines that are
    already URIs or absolute paths are kept; blank lines and `#` comments are skipped."""
    with open_input(uri, io) as f:
        data = f.read()
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as e:
            raise ValueError(f"manifest {uri!r} is not valid gzip: {e}") from e
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"manifest {uri!r} is not a text file of paths: {e}") from e
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        out.append(_with_base(line, base))
    return list(dict.fromkeys(out))


def _with_base(line: str, base: str) -> str:
    if not (is_uri(line) or line.startswith("file://") or os.path.isabs(line)):
        line = base.rstrip("/") + "/" + line.lstrip("/") if base else line
    if line.startswith("file://"):
        line = line[len("file://"):]
    return line if is_uri(line) else os.path.abspath(line)


def expand_inputs(patterns: Iterable[str], cc_base: str = DEFAULT_CC_BASE,
                  io: IOOptions | None = None) -> list[str]:
    """Expand the inputs into a de-duplicated list of WARC locations.

    Each pattern is a WARC file, a glob, a folder (every WARC below it; local or object store), an
    http(s) URL of one WARC, or a Common Crawl manifest (`*.paths.gz` / `*.paths`, local, s3:// or
    http(s)://) whose lines get `cc_base` in front (`read_manifest`). Without manifests the list is
    sorted (as always); with one, the patterns' results follow each other in the order given - a
    glob's or folder's files sorted, a manifest's in its own order (the order nightly runs take
    WARCs in) - and a location listed twice stays at its first place.
    A pattern that matches nothing (a missing file, object or URL - http(s) URLs are checked with
    one small ranged GET -, a missing or empty manifest) is an error naming it (a typo must not
    make an empty run); the WARCs a manifest lists are not checked here (a missing one is an
    `unreadable_warc` of the run). Globs over http(s) are errors (there is no listing).
    """
    out: list[str] = []
    ordered = False
    for pat in patterns:
        if is_manifest(pat) and not any(c in pat for c in _GLOB_CHARS):
            ordered = True
            try:
                hits = read_manifest(pat, cc_base, io)
            except FileNotFoundError as e:
                raise FileNotFoundError(f"input {pat!r}: manifest not found ({e})") from e
            except OSError as e:
                if _missing(e):
                    raise FileNotFoundError(f"input {pat!r}: manifest not found ({e})") from e
                raise
            if not hits:
                raise FileNotFoundError(f"input {pat!r}: the manifest lists no file")
            out.extend(hits)
            continue
        if is_http(pat):
            if any(c in pat.split("?", 1)[0] for c in _GLOB_CHARS):
                raise ValueError(f"input {pat!r}: globs are not supported over http(s) (no listing); "
                                 "give the URLs one by one or a manifest (*.paths.gz)")
            try:  # one small ranged GET: a wrong URL fails here, not on the cluster
                open_input(pat, io).close()
                hits = [pat]
            except FileNotFoundError:
                hits = []
        elif is_uri(pat):
            hits = sorted(_expand_uri(pat, io))
        else:
            if os.path.isdir(pat):
                hits = [os.path.join(dp, f) for dp, _, fs_ in os.walk(pat) for f in fs_ if _is_warc(f)]
            else:
                hits = [h for h in glob.glob(pat, recursive=True) if os.path.isfile(h)]
            hits = sorted(os.path.abspath(h) for h in hits)
        if not hits:
            raise FileNotFoundError(f"input {pat!r} matches no file")
        out.extend(hits)
    if not ordered:
        return sorted(dict.fromkeys(out))
    return list(dict.fromkeys(out))


def _missing(e: OSError) -> bool:
    """pyarrow reports a missing S3 object / bucket as OSError with these words."""
    msg = str(e)
    return "Path does not exist" in msg or "NoSuchKey" in msg or "NoSuchBucket" in msg or "404" in msg


def _expand_uri(pat: str, io: IOOptions | None = None) -> list[str]:
    """Object-store counterpart of the local branch: a glob (with local `glob` semantics: `*`, `?`
    and `[...]` stay within one path segment, `**` spans any number), a folder (every WARC below it)
    or one object."""
    scheme, rest = pat.split("://", 1)
    if not any(c in rest for c in _GLOB_CHARS):
        fs, p = resolve(pat, io)
        info = fs.get_file_info(p)
        if info.type == pafs.FileType.File:
            return [pat]
        if info.type != pafs.FileType.Directory:
            return []
        infos = fs.get_file_info(pafs.FileSelector(p, recursive=True))
        return [f"{scheme}://{i.path}" for i in infos if i.type == pafs.FileType.File and _is_warc(i.path)]
    # `?` and `[` are not valid in a URI path (pyarrow reads `?` as the query string and rejects
    # `[`), so only the bucket goes through URI parsing; the key pattern is matched here.
    bucket, _, key_pat = rest.partition("/")
    if any(c in bucket for c in _GLOB_CHARS):
        raise FileNotFoundError(f"input {pat!r}: a bucket name cannot be a pattern")
    parts = key_pat.split("/")
    fixed = next(n for n, part in enumerate(parts) if any(c in part for c in _GLOB_CHARS))
    fs, root = resolve(f"{scheme}://{bucket}", io)
    base = posixpath.join(root, *parts[:fixed])
    rx = _glob_regex(posixpath.join(root, key_pat))
    try:
        infos = fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
    except OSError as e:  # e.g. the bucket does not exist
        raise FileNotFoundError(f"input {pat!r} matches no file: {e}") from e
    return [f"{scheme}://{i.path}" for i in infos
            if i.type == pafs.FileType.File and rx.fullmatch(i.path)]


_GLOB_CHARS = "*?["


def _glob_regex(pattern: str) -> re.Pattern:
    """A regex for `pattern` with the semantics of `glob.glob(pattern, recursive=True)`:
    `*`, `?` and `[...]` match within one segment, a `**` segment matches any number of them."""
    out = []
    parts = pattern.split("/")
    for n, part in enumerate(parts):
        last = n == len(parts) - 1
        if part == "**":
            out.append(".*" if last else "(?:[^/]*/)*")
            continue
        i = 0
        while i < len(part):
            c = part[i]
            i += 1
            if c == "*":
                out.append("[^/]*")
            elif c == "?":
                out.append("[^/]")
            elif c == "[":
                j = i + (part[i:i + 1] == "!")
                j += part[j:j + 1] == "]"
                j = part.find("]", j)
                if j < 0:
                    out.append(re.escape(c))
                    continue
                body, i = part[i:j], j + 1
                neg = body.startswith("!")
                body = (body[1:] if neg else body).replace("\\", "\\\\").replace("[", "\\[")
                if body.startswith("^"):
                    body = "\\" + body
                out.append("[^" + body + "/]" if neg else "[" + body + "]")
            else:
                out.append(re.escape(c))
        if not last:
            out.append("/")
    return re.compile("".join(out))


def _is_warc(name: str) -> bool:
    return name.endswith((".warc", ".warc.gz", ".arc", ".arc.gz"))
