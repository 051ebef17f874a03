"""Block-level cleaning: removes spam, boilerplate and very short text blocks from documents.

Runs after language ID and before the quality signals and the document-level selection (as
OBELICS filters paragraphs before documents). Same rows out; in each, text blocks that fail a
rule are removed from every aligned list (`texts`, `images`, `image_info`, `text_languages`,
`text_language_scores`); `num_texts`, `text_chars` and `blocks_removed` are updated. Images are
never removed. Each removed block counts under the first rule it fails, in this order:

  boilerplate     a block of at most `boilerplate_max_words` words that matches one of
                  `boilerplate_patterns` (case-insensitive regex search; a long paragraph that
                  merely mentions one is kept). The defaults (`DEFAULT_BOILERPLATE`): C4's policy
                  strings ("terms of use", "privacy policy", "cookie policy", "use(s) cookies",
                  "use of cookies"; C4 drops such lines too, even "this recipe uses cookies"),
                  cookie banners ("accept all cookies", de/fr/es/it/nl/pt variants), "all rights
                  reserved" (de/fr/es/it/pt/nl too), "© 2024" / "copyright 2024", "click here",
                  "subscribe / sign up to our newsletter", "share this ...", "share on
                  facebook/...", "follow us on", "terms of service", "terms and conditions",
                  "enable javascript" / "javascript is disabled", "skip to content", "log in to
                  comment", "leave a comment/reply", "continue reading", "powered by wordpress".
  short           fewer than `min_words` words (`operators.text.quality.words`: CJK/Thai count per
                  character). With `spare_captions`, a block right after an image is exempt:
                  figure captions are short and are exactly the text an image needs; with
                  `spare_before_image`, one right before an image too (a "Photo" label, a credit
                  line, a one-word heading above a picture: the text that places the image).
  special_chars   special characters (not letters, numbers, marks or whitespace) / characters
                  above `max_special_char_ratio`.
  flagged_words   flagged-word occurrences / words above `max_flagged_word_ratio` (the list of
                  the document's language, loaded as `QualityConfig` says).
  other_language  with `drop_other_language`: the block's language (`text_languages[i]`) differs
                  from the document's (`language`) with a score (`text_language_scores[i]`) of at
                  least `other_language_min_score` (mOSCAR does this optionally; off by default).

Stats: `in`, `out` (rows), `blocks_in`, `blocks_dropped`, `blocks_dropped_<reason>`.
"""
from __future__ import annotations

import re
import re._parser as sre_parse
from bisect import bisect_right
from dataclasses import dataclass
from itertools import accumulate
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from operators.base import Operator, Resources
from operators.text.quality import (SPECIAL_RE, WORD_RE, QualityConfig, base_language, forget_block_words,
                                    hold_block_words)

REASONS = ("boilerplate", "short", "special_chars", "flagged_words", "other_language")

DEFAULT_BOILERPLATE: tuple[str, ...] = (
    # cookie banners
    r"\b(?:we|this (?:web)?site|our (?:web)?site|the (?:web)?site) (?:uses?|is using) cookies\b",
    r"\b(?:accept|allow|reject|manage) (?:all )?cookies\b",
    r"\buses? cookies\b", r"\buse of cookies\b",   # with "cookie policy", "terms of use", "privacy policy": C4's list
    r"\bcookie (?:policy|settings|preferences|consent|notice|richtlinie)\b",
    r"\b(?:wir verwenden|diese (?:web)?seite verwendet|diese website (?:verwendet|nutzt)) cookies\b",
    r"\b(?:ce site utilise|nous utilisons) (?:des )?cookies\b",
    r"\b(?:este sitio(?: web)? (?:usa|utiliza)|utilizamos|usamos) cookies\b",
    r"\b(?:questo sito (?:utilizza|usa)|utilizziamo) (?:i )?cookie\b",
    r"\b(?:deze (?:web)?site gebruikt|wij gebruiken) cookies\b",
    r"\b(?:este site (?:usa|utiliza)|utilizamos) cookies\b",
    # rights / copyright lines
    r"\ball rights reserved\b", r"\balle rechte vorbehalten\b", r"\btous droits réservés\b",
    r"\btodos los derechos reservados\b", r"\btutti i diritti riservati\b",
    r"\btodos os direitos reservados\b", r"\balle rechten voorbehouden\b",
    r"©\s*\d{4}", r"\bcopyright\s*(?:©\s*)?\d{4}",
    # calls to action, sharing, navigation, legal links
    r"\bclick here\b",
    r"\b(?:subscribe|sign up|signup|register) (?:to|for) (?:our|the|my) (?:free )?(?:e-?mail )?newsletter\b",
    r"\bshare this(?: (?:article|post|page|story|video|recipe))?\b",
    r"\bshare on (?:facebook|twitter|x|linkedin|pinterest|whatsapp|reddit|email)\b",
    r"\bfollow us on\b",
    r"\bprivacy policy\b", r"\bterms (?:of (?:use|service)|and conditions|& conditions)\b",
    r"\b(?:please )?enable javascript\b", r"\bjavascript (?:is )?(?:disabled|required|must be enabled)\b",
    r"\bskip to (?:the )?(?:main )?content\b",
    r"\b(?:log ?in|logged in|sign in|register) to comment\b", r"\b(?:log ?in|logged in|sign in|register) to reply\b",
    r"\b(?:log ?in|logged in|sign in|register) to post\b", r"\bleave a (?:comment|reply)\b",
    r"\bcontinue reading\b",
    r"\bpowered by (?:wordpress|blogger|shopify|squarespace|wix|drupal|joomla)\b",
)


@dataclass(frozen=True)
class CleanConfig:
    enabled: bool = True                  # false: count nothing, change nothing
    min_words: int = 2                    # rule short: blocks with fewer words (OBELICS node level: 4); 0 = off
    spare_captions: bool = True           # a block right after an image is exempt from min_words
    spare_before_image: bool = True       # ... and one right before an image (a "Photo" label, a credit)
    max_special_char_ratio: float = 0.3   # rule special_chars (OBELICS node level: 0.3); 1 = off
    max_flagged_word_ratio: float = 0.1   # rule flagged_words (OBELICS node level: 0.01); 1 = off
    boilerplate: bool = True              # rule boilerplate on/off
    boilerplate_patterns: tuple[str, ...] = DEFAULT_BOILERPLATE  # regexes, searched case-insensitively
    boilerplate_max_words: int = 50       # longer blocks are never removed as boilerplate
    drop_other_language: bool = False     # rule other_language (mOSCAR-style, off by default)
    other_language_min_score: float = 0.8  # block language score needed to drop it as another language

    def __post_init__(self):
        for name in ("min_words", "boilerplate_max_words"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ValueError(f"clean.{name} must be an integer >= 0, not {v!r}")
        for name in ("max_special_char_ratio", "max_flagged_word_ratio", "other_language_min_score"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0.0 <= v <= 1.0:
                raise ValueError(f"clean.{name} must be between 0 and 1, not {v!r}")
        pats = self.boilerplate_patterns
        if isinstance(pats, str) or not all(isinstance(p, str) for p in pats):
            raise ValueError("clean.boilerplate_patterns must be a list of regular expressions")
        object.__setattr__(self, "boilerplate_patterns", tuple(pats))
        for p in pats:
            try:
                re.compile(p)
            except re.error as e:
                raise ValueError(f"clean.boilerplate_patterns: {p!r} is not a valid regex: {e}") from e


class CleanBlocks(Operator):
    """Removes failing text blocks from each document; DOCUMENT table in and out, same rows."""

    name = "clean"
    resources = Resources(num_cpus=1.0)  # same as its neighbours, so Ray fuses the stages

    def __init__(self, config: CleanConfig, quality: QualityConfig):
        super().__init__()
        self.config = config
        self.flagged = quality.load_flagged() if config.max_flagged_word_ratio < 1.0 else None
        self.boilerplate = _Patterns(config.boilerplate_patterns if config.boilerplate else ())

    def block_reason(self, text: str, spared: bool, language: str | None,
                     block_language: str | None, block_score: float | None, flagged,
                     boilerplate: Sequence[re.Pattern] | None = None) -> str | None:
        """The first rule a text block fails (see the module docstring), or None to keep it.

        `spared`: exempt from `min_words` (next to an image, as the config says).
        `boilerplate`: the patterns worth trying on this block (`_Patterns.candidates`); None: all.
        """
        c = self.config
        ws = WORD_RE.findall(text)
        n = len(ws)
        if n <= c.boilerplate_max_words and (
                self.boilerplate.search(text) if boilerplate is None
                else any(rx.search(text) for rx in boilerplate)):
            return "boilerplate"
        if n < c.min_words and not spared:
            return "short"
        if c.max_special_char_ratio < 1.0 and text and \
                len(SPECIAL_RE.findall(text)) / len(text) > c.max_special_char_ratio:
            return "special_chars"
        if flagged is not None and n and \
                flagged.count(ws) / n > c.max_flagged_word_ratio:
            return "flagged_words"
        if c.drop_other_language and block_language and language and block_score is not None \
                and block_score >= c.other_language_min_score \
                and base_language(block_language) != base_language(language):
            return "other_language"
        hold_block_words(text, ws)   # kept: quality and MinHash read its words
        return None

    def __call__(self, table: pa.Table) -> pa.Table:
        n_rows = table.num_rows
        self.stats.incr("in", n_rows)
        if not self.config.enabled or n_rows == 0:
            self.stats.incr("out", n_rows)
            return table
        texts = table["texts"].to_pylist()
        forget_block_words()   # hold this batch's blocks' words only (quality reads them next)
        languages = table["language"].to_pylist()
        need_lang = self.config.drop_other_language
        t_langs = table["text_languages"].to_pylist() if need_lang else None
        t_scores = table["text_language_scores"].to_pylist() if need_lang else None
        keep_rows: list[list[bool]] = []
        removed = np.zeros(n_rows, np.int32)
        kept_chars = np.zeros(n_rows, np.int64)
        counts = dict.fromkeys(REASONS, 0)
        blocks_in = 0
        for r, row in enumerate(texts):
            row = row or []
            lang = languages[r]
            flagged = self.flagged.for_language(lang) if self.flagged is not None else None
            bl = t_langs[r] if need_lang else None
            bs = t_scores[r] if need_lang else None
            if bl is not None and len(bl) != len(row):
                bl = None
            if bs is not None and len(bs) != len(row):
                bs = None
            keep = []
            chars = 0
            prev_image = False
            candidates = self.boilerplate.candidates(row)
            always = self.boilerplate.always
            spare_after, spare_before = self.config.spare_captions, self.config.spare_before_image
            for i, t in enumerate(row):
                if t is None:
                    keep.append(True)
                    prev_image = True
                    continue
                blocks_in += 1
                spared = (spare_after and prev_image) or \
                    (spare_before and i + 1 < len(row) and row[i + 1] is None)
                reason = self.block_reason(t, spared, lang, bl[i] if bl else None,
                                           bs[i] if bs else None, flagged, candidates.get(i, always))
                prev_image = False
                if reason is None:
                    keep.append(True)
                    chars += len(t)
                else:
                    keep.append(False)
                    counts[reason] += 1
                    removed[r] += 1
            keep_rows.append(keep)
            kept_chars[r] = chars
        self.stats.incr("blocks_in", blocks_in)
        self.stats.incr("blocks_dropped", int(removed.sum()))
        for reason, k in counts.items():
            if k:
                self.stats.incr(f"blocks_dropped_{reason}", k)
        self.stats.incr("out", n_rows)
        prev = table["blocks_removed"].to_numpy(zero_copy_only=False)
        prev = np.nan_to_num(prev.astype(np.float64), nan=0).astype(np.int32)
        table = _set(table, "blocks_removed", pa.array(prev + removed, pa.int32()))
        if not removed.any():
            return table
        mask = pa.array([k for keep in keep_rows for k in keep], pa.bool_())
        lengths = np.fromiter((len(k) for k in keep_rows), np.int64, n_rows)
        for name in ("texts", "images", "image_info", "text_languages", "text_language_scores"):
            table = _set(table, name, self._filter_list(table[name], name, mask, lengths, keep_rows))
        num_texts = table["num_texts"].to_numpy(zero_copy_only=False).astype(np.int64) - removed
        table = _set(table, "num_texts", pa.array(num_texts, pa.int32()))
        table = _set(table, "text_chars", pa.array(kept_chars, pa.int64()))
        return table

    def _filter_list(self, col: pa.ChunkedArray, name: str, mask: pa.BooleanArray,
                     lengths: np.ndarray, keep_rows: list[list[bool]]) -> pa.Array:
        """Keep the list elements where `mask` (flat, aligned with `texts`) is true."""
        arr = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
        valid = ~np.asarray(arr.is_null().to_numpy(zero_copy_only=False), bool)
        own = np.asarray(pc.fill_null(pc.list_value_length(arr), 0).to_numpy(zero_copy_only=False), np.int64)
        bad = valid & (own != lengths)
        if bad.any():  # a list that is not aligned with texts cannot be kept aligned: null it, count it
            self.stats.incr(f"errors_misaligned_{name}", int(bad.sum()))
            valid &= ~bad
            arr = pa.array([v if ok else None for v, ok in zip(arr.to_pylist(), valid)], arr.type)
        if valid.all():
            m = mask
        else:
            m = pa.array([k for keep, ok in zip(keep_rows, valid) if ok for k in keep], pa.bool_())
        values = arr.flatten().filter(m)
        new_len = np.array([sum(k) if ok else 0 for k, ok in zip(keep_rows, valid)], np.int32)
        offsets = pa.array(np.concatenate(([0], np.cumsum(new_len))).astype(np.int32), pa.int32())
        null_mask = None if valid.all() else pa.array(~valid, pa.bool_())
        out = pa.ListArray.from_arrays(offsets, values, type=arr.type, mask=null_mask)
        return out


def required_literal(pattern: str) -> str | None:
    """The longest literal every match of `pattern` contains (its top-level literal run), lowercased."""
    best = cur = ""
    try:
        items = list(sre_parse.parse(pattern))
    except re.error:
        return None
    for op, av in items:
        if op is sre_parse.LITERAL:
            cur += chr(av)
        else:
            best, cur = max(best, cur, key=len), ""
    best = max(best, cur, key=len)
    return best.lower() if best.strip() else None


class _Patterns:
    """Case-insensitive regexes with a literal prefilter.

    `re` runs one alternation of many regexes at ~2 MB/s. Instead each pattern's required literal
    (`required_literal`) is looked for with `str.find` in the lowercased document (C speed), and a
    block is only searched with the patterns whose literal occurs inside it. Patterns without a
    literal are tried on every block.
    """

    def __init__(self, patterns: tuple[str, ...]):
        groups: dict[str | None, list[re.Pattern]] = {}
        for p in patterns:
            groups.setdefault(required_literal(p), []).append(re.compile(p, re.I))
        self.always: list[re.Pattern] = groups.pop(None, [])
        self.groups = list(groups.items())

    def search(self, text: str) -> bool:
        low = text.lower()
        return any(lit in low and any(rx.search(text) for rx in rxs) for lit, rxs in self.groups) \
            or any(rx.search(text) for rx in self.always)

    def candidates(self, texts: Sequence[str | None]) -> dict[int, list[re.Pattern]]:
        """Block index -> the patterns to try there (blocks absent: only `always`)."""
        if not self.groups:
            return {}
        lows = [t.lower() if t else "" for t in texts]
        doc = "\n".join(lows)
        starts = list(accumulate((len(x) + 1 for x in lows), initial=0))
        out: dict[int, list[re.Pattern]] = {}
        for lit, rxs in self.groups:
            p = doc.find(lit)
            while p >= 0:
                i = bisect_right(starts, p) - 1
                if p + len(lit) <= starts[i] + len(lows[i]):   # inside block i
                    got = out.setdefault(i, list(self.always))
                    got.extend(rx for rx in rxs if rx not in got)
                p = doc.find(lit, p + 1)
        return out


def _set(table: pa.Table, name: str, arr: pa.Array) -> pa.Table:
    i = table.schema.get_field_index(name)
    return table.set_column(i, table.schema.field(i), arr)
