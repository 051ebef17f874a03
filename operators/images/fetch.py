"""Safe, concurrent image fetching over HTTP(S) (aiohttp; no Ray here).

    results = fetch_images(urls, FetchConfig())      # synchronous; runs its own event loop
    results = await fetch_many(urls, FetchConfig())  # from async code

One `FetchResult` per URL, in input order. Nothing raises for a bad URL or a bad response: every
failure is a `status` with a short `error`:

    ok                  image bytes in `data`
    http_error          a non-2xx answer ("HTTP 404"), or retries exhausted on 429/5xx
    timeout             no complete answer within `read_timeout` (retried, then given up)
    too_large           Content-Length, the streamed body or the body after its Content-Encoding
                        over `max_bytes` (body not kept; decoded here, bounded: no bomb expands)
    not_image           Content-Type not image/* (nor octet-stream/absent), the first bytes are
                        no raster image format (HTML named .jpg, SVG, video, ...), or a
                        Content-Encoding that cannot be decoded
    refused_address     the host is, or resolves to, a non-public address (SSRF guard)
    refused_scheme      not http/https (also on a redirect)
    opted_out           `X-Robots-Tag: noai` / `noimageai` (any user-agent prefix)
    too_many_redirects  more than `max_redirects` hops (loops end here)
    connection_error    DNS failure, refused or reset connection, TLS error, truncated body
    invalid_url         unparsable URL, credentials in the URL, malformed numeric host

Address safety (SSRF). Only http/https. A numeric host in any spelling that `inet_aton` accepts
(decimal 2130706433, hex 0x7f000001 / 0x7f.0.0.1, octal 0177.0.0.1, short 127.1) and IPv6
literals (zone ids included) are parsed and checked before any connection. Host names are
resolved by `SafeResolver` (the event loop's getaddrinfo): if ANY address is forbidden the fetch is
refused, and the connection goes to the addresses that were checked (the connector uses exactly
what the resolver returned, so a second DNS answer cannot rebind it); Host header and TLS SNI keep
the name. Redirects are followed by hand, each Location checked the same way. `is_forbidden_ip`
says what is forbidden: loopback, private, link-local (cloud metadata 169.254.169.254 and
fd00:ec2::254 included), multicast, unspecified, reserved, shared address space 100.64/10,
anything not globally routable, and IPv6 forms that embed a forbidden IPv4 address (IPv4-mapped,
IPv4-compatible, 6to4, Teredo, NAT64 64:ff9b::/96). `allow_private_networks` switches the
address checks off: for tests against a local server only.

Politeness and limits: a global semaphore (`concurrency`), one per host (`per_host`) and, with
`per_host_rps`, a pace per host (a 429/503 Retry-After holds back every request to that host); the
user agent from config; retries only for transient failures (timeouts, connection resets,
429 honouring Retry-After up to `max_retry_after`, 500/502/503/504) with exponential backoff and
jitter; `attempts` counts the tries of the last hop (1 + retries made).
"""
from __future__ import annotations

import asyncio
import ipaddress
import random
import re
import socket
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from functools import partial

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from operators.io.http import decode_content
from operators.io.formats import detect_format
from operators.images.config import DEFAULT_ACCEPT, DEFAULT_USER_AGENT, FetchConfig  # noqa: F401

STATUSES = ("ok", "http_error", "timeout", "too_large", "not_image", "refused_address",
            "refused_scheme", "opted_out", "too_many_redirects", "connection_error", "invalid_url")


REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
OCTET_TYPES = frozenset({"application/octet-stream", "binary/octet-stream", "application/binary"})
OPT_OUT_DIRECTIVES = frozenset({"noai", "noimageai"})
SNIFF_BYTES = 512           # bytes needed before the magic-byte check runs (or the whole body)


@dataclass
class FetchResult:
    """One URL's outcome. `final_url`: the last URL requested (after redirects); `attempts`: tries
    of the last hop (0 when refused before any request); `seconds`: wall time from the start of
    this URL's fetch, waiting for the concurrency limits included; `data` only when ok."""
    url: str
    status: str
    http_status: int | None = None
    error: str | None = None
    content_type: str | None = None
    final_url: str | None = None
    data: bytes | None = None
    attempts: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == "ok"


# ---------------------------------------------------------------------------------------------
# Address safety
# ---------------------------------------------------------------------------------------------

IP = ipaddress.IPv4Address | ipaddress.IPv6Address

_METADATA = {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
_SHARED = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
_V4COMPAT = ipaddress.ip_network("::/96")
# Special-purpose IPv4 blocks listed explicitly, so the verdict does not hang on the Python
# version's tables: IETF assignments, benchmarking, documentation, 6to4 relay anycast.
_SPECIAL_V4 = tuple(ipaddress.ip_network(n) for n in (
    "192.0.0.0/24", "198.18.0.0/15", "192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24",
    "192.88.99.0/24"))


def forbidden_reason(ip: IP) -> str | None:
    """Why `ip` must not be fetched from (e.g. "loopback"), or None for a public address."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            ip = ipaddress.IPv6Address(int(ip))            # the zone does not change the verdict
        if ip.ipv4_mapped is not None:
            why = forbidden_reason(ip.ipv4_mapped)
            return f"IPv4-mapped {ip.ipv4_mapped}, {why}" if why else None
        if ip in _NAT64:
            v4 = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
            why = forbidden_reason(v4)
            return f"NAT64 of {v4}, {why}" if why else None
        if ip in _NAT64_LOCAL:
            return "local-use NAT64"
        if ip in _V4COMPAT and int(ip) > 1:
            return f"IPv4-compatible {ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)}"
        if ip.sixtofour is not None:
            why = forbidden_reason(ip.sixtofour)
            if why:
                return f"6to4 of {ip.sixtofour}, {why}"
        if ip.teredo is not None:
            server, client = ip.teredo
            for v4 in (client, server):
                why = forbidden_reason(v4)
                if why:
                    return f"Teredo with {v4}, {why}"
    if ip in _METADATA:
        return "cloud metadata"
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast:
        return "multicast"
    if isinstance(ip, ipaddress.IPv4Address):
        if ip in _SHARED:
            return "shared address space"
        if any(ip in net for net in _SPECIAL_V4):
            return "special-purpose"
    if isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local:
        return "site-local"
    if ip.is_private:
        return "private"
    if ip.is_reserved:
        return "reserved"
    if not ip.is_global:
        return "not globally routable"
    return None


def is_forbidden_ip(ip: IP) -> bool:
    """True for any address a fetch must not reach (see `forbidden_reason`)."""
    return forbidden_reason(ip) is not None


_NUMERIC_LABEL = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)\Z", re.IGNORECASE)


def _ipv4_number(label: str) -> int:
    if label[:2].lower() == "0x":
        return int(label[2:] or "0", 16)
    if len(label) > 1 and label[0] == "0":
        return int(label[1:], 8)
    return int(label, 10)


def parse_ip_host(host: str) -> IP | None:
    """The address a numeric host stands for, with inet_aton semantics for IPv4 (1 to 4 parts,
    each decimal, 0x-hex or 0-octal, the last filling the remaining bytes; one trailing dot
    allowed) and ipaddress for IPv6 (zone ids allowed). None for a host name. ValueError for a
    host that ends in a number but is no valid address (browsers refuse those too)."""
    host = host.strip("[]")
    if ":" in host:
        return ipaddress.IPv6Address(host)
    name = host.removesuffix(".")
    labels = name.split(".")
    if not labels or not _NUMERIC_LABEL.match(labels[-1]):
        return None
    if len(labels) > 4 or any(not lab or not _NUMERIC_LABEL.match(lab) for lab in labels):
        raise ValueError(f"malformed numeric host {host!r}")
    nums = [_ipv4_number(lab) for lab in labels]
    if any(n > 255 for n in nums[:-1]) or nums[-1] >= 256 ** (5 - len(nums)):
        raise ValueError(f"numeric host {host!r} out of range")
    value = 0
    for n in nums[:-1]:
        value = value << 8 | n
    value = value << 8 * (5 - len(nums)) | nums[-1]
    return ipaddress.IPv4Address(value)


_BAD_HOST_CHARS = re.compile(r"[\x00-\x20\x7f<>\"'`{}|\\^%/?#@]")


def url_refusal(url: str | URL, allow_private_networks: bool = False) -> tuple[str, str] | None:
    """(status, error) when `url` must not be fetched as written, else None. Checks syntax,
    scheme and numeric hosts; host names are checked after DNS by `SafeResolver`."""
    try:
        u = url if isinstance(url, URL) else URL(str(url).strip())
        scheme = (u.scheme or "").lower()
        host = u.host
        port = u.explicit_port
    except (ValueError, TypeError, UnicodeError) as e:
        return "invalid_url", f"unparsable URL: {_short(e)}"
    if scheme not in ("http", "https"):
        return "refused_scheme", f"scheme {scheme or '(none)'!r} refused (http/https only)"
    if u.user is not None or u.password is not None or "@" in (u.raw_authority or ""):
        return "invalid_url", "credentials in URL refused"
    if not host:
        return "invalid_url", "no host"
    if port is not None and not 0 < port < 65536:
        return "invalid_url", f"bad port {port}"
    try:
        ip = parse_ip_host(host)
    except ValueError as e:
        return "invalid_url", _short(e)
    if ip is None and _BAD_HOST_CHARS.search(host):
        return "invalid_url", f"bad character in host {host!r}"
    if ip is not None and not allow_private_networks:
        why = forbidden_reason(ip)
        if why:
            shown = host if str(ip) == host else f"{host} = {ip}"
            return "refused_address", f"{shown} ({why})"
    return None


class AddressRefused(OSError):
    """A host name resolved to a forbidden address (raised by SafeResolver)."""


class SafeResolver(AbstractResolver):
    """getaddrinfo on the event loop, refusing a host if ANY of its addresses is forbidden.

    The connector connects to exactly the addresses returned here, so the check and the
    connection see the same DNS answer (no rebinding between them).
    """

    def __init__(self, allow_private_networks: bool = False) -> None:
        self.allow_private_networks = allow_private_networks

    async def lookup(self, host: str, port: int, family: int) -> list[tuple]:
        """getaddrinfo results for `host` (a seam for tests)."""
        loop = asyncio.get_running_loop()
        return await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, family=family)

    def refusal(self, host: str, ip: IP) -> str | None:
        """Why `host` may not be reached at `ip`, or None."""
        if self.allow_private_networks:
            return None
        why = forbidden_reason(ip)
        return f"{host} resolved to {ip} ({why})" if why else None

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        infos = await self.lookup(host, port, family)
        out: list[ResolveResult] = []
        for fam, _type, proto, _canon, sockaddr in infos:
            if fam not in (socket.AF_INET, socket.AF_INET6):
                continue
            addr = sockaddr[0]
            try:
                ip = ipaddress.ip_address(addr)
            except ValueError:
                raise AddressRefused(f"{host} resolved to an unparsable address {addr!r}") from None
            why = self.refusal(host, ip)
            if why:
                raise AddressRefused(why)
            out.append(ResolveResult(hostname=host, host=addr, port=sockaddr[1], family=fam,
                                     proto=proto, flags=socket.AI_NUMERICHOST | socket.AI_NUMERICSERV))
        if not out:
            raise OSError(f"no addresses for {host}")
        return out

    async def close(self) -> None:
        return None


# ---------------------------------------------------------------------------------------------
# Opt-out
# ---------------------------------------------------------------------------------------------

_DIRECTIVE_SPLIT = re.compile(r"[\s,:;]+")


def opted_out(x_robots_tags: Iterable[str]) -> bool:
    """True when any X-Robots-Tag value carries noai or noimageai, whatever user-agent token
    precedes it ("noai", "NoAI, noindex", "otherbot: noimageai")."""
    for value in x_robots_tags:
        if any(tok in OPT_OUT_DIRECTIVES for tok in _DIRECTIVE_SPLIT.split(value.lower())):
            return True
    return False


# ---------------------------------------------------------------------------------------------
# Fetching
# ---------------------------------------------------------------------------------------------

@dataclass
class _Outcome:
    """One try of one hop: final (a result), redirect (to location) or retry (transient)."""
    kind: str
    status: str = "ok"
    http_status: int | None = None
    error: str | None = None
    content_type: str | None = None
    data: bytes | None = None
    location: str | None = None
    retry_after: float | None = None


class _Fetcher:
    def __init__(self, config: FetchConfig, resolver: AbstractResolver | None = None) -> None:
        self.config = config
        self.resolver = resolver or SafeResolver(config.allow_private_networks)
        self.global_sem = asyncio.Semaphore(config.concurrency)
        self.host_sems: dict[str, asyncio.Semaphore] = {}
        self.host_next: dict[str, float] = {}   # host -> monotonic time its next request may start
        self.session: aiohttp.ClientSession | None = None

    async def _pace(self, host: str) -> None:
        """Wait for the host's turn: `per_host_rps` requests started per second, and nothing
        before the end of a Retry-After the host asked for (for every request to it)."""
        now = time.monotonic()
        at = max(now, self.host_next.get(host, now))
        rps = self.config.per_host_rps
        self.host_next[host] = at + (1.0 / rps if rps else 0.0)
        if at > now:
            await asyncio.sleep(at - now)

    async def __aenter__(self) -> _Fetcher:
        c = self.config
        connector = aiohttp.TCPConnector(resolver=self.resolver, limit=c.concurrency,
                                         limit_per_host=c.per_host, use_dns_cache=True,
                                         ttl_dns_cache=60)
        self.session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=c.connect_timeout,
                                          sock_read=c.read_timeout),
            headers={"User-Agent": c.user_agent, "Accept": c.accept},
            cookie_jar=aiohttp.DummyCookieJar(), trust_env=False, raise_for_status=False,
            auto_decompress=False)   # decoded in _read with an output bound (http.decode_content)
        return self

    async def __aexit__(self, *exc) -> None:
        if self.session is not None:
            await self.session.close()

    async def fetch(self, url: str) -> FetchResult:
        started = time.monotonic()
        try:
            result = await self._fetch(url)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - a fetch never raises; an unforeseen error is data
            result = FetchResult(url=url, status="connection_error",
                                 error=f"{type(e).__name__}: {_short(e)}")
        result.seconds = round(time.monotonic() - started, 4)
        return result

    async def _fetch(self, url: str) -> FetchResult:
        c = self.config
        if not isinstance(url, str):
            return FetchResult(url=url, status="invalid_url", error="not a string")
        refusal = url_refusal(url, c.allow_private_networks)
        if refusal:
            return FetchResult(url=url, status=refusal[0], error=refusal[1])
        current = URL(url.strip())
        redirects = 0
        while True:
            outcome, attempts = await self._hop(current)
            if outcome.kind != "redirect":
                return FetchResult(url=url, status=outcome.status, http_status=outcome.http_status,
                                   error=outcome.error, content_type=outcome.content_type,
                                   final_url=str(current), data=outcome.data, attempts=attempts)

            def final(status: str, error: str, o=outcome, at=current, n=attempts) -> FetchResult:
                return FetchResult(url=url, status=status, http_status=o.http_status, error=error,
                                   final_url=str(at), attempts=n)

            if not outcome.location:
                return final("http_error", f"HTTP {outcome.http_status} without Location")
            if redirects >= c.max_redirects:
                return final("too_many_redirects", f"more than {c.max_redirects} redirects")
            try:
                nxt = current.join(URL(outcome.location.strip()))
            except (ValueError, TypeError, UnicodeError) as e:
                return final("invalid_url", f"bad redirect Location: {_short(e)}")
            refusal = url_refusal(nxt, c.allow_private_networks)
            if refusal:
                return final(refusal[0], f"redirect to {_short(str(nxt), 80)}: {refusal[1]}")
            redirects += 1
            current = nxt

    async def _hop(self, url: URL) -> tuple[_Outcome, int]:
        """Fetch one URL (no redirect following), retrying transient failures."""
        c = self.config
        host = (url.host or "").lower()
        sem = self.host_sems.get(host)
        if sem is None:
            sem = self.host_sems[host] = asyncio.Semaphore(c.per_host)
        attempt = 0
        while True:
            attempt += 1
            async with sem:
                await self._pace(host)
                async with self.global_sem:
                    outcome = await self._try(url)
            if outcome.kind != "retry":
                return outcome, attempt
            if attempt > c.retries:
                outcome.kind = "final"
                return outcome, attempt
            if outcome.retry_after is not None:
                if outcome.retry_after > c.max_retry_after:
                    outcome.kind = "final"
                    outcome.error = f"{outcome.error} (Retry-After {outcome.retry_after:g} s over " \
                                    f"max_retry_after)"
                    return outcome, attempt
                delay = outcome.retry_after
                # the host asked every client to wait: no request to it starts before then
                self.host_next[host] = max(self.host_next.get(host, 0.0), time.monotonic() + delay)
            else:
                delay = c.backoff * (2 ** (attempt - 1)) * random.uniform(0.5, 1.5)
            await asyncio.sleep(delay)

    async def _try(self, url: URL) -> _Outcome:
        c = self.config
        try:
            async with asyncio.timeout(c.read_timeout):
                async with self.session.get(url, allow_redirects=False) as resp:
                    return await self._read(resp)
        except asyncio.CancelledError:
            raise
        except TimeoutError:
            return _Outcome("retry", "timeout", error=f"no complete answer within {c.read_timeout:g} s")
        except aiohttp.InvalidURL as e:
            return _Outcome("final", "invalid_url", error=_short(e))
        except aiohttp.ClientConnectorDNSError as e:
            refused = _find(e, AddressRefused)
            if refused is not None:
                return _Outcome("final", "refused_address", error=_short(refused))
            return _Outcome("final", "connection_error", error=f"DNS: {_short(e.os_error)}")
        except AddressRefused as e:
            return _Outcome("final", "refused_address", error=_short(e))
        except aiohttp.ClientSSLError as e:
            return _Outcome("final", "connection_error", error=f"TLS: {_short(e)}")
        except aiohttp.ClientConnectorError as e:
            refused = _find(e, AddressRefused)
            if refused is not None:
                return _Outcome("final", "refused_address", error=_short(refused))
            return _Outcome("final", "connection_error", error=f"connect: {_short(e.os_error)}")
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError,
                aiohttp.ClientOSError, ConnectionResetError) as e:
            return _Outcome("retry", "connection_error", error=f"{type(e).__name__}: {_short(e)}")
        except (aiohttp.ClientError, OSError, ValueError) as e:
            return _Outcome("final", "connection_error", error=f"{type(e).__name__}: {_short(e)}")

    async def _read(self, resp: aiohttp.ClientResponse) -> _Outcome:
        c = self.config
        code = resp.status
        ctype_full = resp.headers.get("Content-Type")
        ctype = ctype_full.split(";", 1)[0].strip().lower() if ctype_full else None
        if code in REDIRECT_STATUSES:
            return _Outcome("redirect", http_status=code, location=resp.headers.get("Location"))
        if code in RETRY_STATUSES:
            retry_after = _retry_after(resp.headers.get("Retry-After")) if code in (429, 503) else None
            return _Outcome("retry", "http_error", http_status=code, error=f"HTTP {code}",
                            content_type=ctype, retry_after=retry_after)
        if not 200 <= code < 300 or code in (204, 205, 206):
            return _Outcome("final", "http_error", http_status=code, error=f"HTTP {code}",
                            content_type=ctype)

        def final(status: str, error: str | None = None, data: bytes | None = None) -> _Outcome:
            if status != "ok":
                resp.close()       # do not drain an unwanted body
            return _Outcome("final", status, http_status=code, error=error, content_type=ctype,
                            data=data)

        if c.respect_opt_out and opted_out(resp.headers.getall("X-Robots-Tag", ())):
            return final("opted_out", "X-Robots-Tag: " + "; ".join(resp.headers.getall("X-Robots-Tag")))
        if ctype and not (ctype.startswith("image/") or ctype in OCTET_TYPES):
            return final("not_image", f"content-type {_short(ctype, 60)}")
        length = resp.content_length
        if length is not None and length > c.max_bytes:
            return final("too_large", f"Content-Length {length} > max_bytes {c.max_bytes}")
        encoding = (resp.headers.get("Content-Encoding") or "").strip().lower()
        encoded = encoding not in ("", "identity")
        buf = bytearray()
        sniffed = encoded   # an encoded body is sniffed once decoded
        async for chunk in resp.content.iter_chunked(1 << 16):
            buf += chunk
            if len(buf) > c.max_bytes:
                return final("too_large", f"body over max_bytes {c.max_bytes}")
            if not sniffed and len(buf) >= SNIFF_BYTES:
                why = _not_image(bytes(buf[:4096]))
                if why:
                    return final("not_image", why)
                sniffed = True
        data = bytes(buf)
        if encoded:
            decoded, ok = decode_content(data, encoding, c.max_bytes + 1)
            if not ok:
                return final("not_image", f"Content-Encoding {_short(encoding, 30)}: body cannot be decoded")
            if len(decoded) > c.max_bytes:
                return final("too_large", f"decoded body ({_short(encoding, 30)}) over max_bytes {c.max_bytes}")
            data, sniffed = decoded, False
        if not sniffed:
            why = _not_image(data)
            if why:
                return final("not_image", why)
        return final("ok", data=data)


def _not_image(head: bytes) -> str | None:
    fmt = detect_format(head)
    if fmt is None:
        if not head:
            return "empty body"
        low = head[:512].lstrip().lower()
        if low.startswith((b"<!doctype html", b"<html")) or b"<html" in low:
            return "html, not an image"
        return f"no image format (starts {head[:8].hex()})"
    if fmt == "svg":
        return "svg (vector image, not decoded)"
    return None


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date); None when absent/bad."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _find(exc: BaseException, kind: type[BaseException]) -> BaseException | None:
    """The first exception of `kind` in `exc`'s cause/context chain (or its os_error)."""
    seen = set()
    stack = [exc]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, kind):
            return e
        stack.extend([e.__cause__, e.__context__, getattr(e, "os_error", None)])
    return None


def _short(e: object, limit: int = 200) -> str:
    s = str(e) if not isinstance(e, BaseException) else (str(e) or type(e).__name__)
    s = " ".join(s.split())
    return s if len(s) <= limit else s[:limit - 3] + "..."


async def fetch_many(urls: list[str], config: FetchConfig | None = None, *,
                     resolver: AbstractResolver | None = None,
                     on_result: Callable[[int, FetchResult], None] | None = None) -> list[FetchResult]:
    """Fetch every URL concurrently (one session, global + per-host limits); results in input
    order. `resolver` replaces the default `SafeResolver` (tests: a test double). `on_result(i,
    result)` is called as each URL finishes, in one helper thread (the caller's decoding and
    hashing never stall the event loop, whose reads in flight would time out; one thread at a
    time, so the callback needs no locking); the returned results then carry no `data` (the
    callback consumed it), and the bodies held - in flight or waiting for the callback - are at
    most `concurrency`."""
    config = config or FetchConfig()
    urls = list(urls)
    if not urls:
        return []
    loop = asyncio.get_running_loop()
    held = asyncio.Semaphore(config.concurrency)

    async def one(fetcher: _Fetcher, i: int, url: str, pool: ThreadPoolExecutor | None) -> FetchResult:
        if pool is None:
            return await fetcher.fetch(url)
        async with held:
            r = await fetcher.fetch(url)
            await loop.run_in_executor(pool, on_result, i, r)
        r.data = None
        return r

    with ThreadPoolExecutor(1, thread_name_prefix="fetch-results") if on_result is not None else nullcontext() as pool:
        async with _Fetcher(config, resolver) as fetcher:
            return list(await asyncio.gather(*(one(fetcher, i, u, pool) for i, u in enumerate(urls))))



def fetch_images(urls: Iterable[str], config: FetchConfig | None = None, *,
                 resolver: AbstractResolver | None = None,
                 on_result: Callable[[int, FetchResult], None] | None = None) -> list[FetchResult]:
    """Synchronous `fetch_many` on its own event loop (in a helper thread when the calling thread
    already runs one, e.g. inside an async Ray actor)."""
    urls = list(urls)
    run = partial(fetch_many, urls, config, resolver=resolver, on_result=on_result)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(run())
    with ThreadPoolExecutor(1, thread_name_prefix="fetch") as pool:
        return pool.submit(asyncio.run, run()).result()
