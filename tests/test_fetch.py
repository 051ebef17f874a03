"""operators/images/fetch.py against a local image server (tests/image_server.py, 127.0.0.1 only).

Nothing here reaches the internet: every URL either points at the local server or is refused
before any connection is made (the refusal tests assert that the server never saw the request).
"""
from __future__ import annotations

import asyncio
import ipaddress
import socket
import time

import pytest

from operators.images.fetch import (
    AddressRefused,
    FetchConfig,
    FetchResult,
    SafeResolver,
    fetch_images,
    fetch_many,
    forbidden_reason,
    is_forbidden_ip,
    opted_out,
    parse_ip_host,
    url_refusal,
)
from operators.images.decode import decode
from tests.image_server import ImageServer


@pytest.fixture(scope="module")
def server():
    with ImageServer() as srv:
        yield srv


# A short read timeout (the server's /slow.png sleeps 2.5 s), a small body limit (/big*.png are
# 400 KB, the bomb 110 KB), quick retries. The private-network switch is on ONLY here.
ALLOW = FetchConfig(allow_private_networks=True, read_timeout=1.0, connect_timeout=1.0,
                    max_bytes=200_000, backoff=0.01, retries=2)
DEFAULT = FetchConfig(read_timeout=2.0, backoff=0.01)


# ---------------------------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------------------------

def test_config_defaults_are_safe():
    c = FetchConfig()
    assert c.allow_private_networks is False and c.respect_opt_out is True
    assert c.concurrency == 64 and c.per_host == 4 and c.max_bytes == 15_000_000
    assert c.user_agent.startswith("interleaf/")


@pytest.mark.parametrize("kwargs, key", [
    ({"concurrency": 0}, "concurrency"),
    ({"per_host": 1.5}, "per_host"),
    ({"retries": -1}, "retries"),
    ({"max_bytes": True}, "max_bytes"),
    ({"read_timeout": 0}, "read_timeout"),
    ({"connect_timeout": "5"}, "connect_timeout"),
    ({"backoff": -0.1}, "backoff"),
    ({"max_redirects": -1}, "max_redirects"),
    ({"user_agent": ""}, "user_agent"),
    ({"user_agent": "a\r\nX-Evil: 1"}, "user_agent"),
    ({"allow_private_networks": "yes"}, "allow_private_networks"),
])
def test_config_rejects_bad_values_naming_the_key(kwargs, key):
    with pytest.raises(ValueError, match=rf"images\.fetch\.{key}\b"):
        FetchConfig(**kwargs)


# ---------------------------------------------------------------------------------------------
# Address checks (no network)
# ---------------------------------------------------------------------------------------------

FORBIDDEN = [
    "127.0.0.1", "127.255.0.9", "0.0.0.0", "0.1.2.3", "10.0.0.1", "172.16.5.4", "192.168.1.1",
    "169.254.169.254", "169.254.1.1", "100.64.0.1", "100.127.255.254", "224.0.0.1", "239.1.2.3",
    "240.0.0.1", "255.255.255.255", "192.0.0.8", "198.18.0.1", "192.0.2.1",
    "::1", "::", "fe80::1", "fe80::1%eth0", "fc00::1", "fd00:ec2::254", "ff02::1", "fec0::1",
    "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254", "::127.0.0.1", "::8.8.8.8",
    "2002:7f00:1::1", "2002:a00:1::1", "2002:a9fe:a9fe::1",       # 6to4 of 127/8, 10/8, metadata
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",                       # Teredo
    "64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe", "64:ff9b::a00:1",    # NAT64 of private v4
    "64:ff9b:1::1", "2001:db8::1", "100::1",
]
ALLOWED = ["8.8.8.8", "1.1.1.1", "93.184.216.34", "151.101.1.69", "2606:4700:4700::1111",
           "2a00:1450:4001:81b::200e", "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1"]


@pytest.mark.parametrize("addr", FORBIDDEN)
def test_forbidden_addresses(addr):
    ip = ipaddress.ip_address(addr)
    assert is_forbidden_ip(ip), addr
    assert forbidden_reason(ip)


@pytest.mark.parametrize("addr", ALLOWED)
def test_public_addresses_allowed(addr):
    assert not is_forbidden_ip(ipaddress.ip_address(addr)), forbidden_reason(ipaddress.ip_address(addr))


def test_reasons_are_readable():
    assert forbidden_reason(ipaddress.ip_address("127.0.0.1")) == "loopback"
    assert forbidden_reason(ipaddress.ip_address("169.254.169.254")) == "cloud metadata"
    assert forbidden_reason(ipaddress.ip_address("100.64.1.1")) == "shared address space"
    assert "loopback" in forbidden_reason(ipaddress.ip_address("::ffff:127.0.0.1"))


@pytest.mark.parametrize("host", ["127.0.0.1", "2130706433", "0x7f000001", "0x7F000001", "0x7f.0.0.1",
                                  "0177.0.0.1", "0177.0.0.01", "127.1", "127.0.1", "127.0.0.1.",
                                  "0x7f.0x0.0x0.0x1", "017700000001"])
def test_numeric_host_forms_are_parsed_like_inet_aton(host):
    assert parse_ip_host(host) == ipaddress.IPv4Address("127.0.0.1")
    if not host.endswith("."):
        assert socket.inet_aton(host) == b"\x7f\x00\x00\x01"    # the same reading as the C library


def test_numeric_host_edge_cases():
    assert parse_ip_host("example.com") is None
    assert parse_ip_host("123.example.com") is None
    assert parse_ip_host("0") == ipaddress.IPv4Address("0.0.0.0")
    assert parse_ip_host("[::1]") == ipaddress.IPv6Address("::1")
    assert parse_ip_host("169.254.43518") == ipaddress.IPv4Address("169.254.169.254")
    for bad in ("256.0.0.1", "1.2.3.4.5", "1..2", "0x1.08.0.1", "1.2.3.4294967296"):
        with pytest.raises(ValueError):
            parse_ip_host(bad)


def check_url(url: str, allow_private_networks: bool = False) -> str | None:
    """The refusal status of `url` as written (None: it may be fetched)."""
    refusal = url_refusal(url, allow_private_networks)
    return refusal[0] if refusal else None


@pytest.mark.parametrize("url, status", [
    ("http://example.com/a.png", None),
    ("https://93.184.216.34/a.png", None),
    ("HTTPS://Example.COM:8443/a.png?x=1", None),
    ("ftp://example.com/a.png", "refused_scheme"),
    ("file:///etc/passwd", "refused_scheme"),
    ("gopher://127.0.0.1:6379/_INFO", "refused_scheme"),
    ("data:image/png;base64,AAAA", "refused_scheme"),
    ("//example.com/a.png", "refused_scheme"),
    ("javascript:alert(1)", "refused_scheme"),
    ("http://127.0.0.1/", "refused_address"),
    ("http://2130706433/", "refused_address"),
    ("http://0x7f000001/", "refused_address"),
    ("http://0x7f.0.0.1/", "refused_address"),
    ("http://0177.0.0.1/", "refused_address"),
    ("http://127.1/", "refused_address"),
    ("http://0/", "refused_address"),
    ("http://[::1]/", "refused_address"),
    ("http://[::ffff:127.0.0.1]/", "refused_address"),
    ("http://[::ffff:7f00:1]:8080/", "refused_address"),
    ("http://[fe80::1%25eth0]/", "refused_address"),
    ("http://169.254.169.254/latest/meta-data/", "refused_address"),
    ("http://[fd00:ec2::254]/latest/meta-data/", "refused_address"),
    ("http://10.1.2.3:8080/x.png", "refused_address"),
    ("http://user:pass@example.com/a.png", "invalid_url"),
    ("http://example.com@127.0.0.1/a.png", "invalid_url"),
    ("http://127.0.0.1\\@example.com/", "invalid_url"),
    ("http://256.256.256.256/", "invalid_url"),
    ("http:///a.png", "invalid_url"),
    ("", "refused_scheme"),
])
def test_check_url(url, status):
    assert check_url(url) == status


def test_check_url_switch_allows_private_literals_only():
    assert check_url("http://127.0.0.1:8080/a.png", allow_private_networks=True) is None
    assert check_url("ftp://127.0.0.1/a.png", allow_private_networks=True) == "refused_scheme"
    status, error = url_refusal("http://0x7f000001/")
    assert status == "refused_address" and "127.0.0.1" in error and "loopback" in error


def test_safe_resolver_refuses_if_any_address_is_forbidden():
    class TwoAddresses(SafeResolver):
        async def lookup(self, host, port, family):
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port)),
                    (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.7", port))]

    with pytest.raises(AddressRefused, match=r"resolved to 10\.0\.0\.7 \(private\)"):
        asyncio.run(TwoAddresses().resolve("mixed.example", 80))
    # the switch lets it through, and the connector gets exactly the checked addresses
    got = asyncio.run(TwoAddresses(allow_private_networks=True).resolve("mixed.example", 80))
    assert [r["host"] for r in got] == ["93.184.216.34", "10.0.0.7"]
    assert all(r["hostname"] == "mixed.example" and r["port"] == 80 for r in got)


def test_opted_out_directive_forms():
    assert opted_out(["noai"])
    assert opted_out(["NoImageAI"])
    assert opted_out(["noindex, noai"])
    assert opted_out(["noindex,nofollow", "otherbot: noimageai"])
    assert opted_out(["googlebot: noindex noai"])
    assert not opted_out(["noindex, nofollow"])
    assert not opted_out(["none", "noarchive"])
    assert not opted_out(["noaiarchive"])
    assert not opted_out([])


# ---------------------------------------------------------------------------------------------
# Against the local server, private-network switch ON (this section only)
# ---------------------------------------------------------------------------------------------

CASES = [  # path, status, http_status, attempts
    ("/good.png", "ok", 200, 1),
    ("/good.jpg", "ok", 200, 1),
    ("/missing.png", "http_error", 404, 1),
    ("/slow.png", "timeout", None, 3),
    ("/big.png", "too_large", 200, 1),
    ("/big-chunked.png", "too_large", 200, 1),
    ("/fake.jpg", "not_image", 200, 1),
    ("/fake-typed.jpg", "not_image", 200, 1),
    ("/bomb.png", "ok", 200, 1),
    ("/gzip.png", "ok", 200, 1),                # Content-Encoding decoded here
    ("/br.png", "ok", 200, 1),
    ("/gzip-bomb.png", "too_large", 200, 1),    # 128 MB of zeros: cut at max_bytes while decoding
    ("/br-bomb.png", "too_large", 200, 1),
    ("/bad-encoding.png", "not_image", 200, 1),
    ("/loop", "too_many_redirects", 302, 1),
    ("/redirect-good", "ok", 200, 1),
    ("/redirect-private", "ok", 200, 1),        # allowed: the switch is on
    ("/redirect-ftp", "refused_scheme", 302, 1),
    ("/noai.png", "opted_out", 200, 1),
    ("/otherbot-noai.png", "opted_out", 200, 1),
    ("/flaky.png?k=allow", "ok", 200, 2),       # 503 once, then fine: the retry is counted
    ("/ratelimit.png?k=allow", "ok", 200, 2),   # 429 with Retry-After: 0, then fine
    ("/always503.png", "http_error", 503, 3),   # retries exhausted
    ("/reset.png", "connection_error", None, 3),
]


@pytest.fixture(scope="module")
def allowed_results(server):
    urls = [server.url(path) for path, *_ in CASES]
    results = fetch_images(urls, ALLOW)
    assert [r.url for r in results] == urls           # the whole run completes, in input order
    return dict(zip([c[0] for c in CASES], results))


@pytest.mark.parametrize("path, status, http_status, attempts", CASES, ids=[c[0] for c in CASES])
def test_each_case_ends_with_the_right_status(allowed_results, path, status, http_status, attempts):
    r = allowed_results[path]
    assert isinstance(r, FetchResult)
    assert (r.status, r.http_status, r.attempts) == (status, http_status, attempts), r.error
    assert (r.error is None) == (status == "ok")
    assert (r.data is not None) == (status == "ok")
    assert 0 < r.seconds < (ALLOW.read_timeout + ALLOW.max_retry_after) * (ALLOW.retries + 1)   # measured, bounded


def test_ok_results_carry_the_bytes(server, allowed_results):
    r = allowed_results["/good.png"]
    assert r.data == server.png and r.content_type == "image/png" and r.final_url == r.url
    assert allowed_results["/good.jpg"].data == server.jpg
    red = allowed_results["/redirect-good"]
    assert red.final_url == server.url("/good.png") and red.data == server.png


def test_error_strings_are_short_and_useful(allowed_results):
    assert allowed_results["/missing.png"].error == "HTTP 404"
    assert "Content-Length" in allowed_results["/big.png"].error
    assert "max_bytes" in allowed_results["/big-chunked.png"].error
    assert "text/html" in allowed_results["/fake.jpg"].error
    assert "html" in allowed_results["/fake-typed.jpg"].error
    assert "noai" in allowed_results["/noai.png"].error
    assert "ftp" in allowed_results["/redirect-ftp"].error
    assert all(len(r.error or "") < 240 for r in allowed_results.values())


def test_encoded_bodies_are_decoded_with_a_bound(server, allowed_results):
    assert allowed_results["/gzip.png"].data == server.png and allowed_results["/br.png"].data == server.png
    for path in ("/gzip-bomb.png", "/br-bomb.png"):
        assert len(server.encoded(path[1:-4])) < 200_000            # under max_bytes on the wire ...
        assert "decoded body" in allowed_results[path].error       # ... refused once decoded past max_bytes
    assert "cannot be decoded" in allowed_results["/bad-encoding.png"].error


def test_bomb_fetches_fine_and_decode_refuses_it(allowed_results):
    r = allowed_results["/bomb.png"]
    assert r.status == "ok" and len(r.data) < 200_000
    d = decode(r.data)
    assert d.status == "too_large_pixels" and d.rgb is None


def test_opt_out_can_be_switched_off(server):
    cfg = FetchConfig(allow_private_networks=True, respect_opt_out=False)
    (r,) = fetch_images([server.url("/noai.png")], cfg)
    assert r.status == "ok" and r.data == server.png


def test_retry_after_over_the_cap_gives_up_and_retries_zero_means_one_try(server):
    cfg = FetchConfig(allow_private_networks=True, max_retry_after=10.0, backoff=0.01)
    (r,) = fetch_images([server.url("/ratelimit-long.png")], cfg)     # Retry-After: 120
    assert (r.status, r.http_status, r.attempts) == ("http_error", 429, 1)
    assert "Retry-After" in r.error
    (r,) = fetch_images([server.url("/flaky.png?k=noretry")],
                        FetchConfig(allow_private_networks=True, retries=0))
    assert (r.status, r.http_status, r.attempts) == ("http_error", 503, 1)


def test_per_host_rps_paces_the_requests_to_a_host(server):
    import dataclasses
    cfg = dataclasses.replace(ALLOW, per_host_rps=10.0)
    urls = [server.url(f"/good.png?k=pace{i}") for i in range(6)]
    results = fetch_images(urls, cfg)
    assert all(r.status == "ok" for r in results)
    starts = sorted(t for path, t in server.started if "k=pace" in path)
    assert len(starts) == 6
    assert min(b - a for a, b in zip(starts, starts[1:])) >= 0.09   # one start per 0.1 s, not 4 at once


def test_per_host_rps_must_be_positive():
    with pytest.raises(ValueError, match="images.fetch.per_host_rps"):
        FetchConfig(per_host_rps=0)
    assert FetchConfig(per_host_rps=None).per_host_rps is None


def test_url_host_is_the_politeness_key():
    from operators.io.urls import url_host
    assert url_host("https://IMG.Example.com:8443/a.png") == "img.example.com"
    assert url_host("http://[::1]/x") == "::1" and url_host("not a url") == "" and url_host(None) == ""


def test_results_are_handed_over_off_the_event_loop_one_at_a_time(server):
    """Decoding and hashing (the image stage's callback) run in a helper thread, one result at a
    time: a slow callback does not stall the reads in flight on the event loop."""
    import threading
    urls = [server.url(f"/good.png?k=cb{i}") for i in range(12)]
    seen, busy, overlap = [], [0], [False]

    def slow(i, r):
        busy[0] += 1
        overlap[0] |= busy[0] > 1
        seen.append((i, r.status, threading.current_thread().name, len(r.data or b"")))
        time.sleep(0.05)
        busy[0] -= 1

    results = fetch_images(urls, ALLOW, on_result=slow)
    assert sorted(i for i, *_ in seen) == list(range(12)) and not overlap[0]
    assert {name.startswith("fetch-results") for _, _, name, _ in seen} == {True}
    assert all(status == "ok" and n == len(server.png) for _, status, _, n in seen)
    assert [r.url for r in results] == urls and all(r.data is None for r in results)


def test_fetch_many_from_async_code_and_fetch_images_inside_a_loop(server):
    urls = [server.url("/good.png"), server.url("/missing.png"), server.url("/good.png")]

    async def main():
        direct = await fetch_many(urls, ALLOW)
        nested = fetch_images(urls, ALLOW)      # a running loop: runs on a helper thread
        return direct, nested

    direct, nested = asyncio.run(main())
    assert [r.status for r in direct] == [r.status for r in nested] == ["ok", "http_error", "ok"]
    assert asyncio.run(fetch_many([], ALLOW)) == []


def test_per_host_limit_is_respected(server):
    # 6 slow-ish requests, per_host=2: they run in 3 waves of the read timeout each
    cfg = FetchConfig(allow_private_networks=True, read_timeout=0.3, retries=0, per_host=2)
    results = fetch_images([server.url(f"/slow.png?w={i}") for i in range(6)], cfg)
    assert all(r.status == "timeout" for r in results)
    assert max(r.seconds for r in results) >= 0.85


# ---------------------------------------------------------------------------------------------
# Private-network switch OFF (the default): refused, and the server never sees the request
# ---------------------------------------------------------------------------------------------

def test_host_name_resolving_to_loopback_is_refused(server):
    url = server.url("/good.png?t=localhost", host="localhost")
    (r,) = fetch_images([url], DEFAULT)
    assert r.status == "refused_address"
    assert "localhost resolved to" in r.error and "loopback" in r.error
    assert server.hits["/good.png?t=localhost"] == 0


def test_literal_loopback_forms_are_refused_without_connecting(server):
    p = server.port
    forms = ["127.0.0.1", "2130706433", "0x7f000001", "0x7f.0.0.1", "0177.0.0.1", "127.1",
             "[::ffff:127.0.0.1]", "[::1]", "[0:0:0:0:0:ffff:7f00:1]"]
    urls = [f"http://{h}:{p}/good.png?t=literal{i}" for i, h in enumerate(forms)]
    results = fetch_images(urls, DEFAULT)
    for url, r in zip(urls, results):
        assert r.status == "refused_address", (url, r.error)
        assert r.attempts == 0 and r.http_status is None
    assert not any(k.startswith("/good.png?t=literal") for k in server.hits)


def test_other_schemes_are_refused():
    results = fetch_images(["ftp://127.0.0.1/x.png", "file:///etc/passwd", "gopher://x/"], DEFAULT)
    assert [r.status for r in results] == ["refused_scheme"] * 3


def test_bad_urls_are_statuses_not_exceptions():
    results = fetch_images(["", "not a url", "http://", "http://user:pw@example.com/x.png",
                            "http://999.1.1.1/x.png", None], DEFAULT)
    assert [r.status for r in results] == ["refused_scheme", "refused_scheme", "invalid_url",
                                           "invalid_url", "invalid_url", "invalid_url"]


PUBLIC = "images.example.com"


class PublicLookingResolver(SafeResolver):
    """Test double for "a public host that redirects to a private address".

    A real public host cannot be used (no internet), so PUBLIC stands in for one: it resolves to
    the local server and, for that one name only, the address check is skipped as if its
    address were public. Every other host, and every redirect target, goes through the real
    SafeResolver lookup and check (and literal addresses through url_refusal), so the test
    shows that the redirect hop is refused.
    """

    async def lookup(self, host, port, family):
        if host == PUBLIC:
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]
        return await super().lookup(host, port, family)

    def refusal(self, host, ip):
        return None if host == PUBLIC else super().refusal(host, ip)


def test_redirect_from_a_public_host_to_private_addresses_is_refused(server):
    assert DEFAULT.allow_private_networks is False
    before = server.hits["/good.png"]
    urls = [server.url("/good.png?t=public", host=PUBLIC),      # the double works: first hop ok
            server.url("/redirect-private", host=PUBLIC),       # -> http://127.0.0.1:<port>/good.png
            server.url("/redirect-localhost", host=PUBLIC),     # -> http://localhost:<port>/good.png
            server.url("/redirect-metadata", host=PUBLIC)]      # -> http://169.254.169.254/...
    ok, private, localhost, metadata = fetch_images(urls, DEFAULT, resolver=PublicLookingResolver())
    assert ok.status == "ok" and ok.data == server.png
    assert private.status == "refused_address" and private.http_status == 302
    assert "127.0.0.1" in private.error and "loopback" in private.error
    assert localhost.status == "refused_address" and "localhost resolved to" in localhost.error
    assert metadata.status == "refused_address" and "cloud metadata" in metadata.error
    assert server.hits["/redirect-private"] >= 1               # the first hop was really fetched
    assert server.hits["/good.png"] == before                  # the private targets never were
