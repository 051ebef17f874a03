"""MinHash signatures and band keys: identity with datasketch, determinism, edge cases, fixtures."""
from __future__ import annotations

import gzip
import itertools
import json
import os
import re
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest
from datasketch import MinHash

import operators.dedup.minhash as mh
from operators.dedup.minhash import (MinHashConfig, MinHashSignatures, band_keys, document_text, estimated_jaccard,
                               hashed_batch, shingles, signatures)
from operators.io.schema import DOCUMENT
from tests.conftest import REPO
from tests.factories import doc_row

EMPTY = (1 << 32) - 1

REAL = [
    "Chelsea are hoping to complete the signing of Nicolas Anelka in time for this weekend's Premier "
    "League clash with Tottenham.\nBolton have already rejected a Chelsea bid for the Frenchman.",
    "Permission is hereby granted, free of charge, to any person obtaining a copy of this software and "
    "associated documentation files (the \"Software\"), to deal in the Software without restriction.",
    "Le gouvernement a annoncé mardi l’ouverture d’une enquête; l'opposition réclame des comptes.",
    "東京都は新しい計画を発表しました。市民の皆様のご協力をお願いします。",
    "Привет, мир! Это тестовый документ — с тире, числами 12 345 и «кавычками».",
    "short text",
    "",
]


def random_texts(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    vocab = [f"w{i}" for i in range(300)] + ["ça", "naïve", "東", "京", "don't", "x2", "Ünïcödé"]
    out = []
    for _ in range(n):
        k = int(rng.integers(0, 400))
        out.append(" ".join(rng.choice(vocab, k)))
    return out


def datasketch_signature(text: str, cfg: MinHashConfig) -> np.ndarray:
    m = MinHash(num_perm=cfg.num_perm, seed=cfg.seed, scheme=cfg.scheme)
    for s in shingles(text, cfg.ngram):
        m.update(s.encode("utf8"))
    return np.asarray(m.hashvalues).astype(np.uint64)


def exact_jaccard(a: str, b: str, n: int = 5) -> float:
    sa, sb = set(shingles(a, n)), set(shingles(b, n))
    return len(sa & sb) / len(sa | sb)


# ---------------------------------------------------------------------------------------------
# config

@pytest.mark.parametrize("over, key", [
    ({"num_perm": 100}, "dedup.bands"),
    ({"bands": 10, "rows": 10, "num_perm": 128}, "dedup.bands"),
    ({"ngram": 0}, "dedup.ngram"),
    ({"rows": 0, "bands": 20, "num_perm": 0}, "dedup.num_perm"),
    ({"hash": "md5"}, "dedup.hash"),
    ({"scheme": "affine64"}, "dedup.scheme"),
    ({"seed": -1}, "dedup.seed"),
])
def test_config_rejects_bad_values(over, key):
    with pytest.raises(ValueError, match=re.escape(key)):
        MinHashConfig(**over)


def test_defaults_meet_the_recall_target_and_the_documented_table_is_true():
    cfg = MinHashConfig()
    assert cfg.bands * cfg.rows == cfg.num_perm
    assert cfg.candidate_probability(0.8) >= 0.95
    assert cfg.candidate_probability(0.5) <= 0.10
    # the table in docs/dedup-minhash.md is the S-curve of the defaults
    doc = (REPO / "docs" / "dedup-minhash.md").read_text()
    js = [float(x) for x in re.search(r"^\s+J\s+([\d. ]+)$", doc, re.M).group(1).split()]
    ps = [float(x) for x in re.search(r"^\s+P\s+([\d. ]+)$", doc, re.M).group(1).split()]
    assert js == [0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95]
    assert ps == [round(cfg.candidate_probability(j), 3) for j in js]


# ---------------------------------------------------------------------------------------------
# shingles

def test_shingles_short_empty_and_punctuation():
    assert shingles("", 5) == []
    assert shingles("  ... !!! —", 5) == []
    assert shingles("Hello, World", 5) == ["hello world"]
    assert shingles("a b c d e", 5) == ["a b c d e"]
    assert shingles("A b c d e F", 5) == ["a b c d e", "b c d e f"]
    assert shingles("a b c", 1) == ["a", "b", "c"]


def test_shingles_cjk_each_character_is_a_word():
    assert shingles("你好世界和平", 5) == ["你 好 世 界 和", "好 世 界 和 平"]
    assert shingles("東京", 5) == ["東 京"]


def test_document_text_skips_images():
    assert document_text(["a b", None, "c"]) == "a b\nc"
    assert document_text(None) == ""


# ---------------------------------------------------------------------------------------------
# identity with datasketch

@pytest.mark.parametrize("scheme", ["affine32", "legacy"])
@pytest.mark.parametrize("num_perm, bands, seed", [(16, 4, 1), (128, 16, 1), (160, 20, 42), (64, 8, 7)])
def test_sha1_signatures_equal_datasketch(scheme, num_perm, bands, seed):
    cfg = MinHashConfig(num_perm=num_perm, bands=bands, rows=num_perm // bands, seed=seed,
                        hash="sha1", scheme=scheme)
    texts = REAL + random_texts(30, seed)
    got = signatures(texts, cfg)
    assert got.dtype == np.uint64 and got.shape == (len(texts), num_perm)
    for i, t in enumerate(texts):
        assert np.array_equal(got[i], datasketch_signature(t, cfg)), (i, t[:40])


def test_chunking_does_not_change_signatures(monkeypatch):
    cfg = MinHashConfig(hash="sha1")
    texts = random_texts(40, 3) + REAL
    whole = signatures(texts, cfg)
    monkeypatch.setattr(mh, "CHUNK_ELEMENTS", cfg.num_perm * 37)   # chunks cut through documents
    assert np.array_equal(signatures(texts, cfg), whole)
    for i in (0, 5, len(texts) - 2):
        assert np.array_equal(whole[i], datasketch_signature(texts[i], cfg))


@pytest.mark.parametrize("hash_", ["xxh3", "words64"])
def test_fast_hashes_keep_the_shingle_structure(hash_):
    cfg = MinHashConfig(hash=hash_)
    texts = REAL + random_texts(20, 5)
    h, counts = hashed_batch(texts, cfg)
    assert counts.tolist() == [len(shingles(t, cfg.ngram)) for t in texts]
    assert len(h) == counts.sum() and h.dtype == np.uint32
    # a hash of the shingle only: the same shingle gives the same value wherever it occurs
    per_doc = np.split(h, np.cumsum(counts)[:-1])
    seen: dict[str, int] = {}
    for t, hs in zip(texts, per_doc):
        for s, v in zip(shingles(t, cfg.ngram), hs.tolist()):
            assert seen.setdefault(s, v) == v
    # different shingles collide rarely (32-bit hashes)
    assert len(set(seen.values())) >= len(seen) - 1


@pytest.mark.parametrize("hash_", ["sha1", "xxh3", "words64"])
def test_a_document_hashes_the_same_alone_and_in_any_batch(hash_):
    cfg = MinHashConfig(hash=hash_)
    texts = ["one two", "a b c d e f g", "", "x", "東京タワー 1 2 3", "p q r s t u"] + REAL
    batch = signatures(texts, cfg)
    for i, t in enumerate(texts):
        assert np.array_equal(signatures([t], cfg)[0], batch[i]), i
    assert np.array_equal(signatures(texts[::-1], cfg)[::-1], batch)


def test_distinct_hashes_are_each_documents_sorted_set():
    rng = np.random.default_rng(7)
    counts = np.array([0, 5, 1, 40, 0, 300, 2])
    h32 = rng.integers(0, 50, counts.sum(), dtype=np.uint32)   # many repeats within a document
    h32[-2:] = [0xFFFFFFFF, 0xFFFFFFFF]
    starts = np.concatenate([[0], np.cumsum(counts)])
    per_doc = [np.unique(h32[a:b]) for a, b in zip(starts[:-1], starts[1:])]
    for rows in (None, np.array([1, 3, 6]), np.array([0, 4]), np.arange(len(counts))):
        values, lens = mh.distinct_hashes(h32, counts, rows)
        take = range(len(counts)) if rows is None else rows
        assert lens.tolist() == [len(per_doc[r]) for r in take]
        want = np.concatenate([per_doc[r] for r in take]) if len(take) else np.zeros(0, np.uint32)
        assert values.dtype == np.uint32 and values.tolist() == want.tolist()
    values, lens = mh.distinct_hashes(np.zeros(0, np.uint32), np.zeros(3, np.int64))
    assert len(values) == 0 and lens.tolist() == [0, 0, 0]


def test_lower_words_are_the_lowercased_documents_words():
    from operators.text.quality import forget_block_words, hold_block_words
    from tests.test_quality import TRICKY_BLOCKS
    docs = [TRICKY_BLOCKS, [None, "\u039f\u0394\u039f\u03a3", None, "\u039f\u0394\u039f\u03a3 \u0130I"], [], None, [""],
            ["Ab CD", "\u03a3\u03a3 x"]] + [[t] for t in REAL]
    want = [mh.words(document_text(d).lower()) for d in docs]
    forget_block_words()
    assert [mh.lower_words(d) for d in docs] == want
    for d in docs:
        for t in d or ():
            if t:
                hold_block_words(t, mh.words(t))   # as clean leaves them
    assert [mh.lower_words(d) for d in docs] == want
    forget_block_words()


def test_words64_hash_is_the_chain_of_word_hashes():
    import hashlib
    cfg = MinHashConfig(hash="words64")
    text = "One two three four five six. 東京 seven"
    h, _ = hashed_batch([text], cfg)
    ref = []
    for s in shingles(text, cfg.ngram):
        wh = np.array([int.from_bytes(hashlib.blake2b(w.encode(), digest_size=8).digest(), "little")
                       for w in s.split(" ")], np.uint64)
        ref.append(int(mh._chain(wh, len(wh))[0]) & EMPTY)
    assert h.tolist() == ref


@pytest.mark.parametrize("hash_", ["sha1", "xxh3", "words64"])
def test_signature_estimate_tracks_exact_jaccard(hash_):
    cfg = MinHashConfig(hash=hash_, num_perm=256, bands=32, rows=8)
    base = random_texts(1, 11)[0]
    ws = base.split()
    edited = " ".join(ws[:300] + [f"new{i}" for i in range(30)])
    j = exact_jaccard(base, edited)
    s = signatures([base, edited], cfg)
    assert abs(estimated_jaccard(s[0], s[1]) - j) < 0.1, j


# ---------------------------------------------------------------------------------------------
# determinism and band keys

_CHILD = """
import json, sys
from operators.dedup.minhash import MinHashConfig, signatures, band_keys
texts = json.loads(sys.stdin.read())
out = {}
for h in ("sha1", "xxh3", "words64"):
    cfg = MinHashConfig(hash=h)
    out[h] = band_keys(signatures(texts, cfg), cfg).tolist()
print(json.dumps(out))
"""


def test_band_keys_are_the_same_in_another_process():
    texts = REAL + random_texts(5, 9)
    here = {}
    for h in ("sha1", "xxh3", "words64"):
        cfg = MinHashConfig(hash=h)
        here[h] = band_keys(signatures(texts, cfg), cfg).tolist()
    for hashseed in ("1", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": hashseed, "PYTHONPATH": str(REPO)}
        proc = subprocess.run([sys.executable, "-c", _CHILD], input=json.dumps(texts), env=env,
                              capture_output=True, text=True, cwd=REPO, timeout=120, check=True)
        assert json.loads(proc.stdout) == here


def test_band_keys_shape_and_sensitivity():
    cfg = MinHashConfig(num_perm=12, bands=3, rows=4)
    sigs = np.arange(24, dtype=np.uint64).reshape(2, 12)
    k = band_keys(sigs, cfg)
    assert k.shape == (2, 3) and k.dtype == np.uint64
    changed = sigs.copy()
    changed[0, 5] += 1                     # band 1 of row 0
    k2 = band_keys(changed, cfg)
    assert (k2[0] != k[0]).tolist() == [False, True, False]
    assert np.array_equal(k2[1], k[1])
    # the same values in two bands give two different keys
    same = np.tile(np.array([7, 8, 9, 10], np.uint64), 3)[None, :]
    ks = band_keys(same, cfg)[0]
    assert len(set(ks.tolist())) == 3
    # order inside a band matters
    swapped = sigs.copy()
    swapped[0, [0, 1]] = swapped[0, [1, 0]]
    assert band_keys(swapped, cfg)[0, 0] != k[0, 0]
    with pytest.raises(ValueError):
        band_keys(sigs[:, :11], cfg)


def test_near_duplicates_share_a_band_and_unrelated_do_not():
    cfg = MinHashConfig()
    a = random_texts(1, 21)[0]
    ws = a.split()
    b = " ".join(ws[:200] + ["inserted"] + ws[200:])          # one word inserted
    c = random_texts(1, 22)[0]
    assert exact_jaccard(a, b) > 0.95
    k = band_keys(signatures([a, b, c], cfg), cfg)
    assert (k[0] == k[1]).any()
    assert not (k[0] == k[2]).any() and not (k[1] == k[2]).any()


def test_cjk_near_duplicates():
    cfg = MinHashConfig()
    a = "東京都は新しい計画を発表しました。市民の皆様のご協力をお願いします。" * 3 + "今日は晴れです。"
    b = a.replace("今日は晴れです。", "今日は雨です。")
    c = "北京大学的研究人员今天发表了一篇关于气候变化的论文，引起了广泛关注。" * 3
    assert exact_jaccard(a, b) > 0.8
    k = band_keys(signatures([a, b, c], cfg), cfg)
    assert (k[0] == k[1]).any()
    assert not (k[0] == k[2]).any()


def test_empty_text_gets_the_empty_signature():
    for h in ("sha1", "words64", "xxh3"):
        cfg = MinHashConfig(hash=h)
        s = signatures(["", "   !!", "one two"], cfg)
        assert (s[0] == EMPTY).all() and (s[1] == EMPTY).all()
        assert not (s[2] == EMPTY).all()
        _, counts = hashed_batch(["", "   !!", "one two"], cfg)
        assert counts.tolist() == [0, 0, 1]


# ---------------------------------------------------------------------------------------------
# operator

def _docs(texts_per_doc: list[list[str | None]]) -> pa.Table:
    rows = []
    for i, texts in enumerate(texts_per_doc):
        images = [None if t is not None else "https://example.com/i.png" for t in texts]
        info = [None if t is not None else {"alt": None, "width": None, "height": None} for t in texts]
        rows.append(doc_row(id=f"d{i}", texts=texts, images=images, image_info=info,
                            num_texts=sum(t is not None for t in texts),
                            num_images=sum(t is None for t in texts)))
    return pa.Table.from_pylist(rows, schema=DOCUMENT)


def test_operator_adds_minhash_bands():
    cfg = MinHashConfig()
    long = random_texts(1, 4)[0]
    table = _docs([[long, None, "caption"], ["", None], [long, "caption"], ["!!!"]])
    op = MinHashSignatures(cfg)
    out = op(table)
    assert out.num_rows == 4 and out["id"].to_pylist() == ["d0", "d1", "d2", "d3"]
    assert out.schema.field("minhash_bands").type == pa.list_(pa.uint64())
    bands = out["minhash_bands"].to_pylist()
    assert bands[1] is None and bands[3] is None
    assert len(bands[0]) == cfg.bands
    assert bands[0] == bands[2]            # images do not count: the same text blocks
    expect = band_keys(signatures([document_text([long, None, "caption"])], cfg), cfg)[0].tolist()
    assert bands[0] == expect
    assert op.stats.counters["in"] == 4 and op.stats.counters["out"] == 4
    assert op.stats.counters["no_shingles"] == 2
    # a table that already has the column (schema with minhash_bands) gets it replaced
    again = op(out)
    assert again.column_names == out.column_names and again["minhash_bands"].to_pylist() == bands


def test_operator_on_an_empty_batch():
    out = MinHashSignatures()(DOCUMENT.empty_table())
    assert out.num_rows == 0 and "minhash_bands" in out.column_names


# ---------------------------------------------------------------------------------------------
# shared fixtures

@pytest.mark.shared
def test_cs336_fuzzy_duplicates(shared_data):
    d = shared_data / "cs336-dedup-fixtures/tests/fixtures/documents_with_fuzzy_duplicates"
    react, rails, torch = (
        (d / n).read_text(encoding="utf8")
        for n in ("react_mit_license.txt", "rails_mit_license.txt", "pytorch_license.txt"))
    # true 5-gram shingle Jaccard of the two MIT licences: 0.919 (different copyright lines, wrapping)
    assert exact_jaccard(react, rails) == pytest.approx(0.919, abs=0.001)
    assert exact_jaccard(react, torch) < 0.05
    for h in ("words64", "sha1"):
        cfg = MinHashConfig(hash=h)
        k = band_keys(signatures([react, rails, torch], cfg), cfg)
        assert (k[0] == k[1]).sum() >= 1
        assert not (k[2] == k[0]).any() and not (k[2] == k[1]).any()


@pytest.mark.shared
def test_dolma_fixtures(shared_data):
    """Dolma's fixture is paragraph-level: only doc 1 has paragraphs already seen (in doc 0, the
    same site's boilerplate, 53% of its characters). At document level that pair is related but
    not a near-duplicate (J ~ 0.37), so no pair of the ten may share a band key, while a copy of
    any document with one paragraph replaced must."""
    root = shared_data / "dolma-dedup-fixtures/tests/data"
    docs = [json.loads(line) for line in gzip.open(root / "provided/deduper/documents/000.json.gz", "rt")]
    expected = [json.loads(line) for line in gzip.open(root / "expected/dedupe-paragraphs.json.gz", "rt")]
    assert [d["id"] for d in docs] == [e["id"] for e in expected] and len(docs) == 10
    texts = [d["text"] for d in docs]
    with_dups = [i for i, e in enumerate(expected) if e["attributes"]["bff_duplicate_paragraph_spans"]]
    assert with_dups == [1]
    cfg = MinHashConfig()
    sigs = signatures(texts, cfg)
    k = band_keys(sigs, cfg)
    for i, j in itertools.combinations(range(10), 2):
        jac = exact_jaccard(texts[i], texts[j])
        if (i, j) == (0, 1):
            assert 0.2 < jac < 0.6
        else:
            assert jac < 0.1
        assert not (k[i] == k[j]).any(), (i, j, jac)
    # planted near-duplicates: every document with its shortest paragraph dropped
    edited = []
    for t in texts:
        paras = t.split("\n")
        drop = min(range(len(paras)), key=lambda p: len(paras[p]) if paras[p].strip() else 1 << 30)
        edited.append("\n".join(paras[:drop] + paras[drop + 1:]))
    ke = band_keys(signatures(edited, cfg), cfg)
    for i in range(10):
        assert exact_jaccard(texts[i], edited[i]) >= 0.85, i
        assert (k[i] == ke[i]).any(), i


def test_exact_hash_normalises_text_and_includes_images():
    from operators.dedup.minhash import exact_hash
    a = exact_hash(["Hello,  World!", None], [None, "https://x/1.png"])
    assert a == exact_hash(["hello world", None], [None, "https://x/1.png"])
    assert a != exact_hash(["hello world", None], [None, "https://x/2.png"])
    assert a != exact_hash(["hello there world", None], [None, "https://x/1.png"])
    assert exact_hash([], []) is None and exact_hash(["  ...  "], [None]) is None


def test_operator_gives_no_keys_to_documents_already_dropped():
    rows = [doc_row(id="keep"), doc_row(id="gone", drop_reason="no_text", drop_reasons=["no_text"])]
    out = MinHashSignatures(MinHashConfig())(pa.Table.from_pylist(rows, schema=DOCUMENT))
    assert out["minhash_bands"].null_count == 1 and out["minhash_bands"][0].is_valid
    assert out["text_hash"].to_pylist()[1] is None and len(out["text_hash"].to_pylist()[0]) == 40
