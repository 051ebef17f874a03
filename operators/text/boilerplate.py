"""Boilerplate rules for the lexbor extractor: tag, class/id/role patterns, hidden elements,
readability-style class weights and short UI texts. Pure functions, memoised.

Class names and ids are matched one name at a time (each name's result is cached): camelCase
is split ("mainNav" -> "main-nav"), digits are folded ("post-123" -> "post-0"), and taxonomy /
responsive-visibility classes ("tag-foo", "category-bar", "hidden-xs") are ignored. A name gets
pattern bits:

- STRONG: boilerplate (menus, sharing, comments, related, cookie banners, ads, sidebars ...)
- SOFT: weaker hints (modal, lightbox, toolbar, read-more ...), ignored next to STRICT content
- VIEWER: an image viewer's wrapper ("lightbox", "fancybox", "image-popup", "zoom-image") or an
  article's lead image ("header-image"): soft for its text, but the images in it are content
  (click-to-enlarge around the article's photos), logos and banner-shaped images excepted
- WEAK: readability's "maybe" hints (header, banner, ...), ignored next to CONTENT hints
- CONTENT / STRICT: content containers ("article", "entry-content", "post-body" ...)
- POS / NEG: readability's class weights (+25 / -25)
"""
from __future__ import annotations

import re

STRONG, WEAK, CONTENT, NEG, POS, SOFT, STRICT, VIEWER = 1, 2, 4, 8, 16, 32, 64, 128


def _trie_regex(words) -> re.Pattern:
    """A regex matching any of the literal `words`, built as a trie (Python's regex engine is
    much faster on a trie than on a flat alternation); it prefers the longest word."""
    trie: dict = {}
    for word in words:
        node = trie
        for ch in word:
            node = node.setdefault(ch, {})
        node[""] = {}

    def build(node) -> str:
        alts = [re.escape(ch) + build(node[ch]) for ch in sorted(k for k in node if k)]
        if not alts:
            return ""
        body = alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"
        return "(?:" + body + ")?" if "" in node else body

    return re.compile(build(trie))


# Substrings of a (lowercased, camel-split) class name or id, by bit.
_WORDS = {
    STRONG: """
        cookie consent gdpr breadcrumb pagination newsletter subscrib subscrip sidebar footer
        navbar navigation mainnav subnav topnav sitenav menu sponsor promo social sharing sharebar
        shareb share- -share addthis sharethis related comment disqus outbrain taboola entry-meta
        post-meta article-meta author-box share-tools widget_ widget-area widgetarea skiplink
        skip-link skip-to signup sign-up login masthead tagcloud tag-cloud author-bio authorbio
        about-author recommend trending most-popular mostpopular mostread most-read more-stories
        morestories newsticker print-only printonly screen-reader sr-only visually-hidden
        visuallyhidden offscreen vote- votes- pager post-nav postnav prev-next prevnext nextprev
        byline-share dfp- banner-ad copyright disclaimer contact-info site-info siteinfo colophon
        survey paywall registration signin sign-in bottom-bar topbar top-bar infobox-links hatnote
        navbox catlinks mw-jump reflist-""".split(),
    SOFT: """toolbar dropdown modal overlay lightbox rating readmore read-more ticker utilit
        feedback print-link jumpto jump-to legal popup""".split(),
    WEAK: """header banner extra legend remark community shoutbox combx supplement agegate
        ai2html yom-remote cover-wrap categor navig""".split(),
    CONTENT: """article content main post entry story body text column blog hentry h-entry page
        shadow mathjax""".split(),
    POS: """article body content entry hentry h-entry main page post text blog story prose
        markdown rich-text richtext single""".split(),
    NEG: """-ad- hidden banner combx comment com- contact foot footer footnote gdpr masthead media
        meta outbrain promo related scroll share shoutbox sidebar skyscraper sponsor shopping tags
        tool widget_ widget-area widgetarea menu nav social teaser recommend more list
        feed""".split(),
}
# Whole tokens (split at non-alphanumerics) that are too short or ambiguous as substrings.
_STRONG_TOK = frozenset("""
nav ad ads adv advert advertisement adverts advertising sponsored share shares social tags rss
hdn footer foot sidebar menu related comments comment reply replies respond pager nocontent
noprint skip promo sns sitemap breadcrumbs breadcrumb crumbs crumb cookie cookies login signin
postmeta byline dateline timestamp
""".split())
_SOFT_TOK = frozenset("tools tool print modal popup".split())
_AD_SUB = re.compile(r"(?<![a-z])ad(?:sense|slot|-slot|-container|container|wrap|-wrap|box|-box|"
                     r"unit|-unit|-banner|banner|vert)")
_VIEWER = re.compile(r"lightbox|fancybox|(?:image|img|figure|photo|gallery|picture)-*(?:popup|modal|zoom)|"
                     r"(?:popup|modal|zoom|header)-*(?:image|img|figure|photo|gallery|picture)")
_CONTENT_STRICT = re.compile(r"(?:^|-)(?:article|content|story|entry|main|body|text|post)(?:-|$)")
# Class names that describe taxonomy or responsive visibility, not the element's role
# (WordPress "tag-foo category-bar", Bootstrap "hidden-xs", Elementor "elementor-hidden-mobile").
_IGNORED_CLASS = re.compile(r"^(?:tag|category|categories|cat|post_tag|format|status|type|"
                            r"topic|section|taxonomy|term|hidden|visible|d|has|is|no)[-_]|"
                            r"-hidden-|^hidden-|^visible-|-has-|-is-")
_STRONG_ROLES = frozenset("navigation contentinfo complementary search menu menubar dialog "
                          "alertdialog banner toolbar tablist tree".split())
_STYLE_HIDDEN = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden", re.I)
_CAMEL = re.compile(r"([a-z0-9])([A-Z])")
_SPLIT = re.compile(r"[^a-z0-9]+")
_DIGITS = re.compile(r"\d+")
_HAS_DIGIT = re.compile(r"\d")


def _word_bits() -> dict:
    """Bits of every pattern word, OR-ed with those of the words it contains, so that one
    scan reporting the longest word at each position loses no nested word."""
    flat: dict = {}
    for bit, words in _WORDS.items():
        for w in words:
            flat[w] = flat.get(w, 0) | bit
    return {w: _contained_bits(w, flat) for w in flat}


def _contained_bits(word: str, flat: dict) -> int:
    bits = 0
    for other, b in flat.items():
        if other in word:
            bits |= b
    return bits


_WORD_BITS = _word_bits()
_ALL_WORDS = _trie_regex(_WORD_BITS)
_NAME_BITS: dict = {}
_NAME_BITS_MAX = 200_000


def name_bits(name: str) -> int:
    """Pattern bits of one class name or id (memoised).

    Every pattern sees the name with its digit runs as "0", so "post-1234" and "post-5678" share
    one entry of the memo (ids numbered per element would otherwise each cost a regex pass)."""
    bits = _NAME_BITS.get(name)
    if bits is not None:
        return bits
    key = _DIGITS.sub("0", name) if _HAS_DIGIT.search(name) else name
    bits = _NAME_BITS.get(key)
    if bits is None:
        bits = 0
        if not _IGNORED_CLASS.search(key):
            s = key if key.islower() else _CAMEL.sub(r"\1-\2", key).lower()
            for m in _ALL_WORDS.findall(s):
                bits |= _WORD_BITS[m]
            toks = _SPLIT.split(s)
            if not _STRONG_TOK.isdisjoint(toks) or ("ad" in s and _AD_SUB.search(s) is not None):
                bits |= STRONG
            if not _SOFT_TOK.isdisjoint(toks):
                bits |= SOFT
            if _CONTENT_STRICT.search(s) is not None:
                bits |= STRICT
            if _VIEWER.search(s.replace("_", "-")) is not None:
                bits |= VIEWER
            if s == "hid":
                bits |= NEG
    if len(_NAME_BITS) >= _NAME_BITS_MAX:
        _NAME_BITS.clear()
    _NAME_BITS[name] = _NAME_BITS[key] = bits
    return bits


def class_bits(attrs: dict) -> int:
    """OR of the pattern bits of an element's class names and id."""
    bits = 0
    cls = attrs.get("class")
    if cls:
        for name in cls.split():
            bits |= name_bits(name)
    ident = attrs.get("id")
    if ident:
        bits |= name_bits(ident.strip())
    return bits


def is_hidden(attrs: dict) -> bool:
    """Elements a browser does not show (hidden attribute, aria-hidden, inline display:none)."""
    if "hidden" in attrs:
        return True
    if attrs.get("aria-hidden") == "true":
        return "fallback-image" not in (attrs.get("class") or "")
    style = attrs.get("style")
    return bool(style) and _STYLE_HIDDEN.search(style) is not None


def boilerplate_kind(tag: str, attrs: dict, bits: int | None = None) -> str | None:
    """What to do with an element's subtree:

    None: content (or unknown); "drop": skip it; "form": skip unless it holds a lot of text;
    "header": skip unless inside an article or holding the <h1>; "check_size": boilerplate,
    walked but flagged (its blocks are dropped unless the chosen container lies inside it);
    "soft": like check_size, but also kept where it holds real paragraphs; "viewer": soft, but
    the images in it are content (an image viewer's click-to-enlarge wrapper).
    `bits`: the element's `class_bits`, when already known.
    """
    if tag == "body" or tag == "html":
        return None
    role = (attrs.get("role") or "").strip().lower() if attrs else ""
    itemprop = (attrs.get("itemprop") or "").lower() if attrs else ""
    if "articlebody" in itemprop or role == "main" or role == "article":
        return None
    if tag == "footer":
        return "drop"
    if tag == "form":
        return "form"
    if tag == "header":
        return "header"
    if tag == "aside" or role in _STRONG_ROLES:
        return "check_size"
    if not attrs:
        return None
    if bits is None:
        bits = class_bits(attrs)
    if bits & STRONG:
        return None if tag in ("article", "main") else "check_size"
    if (bits & SOFT and not bits & STRICT) or (bits & WEAK and not bits & CONTENT):
        if tag in ("article", "main", "h1", "h2"):
            return None
        return "viewer" if bits & VIEWER else "soft"
    return None


def class_weight(tag: str, attrs: dict, bits: int | None = None) -> float:
    """Readability's class weight (+/-25) plus bonuses for semantic content containers.
    `bits`: the element's `class_bits`, when already known."""
    w = 15.0 if tag == "article" else 10.0 if tag == "main" else 0.0
    if not attrs:
        return w
    if bits is None:
        bits = class_bits(attrs)
    if bits & NEG:
        w -= 25
    if bits & POS:
        w += 25
    ip = attrs.get("itemprop")
    if ip and "articlebody" in ip.lower():
        w += 40
    elif attrs.get("role") == "main":
        w += 15
    return w


_CACHE: dict = {}
_CACHE_MAX = 100_000


def classify(tag: str, attrs: dict | None) -> tuple:
    """(boilerplate_kind, class_weight) of an element, memoised on the attributes that matter
    (the extractor's walk reads this cache directly with the same keys). An element whose class
    or id holds digits is also memoised with them as "0" (what `name_bits` sees), so an id
    numbered per element costs one cache entry per page pattern, not a classification each."""
    if attrs and ("class" in attrs or "id" in attrs or "role" in attrs or "itemprop" in attrs):
        cls, ident = attrs.get("class"), attrs.get("id")
        key = (tag, cls, ident, attrs.get("role"), attrs.get("itemprop"))
    else:
        cls = ident = None
        key = tag
    hit = _CACHE.get(key)
    if hit is None:
        if len(_CACHE) >= _CACHE_MAX:
            _CACHE.clear()
        general = None
        if (cls and _HAS_DIGIT.search(cls)) or (ident and _HAS_DIGIT.search(ident)):
            general = (tag, cls and _DIGITS.sub("0", cls), ident and _DIGITS.sub("0", ident),
                       key[3], key[4], "digits")
            hit = _CACHE.get(general)
        if hit is None:
            a = attrs or {}
            bits = class_bits(a) if a else 0
            hit = (boilerplate_kind(tag, a, bits), class_weight(tag, a, bits))
            if general is not None:
                _CACHE[general] = hit
        _CACHE[key] = hit
    return hit


_BOILER_TEXT = re.compile(
    r"^(?:share(?: this| on \w+)?|tweet|print|email|e-mail|advertisement|advertisements?|"
    r"sponsored|read more|continue reading|more|next|previous|prev|back to top|top|skip to "
    r"(?:main )?content|related (?:articles|posts|stories)|comments?|leave a (?:comment|reply)|"
    r"subscribe|sign up|log ?in|sign in|register|follow us|like us on facebook|tags?:?|"
    r"loading\.*|please wait\.*|click here|posted in|filed under|permalink|\d+ comments?|"
    r"anzeige|werbung|- ?anzeige ?-|publicidad|publicité|kommentieren|kommentar schreiben|"
    r"teilen|drucken|antworten|zurück|weiter|mehr lesen|compartir|imprimir|partager|imprimer|"
    r"commenter|répondre|reply|share this (?:article|story|post)|zum newsletter)[.:!]?$",
    re.I)


def is_boilerplate_text(text: str) -> bool:
    """Short texts that are UI chrome rather than content ("Share", "Advertisement", ...)."""
    return _BOILER_TEXT.match(text.strip()) is not None
