"""The `extract.engine: trafilatura` engine: trafilatura's XML output (with images) as aligned
text and image lists, the page's metadata read as the lexbor engine reads it."""
from __future__ import annotations

from selectolax.lexbor import LexborHTMLParser

from operators.io.urls import best_srcset_url, is_data_uri, resolve_url
from operators.text.page import ExtractResult, empty_result, page_metadata
from operators.text.repair import fit_html

_XML_BLOCKS = frozenset("p head item cell quote code list row table".split())


def extract_trafilatura(html: str, url: str, cfg) -> ExtractResult:
    import xml.etree.ElementTree as ET

    import trafilatura

    html, truncated = fit_html(html, cfg.max_html_chars)
    try:
        tree = LexborHTMLParser(html)
        title, lang, canonical, base = page_metadata(tree, url)
    except Exception:
        title = lang = canonical = None
        base = url
    xml = trafilatura.extract(html, url=url, include_images=True, output_format="xml",
                              favor_precision=False)
    if not xml:
        return empty_result(title, lang, canonical, truncated)
    root = ET.fromstring(xml)
    main = root.find("main")
    texts, images, infos, dropped = [], [], [], {}
    buf: list = []

    def flush():
        text = " ".join("".join(buf).split())
        buf.clear()
        if text:
            texts.append(text)
            images.append(None)
            infos.append(None)

    def walk(el):
        if el.tag == "graphic":
            flush()
            src = (el.get("src") or "").strip()
            if " " in src:  # trafilatura sometimes returns a whole srcset
                src = best_srcset_url(src) or src.split()[0]
            if is_data_uri(src):
                dropped["data_uri"] = dropped.get("data_uri", 0) + 1
                return
            u = resolve_url(base, src)
            if u is None:
                dropped["invalid_url"] = dropped.get("invalid_url", 0) + 1
                return
            if images and images[-1] == u:
                dropped["duplicate"] = dropped.get("duplicate", 0) + 1
                return
            texts.append(None)
            images.append(u)
            infos.append({"alt": el.get("alt") or None, "width": None, "height": None})
            return
        if el.tag in _XML_BLOCKS:
            flush()
        buf.append(" " if el.tag == "lb" else el.text or "")
        for child in el:
            walk(child)
            buf.append(child.tail or "")
        if el.tag in _XML_BLOCKS:
            flush()

    walk(root if main is None else main)
    flush()
    return ExtractResult(title, lang, canonical, texts, images, infos, dropped, truncated)
