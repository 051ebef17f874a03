"""Main-content extraction: HTML page -> ordered text blocks and images (OBELICS layout).

Engine "lexbor" (default) is our own extractor on selectolax's lexbor parser:

1. parse (defusing pathological nesting and unclosed <title>/<textarea> first), read metadata
   (title, lang, canonical, <base href>), drop script/style/nav/footer/... in C;
2. one iterative walk over <body> (no recursion) that skips hidden and never-content subtrees,
   splits the rest into text blocks at block-level tags (inline elements merged, list items /
   table cells / captions / pre one block each), records images (lazy-loading attributes,
   srcset, <picture>, <noscript> fallbacks) and per-element text / link-text totals; elements
   whose tag / class / id / role look like boilerplate (menus, sharing, comments, related,
   cookie banners, ads, sidebars ...) are *flagged*, not cut, so a misleading wrapper class
   cannot lose the article; an image viewer's or lead image's wrapper ("lightbox",
   "header-image") and a soft hint inside a <figure> do not flag the photos in them;
3. readability-style scoring of containers from their paragraphs (commas, length, link density,
   class weights, <article>/<main>/articleBody bonuses), top container, climbing, siblings; a
   whole-body fallback when the container holds too little of the page's text;
4. emission in document order of the blocks inside the chosen containers: flagged subtrees,
   link-dense and UI-chrome blocks, "Related articles" sections and orphan headings dropped;
   the headline, an intro paragraph and the lead photo just before the container kept;
   figure captions follow their image; consecutive duplicate images dropped.

Engine "trafilatura" runs trafilatura (XML output with images) as a fallback engine.
`extract_document` never raises.
"""
from __future__ import annotations

import importlib.util
import re
import signal
import threading
from contextlib import contextmanager
from dataclasses import dataclass

from selectolax.lexbor import LexborHTMLParser

from operators.text.page import ExtractResult  # noqa: F401 (the result type callers import from here)
from operators.text.page import empty_result as _empty
from operators.text.page import page_metadata as _metadata
from operators.text.repair import defuse_nesting, fit_html, reparse_swallowed, suspicious_nesting, unswallow

from operators.text.boilerplate import (
    _CACHE as CLASSIFY_CACHE, classify, is_hidden, is_boilerplate_text,
)
from operators.io.urls import (
    best_srcset_url, is_data_uri, is_placeholder, parse_dimension, resolve_url,
)


@dataclass(frozen=True)
class ExtractConfig:
    engine: str = "lexbor"         # "lexbor" (ours) or "trafilatura"
    min_image_size: int = 32       # images with declared width or height below this are dropped as icons/pixels
    max_html_chars: int = 5_000_000  # larger pages are truncated before parsing (count it)
    min_block_chars: int = 1       # text blocks shorter than this (after normalisation) are dropped
    max_link_density: float = 0.6  # non-heading text blocks with more link text than this share are dropped
    keep_title_heading: bool = True  # prepend the page's <h1> if it sits just before the chosen container
    sibling_threshold: float = 0.2   # siblings of the top container join it above this share of its score
    lead_text_window: int = 4        # blocks before the container searched for intro paragraphs (0: off)
    fallback_coverage: float = 0.3   # below this share of the page's good text in the container, use the body
    max_seconds: float = 10.0        # a page whose extraction takes longer is given up (empty, error "timeout")

    def __post_init__(self):
        if self.engine not in ("lexbor", "trafilatura"):
            raise ValueError(f"extract.engine must be lexbor or trafilatura, not {self.engine!r}")
        if self.engine == "trafilatura" and importlib.util.find_spec("trafilatura") is None:
            raise ValueError("extract.engine trafilatura needs the trafilatura package: pip install trafilatura")
        for name in ("min_image_size", "max_html_chars", "min_block_chars", "lead_text_window"):
            if getattr(self, name) < 0:
                raise ValueError(f"extract.{name} must be >= 0")
        if isinstance(self.max_seconds, bool) or not isinstance(self.max_seconds, (int, float)) or \
                self.max_seconds <= 0:
            raise ValueError("extract.max_seconds must be a number > 0")
        for name in ("max_link_density", "sibling_threshold", "fallback_coverage"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"extract.{name} must be between 0 and 1")


# ---------------------------------------------------------------------------------------------
# tag classes

SKIP_TAGS = frozenset("""
script style template iframe svg canvas object embed button select input textarea option optgroup
datalist head title meta link audio video map area dialog applet frame frameset noembed nav
menu menuitem -comment -doctype base param track portal
""".split())
BLOCK_TAGS = frozenset("""
p div section article main header footer h1 h2 h3 h4 h5 h6 ul ol li dl dt dd table thead tbody
tfoot tr td th caption pre blockquote figure figcaption address hr form fieldset legend center
details summary body html hgroup noscript listing plaintext xmp dir frame body
""".split())
HEADINGS = frozenset("h1 h2 h3 h4 h5 h6".split())
# readability's initial scores by tag
TAG_INIT = {"div": 5, "article": 8, "main": 5, "section": 3, "pre": 3, "td": 3, "blockquote": 3,
            "address": -3, "ol": -3, "ul": -3, "dl": -3, "dd": -3, "dt": -3, "li": -3,
            "form": -3, "h1": -5, "h2": -5, "h3": -5, "h4": -5, "h5": -5, "h6": -5, "th": -5}
MAX_COMMAS = 10  # commas counted per paragraph (name lists are not articles)
FLAG_PENALTY = 0.3  # score share of paragraphs inside soft-boilerplate elements
_LAZY_ATTRS = ("data-src", "data-original", "data-lazy-src", "data-url", "data-hi-res-src",
               "data-full-src", "data-lazy", "data-original-src", "data-img-retina-url",
               "data-img-url", "data-lsrc", "data-echo")
# responsive sets spelled as attributes ("data-src-mini" ... "data-src-full16x9"): largest first
_SIZE_WORDS = ("full", "xxlarge", "xlarge", "large", "big", "medium", "small", "xsmall", "mini",
               "thumb")
_SRCSET_ATTRS = ("data-srcset", "srcset", "data-lazy-srcset")
# Headings that introduce related-content teasers (several languages).
_RELATED_HEADING = re.compile(
    r"^(?:related(?: articles| posts| stories| content| news| links)?|"
    r"(?:you )?(?:may|might) also (?:like|enjoy|be interested in)|"
    r"(?:more|also) (?:from|on|in|like this|stories|news|to read)\b.*|read (?:more|also|next)|"
    r"recommended(?: for you| articles| stories)?|(?:most )?(?:popular|read|viewed)(?: articles| stories| now)?|"
    r"trending(?: now| stories)?|top stories|latest (?:news|stories|articles)|"
    r"das könnte (?:sie|dich) (?:auch|ebenfalls) interessieren|mehr zu(?:m thema)?\b.*|"
    r"(?:zum )?weiterlesen|lesen sie (?:auch|mehr)|auch interessant|meistgelesen.*|"
    r"weitere (?:artikel|beiträge|themen|nachrichten)|ähnliche (?:artikel|beiträge)|"
    r"à lire (?:aussi|également)|lire aussi|voir aussi|sur le même sujet|"
    r"(?:te puede interesar|lee también|leer más|noticias relacionadas|más noticias)|"
    r"leia também|veja também|(?:você|voce) (?:também )?pode gostar|leggi anche|"
    r"(?:ti )?potrebbe interessarti|vous aimerez aussi|(?:también )?te puede gustar|"
    r"lees ook|gerelateerde artikelen)[\s:!.?]*$", re.I)
_SENTENCE_END = frozenset('.!?"”\'»)…。！？')
_COMMAS = re.compile(r"[,，、،]")
_SPACES = re.compile(r"[ \t\f\v\r\u00a0\u2000-\u200b\u3000]+")


# ---------------------------------------------------------------------------------------------
# the walk

class _Walk:
    """State of the single pass over <body>."""

    __slots__ = ("base", "cfg", "blocks", "el_tag", "el_parent", "el_depth", "el_weight",
                 "el_text", "el_link", "el_kids", "el_flag", "dropped", "body_len", "body",
                 "unflag")

    def __init__(self, base, cfg, body):
        self.base = base
        self.cfg = cfg
        self.body = body
        self.body_len = -1
        # blocks: [kind, payload, text_len, link_len, anc(tuple of eids), tag, commas]
        #   kind "t": payload = text; kind "i": payload = (url, info)
        self.blocks: list = []
        self.el_tag: list = []
        self.el_parent: list = []
        self.el_depth: list = []
        self.el_weight: list = []
        self.el_text: list = []
        self.el_link: list = []
        self.el_kids: list = []
        self.el_flag: list = []    # 0 none, 1 boilerplate, 2 soft hint, 3 image viewer (soft)
        self.dropped: dict = {}
        self.unflag: set = set()   # flagged elements judged to be content after all

    def drop(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1

    def body_text_len(self) -> int:
        if self.body_len < 0:
            try:
                self.body_len = len(self.body.text(deep=True))
            except Exception:
                self.body_len = 0
        return self.body_len

    # -- images ------------------------------------------------------------------------------
    def image(self, attrs: dict, sources):
        """(raw_urls, info) of an <img>: candidate URLs, best first (resolved later, only for
        images kept), or None after counting the drop reason."""
        min_size = self.cfg.min_image_size
        w = attrs.get("width")
        h = attrs.get("height")
        width = parse_dimension(w) if w is not None else None
        height = parse_dimension(h) if h is not None else None
        if width == 0 and height is not None and height > 0:
            width = None   # width="0"/height="0" next to a real size is a layout hack
        elif height == 0 and width is not None and width > 0:
            height = None
        if (width is not None and width < min_size) or (height is not None and height < min_size):
            self.drop("small")
            return None
        src = attrs.get("src")
        if src and not is_placeholder(src) and "srcset" not in attrs:
            cands = [src]
        else:
            # lazy loading: the real image is in data-* / srcset / <picture> sources
            cands = []
            for key in _LAZY_ATTRS:
                v = attrs.get(key)
                if v and not is_placeholder(v):
                    cands.append(v)
            for key in _SRCSET_ATTRS:
                v = attrs.get(key)
                if v:
                    v = best_srcset_url(v)
                    if v and not is_placeholder(v):
                        cands.append(v)
            for srcset in sources:
                v = best_srcset_url(srcset)
                if v and not is_placeholder(v):
                    cands.append(v)
            if not cands:
                cands = _sized_sources(attrs)
            if src and not is_placeholder(src):
                cands.append(src)
            if not cands:
                if is_data_uri(src) or is_data_uri(attrs.get("data-src")) or \
                        is_data_uri(attrs.get("srcset")):
                    self.drop("data_uri")
                elif src:
                    self.drop("placeholder")
                else:
                    self.drop("no_src")
                return None
        alt = attrs.get("alt")
        if alt:
            alt = " ".join(alt.split()) or None
        return cands, {"alt": alt or None, "width": width, "height": height}

    # -- main loop ---------------------------------------------------------------------------
    def run(self):
        blocks = self.blocks
        el_tag, el_parent, el_depth = self.el_tag, self.el_parent, self.el_depth
        el_weight, el_text, el_link, el_kids = self.el_weight, self.el_text, self.el_link, self.el_kids
        el_flag = self.el_flag
        buf: list = []          # inline text pieces of the current block
        buf_link = 0            # link text length in buf
        link_depth = pre_depth = article_depth = 0
        anchors: list = []      # [ostack index, node, decided] of the open <a> elements
        anc: list = []          # eids of the open block elements
        b_text: list = []       # text / link totals of the open block elements (aligned with anc)
        b_link: list = []
        ostack: list = []       # bit codes of the open elements
        nexts: list = []        # next siblings of the open elements
        fstack: list = []       # eids of the open flagged (soft boilerplate) elements
        # [had_image, deferred_blocks, in_caption, declared image URL, len(fstack) at its start]
        figure_stack: list = []
        picture_sources: list = []
        last_img_placeholder = False
        skip_tags, block_tags, special_tags = SKIP_TAGS, BLOCK_TAGS, SPECIAL_TAGS
        image = self.image
        cache_get = CLASSIFY_CACHE.get
        buf_append = buf.append
        ostack_append, ostack_pop = ostack.append, ostack.pop
        nexts_append, nexts_pop = nexts.append, nexts.pop

        def image_flags(info) -> tuple:
            # an image viewer's wrapper (flag 3: "lightbox", "image-popup", "header-image") does
            # not flag the photos in it (logos and banners it does), and a figure's own image is
            # content whatever soft hint sits between the <figure> and its <img> (la-nacion's
            # click-to-enlarge "conModal")
            if not fstack:
                return ()
            k = figure_stack[-1][4] if figure_stack else len(fstack)
            has_viewer = 3 in map(el_flag.__getitem__, fstack)
            viewer = 3 if has_viewer and not _looks_like_logo(info) else -1
            return tuple(f for i, f in enumerate(fstack)
                         if el_flag[f] != viewer and (i < k or el_flag[f] != 2))

        def flush():
            nonlocal buf_link
            raw = "".join(buf)
            buf.clear()
            link_len = buf_link
            buf_link = 0
            if pre_depth:
                lines = [_SPACES.sub(" ", ln).strip() for ln in raw.split("\n")]
                text = "\n".join(ln for ln in lines if ln)
            else:
                text = " ".join(raw.split())
            if not text:
                return
            n = len(text)
            if link_len > n:
                link_len = n
            if anc:
                b_text[-1] += n
                b_link[-1] += link_len
                tag = el_tag[anc[-1]]
            else:
                tag = "body"
            commas = text.count(",") + (len(_COMMAS.findall(text)) if not text.isascii() else 0)
            block = ["t", text, n, link_len, tuple(anc), tag, commas, tuple(fstack)]
            if figure_stack and figure_stack[-1][2] and not figure_stack[-1][0]:
                figure_stack[-1][1].append(block)   # caption before its image: defer
            else:
                blocks.append(block)

        node = self.body
        max_depth = 500
        first = True
        while True:
            if node is None:
                if not ostack:
                    break
                code = ostack_pop()
                # ---- exit of an element (most codes are 0 or C_BLOCK alone: test in groups).
                # Order matters: a cell's space goes in before its block is flushed, and the
                # flush reads pre_depth, fstack and the figure state before they are unwound.
                if code:
                    if code & C_EXIT_BEFORE:
                        if code & C_LINK:
                            link_depth -= 1
                        if code & C_ANCHOR:
                            anchors.pop()
                        if code & C_CELL and buf:
                            buf.append(" ")
                        if code & C_PICTURE:
                            picture_sources.clear()
                    if code & C_BLOCK:
                        if buf:
                            flush()
                        eid = anc.pop()
                        t = b_text.pop()
                        lk = b_link.pop()
                        el_text[eid] = t
                        el_link[eid] = lk
                        if b_text:
                            b_text[-1] += t
                            b_link[-1] += lk
                    if code & C_EXIT_AFTER:
                        if code & C_PRE:
                            pre_depth -= 1
                        if code & C_FLAG:
                            fstack.pop()
                        if code & C_ARTICLE:
                            article_depth -= 1
                        if code & C_CAPTION and figure_stack:
                            figure_stack[-1][2] = False
                        if code & C_FIGURE and figure_stack:
                            had_image, deferred, _, declared, _ = figure_stack.pop()
                            if declared is not None and not had_image:
                                # a schema.org ImageObject whose <img> a script renders
                                info = image({"src": declared}, ())
                                if info is not None:
                                    blocks.append(["i", info, 0, 0, tuple(anc), "img", 0, tuple(fstack)])
                            if deferred:
                                blocks.extend(deferred)
                node = nexts_pop() if nexts else None
                if not ostack:
                    break
                continue
            tag = node.tag
            if tag == "-text":
                t = node.text_content
                if t:
                    if t.isspace():
                        if buf:
                            buf_append(" ")
                    else:
                        if link_depth:
                            buf_link += len(t.strip())
                        buf_append(t)
                node = node.next
                continue
            if tag in skip_tags or tag is None:
                node = node.next
                continue
            if len(ostack) >= max_depth:
                # absurd nesting: keep the text, stop descending
                try:
                    t = node.text(deep=True)
                except Exception:
                    t = None
                if t:
                    buf.append(t)
                node = node.next
                continue
            attrs = node.attributes
            if attrs:
                if ("hidden" in attrs or "style" in attrs or "aria-hidden" in attrs) and \
                        is_hidden(attrs):
                    node = node.next
                    continue
            if tag in special_tags:
                if tag == "br":
                    if buf:
                        buf.append("\n" if pre_depth else " ")
                    node = node.next
                    continue
                if tag == "img":
                    info = image(attrs, picture_sources)
                    if info is not None:
                        if buf:
                            flush()
                        blocks.append(["i", info, 0, 0, tuple(anc), "img", 0, image_flags(info)])
                        if figure_stack:
                            figure_stack[-1][0] = True
                        last_img_placeholder = False
                    else:
                        src = attrs.get("src")
                        last_img_placeholder = src is None or is_placeholder(src)
                    node = node.next
                    continue
                if tag == "noscript":
                    # lazy-loading pages put the real <img> in <noscript> after a placeholder;
                    # script-rendered pages put the whole text there (walked like a <div>)
                    try:
                        long_text = node.css_first("p") is not None and \
                            len(node.text(deep=True)) > max(200, 0.4 * self.body_text_len())
                    except Exception:
                        long_text = False
                    if long_text:
                        tag = "div"
                    else:
                        img = node.css_first("img")
                        if img is not None:
                            # the previous image, inside the same parent element, is a preview
                            prev_is_image = not buf and blocks and blocks[-1][0] == "i" and \
                                blocks[-1][4][:len(anc)] == tuple(anc)
                            if last_img_placeholder or prev_is_image:
                                info = image(img.attributes, ())
                                if info is not None:
                                    if prev_is_image:
                                        # low-resolution preview + real image in <noscript>
                                        blocks[-1][1] = info
                                        self.drop("preview")
                                    else:
                                        if buf:
                                            flush()
                                        blocks.append(["i", info, 0, 0, tuple(anc), "img", 0,
                                                       image_flags(info)])
                                        if figure_stack:
                                            figure_stack[-1][0] = True
                            last_img_placeholder = False
                    if not long_text:
                        node = node.next
                        continue
                if tag == "source":
                    if ostack and ostack[-1] & C_PICTURE:
                        v = attrs.get("srcset") or attrs.get("data-srcset")
                        if v:
                            picture_sources.append(v)
                    node = node.next
                    continue
            if attrs:
                cls = attrs.get("class")
                ide = attrs.get("id")
                if cls is None and ide is None and "role" not in attrs and "itemprop" not in attrs:
                    kw = cache_get(tag)
                else:
                    kw = cache_get((tag, cls, ide, attrs.get("role"), attrs.get("itemprop")))
            else:
                kw = cache_get(tag)
            kind, weight = kw if kw is not None else classify(tag, attrs)
            code = C_BLOCK if tag in block_tags else 0
            if kind is not None and not first:
                if kind == "check_size" or kind == "soft" or kind == "viewer":
                    # soft: the subtree is walked but its blocks are flagged; they are dropped
                    # unless the chosen container lies inside it (a misleading wrapper class)
                    code = C_BLOCK | C_FLAG  # flagged inline wrappers become blocks
                    flag = 2 if kind == "soft" else 3 if kind == "viewer" else 1
                elif kind == "header":
                    # page headers (logo, menus) go; headers of articles / with the headline stay
                    if not (article_depth or node.css_first("h1") is not None):
                        node = node.next
                        continue
                elif kind == "form":
                    try:
                        n = len(node.text(deep=True))
                    except Exception:
                        n = 0
                    if n < 500:
                        node = node.next
                        continue
                else:
                    node = node.next
                    continue
            first = False
            if code:
                if link_depth and not anchors[-1][2]:
                    # a block inside a link: a card's title, or an unclosed <a> around the article
                    a = anchors[-1]
                    a[2] = True
                    if _swallowing(a[1]):
                        ostack[a[0]] &= ~C_LINK
                        link_depth -= 1
                if buf:
                    flush()
                eid = len(el_tag)
                el_tag.append(tag)
                el_depth.append(len(anc))
                el_weight.append(weight)
                el_text.append(0)
                el_link.append(0)
                el_kids.append(0)
                el_flag.append(False)
                if anc:
                    el_parent.append(anc[-1])
                    el_kids[anc[-1]] += 1
                else:
                    el_parent.append(-1)
                anc.append(eid)
                b_text.append(0)
                b_link.append(0)
                if code & C_FLAG:
                    fstack.append(eid)
                    el_flag[eid] = flag
                if tag == "td" or tag == "th":
                    code |= C_CELL
                elif tag == "pre":
                    code |= C_PRE
                    pre_depth += 1
                elif tag == "article" or tag == "main":
                    code |= C_ARTICLE
                    article_depth += 1
                elif tag == "figure":
                    code |= C_FIGURE
                    figure_stack.append([False, [], False, declared_image(attrs) if attrs else None,
                                         len(fstack)])
                elif tag == "figcaption":
                    if figure_stack:
                        code |= C_CAPTION
                        figure_stack[-1][2] = True
            elif tag == "a":
                code = C_LINK | C_ANCHOR
                link_depth += 1
                anchors.append([len(ostack), node, False])
            elif tag == "picture":
                code = C_PICTURE
                picture_sources.clear()
            elif tag == "listing" or tag == "xmp" or tag == "plaintext":
                code = C_PRE
                pre_depth += 1
            ostack_append(code)
            nexts_append(node.next)
            node = node.child
        if buf:
            flush()


C_BLOCK, C_LINK, C_PRE, C_ARTICLE, C_FIGURE, C_CAPTION, C_FLAG, C_PICTURE, C_CELL, C_ANCHOR = (
    1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
C_EXIT_BEFORE = C_LINK | C_ANCHOR | C_CELL | C_PICTURE         # undone before a block's flush
C_EXIT_AFTER = C_PRE | C_FLAG | C_ARTICLE | C_CAPTION | C_FIGURE   # undone after it
SPECIAL_TAGS = frozenset(("br", "img", "noscript", "source"))     # handled before classification
SWALLOWING_LINK_CHARS = 300   # an <a> holding 2+ paragraphs and this much text is an unclosed tag, not a link


_IMAGE_PATH = re.compile(r"\.(?:jpe?g|png|gif|webp|avif)(?:$|[?#&])", re.I)


def _sized_sources(attrs: dict) -> list:
    """URLs of `data-src-<size>` attributes (CNN's "data-src-mini" ... "data-src-full16x9"),
    the largest size word first."""
    found = []
    for key, value in attrs.items():
        if key.startswith("data-src-") and value and not is_placeholder(value):
            size = key[9:]
            rank = next((i for i, word in enumerate(_SIZE_WORDS) if size.startswith(word)),
                        len(_SIZE_WORDS))
            found.append((rank, value))
    found.sort(key=lambda item: item[0])
    return [value for _, value in found]


def _headline_image(image, headline: str) -> bool:
    """Whether an image's alt text is the page's headline, most of the casefolded <title>, which
    it begins ("DeepMind新电脑已可利用记忆自学 人工智能迈上新台阶" of "DeepMind新电脑已可利用记忆自学
    人工智能迈上新台阶_科技_腾讯网"), and the image reads as a photo (`_lead_photo`: share buttons
    titled with the headline do not)."""
    alt = image[1]["alt"]
    if not alt or not headline or len(alt) < 12 or 2 * len(alt) < len(headline):
        return False
    return headline.startswith(alt.casefold()) and _lead_photo(image)


def _looks_like_logo(image) -> bool:
    """A (candidate URLs, info) image that names a logo, or is banner-shaped (declared 4:1 or
    wider): not a photo, even inside an image viewer's or a lead image's wrapper."""
    cands, info = image
    width, height = info["width"], info["height"]
    if width and height and width >= 4 * height:
        return True
    alt = info["alt"]
    return (alt is not None and "logo" in alt.lower()) or any("logo" in c.lower() for c in cands)


# a lead photo is a JPEG / PNG / WebP / AVIF file (unlike `_IMAGE_PATH`, no GIF: GIFs there are
# old sites' furniture; URLs without an image file mostly counters); not a theme, plugin or
# WordPress header crop
_PHOTO_FILE = re.compile(r"\.(?:jpe?g|png|webp|avif)(?:$|[?#&/])", re.I)
_NOT_PHOTO = re.compile(r"/themes?/|/plugins/|/layouts?/|/cropped-|icon|button|sprite|banner|"
                        r"print|pdf|arrow|avatar|headshot|autor|author|rss|opml|advert|"
                        r"(?<![a-z])ads?(?:_images)?/", re.I)   # logos: `_looks_like_logo`
_URL_SIZE = re.compile(r"(?<!\d)(\d{2,4})x(\d{2,4})(?!\d)")


def _lead_photo(image) -> bool:
    """Whether an image just before the article body, outside it, reads as its lead photo: a
    photo file, no declared side under 100 px, not banner-shaped, and no icon, logo, avatar,
    theme or plugin asset by its URL or alt text."""
    cands, info = image
    width, height = info["width"], info["height"]
    if (width is not None and width < 100) or (height is not None and height < 100):
        return False
    if _looks_like_logo(image):
        return False
    url = cands[0]
    if _PHOTO_FILE.search(url) is None or _NOT_PHOTO.search(url) is not None:
        return False
    for w, h in _URL_SIZE.findall(url):
        w, h = int(w), int(h)   # "970x250" in the file name: an ad slot's banner
        if w >= 3.5 * h or h >= 3.5 * w:
            return False
    return not (width and height and (width >= 3.5 * height or height >= 3.5 * width))


def declared_image(attrs: dict) -> str | None:
    """The image URL a `<figure itemscope itemtype="http://schema.org/ImageObject" itemid=URL>`
    declares (news sites render its `<img>` from a script: the HTML holds only this), when it
    names an image file; None otherwise."""
    kind = attrs.get("itemtype")
    if not kind or "imageobject" not in kind.lower():
        return None
    url = attrs.get("itemid")
    return url if url and _IMAGE_PATH.search(url) else None


def _swallowing(a) -> bool:
    """An <a> left unclosed before the article: the parser keeps it open around the paragraphs
    that follow, and their text would all count as link text (the article dropped as a menu)."""
    try:
        return len(a.css("p")) >= 2 and len(a.text(deep=True)) >= SWALLOWING_LINK_CHARS
    except Exception:  # noqa: BLE001
        return False


# ---------------------------------------------------------------------------------------------
# container choice

def _choose(walk: _Walk, cfg: ExtractConfig):
    """(selected, top, parent, scored_top) or None when nothing scores.

    `selected`: element ids whose subtrees form the main content, all children of `parent` at
    the depth of `top`; `scored_top` is the best-scoring container before the whole-body
    fallback (its flagged ancestors are treated as misleading class names)."""
    el_tag, el_parent, el_weight = walk.el_tag, walk.el_parent, walk.el_weight
    el_text, el_link = walk.el_text, walk.el_link
    n_el = len(el_tag)
    if n_el == 0:
        return None
    # a flagged element directly holding most of the page's paragraph text is a misleading
    # class name ("content-with-sidebar-wrp"); comment threads flag each comment again
    direct: dict = {}
    good_total = 0
    for kind, payload, n, link, anc, tag, commas, fl in walk.blocks:
        if kind == "t" and n >= 80 and link < 0.2 * n:
            good_total += n
            if fl:
                direct[fl[-1]] = direct.get(fl[-1], 0) + n
    unflag = walk.unflag
    for f, g in direct.items():
        if g >= 1000 and g >= 0.5 * good_total:
            unflag.add(f)
    score = [0.0] * n_el
    scored = [False] * n_el
    for kind, payload, n, link, anc, tag, commas, fl in walk.blocks:
        if kind != "t" or n < 25 or not anc:
            continue
        if link > 0.5 * n:
            continue
        s = 1.0 + min(commas, MAX_COMMAS) + min(n // 100, 3)
        if fl and (not unflag or any(f not in unflag for f in fl)):
            s *= FLAG_PENALTY
        # the block's owner is anc[-1]; readability credits the paragraph's ancestors
        if tag in ("td", "th", "div", "section", "article", "main", "body", "blockquote", "center",
                   "form", "dd", "li"):
            # a container holding loose text acts as its own paragraph's parent
            levels = anc[::-1]
        else:
            levels = anc[-2::-1]
        for level, eid in enumerate(levels[:5]):
            if not scored[eid]:
                scored[eid] = True
                score[eid] = TAG_INIT.get(el_tag[eid], 0) + el_weight[eid]
            score[eid] += s if level == 0 else (s / 2 if level == 1 else s / (level * 3))
    best, best_score = -1, 0.0
    final = [0.0] * n_el
    for eid in range(n_el):
        if not scored[eid]:
            continue
        t = el_text[eid]
        ld = el_link[eid] / t if t else 0.0
        final[eid] = score[eid] * (1.0 - ld)
        if final[eid] > best_score:
            best, best_score = eid, final[eid]
    if best < 0:
        return None
    top = best
    # readability: several near-top candidates sharing an ancestor -> use the ancestor
    ranked = sorted((e for e in range(n_el) if scored[e]), key=lambda e: -final[e])[:5]
    alts = [e for e in ranked[1:] if final[e] >= 0.75 * best_score]
    if len(alts) >= 3:
        ancestors_top = []
        p = el_parent[top]
        while p >= 0:
            ancestors_top.append(p)
            p = el_parent[p]
        for p in ancestors_top:
            count = 0
            for e in alts:
                q = el_parent[e]
                while q >= 0 and q != p:
                    q = el_parent[q]
                count += q == p
            if count >= 3:
                top = p
                break
    # climb while the parent scores better
    last = final[top]
    p = el_parent[top]
    threshold = last / 3
    while p >= 0 and el_tag[p] not in ("body", "html"):
        if not scored[p]:
            p = el_parent[p]
            continue
        if final[p] < threshold:
            break
        if final[p] > last:
            top = p
            break
        last = final[p]
        p = el_parent[p]
    # only child (apart from boilerplate / empty siblings): move up
    el_flag = walk.el_flag
    while True:
        p = el_parent[top]
        if p < 0 or el_tag[p] in ("body", "html"):
            break
        if walk.el_kids[p] > 1 and any(
                el_parent[e] == p and e != top and el_text[e] and
                not (el_flag[e] and e not in unflag) for e in range(p + 1, n_el)):
            break
        top = p
    selected = {top}
    parent = el_parent[top]
    if parent >= 0:
        thresh = max(10.0, final[top] * cfg.sibling_threshold)
        for eid in range(n_el):
            if eid == top or el_parent[eid] != parent:
                continue
            s = final[eid]
            if el_weight[eid] == el_weight[top] and el_weight[top] > 0:
                s += final[top] * 0.2
            t = el_text[eid]
            ld = el_link[eid] / t if t else 1.0
            if walk.el_flag[eid] or (el_tag[eid] == "article" and el_tag[top] == "article"):
                continue
            if s >= thresh and scored[eid]:
                selected.add(eid)
            elif t > 80 and ld < 0.25:
                selected.add(eid)     # a plain paragraph (or a wrapper holding one)
            elif (el_tag[eid] == "p" or el_tag[eid] in HEADINGS) and 0 < t <= 80 and ld == 0:
                selected.add(eid)
    # content spread over the page (old layout tables, link-list pages): use the whole body
    depth = walk.el_depth[top]
    good = inside = 0
    for kind, payload, n, link, anc, tag, commas, fl in walk.blocks:
        if kind == "t" and link <= 0.5 * n and \
                (not fl or (unflag and all(f in unflag for f in fl))):
            good += n
            if len(anc) > depth and anc[depth] in selected:
                inside += n
    if good and inside < cfg.fallback_coverage * good:
        root = 0
        while el_parent[root] >= 0:
            root = el_parent[root]
        return {root}, root, -1, top
    return selected, top, parent, top


def _emit(walk: _Walk, chosen, cfg: ExtractConfig,
          title: str | None = None) -> tuple[list, list, list]:
    """Aligned (texts, images, image_info) of the chosen containers, in document order.
    `title`: the page's <title>; an image whose alt text is the headline is content wherever it
    sits in the container (news sites wrap their lead photo in share widgets)."""
    headline = " ".join(title.split()).casefold() if title else ""
    texts: list = []
    images: list = []
    infos: list = []
    dropped = walk.dropped
    blocks = walk.blocks
    if chosen is None:
        depth, selected, parent = 0, None, -1
        top = -1
    else:
        selected, top, parent, scored_top = chosen
        depth = walk.el_depth[top]
    # the page title heading just before the container (l3s/cleaneval truth include headlines)
    first_in = None
    if selected is not None:
        for i, b in enumerate(blocks):
            anc = b[4]
            if len(anc) > depth and anc[depth] in selected:
                first_in = i
                break
    heading_idx = -1
    if cfg.keep_title_heading and first_in:
        for j in range(first_in - 1, max(-1, first_in - 12), -1):
            b = blocks[j]
            if b[0] == "t" and b[5] in ("h1", "h2") and b[2] >= 10:
                heading_idx = j
                break
    # a standfirst / intro paragraph just before the article body
    lead = set()
    if first_in and cfg.lead_text_window:
        start = heading_idx + 1 if heading_idx >= 0 else first_in - cfg.lead_text_window
        for j in range(max(0, start, first_in - cfg.lead_text_window), first_in):
            b = blocks[j]
            if b[0] == "t" and not b[7] and b[2] >= 80 and b[3] < 0.2 * b[2]:
                lead.add(j)
            elif b[0] == "i" and not b[7] and _lead_photo(b[1]):
                lead.add(j)   # the article's lead photo, between its headline and its body
    # flagged elements inside the container holding most of its text are false positives
    el_depth, el_text, el_flag = walk.el_depth, walk.el_text, walk.el_flag
    base = walk.base
    void = set(walk.unflag)
    # soft-flagged elements (weak class hints: "lightbox", "topic", "header") holding real
    # paragraphs are content
    for b in blocks:
        if b[7] and b[0] == "t" and b[2] >= 150 and b[3] < 0.2 * b[2]:
            for f in b[7]:
                if el_flag[f] >= 2:
                    void.add(f)
    if selected is not None:
        p = scored_top
        while p >= 0:
            if el_flag[p]:
                void.add(p)
            p = walk.el_parent[p]
        total = sum(el_text[e] for e in selected)
        for b in blocks:
            for f in b[7]:
                if f not in void and el_depth[f] > depth and el_text[f] >= 0.5 * total:
                    void.add(f)
    # "Related articles" / "Das könnte Sie auch interessieren" and the short teasers after them
    skip = set()
    for i, b in enumerate(blocks):
        if b[0] == "t" and b[2] <= 60 and _RELATED_HEADING.match(b[1]) is not None:
            skip.add(i)
            prefix = b[4][:-1] if b[5] in HEADINGS or b[5] in ("p", "div", "span") else b[4]
            k = len(prefix)
            for j in range(i + 1, len(blocks)):
                c = blocks[j]
                if c[4][:k] != prefix or (c[0] == "t" and c[2] > 150 and c[3] < 0.2 * c[2]):
                    break
                skip.add(j)
    last_image = None
    max_ld = cfg.max_link_density
    min_chars = cfg.min_block_chars
    pending = -1   # index of a kept heading with nothing kept after it yet
    gap = False    # a block was dropped after that heading (its section was boilerplate)
    for i, b in enumerate(blocks):
        kind, payload, n, link, anc, tag, _, fl = b
        if selected is not None and i != heading_idx and i not in lead and \
                not (len(anc) > depth and anc[depth] in selected):
            if kind == "i":
                dropped["not_main"] = dropped.get("not_main", 0) + 1
            continue
        if i in skip or (fl and any(el_depth[f] > depth and f not in void for f in fl) and
                         not (kind == "i" and _headline_image(payload, headline))):
            if kind == "i":
                dropped["not_main"] = dropped.get("not_main", 0) + 1
            else:
                gap = True
            continue
        if kind == "i":
            cands, info = payload
            url = None
            for raw in cands:
                url = resolve_url(base, raw)
                if url:
                    break
            if url is None:
                dropped["invalid_url"] = dropped.get("invalid_url", 0) + 1
                continue
            if url == last_image:
                dropped["duplicate"] = dropped.get("duplicate", 0) + 1
                continue
            last_image = url
            texts.append(None)
            images.append(url)
            infos.append(info)
            pending = -1
            continue
        if n < min_chars:
            continue
        if (tag not in HEADINGS and link > max_ld * n) or \
                (n < 60 and is_boilerplate_text(payload)):
            gap = True
            continue
        headingish = tag in HEADINGS or (n <= 50 and payload[-1] not in _SENTENCE_END)
        if pending >= 0 and gap:
            # the previous heading introduced only boilerplate ("Related articles" + links)
            del texts[pending], images[pending], infos[pending]
        if headingish:
            pending = len(texts)
            gap = False
        else:
            pending = -1
        texts.append(payload)
        images.append(None)
        infos.append(None)
        last_image = None
    if pending >= 0 and gap and len(texts) > 1:
        del texts[pending], images[pending], infos[pending]
    return texts, images, infos


def _extract_lexbor(html: str, url: str, cfg: ExtractConfig) -> ExtractResult:
    html, truncated = fit_html(html, cfg.max_html_chars)
    if len(html) > 40_000 and suspicious_nesting(html):
        html = defuse_nesting(html)
    tree = LexborHTMLParser(html)
    title, lang, canonical, base = _metadata(tree, url)
    if len(html) > 5_000 and title is not None and len(title) > 1_000:
        # an unclosed <title> swallows the page (raw text up to </title> or the end)
        tree, title = reparse_swallowed(html, tree, title)
    # never content; removed in C before the walk (other such tags are skipped in the walk)
    tree.strip_tags(["script", "style", "template", "nav", "footer", "svg", "iframe", "head"])
    body = tree.body
    if body is None:
        return _empty(title, lang, canonical, truncated)
    walk = _Walk(base, cfg, body)
    walk.run()
    if len(html) > 5_000 and sum(b[2] for b in walk.blocks) < 200:
        # an unclosed <textarea>/<xmp>/<script>... may have swallowed the page: retry without it
        fixed = unswallow(html)
        if fixed is not None:
            tree = LexborHTMLParser(fixed)
            tree.strip_tags(["script", "style", "template", "nav", "footer", "svg", "iframe",
                             "head"])
            if tree.body is not None:
                walk2 = _Walk(base, cfg, tree.body)
                walk2.run()
                if sum(b[2] for b in walk2.blocks) > sum(b[2] for b in walk.blocks):
                    walk = walk2
    chosen = _choose(walk, cfg)
    texts, images, infos = _emit(walk, chosen, cfg, title)
    return ExtractResult(title, lang, canonical, texts, images, infos, dict(walk.dropped), truncated)


# ---------------------------------------------------------------------------------------------
# the entry point (the trafilatura engine: operators/text/extract_trafilatura.py)

def extract_document(html: str, url: str, config: ExtractConfig | None = None) -> ExtractResult:
    """Main content of `html` (fetched from `url`) as aligned text/image lists. Never raises."""
    cfg = config or ExtractConfig()
    if not isinstance(html, str):
        try:
            html = html.decode("utf-8", "replace") if isinstance(html, (bytes, bytearray)) else ""
        except Exception:
            html = ""
    if not html or not html.strip():
        return _empty()
    try:
        with _time_limit(cfg.max_seconds):
            if cfg.engine == "trafilatura":
                from operators.text.extract_trafilatura import extract_trafilatura
                return extract_trafilatura(html, url, cfg)
            return _extract_lexbor(html, url, cfg)
    except ExtractionTimeout:
        res = _empty()
        res.error = f"timeout: extraction took more than extract.max_seconds={cfg.max_seconds:g} s"
        return res
    except Exception as e:  # a bug or a pathological page: an empty result that says why
        res = _empty()
        res.error = f"{type(e).__name__}: {e}"
        return res


class ExtractionTimeout(Exception):
    """Raised into an extraction that ran past extract.max_seconds."""


@contextmanager
def _time_limit(seconds: float):
    """Interrupt the block after `seconds` (SIGALRM; in the main thread, where Ray runs tasks;
    elsewhere no limit). Python code is interrupted; a single C call (one parse) finishes first."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expired(signum, frame):
        raise ExtractionTimeout()
    old = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
