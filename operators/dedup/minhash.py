"""MinHash signatures and LSH band keys of documents (scorer only: adds `minhash_bands`).

Design, definitions and the measurements behind them: docs/dedup-minhash.md.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from itertools import chain

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from operators.base import Operator, Resources
from operators.text.quality import block_words, words

HASHES = ("sha1", "xxh3", "words64")
SCHEMES = ("affine32", "legacy")

_MERSENNE = np.uint64((1 << 61) - 1)
_MAX32 = np.uint64((1 << 32) - 1)
# Elements of the [num_perm, shingles] permutation matrix per chunk (4 bytes each; 8 in "legacy").
CHUNK_ELEMENTS = 1 << 21


@dataclass(frozen=True)
class MinHashConfig:
    ngram: int = 5            # word n-gram shingles
    num_perm: int = 160       # permutations = bands * rows
    bands: int = 20           # LSH bands: one key each
    rows: int = 8             # signature values per band
    seed: int = 1             # permutation seed (same on every worker)
    hash: str = "words64"     # shingle hash: words64 (fast, default) | sha1 (datasketch-identical) | xxh3
    scheme: str = "affine32"  # permutations: affine32 (datasketch >= 2.0 default) | legacy

    def __post_init__(self):
        for key in ("ngram", "num_perm", "bands", "rows"):
            v = getattr(self, key)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"dedup.{key} must be a positive integer, got {v!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or not 0 <= self.seed < 2**32:
            raise ValueError(f"dedup.seed must be an integer in [0, 2**32), got {self.seed!r}")
        if self.bands * self.rows != self.num_perm:
            raise ValueError(
                f"dedup.bands * dedup.rows must equal dedup.num_perm: "
                f"{self.bands} * {self.rows} = {self.bands * self.rows} != {self.num_perm}")
        if self.hash not in HASHES:
            raise ValueError(f"dedup.hash must be one of {', '.join(HASHES)}, got {self.hash!r}")
        if self.scheme not in SCHEMES:
            raise ValueError(f"dedup.scheme must be one of {', '.join(SCHEMES)}, got {self.scheme!r}")
        if self.hash == "xxh3":
            try:
                import xxhash  # noqa: F401
            except ImportError as e:
                raise ValueError("dedup.hash: xxh3 needs the xxhash package (pip install xxhash)") from e

    def candidate_probability(self, j: float) -> float:
        """P(two documents with Jaccard `j` share at least one band key)."""
        return 1.0 - (1.0 - j ** self.rows) ** self.bands


# ---------------------------------------------------------------------------------------------
# shingles and hashes

def document_text(texts: list[str | None] | None) -> str:
    """A document's text: its text blocks (non-null `texts` entries) joined by newlines."""
    return "\n".join(t for t in texts or () if t)


def lower_words(texts: list[str | None] | None) -> list[str]:
    """`words(document_text(texts).lower())`, from the blocks' words that `clean` already
    tokenised (`quality.block_words`): the same list, without tokenising the document again.
    Lowercasing a word alone gives what lowercasing it in the text gives (no character changes
    its word class; İ becomes i and a combining dot, both word characters) except a Greek
    capital sigma, whose final form depends on what follows: a block with one is lowercased as
    a whole, as before."""
    out: list[str] = []
    for t in texts or ():
        if not t:
            continue
        if "\u03a3" in t:
            out += words(t.lower())
            continue
        ws = block_words(t)
        if ws:
            out += "\n".join(ws).lower().split("\n")   # no word holds a newline
    return out


def shingles(text: str, ngram: int) -> list[str]:
    """The word `ngram`-grams of `text` (lowercased), joined by one space (see the module docstring)."""
    ws = words(text.lower())
    if len(ws) <= ngram:
        return [" ".join(ws)] if ws else []
    if ngram == 1:
        return ws
    return list(map(" ".join, zip(*(ws[i:] for i in range(ngram)))))


def hash_shingles(sh: list[str], hash: str = "sha1") -> np.ndarray:
    """32-bit hashes (uint32) of the utf-8 bytes of each shingle: datasketch's `sha1_hash32`
    (first 4 bytes of sha1, little-endian) or the low 32 bits of xxh3_64."""
    if not sh:
        return np.zeros(0, np.uint32)
    if hash == "sha1":
        sha1 = hashlib.sha1
        buf = b"".join([sha1(s.encode("utf8")).digest() for s in sh])
        return np.frombuffer(buf, "<u4")[::5].astype(np.uint32)   # 20-byte digests: word 0 of 5
    if hash == "xxh3":
        from xxhash import xxh3_64_intdigest
        h = np.fromiter((xxh3_64_intdigest(s.encode("utf8")) for s in sh), np.uint64, len(sh))
        return (h & _MAX32).astype(np.uint32)
    raise ValueError(f"unknown hash {hash!r}")


# ---------------------------------------------------------------------------------------------
# permutations (as datasketch builds them)

def permutations(config: MinHashConfig) -> tuple[np.ndarray, np.ndarray]:
    """(a, b) of datasketch's `MinHash(num_perm, seed, scheme)._init_permutations`."""
    gen = np.random.RandomState(config.seed)
    if config.scheme == "legacy":
        ab = np.array([(gen.randint(1, _MERSENNE, dtype=np.uint64), gen.randint(0, _MERSENNE, dtype=np.uint64))
                       for _ in range(config.num_perm)], dtype=np.uint64)
        return ab[:, 0].copy(), ab[:, 1].copy()
    a = gen.randint(0, 1 << 31, config.num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    b = gen.randint(0, 1 << 32, config.num_perm, dtype=np.uint32)
    return a, b


def _fmix32(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def _fmix64(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xFF51AFD7ED558CCD)
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xC4CEB9FE1A85EC53)
    return h ^ (h >> np.uint64(33))


def _permute(h32: np.ndarray, a: np.ndarray, b: np.ndarray, scheme: str, out: np.ndarray) -> np.ndarray:
    """Permuted values, transposed: [num_perm, len(h32)] (uint32 for affine32, uint64 for legacy),
    written into `out` (a [num_perm, >= len(h32)] buffer). The transposed layout makes the
    per-document minimum a contiguous reduction (about 5x faster than [shingles, num_perm])."""
    phv = out[:, :len(h32)]
    if scheme == "legacy":
        np.multiply(a[:, None], h32.astype(np.uint64)[None, :], out=phv)
        phv += b[:, None]
        phv %= _MERSENNE
        phv &= _MAX32
        return phv
    np.multiply(a[:, None], _fmix32(h32)[None, :], out=phv)
    phv += b[:, None]
    return phv


# ---------------------------------------------------------------------------------------------
# signatures and band keys for a batch

def hashed_batch(texts: list[str], config: MinHashConfig, doc_words: list[list[str]] | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(all shingle hashes of the batch, concatenated, uint32; shingles per document, int64).
    `doc_words`: each text's `words(text.lower())` when already at hand (`lower_words`)."""
    if config.hash == "words64":
        if doc_words is None:
            doc_words = [words((t or "").lower()) for t in texts]
        return _words64_batch(doc_words, config.ngram)
    counts = np.zeros(len(texts), np.int64)
    all_sh: list[str] = []
    for i, t in enumerate(texts):
        sh = shingles(t or "", config.ngram)
        counts[i] = len(sh)
        all_sh.extend(sh)
    return hash_shingles(all_sh, config.hash), counts


_K = np.uint64(0x9E3779B97F4A7C15)
WORD_CACHE_MAX = 1 << 20   # distinct words memoised per process (cleared when full)


class _WordHashes(dict):
    """word -> blake2b-64 of its utf-8 bytes (little-endian), memoised: a pure function, so the
    cache changes speed only, never a value."""

    def __missing__(self, w: str) -> int:
        if len(self) >= WORD_CACHE_MAX:
            self.clear()
        v = self[w] = int.from_bytes(hashlib.blake2b(w.encode("utf8"), digest_size=8).digest(), "little")
        return v


_WORD_HASHES = _WordHashes()


def _word_hashes(words_: list[str]) -> np.ndarray:
    """uint64 per word (see `_WordHashes`)."""
    return np.fromiter(map(_WORD_HASHES.__getitem__, words_), np.uint64, len(words_))


def _chain(wh: np.ndarray, n: int) -> np.ndarray:
    """Hash of each window of n consecutive word hashes: polynomial (h * K + w, mod 2**64, K odd)
    over the window's random 64-bit word hashes, seeded with n, then one fmix64."""
    m = len(wh) - n + 1
    h = wh[:m] + np.uint64(n * int(_K) % (1 << 64))
    for k in range(1, n):
        h *= _K
        h += wh[k:k + m]
    return _fmix64(h)


def _words64_batch(per_doc: list[list[str]], n: int) -> tuple[np.ndarray, np.ndarray]:
    """hash="words64": the same shingles, hashed without building their strings (each distinct
    word hashed once, n-grams combined in numpy; see `_chain`), from each document's lowercased
    words; low 32 bits."""
    lengths = np.fromiter(map(len, per_doc), np.int64, len(per_doc))
    counts = np.where(lengths >= n, lengths - n + 1, np.minimum(lengths, 1))
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, np.uint32), counts
    wh = _word_hashes(list(chain.from_iterable(per_doc)))
    starts = np.cumsum(lengths) - lengths
    if total >= n:
        h = _chain(wh, n)
        # a window starting in the last n-1 words of a document crosses its end (or is all of
        # a short document): drop it
        keep = np.ones(len(h), bool)
        bad = ((starts + lengths)[:, None] - np.arange(1, n)[None, :]).ravel()
        keep[bad[(bad >= 0) & (bad < len(h))]] = False
        h = h[keep]
    else:
        h = np.zeros(0, np.uint64)
    short = np.flatnonzero((lengths > 0) & (lengths < n))
    if len(short):  # fewer than n words: one shingle of all of them, inserted in document order
        sh = np.array([_chain(wh[starts[d]:starts[d] + lengths[d]], int(lengths[d]))[0] for d in short])
        long_docs = np.flatnonzero(lengths >= n)
        doc_of = np.concatenate([np.repeat(long_docs, counts[long_docs]), short])
        h = np.concatenate([h, sh])[np.argsort(doc_of, kind="stable")]
    return (h & _MAX32).astype(np.uint32), counts


def signatures_from_hashes(h32: np.ndarray, counts: np.ndarray, config: MinHashConfig) -> np.ndarray:
    """MinHash signatures (uint64 [n_docs, num_perm]) from `hashed_batch`'s output."""
    n, p = len(counts), config.num_perm
    a, b = permutations(config)
    dtype = np.uint64 if config.scheme == "legacy" else np.uint32
    out = np.full((n, p), np.iinfo(np.uint32).max, dtype)
    nonempty = np.flatnonzero(counts)
    if len(nonempty) == 0:
        return out.astype(np.uint64)
    ends = np.cumsum(counts)[nonempty]
    starts = ends - counts[nonempty]
    sub = np.empty((len(nonempty), p), dtype)
    sub[:] = out[0]
    step = max(1, CHUNK_ELEMENTS // p)
    total = int(ends[-1])
    buf = np.empty((p, min(step, total)), dtype)
    for lo in range(0, total, step):
        hi = min(total, lo + step)
        i0 = int(np.searchsorted(ends, lo, "right"))   # first document ending after lo
        i1 = int(np.searchsorted(starts, hi, "left"))  # documents starting before hi
        seg = np.maximum(starts[i0:i1], lo) - lo        # strictly increasing: documents are non-empty
        red = np.minimum.reduceat(_permute(h32[lo:hi], a, b, config.scheme, buf), seg, axis=1)
        np.minimum(sub[i0:i1], red.T, out=sub[i0:i1])
    out[nonempty] = sub
    return out.astype(np.uint64)


def signatures(texts: list[str], config: MinHashConfig) -> np.ndarray:
    """MinHash signatures (uint64 [len(texts), num_perm]) of the texts; a text without shingles
    gets 2**32 - 1 in every position (use `hashed_batch` counts to tell it apart)."""
    h32, counts = hashed_batch(texts, config)
    return signatures_from_hashes(h32, counts, config)


def band_keys(sigs: np.ndarray, config: MinHashConfig) -> np.ndarray:
    """One uint64 key per band (uint64 [n_docs, bands]): fmix64 chain over the band index and
    its `rows` values, so the same values in different bands give different keys."""
    sigs = np.asarray(sigs, dtype=np.uint64)
    if sigs.ndim != 2 or sigs.shape[1] != config.num_perm:
        raise ValueError(f"signatures must be [n, {config.num_perm}], got {sigs.shape}")
    v = sigs.reshape(len(sigs), config.bands, config.rows)
    k = np.uint64(0x9E3779B97F4A7C15)
    h = np.broadcast_to(_fmix64(np.arange(config.bands, dtype=np.uint64) * k + np.uint64(config.rows)),
                        v.shape[:2]).copy()
    for j in range(config.rows):
        h = _fmix64(h * k + v[:, :, j])
    return h


def estimated_jaccard(sig_a: np.ndarray, sig_b: np.ndarray) -> np.ndarray | float:
    """Share of equal signature values (the MinHash estimate of J); rows are compared pairwise."""
    eq = np.asarray(sig_a) == np.asarray(sig_b)
    return eq.mean(axis=-1)


# ---------------------------------------------------------------------------------------------
# operator

_PUNCT = re.compile(r"[^\w\s]+")


def exact_hash(texts: list[str | None] | None, images: list[str | None] | None) -> str | None:
    """Exact-duplicate key: sha1 of the normalised text (lowercased, punctuation removed,
    whitespace collapsed) and the image URL list in order; None for a document without text."""
    norm = " ".join(_PUNCT.sub(" ", document_text(texts).lower()).split())
    if not norm:
        return None
    urls = "\n".join(u for u in (images or []) if u)
    return hashlib.sha1(f"{norm}\x00{urls}".encode("utf-8", "replace")).hexdigest()


class MinHashSignatures(Operator):
    """Adds the dedup keys to a DOCUMENT batch: `minhash_bands` (list<uint64>, `bands` keys; null
    without shingles) and `text_hash` (`exact_hash`). Documents that selection already dropped
    (`drop_reason` set) get no keys: they take no part in deduplication. Rows are neither dropped
    nor reordered."""

    name = "minhash"
    resources = Resources(num_cpus=1.0)

    def __init__(self, config: MinHashConfig | None = None):
        super().__init__()
        self.config = config or MinHashConfig()

    def __call__(self, table: pa.Table) -> pa.Table:
        return dedup_columns(table, self.config, self.stats)[0]


# The narrow table the flow's dedup works on (flows/pipeline.py): one row per document that
# selection kept and that has keys; everything the unit's dedup, its index rows and the image
# stage's references need, nothing of the text.
KEYS = pa.schema([
    pa.field("id", pa.string()),
    pa.field("url_key", pa.string()),               # operators.io.urls.url_key of the page URL
    pa.field("warc_date", pa.int64()),              # unix seconds; null when the record had none
    pa.field("text_chars", pa.int64()),
    pa.field("num_images", pa.int64()),
    pa.field("text_hash", pa.string()),
    pa.field("minhash_bands", pa.list_(pa.uint64())),
    pa.field("signature", pa.binary()),             # num_perm uint32 little-endian
    pa.field("shingles", pa.binary()),              # sorted distinct uint32 shingle hashes (exact Jaccard)
    pa.field("images", pa.list_(pa.string())),      # the image URL of each image position, in order
])


def distinct_hashes(h32: np.ndarray, counts: np.ndarray, rows: np.ndarray | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """The sorted distinct hashes of each document (`h32`: the documents' hashes concatenated,
    `counts` per document), concatenated, and how many each has; `rows` (increasing): only those
    documents. One sort for the batch, on (row << 32 | hash) keys."""
    n = len(counts)
    keyed = np.sort((np.repeat(np.arange(n, dtype=np.uint64), counts) << np.uint64(32)) | h32.astype(np.uint64))
    if len(keyed):   # np.unique's hashing is ~10x slower than this on these arrays (numpy 2.4)
        first = np.empty(len(keyed), bool)
        first[0] = True
        np.not_equal(keyed[1:], keyed[:-1], out=first[1:])
        keyed = keyed[first]
    row_of = (keyed >> np.uint64(32)).astype(np.int64)
    values = (keyed & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    lens = np.bincount(row_of, minlength=n)
    if rows is None or len(rows) == n:
        return values, lens
    wanted = np.zeros(n, bool)
    wanted[rows] = True
    return values[wanted[row_of]], lens[rows]


def dedup_columns(table: pa.Table, config: MinHashConfig, stats=None, keys: bool = False
                  ) -> tuple[pa.Table, pa.Table | None]:
    """Set `minhash_bands` and `text_hash` of a DOCUMENT batch (documents that selection already
    dropped get none: they take no part in deduplication), hashing every shingle once; with
    `keys`, also return the KEYS rows of the documents that have keys."""
    from operators.dedup.encoding import _u32_bytes, rank_columns, signature_bytes
    from operators.io.urls import url_key
    n = table.num_rows
    if stats is not None:
        stats.incr("in", n)
    doc_texts = table["texts"].to_pylist()
    eligible = (pc.is_null(table["drop_reason"]).to_numpy(zero_copy_only=False)
                if "drop_reason" in table.column_names else np.ones(n, bool))
    if config.hash == "words64":
        texts, doc_words = [], [lower_words(t) if ok else [] for t, ok in zip(doc_texts, eligible)]
    else:
        texts, doc_words = [document_text(t) if ok else "" for t, ok in zip(doc_texts, eligible)], None
    h32, counts = hashed_batch(texts, config, doc_words)
    sigs = signatures_from_hashes(h32, counts, config)
    bands = band_keys(sigs, config)
    empty = counts == 0
    column = pa.ListArray.from_arrays(
        pa.array(np.arange(n + 1, dtype=np.int32) * config.bands),
        pa.array(bands.reshape(-1), pa.uint64()),
        type=pa.list_(pa.uint64()),
        mask=pa.array(empty),
    )
    images = table["images"].to_pylist()
    hashes = pa.array([exact_hash(t, i) if ok else None
                       for t, i, ok in zip(doc_texts, images, eligible)], pa.string())
    if stats is not None:
        stats.incr("shingles", int(counts.sum()))
        stats.incr("no_shingles", int(empty.sum()))
        stats.incr("out", n)
    for name, col in (("minhash_bands", column), ("text_hash", hashes)):
        if name in table.column_names:
            table = table.set_column(table.schema.get_field_index(name), name, col)
        else:
            table = table.append_column(name, col)
    if not keys:
        return table, None
    take = np.flatnonzero(eligible & ~empty)
    distinct, lens = distinct_hashes(h32, counts, take)
    wanted = ("id", "url", "text_chars", "num_images", "provenance", "warc_date", "text_hash", "minhash_bands")
    sub = table.select([c for c in wanted if c in table.column_names]).take(pa.array(take, pa.int64()))
    ranks = rank_columns(sub)
    date = pc.if_else(pc.equal(ranks["date"], np.iinfo(np.int64).max), pa.scalar(None, pa.int64()), ranks["date"])
    out = pa.table({
        "id": ranks["id"],
        "url_key": pa.array([url_key(u) for u in sub["url"].to_pylist()], pa.string()),
        "warc_date": date, "text_chars": ranks["text_chars"], "num_images": ranks["num_images"],
        "text_hash": sub["text_hash"], "minhash_bands": sub["minhash_bands"],
        "signature": signature_bytes(sigs[take]),
        "shingles": _u32_bytes(distinct, len(take), np.concatenate([[0], np.cumsum(lens)])),
        "images": pa.array([[u for u in images[i] or [] if u] for i in take], pa.list_(pa.string())),
    }, schema=KEYS)
    return table, out
