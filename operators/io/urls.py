"""URL helpers for extraction: resolution against a base, validation, srcset parsing.

Small pure functions, no I/O. `resolve_url` returns None for anything that is not an
absolute http(s) URL after resolution, so callers can count those as invalid.
"""
from __future__ import annotations

import re
from urllib.parse import urljoin, urlsplit, urlunsplit

_WS = re.compile(r"[\t\n\r\f\v]+")
_SIMPLE_ABS = re.compile(r"https?://[a-z0-9.-]+(?::\d+)?/[^\s<>\"'{}|\\^`]*\Z")
_PX = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:px)?\s*$", re.I)
# File names typical of lazy-loading placeholders and spacer images.
_PLACEHOLDER = re.compile(
    r"(?:placeholder|blank|spacer|lazy|loading|transparent|pixel|grey\.gif|gray\.gif|1x1|empty)"
    r"[^/]*$", re.I)


def is_data_uri(raw: str | None) -> bool:
    return bool(raw) and raw.lstrip()[:5].lower() == "data:"


def resolve_url(base: str | None, raw: str | None) -> str | None:
    """Absolute http(s) URL of `raw` resolved against `base`, fragment dropped; else None."""
    if not raw:
        return None
    raw = raw.strip()
    if "\n" in raw or "\t" in raw or "\r" in raw:
        raw = _WS.sub("", raw)
    if not raw or raw[0] == "#":
        return None
    if raw.startswith(("https://", "http://")) and " " not in raw and "#" not in raw and \
            _SIMPLE_ABS.match(raw):
        return raw  # already absolute and well-formed (host lowercase, has a path)
    try:
        url = urljoin(base or "", raw) if base else raw
        parts = urlsplit(url)
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.netloc or parts.netloc.startswith((":", "@")):
        return None
    host = parts.hostname or ""
    if not host or any(c in host for c in " <>\"'{}|\\^`"):
        return None
    try:
        netloc = parts.netloc
        # lowercase the host part only (keep userinfo / port as written)
        at = netloc.rfind("@")
        netloc = netloc[: at + 1] + netloc[at + 1:].lower()
        return urlunsplit((scheme, netloc, parts.path or "/", parts.query, "")).replace(" ", "%20")
    except ValueError:
        return None


def resolve_base(page_url: str | None, base_href: str | None) -> str | None:
    """The base for relative URLs: <base href> resolved against the page URL, else the page URL."""
    if base_href:
        base = resolve_url(page_url, base_href)
        if base:
            return base
    return page_url or None


def parse_srcset(srcset: str | None) -> list[tuple[str, float | None, float | None]]:
    """[(url, width_descriptor, density_descriptor)] of a srcset attribute, per the HTML spec.

    URLs may contain commas (e.g. CDN transforms): a candidate's URL ends at whitespace, and a
    trailing comma on the URL ends the candidate; descriptors run to the next comma.
    """
    out: list[tuple[str, float | None, float | None]] = []
    if not srcset:
        return out
    tokens = srcset.split()
    i, n = 0, len(tokens)
    while i < n:
        url = tokens[i].lstrip(",")
        i += 1
        if not url:
            continue
        if url.endswith(","):
            out.append((url.rstrip(","), None, None))
            continue
        w = x = None
        while i < n:
            tok = tokens[i]
            i += 1
            end = "," in tok
            if end:
                tok, _, rest = tok.partition(",")
                if rest:            # "1x,next.jpg": the next candidate starts right after
                    i -= 1
                    tokens[i] = rest
            d = tok.lower()
            try:
                if d.endswith("w"):
                    w = float(d[:-1])
                elif d.endswith("x"):
                    x = float(d[:-1])
            except ValueError:
                pass
            if end:
                break
        out.append((url, w, x))
    return out


def best_srcset_url(srcset: str | None) -> str | None:
    """The srcset candidate with the largest width descriptor (else highest density, else first)."""
    cands = parse_srcset(srcset)
    if not cands:
        return None
    best, best_key = None, None
    for idx, (url, w, x) in enumerate(cands):
        if is_data_uri(url):
            continue
        key = (w if w is not None else -1.0, x if x is not None else (1.0 if w is None else -1.0), -idx)
        if best_key is None or key > best_key:
            best, best_key = url, key
    return best


def is_placeholder(raw: str | None) -> bool:
    """True for lazy-loading placeholders: data: URIs, spacer/blank/placeholder/lazy file names."""
    if not raw:
        return True
    raw = raw.strip()
    if is_data_uri(raw) or raw == "about:blank":
        return True
    name = raw.split("?", 1)[0].split("#", 1)[0].replace("\\", "/").rsplit("/", 1)[-1]
    if _PLACEHOLDER.search(name) is None:
        return False
    # a placeholder's name is short ("blank.gif", "lazy-placeholder.png", "1x1transparent.gif",
    # "20070809__tspacer.gif"); a longer one that holds such a word names a photo
    # ("Vaubel_2000Pixel056-e1540106438822.jpg", "google-pixel-7-review-hands-on.jpg")
    return len(name.split(".", 1)[0]) <= 24


def parse_dimension(value: str | None) -> int | None:
    """Integer pixels of a width/height attribute ('300', '300px', '300.5'); None if absent/other."""
    if value is None:
        return None
    m = _PX.match(str(value))
    if not m:
        return None
    try:
        return int(float(m.group(1)))
    except (ValueError, OverflowError):
        return None


def url_key(url: str | None) -> str | None:
    """The key under which two fetches count as the same page: `host[:port]/path[?query]`.

    The scheme is dropped (http and https serve the same page), the host lowercased (a leading
    "www." is kept: it may be another site), default ports (:80, :443), user info and the fragment
    dropped, an empty path becomes "/"; path and query stay as written. None for a missing or
    non-http(s) URL.
    """
    if not url:
        return None
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    host = (parts.hostname or "").lower()
    if parts.scheme.lower() not in ("http", "https") or not host:
        return None
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    if port is not None and port not in (80, 443):
        host = f"{host}:{port}"
    key = host + (parts.path or "/")
    return f"{key}?{parts.query}" if parts.query else key


def url_host(url: str | None) -> str:
    """The lower-case host of `url` ("" when it has none or does not parse): the key that
    politeness limits (images.fetch.per_host, per_host_rps) and the fetch partitioning share."""
    if not url:
        return ""
    try:
        return (urlsplit(url.strip()).hostname or "").lower()
    except ValueError:
        return ""
