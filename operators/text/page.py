"""A page's result and metadata, shared by the extraction engines (operators/text/extract.py:
the lexbor walk; operators/text/extract_trafilatura.py: trafilatura)."""
from __future__ import annotations

from dataclasses import dataclass

from operators.io.urls import resolve_base, resolve_url


@dataclass
class ExtractResult:
    title: str | None
    html_lang: str | None          # <html lang> (or xml:lang / content-language meta), stripped, as written
    canonical_url: str | None      # <link rel=canonical> resolved to absolute
    texts: list[str | None]        # aligned with images; at each position exactly one is non-null (OBELICS)
    images: list[str | None]
    image_info: list[dict | None]  # aligned; at image positions {"alt","width","height"}, None at text positions
    dropped_images: dict[str, int]  # reason -> count (data_uri, small, invalid_url, duplicate, ...)
    truncated: bool = False        # the HTML was cut at max_html_chars before parsing
    error: str | None = None       # set when extraction failed unexpectedly (the result is then empty)


def empty_result(title=None, lang=None, canonical=None, truncated=False) -> ExtractResult:
    return ExtractResult(title, lang, canonical, [], [], [], {}, truncated)


def page_metadata(tree, url: str):
    title = lang = canonical = base_href = None
    try:
        node = tree.css_first("title")
        if node is not None:
            title = " ".join(node.text().split()) or None
        if not title:
            node = tree.css_first('meta[property="og:title"]')
            if node is not None:
                title = " ".join((node.attributes.get("content") or "").split()) or None
        html = tree.css_first("html")
        if html is not None:
            attrs = html.attributes
            lang = (attrs.get("lang") or attrs.get("xml:lang") or "").strip() or None
        if lang is None:
            for node in tree.css("meta[http-equiv]"):
                if (node.attributes.get("http-equiv") or "").strip().lower() == "content-language":
                    lang = (node.attributes.get("content") or "").strip() or None
                    if lang:
                        break
        node = tree.css_first("base[href]")
        if node is not None:
            base_href = node.attributes.get("href")
        base = resolve_base(url, base_href)
        for node in tree.css("link[rel][href]"):
            rels = (node.attributes.get("rel") or "").lower().split()
            if "canonical" in rels:
                canonical = resolve_url(base, node.attributes.get("href"))
                if canonical:
                    break
    except Exception:  # pragma: no cover - defensive
        base = url
    return title, lang, canonical, base
