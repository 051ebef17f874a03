"""WARC reader: one dict per HTML page in a WARC file, with exact byte provenance.

Design, definitions and the measurements behind them: docs/warc-reader.md.
"""
from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from datetime import timezone
from typing import Iterator

from fastwarc.warc import ArchiveIterator, WarcRecordType

from operators.io import http as H
from operators.stats import Stats
from operators.io.storage import DEFAULT_CC_BASE, IOOptions, is_uri, open_input

__all__ = ["ReaderConfig", "iter_html_records", "iter_image_records"]


@dataclass(frozen=True)
class ReaderConfig:
    max_payload_bytes: int = 20_000_000  # larger payloads: skipped, counted (dropped_too_large)
    sniff: bool = True  # sniff HTML when Content-Type is absent or uninformative
    # Inputs (operators/io/storage.py). cc_base: prefix of the relative paths in a Common Crawl
    # manifest (warc.paths.gz): https://data.commoncrawl.org/, s3://commoncrawl/, a mirror or a folder.
    cc_base: str = DEFAULT_CC_BASE
    s3_anonymous: bool = False  # unsigned S3 requests (public buckets), no credential lookup
    retries: int = 5            # retries of a failed request (throttling, 5xx, resets, timeouts)
    retry_backoff: float = 1.0  # seconds before the first HTTP retry, doubling (S3: the AWS SDK's backoff)
    concurrency: int | None = None  # most WARC spans read at once across the cluster; None = 2 per CPU

    def __post_init__(self):
        try:
            self.io  # noqa: B018 - validates retries and retry_backoff
        except ValueError as e:
            raise ValueError(f"reader.{e}") from None
        if not isinstance(self.cc_base, str) or not self.cc_base.strip() or self.cc_base != self.cc_base.strip():
            raise ValueError(f"reader.cc_base must be a non-empty URL or folder without surrounding spaces, "
                             f"got {self.cc_base!r}")
        if self.concurrency is not None and (isinstance(self.concurrency, bool)
                                             or not isinstance(self.concurrency, int) or self.concurrency < 1):
            raise ValueError(f"reader.concurrency must be null (no limit) or an integer >= 1, "
                             f"got {self.concurrency!r}")

    @property
    def io(self) -> IOOptions:
        """How the reader opens its inputs (retries, S3 anonymity): for storage.open_input."""
        return IOOptions(retries=self.retries, retry_backoff=self.retry_backoff, s3_anonymous=self.s3_anonymous)


_RESPONSE = int(WarcRecordType.response)
_RESOURCE = int(WarcRecordType.resource)
_REVISIT = int(WarcRecordType.revisit)
_TYPE_NAMES = {int(getattr(WarcRecordType, n)): n for n in (
    "warcinfo", "response", "resource", "request", "metadata", "revisit", "conversion",
    "continuation")}
_TOP_TYPES = frozenset({"text", "image", "application", "audio", "video", "font", "multipart",
                        "message", "model"})
_DATE_OK = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
_URI_OK = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^/?#\s]+")
_GZIP_MAGIC = b"\x1f\x8b"
WARNING_KINDS = frozenset({"gzip_not_per_record", "record_refused"})   # kinds that leave a file read (not failed)


def failed_kinds(kinds) -> set[str]:
    """The error kinds among `kinds` that make a file failed (damaged or not read): not warnings."""
    return set(kinds) - WARNING_KINDS


def iter_html_records(path: str, config: ReaderConfig, stats: Stats) -> Iterator[dict]:
    """Yield one dict per HTML record of the WARC at `path` (local path or URI).

    Keys: url, warc_path, warc_record_offset, warc_record_length, warc_record_id, warc_date,
    payload_digest, http_status, content_type, charset, html. Never raises for damaged or
    unreadable input (see the module docstring for what is counted and recorded).
    """
    fh = _open(path, config, stats)
    if fh is None:
        return
    try:
        yield from _Reader(path, fh, config, stats).run()
    finally:
        _close(fh, stats)


def _open(path: str, config: ReaderConfig, stats: Stats):
    """The WARC opened through storage.open_input with the config's retries, or None after
    recording `unreadable_warc` (missing file, 404, permissions, bad URI, retries exhausted).
    A remote file is wrapped so that an I/O failure in the middle (retries exhausted) is told
    apart from damage: the file is then `unreadable_warc` (worth reading again: the ledger
    retries it), not `damaged_warc` (the same bytes would give the same result)."""
    try:
        fh = open_input(path, config.io)
    except Exception as e:  # noqa: BLE001 - anything: missing file, permissions, bad URI
        stats.error("unreadable_warc", file=path, error=_msg(e))
        return None
    return _IOTracked(fh) if is_uri(path) else fh


class _IOTracked:
    """A file that remembers the first exception its reads raised (`io_error`)."""

    def __init__(self, fh):
        self.fh = fh
        self.io_error: BaseException | None = None

    def _call(self, name: str, *args):
        try:
            return getattr(self.fh, name)(*args)
        except Exception as e:
            if self.io_error is None:
                self.io_error = e
            raise

    def read(self, *args):
        return self._call("read", *args)

    def read_at(self, *args):
        return self._call("read_at", *args)

    def seek(self, *args):
        return self._call("seek", *args)

    def __getattr__(self, name):
        return getattr(self.fh, name)


def _close(fh, stats: Stats) -> None:
    """Close `fh`, counting the retries an HTTP file made (`io_retries`)."""
    n = getattr(fh, "retried", 0)
    if n:
        stats.incr("io_retries", n)
    try:
        fh.close()
    except Exception:  # noqa: BLE001
        pass


class _Damage(Exception):
    def __init__(self, offset: int, message: str):
        super().__init__(message)
        self.offset = offset
        self.message = message


IMAGE_MARK = "_image"   # iter_records(with_images=True): the key that marks an image record's row


@dataclass
class Span:
    """A byte range of a WARC for one reading task: the records whose gzip member starts in
    [start, end). `exact`: `start` is a known member start; else reading begins at the first
    gzip member at or after it that holds a WARC record. The reader fills in `first` (where it
    began; None: no record there), `next` (the first record start at or after `end` it reached,
    else the file's size) and `whole` (the file cannot be split: uncompressed, or not one gzip
    member per record; the span at 0 then reads all of it and the others nothing). File-level
    errors (missing, empty, ARC) are recorded by the span at 0 only."""
    start: int = 0
    end: int | None = None
    exact: bool = False
    first: int | None = None
    next: int | None = None
    whole: bool = False


def iter_records(path: str, config: ReaderConfig, stats: Stats, with_images: bool = False,
                 span: Span | None = None) -> Iterator[dict]:
    """One pass over the WARC at `path` (or over its `span`): the rows of `iter_html_records`
    and, with `with_images`, those of `iter_image_records` for records whose Content-Type is
    image/* (marked with IMAGE_MARK: True), in file order. Counts and damage handling as in both."""
    span = span or Span()
    fh = _open(path, config, stats if span.start == 0 else Stats("read"))
    if fh is None:
        return
    try:
        yield from _Reader(path, fh, config, stats, images="both" if with_images else False, span=span).run()
    finally:
        _close(fh, stats)


def iter_image_records(path: str, config: ReaderConfig, stats: Stats) -> Iterator[dict]:
    """Yield one dict per image record (an image/* `response` or `resource` with a 2xx or no
    HTTP status whose bytes are an image by their magic) of the WARC at `path`: url, warc_path,
    warc_record_offset, warc_record_length, warc_record_id, warc_date, content_type, data (the
    decoded body). Browser-made archives keep the images a page showed; Common Crawl has none.
    Same damage handling and provenance as `iter_html_records`; counters: records, images,
    dropped not_image, image_http_status, ..."""
    fh = _open(path, config, stats)
    if fh is None:
        return
    try:
        yield from _Reader(path, fh, config, stats, images=True).run()
    finally:
        _close(fh, stats)


class _Reader:
    def __init__(self, path: str, fh, config: ReaderConfig, stats: Stats, images: bool = False,
                 span: Span | None = None):
        self.images = images  # True: image records instead of HTML pages; "both": each, image rows marked IMAGE_MARK
        self.span = span or Span()
        self.expected_size: int | None = None   # the current record's gzip member size if its header is right
        self.path = path
        self.fh = fh
        self.config = config
        self.stats = stats
        self.side = None  # second handle for the odd random read (member checks, damage offsets)
        self.check_every_member = not is_uri(path)  # cheap locally; remote: first records only

    # -- helpers -------------------------------------------------------------------------------
    def _side_read(self, offset: int, n: int) -> bytes:
        if self.side is None:
            self.side = open_input(self.path, self.config.io)
        return self.side.read_at(n, offset)

    def _close_side(self):
        if self.side is not None:
            _close(self.side, self.stats)
            self.side = None

    def _damage(self, offset: int, message: str, resume: bool = False):
        """Record damage at `offset`. With `resume` (a per-record gzip file), reading goes on at
        the next gzip member after it that holds a WARC record (`resume_at`), so that the good
        records after a corrupt member are not lost."""
        io_error = getattr(self.fh, "io_error", None)
        if io_error is not None:   # not damage: the store failed to serve the bytes (see _open)
            self.stats.error("unreadable_warc", file=self.path, offset=int(offset),
                             error=f"I/O failed in the middle of the file: {_msg(io_error)}")
            return
        nxt = self._next_member(offset + 1) if resume and self.is_gz else None
        if nxt is not None:
            self.resume_at = nxt
            message += f"; {nxt - offset} bytes skipped, reading resumes at the gzip member at {nxt}"
        self.stats.error("damaged_warc", file=self.path, offset=int(offset), error=message)

    def _check_member_size(self, end: int, start: int, row: dict | None, isize: bytes | None = None):
        """The row of the record whose gzip member is [start, end), or None when the member holds
        more than its WARC header declares (its ISIZE over header + Content-Length + CRLF CRLF,
        2 bytes of slack): the row would be cut short, so it is left out and the damage recorded."""
        isize = isize if isize is not None else self._side_read(end - 4, 4)
        if len(isize) != 4:
            return row
        extra = int.from_bytes(isize, "little") - self.expected_size
        if extra <= 2:
            return row
        if row is not None:
            self.stats.incr("images" if self.images is True or IMAGE_MARK in row else "html", -1)
        self.stats.error("damaged_warc", file=self.path, offset=int(start),
                         error=f"the record at {start} has {extra} bytes after its Content-Length in its gzip "
                               "member (Content-Length too short): left out")
        return None

    def _refused(self, reason: str, hdr, pos: int, why: str) -> None:
        """A record left out for what it holds: counted (dropped_<reason>) and recorded with its
        file, offset and URL (`record_refused`, a warning: the file is not failed)."""
        self.stats.drop(reason)
        self.stats.error("record_refused", file=self.path, offset=int(pos), url=hdr.get("WARC-Target-URI"),
                         reason=reason, error=f"{reason}: {why}")

    def _member_header_size(self, pos: int) -> int | None:
        """Bytes of the WARC header block at the start of the gzip member at `pos`, as written."""
        try:
            head = zlib.decompressobj(31).decompress(self._side_read(pos, 4096), 16384)
        except zlib.error:
            return None
        for sep in (b"\r\n\r\n", b"\n\n"):
            i = head.find(sep)
            if i >= 0:
                return i + len(sep)
        return None

    def _next_member(self, after: int) -> int | None:
        """Offset of the first gzip member at or after `after` whose data inflates to the start
        of a WARC record, or None (to the end of the file)."""
        block = 1 << 20
        off = after
        while off < self.size:
            data = self._side_read(off, block + 2)
            if not data:
                return None
            i = data.find(b"\x1f\x8b\x08")
            while 0 <= i < block:
                try:
                    head = zlib.decompressobj(31).decompress(self._side_read(off + i, 1 << 16), 16)
                except zlib.error:
                    head = b""
                if head.startswith((b"WARC/", b"\r\nWARC/", b"\nWARC/")):
                    return off + i
                i = data.find(b"\x1f\x8b\x08", i + 1)
            off += block
        return None

    # -- main loop -----------------------------------------------------------------------------
    def run(self) -> Iterator[dict]:
        span = self.span
        first_span = span.start == 0
        try:
            size = self.fh.size()
            head = self.fh.read(4096)
            self.fh.seek(0)
        except Exception as e:  # noqa: BLE001
            if first_span:
                self.stats.error("unreadable_warc", file=self.path, error=_msg(e))
            return
        span.next = size
        if not head:   # what a failed download leaves: worth fetching and reading again (the ledger retries it)
            if first_span:
                self.stats.error("unreadable_warc", file=self.path, error="empty file (0 bytes): a failed download?")
            return
        self.size = size
        self.is_gz = head.startswith(_GZIP_MAGIC)
        self.end = span.end if self.is_gz else None   # an uncompressed file is read whole
        span.whole = not self.is_gz
        start = head
        if self.is_gz:
            try:
                start = zlib.decompressobj(31).decompress(head, 256)
            except zlib.error:
                start = b""
        if start.lstrip().startswith(b"filedesc:"):
            if first_span:
                self.stats.error("unsupported_format", file=self.path, format="arc",
                                 error="ARC file (filedesc:// header): only WARC is supported")
            return
        self.pos = 0
        start = 0
        if not first_span:
            if not self.is_gz:
                return   # read whole by the span at 0
            start = span.start if span.exact else self._next_member(span.start)
            if start is None:
                return
        span.first = start
        try:
            while True:   # one pass, or one per stretch of good members around damage
                self.cut_member = None
                self.resume_at = None
                yield from self._iterate(start)
                if self.resume_at is None:
                    break
                self.stats.incr("resumed_after_damage")
                start = self.resume_at
        except Exception as e:  # noqa: BLE001 - safety net: never raise for bad input
            self._damage(self.pos, f"reader failure near the record at {self.pos}: {_msg(e)}")
        finally:
            self._close_side()

    def _iterate(self, start: int = 0) -> Iterator[dict]:
        """Strict FastWARC pass; on a parse failure, a lenient (quirks-mode) pass from the start
        that skips the records already handled and carries on if - and only if - the next
        record starts where the last good one ended (so lenient files such as bare-LF or
        ClueWeb09-style ones read on, while junk, as in a damaged file, is reported)."""
        stats = self.stats
        quirks = False
        self.fh.seek(start)
        it = ArchiveIterator(self.fh, parse_http=False, quirks_mode=False)
        pending: dict | None = None  # row waiting for the next record's offset (its length)
        prev_pos = -1
        n_done = 0          # records handled (counted, maybe yielded)
        skip = 0            # quirks pass: records still to skip (handled by the strict pass)
        check_next = False  # the next record must start at the end of the previous one
        strict_error = ""
        shared = False
        while True:
            failure = None
            rec = None
            try:
                rec = next(it)
            except StopIteration:
                pass
            except Exception as e:  # noqa: BLE001 - FastWARC raises OSError on bad input
                failure = _msg(e)
            if rec is not None:
                if skip:
                    skip -= 1
                    continue
                pos = rec.stream_pos
                if not _header_sane(rec):
                    # What FastWARC returns for a header it could not parse (or one cut short).
                    failure = f"unparseable WARC header at {pos}"
                    rec = None
            if rec is None:
                if failure is not None and not quirks:
                    # Strict parsing failed: re-read leniently, resuming after the last record.
                    quirks, strict_error, skip = True, failure, n_done
                    check_next = True
                    self.fh.seek(start)
                    it = ArchiveIterator(self.fh, parse_http=False, quirks_mode=True)
                    continue
                # End of what can be read.
                if n_done == 0:
                    self._damage(start, "no WARC record found" + (f": {strict_error}" if strict_error else ""),
                                 resume=start > 0 and not shared)
                    return
                end = self.size if shared else self._record_end(prev_pos)
                if self.cut_member is not None:
                    # The last gzip member does not end (cut, or corrupt data that inflates to
                    # garbage): its record is not trustworthy and its bytes are no valid member.
                    if pending is not None:
                        stats.incr("images" if self.images is True or IMAGE_MARK in pending else "html", -1)
                    self._damage(prev_pos, f"the gzip member at {prev_pos} does not end "
                                           "(file cut or member corrupt)", resume=not shared)
                    return
                ok = failure is None and self._gap_ok(end, self.size)
                if ok and self.is_gz and not shared and self.expected_size is not None and end >= 4:
                    pending = self._check_member_size(end, prev_pos, pending)   # the last member
                if pending is not None:
                    yield self._finish(pending, self.size if ok else end, shared)
                if not ok:
                    why = failure or strict_error or (
                        f"{self.size - end} unreadable bytes before the end of the file")
                    self._damage(end, f"unreadable data after the record at {prev_pos}: {why}", resume=not shared)
                return

            if n_done and self.is_gz and not shared:
                # the 4 bytes before this member: the previous member's uncompressed size (ISIZE)
                probe = self._side_read(pos - 4, 6) if (self.check_every_member or n_done < 3) else None
                if pos <= prev_pos or (probe is not None and probe[4:6] != _GZIP_MAGIC):
                    shared = self.span.whole = True
                    stats.error("gzip_not_per_record", file=self.path,
                                error="records are not one gzip member each: no byte offsets")
                elif probe is not None and self.expected_size is not None and len(probe) == 6:
                    pending = self._check_member_size(pos, prev_pos, pending, probe[:4])
            if self.end is not None and not shared and pos >= self.end:
                # the next span's record: this span ends here (the pending row ends at its start)
                if pending is not None:
                    yield self._finish(pending, pos, shared)
                self.span.next = pos
                return
            if (check_next or (quirks and not self.is_gz)) and not shared:
                # Lenient parsing resynchronises silently: make sure nothing was skipped.
                end = self._record_end(prev_pos) if n_done else 0
                if not self._gap_ok(end, pos):
                    if pending is not None:
                        yield self._finish(pending, end, shared)
                    self._damage(end, f"{pos - end} bytes of junk before the record at {pos}"
                                      + (f" ({strict_error})" if strict_error else ""), resume=not shared)
                    return
                check_next = False
            if pending is not None:
                yield self._finish(pending, pos, shared)
                pending = None
            prev_pos = self.pos = pos
            n_done += 1
            self.expected_size = None
            try:
                pending = self._record(rec, pos)
                if self.is_gz and (self.check_every_member or n_done < 3):
                    head = self._member_header_size(pos)
                    if head is not None:
                        self.expected_size = head + rec.content_length + 4   # + CRLF CRLF
            except _Damage as d:
                self._damage(d.offset, d.message, resume=not shared)
                return
            except Exception as e:  # noqa: BLE001 - a decompression error inside the record
                self._damage(pos, f"record at {pos} cannot be read: {_msg(e)}", resume=not shared)
                return

    def _gap_ok(self, end: int, nxt: int) -> bool:
        """Is [end, nxt) harmless: empty, only CR/LF/whitespace (uncompressed), or a small
        overlap (a Content-Length that counted part of the separator)?"""
        if nxt == end or -4 <= nxt - end < 0:
            return True
        if nxt < end or self.is_gz:
            return False
        return nxt - end <= 4096 and not self._side_read(end, nxt - end).strip()

    @staticmethod
    def _finish(row: dict, end: int, shared: bool) -> dict:
        if shared:
            row["warc_record_offset"] = -1
            row["warc_record_length"] = -1
        else:
            row["warc_record_length"] = end - row["warc_record_offset"]
        return row

    def _record_end(self, pos: int) -> int:
        """End offset of the (good) record starting at `pos`: for .gz the end of its gzip
        member, else header + Content-Length (+ the CRLF CRLF separator when present)."""
        try:
            if self.is_gz:
                d = zlib.decompressobj(31)
                off = pos
                while not d.eof:
                    chunk = self._side_read(off, 1 << 16)
                    if not chunk:
                        # The member runs to the end of the file without its trailer (CRC,
                        # size): the file was cut just after the record's data.
                        self.cut_member = pos
                        return off
                    d.decompress(chunk, 1 << 20)
                    while d.unconsumed_tail and not d.eof:
                        d.decompress(d.unconsumed_tail, 1 << 20)
                    off += len(chunk)
                return off - len(d.unused_data)
            head = self._side_read(pos, 1 << 16)
            hend, sep = head.find(b"\r\n\r\n"), 4
            lf = head.find(b"\n\n", 0, hend if hend != -1 else len(head))
            if lf != -1:
                hend, sep = lf, 2
            if hend == -1:
                return pos
            m = re.search(rb"(?im)^content-length:\s*(\d+)", head[:hend])
            if not m:
                return pos
            end = pos + hend + sep + int(m.group(1))
            tail = self._side_read(end, 4)
            if tail == b"\r\n\r\n":
                end += 4
            elif tail[:2] == b"\n\n":
                end += 2
            return end
        except Exception:  # noqa: BLE001
            return pos

    # -- one record ----------------------------------------------------------------------------
    def _record(self, rec, pos: int) -> dict | None:
        stats = self.stats
        rtype = int(rec.record_type)
        hdr = rec.headers
        tname = _TYPE_NAMES.get(rtype)
        if tname is None:
            tname = re.sub(r"[^a-z0-9_-]", "", (hdr.get("WARC-Type") or "unknown").lower())[:32]
        tname = tname or "unknown"
        stats.incr("records")
        stats.incr("records_" + tname)
        clen = rec.content_length

        if rtype != _RESPONSE and rtype != _RESOURCE:
            self._skip(rec, pos, clen)
            stats.drop("revisit" if rtype == _REVISIT else "not_response")
            return None
        cfg = self.config
        if clen > cfg.max_payload_bytes:
            self._skip(rec, pos, clen)
            self._refused("too_large", hdr, pos, f"{clen} bytes, over reader.max_payload_bytes")
            return None
        block = rec.reader.read()
        if len(block) < clen:
            raise _Damage(pos, f"record at {pos} is cut: {len(block)} of {clen} bytes "
                               "(file truncated or gzip member damaged)")

        # HTTP header (response records) or none (resource records, odd responses).
        warc_ct = hdr.get("Content-Type") or ""
        status = None
        headers: dict = {}
        msg = H.parse_http_response(block) if block[:5] in (b"HTTP/", b"http/") else None
        if msg is not None:
            status, headers, body = msg.status, msg.headers, msg.body
            mime, cs = H.split_content_type(headers.get("content-type"))
        elif rtype == _RESPONSE and "application/http" in warc_ct.lower():
            # Claims HTTP: an unparseable HTTP head is bad_http; no HTTP head at all but an
            # HTML page (some archivers) is taken as the page.
            if block[:5] in (b"HTTP/", b"http/") or not (cfg.sniff and H.sniff_html(block)):
                self._refused("bad_http", hdr, pos, "claims HTTP but has no parseable HTTP head")
                return None
            body, mime, cs = block, None, None  # no usable HTTP header: the block is the page
        else:
            body = block
            mime, cs = H.split_content_type(warc_ct)
            if mime == "application/http":
                mime = None

        if self.images is True:
            return self._image(hdr, pos, status, headers, body, mime)
        if self.images == "both" and mime is not None and mime.startswith("image/"):
            row = self._image(hdr, pos, status, headers, body, mime)
            if row is not None:
                row[IMAGE_MARK] = True
            return row
        is_html = mime in H.HTML_MIMES
        if not is_html and not (cfg.sniff and (mime is None or mime in H.SNIFF_MIMES)):
            return self._not_html(mime)

        # Transfer- and content-encoding (Common Crawl keeps the headers of encodings it already
        # removed, so the bytes decide).
        if "chunked" in headers.get("transfer-encoding", "").lower() and H.looks_chunked(body):
            dechunked = H.dechunk(body)
            if dechunked is not None:
                body = dechunked
            else:
                stats.incr("fallback_raw_body")
        decoded, ok = H.decode_content(body, headers.get("content-encoding"),
                                       cfg.max_payload_bytes + 1)
        if ok:
            body = decoded
        elif H.sniff_html(body):
            stats.incr("fallback_raw_body")
        else:
            self._refused("decode_error", hdr, pos, f"Content-Encoding {headers.get('content-encoding')!r} "
                                                    "does not decode and the body is no HTML")
            return None
        if not body:
            stats.drop("empty")
            return None
        if len(body) > cfg.max_payload_bytes:
            self._refused("too_large", hdr, pos, "over reader.max_payload_bytes once decoded "
                                                 "(decoding stops there)")
            return None
        if is_html:
            if H.has_binary_magic(body):
                return self._not_html(mime)
        elif H.sniff_html(body):
            stats.incr("sniffed_html")
        else:
            return self._not_html(mime)

        url = _clean_uri(hdr.get("WARC-Target-URI"))
        if url is None:
            stats.drop("bad_uri")
            return None
        try:
            html, charset = H.decode_html(body, cs)
        except Exception:  # noqa: BLE001 - decode_html is meant not to raise; belt and braces
            stats.drop("decode_error")
            return None

        date = hdr.get("WARC-Date")
        if date is None or not _DATE_OK.fullmatch(date):
            date = _fix_date(rec)
            if date is None:
                stats.incr("bad_warc_date")
        stats.incr("html")
        return {
            "url": url,
            "warc_path": self.path,
            "warc_record_offset": pos,
            "warc_record_length": -1,  # set once the next record's offset is known
            "warc_record_id": hdr.get("WARC-Record-ID") or "",
            "warc_date": date,
            "payload_digest": hdr.get("WARC-Payload-Digest"),
            "http_status": status,
            "content_type": mime,
            "charset": charset,
            "html": html,
        }

    def _image(self, hdr, pos: int, status: int | None, headers: dict, body: bytes, mime: str | None) -> dict | None:
        from operators.io.formats import detect_format
        stats = self.stats
        if mime is not None and not mime.startswith("image/") and mime not in H.SNIFF_MIMES:
            stats.drop("not_image")
            return None
        if status is not None and not 200 <= status < 300:
            stats.drop("image_http_status")
            return None
        if "chunked" in headers.get("transfer-encoding", "").lower() and H.looks_chunked(body):
            body = H.dechunk(body) or body
        decoded, ok = H.decode_content(body, headers.get("content-encoding"), self.config.max_payload_bytes + 1)
        if ok and decoded is not None:
            body = decoded
        if not body or detect_format(body) in (None, "svg"):
            stats.drop("not_image")
            return None
        url = _clean_uri(hdr.get("WARC-Target-URI"))
        if url is None:
            stats.drop("bad_uri")
            return None
        date = hdr.get("WARC-Date")
        stats.incr("images")
        return {"url": url, "warc_path": self.path, "warc_record_offset": pos, "warc_record_length": -1,
                "warc_record_id": hdr.get("WARC-Record-ID") or "",
                "warc_date": date if date and _DATE_OK.fullmatch(date) else None,
                "content_type": mime, "data": body}

    def _not_html(self, mime: str | None) -> None:
        self.stats.drop("not_html")
        top = mime.split("/", 1)[0] if mime else "none"
        self.stats.incr("not_html_" + (top if top in _TOP_TYPES or top == "none" else "other"))
        return None

    @staticmethod
    def _skip(rec, pos: int, clen: int) -> None:
        n = rec.reader.consume()
        if n < clen:
            raise _Damage(pos, f"record at {pos} is cut: {n} of {clen} bytes "
                               "(file truncated or gzip member damaged)")


def _header_sane(rec) -> bool:
    """FastWARC's strict parser returns a record with no or a mismatching Content-Length (and
    header lines swallowed into one value) for a header it cannot parse, e.g. bare-LF lines."""
    hdr = rec.headers
    clen = hdr.get("Content-Length")
    if clen is None or "\n" in (hdr.get("WARC-Type") or ""):
        return False
    try:
        return int(clen) == rec.content_length
    except ValueError:
        return False


def _clean_uri(raw: str | None) -> str | None:
    """WARC-Target-URI without `<>` and surrounding whitespace; inner spaces %-escaped.
    None when it has no scheme://host."""
    if not raw:
        return None
    uri = raw.strip().strip("<>").strip()
    if " " in uri or "\t" in uri:
        uri = uri.replace(" ", "%20").replace("\t", "%09")
    if not _URI_OK.match(uri):
        return None
    return uri


def _fix_date(rec) -> str | None:
    """WARC-Date that is not plain `YYYY-MM-DDTHH:MM:SSZ` (fractions, offsets): as UTC, or
    None when FastWARC cannot parse it either."""
    try:
        dt = rec.record_date
    except Exception:  # noqa: BLE001
        return None
    if dt is None:
        return None
    try:
        if dt.tzinfo is not None:
            dt = dt.astimezone(timezone.utc)
        return dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    except (ValueError, OverflowError):
        return None


def _msg(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"
