"""HTML a parser cannot read as written, made readable before the extractor walks it: runaway
nesting (thousands of unclosed <div>/<font>, defused so the tree stays shallow), an unclosed
<title>, <textarea>, <xmp> or <script> that swallows the page (re-parsed without it), and input
over `extract.max_html_chars` (cut, raw-text elements first)."""
from __future__ import annotations

import re

from selectolax.lexbor import LexborHTMLParser

_MAX_UNCLOSED = 20_000
_NESTING_TAGS = ("div", "span", "font", "b", "i", "u", "em", "strong", "a", "table", "td", "tr",
                 "ul", "ol", "li", "blockquote", "section", "center", "small", "big", "p", "dl")


_DEEP_CLOSE = "</div>" * 1000
_DEEP_OPEN = "<div>" * 1000


def suspicious_nesting(html: str) -> bool:
    lt = html.count("<")
    if lt > _MAX_UNCLOSED:   # enough tags to nest that deep: `defuse_nesting` measures it
        return True
    return (_DEEP_CLOSE[:60] in html and _DEEP_CLOSE in html) or \
        (_DEEP_OPEN[:50] in html and _DEEP_OPEN in html)


_NESTING_TAG = re.compile(r"<(/?)(" + "|".join(_NESTING_TAGS) + r")\b[^>]*>", re.I)
_AUTO_CLOSED = frozenset({"p", "li", "td", "tr", "dl"})   # closed by their next sibling: no depth
_MAX_DEPTH = 1_000


def runaway_tags(html: str) -> set[str]:
    """The nesting tags that some element is nested more than `_MAX_DEPTH` deep in, or that are
    left unclosed more than 5,000 times (one pass over the tags, whatever the layout: compact or
    one tag per line)."""
    depth: dict[str, int] = {}
    unclosed: dict[str, int] = {}
    out: set[str] = set()
    for m in _NESTING_TAG.finditer(html):
        name = m.group(2).lower()
        step = -1 if m.group(1) else 1
        unclosed[name] = unclosed.get(name, 0) + step
        if name in _AUTO_CLOSED:
            continue
        d = depth.get(name, 0) + step
        depth[name] = max(d, 0)
        if d > _MAX_DEPTH:
            out.add(name)
    return out | {name for name, n in unclosed.items() if n > 5_000}


def defuse_nesting(html: str) -> str:
    """Drop the tags of elements nested more than `_MAX_DEPTH` deep or left unclosed thousands of
    times: lexbor's tree building is quadratic in nesting depth (50k nested <div>s, one per
    line, took 6 s and merged the article's paragraphs into one block); such markup is garbage,
    its text is kept."""
    for tag in runaway_tags(html):
        html = re.sub(rf"</?{tag}(?:\s[^>]*)?>", " ", html, flags=re.I)
    return html


_SWALLOWERS = ("textarea", "xmp", "noembed", "noframes", "plaintext", "style", "script", "title")


def reparse_swallowed(html: str, tree, title: str):
    fixed = re.sub(r"<title\b[^>]*>", "", html, count=1, flags=re.I)
    node = tree.css_first("title")
    raw = node.text() if node is not None else title
    short = " ".join(raw.strip().split("\n", 1)[0].split())[:300] or None
    return LexborHTMLParser(fixed), short


def unswallow(html: str) -> str | None:
    """`html` without the start tag of the first raw-text element that is never closed."""
    low = html.lower()
    for tag in _SWALLOWERS:
        start = low.find("<" + tag)
        if start >= 0 and low.find("</" + tag, start) < 0:
            end = low.find(">", start)
            if end > 0:
                return html[:start] + html[end + 1:]
    return None


_BIG_ATTRIBUTE = re.compile(r"""=[ \t\r\n]*(?:"[^"]{4096,}"|'[^']{4096,}')""")


def fit_html(html: str, limit: int) -> tuple[str, bool]:
    """`html` within `limit` characters: first without what extraction never reads (attribute
    values of 4 KB and more - data URIs, JSON state - and the bodies of <script> and <style>),
    then cut at `limit` only if it is still longer. Returns (html, cut). Without the first step a
    page whose article follows a multi-megabyte attribute lost the article. Linear time."""
    if len(html) <= limit:
        return html, False
    html = _BIG_ATTRIBUTE.sub('=""', html)
    if len(html) > limit:
        html = drop_raw_text(html)
    if len(html) > limit:
        return html[:limit], True
    return html, False


def drop_raw_text(html: str) -> str:
    """`html` with the contents of its <script> and <style> elements removed (one pass)."""
    low = html.lower()
    out, i = [], 0
    while True:
        j = min((k for k in (low.find("<script", i), low.find("<style", i)) if k != -1), default=-1)
        if j == -1:
            break
        gt = html.find(">", j)
        if gt == -1:
            break
        tag = "script" if low.startswith("<script", j) else "style"
        end = low.find("</" + tag, gt)
        if end == -1:   # unclosed: the rest is raw text of that element
            out.append(html[i:gt + 1])
            return "".join(out)
        out.append(html[i:gt + 1])
        i = end
    out.append(html[i:])
    return "".join(out)
