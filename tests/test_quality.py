"""Quality signals: every field on hand-made text with values computed by hand."""
import itertools
import random
from collections import Counter

import pyarrow as pa
import pytest
import stopwordsiso

from operators.text.quality import (
    QUALITY_FIELDS, FlaggedWords, QualityConfig, QualitySignals, WordList, base_language,
    batch_signals, block_words, document_signals, forget_block_words, hold_block_words, words,
)
from operators.io.schema import DOCUMENT, QUALITY, validate_documents
from tests.factories import doc_row

approx = pytest.approx


def sig(texts, language="en", n_images=0, flagged=None):
    return document_signals(texts, language, n_images, flagged)


@pytest.fixture(scope="module")
def default_flagged():
    return QualityConfig().load_flagged()


# --- tokenisation -------------------------------------------------------------------------------

def test_words_latin_apostrophes_punctuation_digits():
    assert words("Hello, world! Don't stop: l’homme x_y 2024 -- 3.5 😀 #tag") == \
        ["Hello", "world", "Don't", "stop", "l’homme", "x", "y", "2024", "3", "5", "tag"]


def test_words_cjk_one_word_per_character():
    assert words("你好，世界。") == ["你", "好", "世", "界"]
    assert words("こんにちはカタカナー") == list("こんにちはカタカナー")
    assert words("漢字and English混合") == ["漢", "字", "and", "English", "混", "合"]


def test_words_thai_base_character_with_its_marks():
    # ก็ = ก + U+0E47 (a mark): one word; ไปไหน has no marks: five words
    assert words("ก็ไปไหน") == ["ก็", "ไ", "ป", "ไ", "ห", "น"]


def test_words_korean_runs_and_right_to_left_scripts():
    assert words("한국어 문장입니다.") == ["한국어", "문장입니다"]
    # Arabic with harakat (marks) stays one word; Hebrew with niqqud too; logical order kept
    assert words("كِتَابٌ جميل، في البيت") == ["كِتَابٌ", "جميل", "في", "البيت"]
    assert words("שָׁלוֹם עולם!") == ["שָׁלוֹם", "עולם"]
    # Devanagari vowel signs are marks: whole words
    assert words("हिन्दी भाषा।") == ["हिन्दी", "भाषा"]


TRICKY_BLOCKS = [
    "Hello, world! It's 3 o’clock.", "", "東京タワーです", "ภาษาไทย ดี",
    "İstanbul İZMİR", "ΟΔΟΣ.ΑΒ ΣΟΦΙΑΣ", "café́ naïve",
    "x" * 3, "שלום عالم", "a‍b ½ ⅠⅡ",
]


def test_a_documents_words_are_its_blocks_words():
    # quality counts a document's words from its blocks' words, which clean already tokenised
    assert list(itertools.chain.from_iterable(map(words, TRICKY_BLOCKS))) == words("\n".join(TRICKY_BLOCKS))
    forget_block_words()
    fresh = [block_words(b) for b in TRICKY_BLOCKS]
    assert fresh == [words(b) for b in TRICKY_BLOCKS]
    for b in TRICKY_BLOCKS:
        hold_block_words(b, words(b))
    assert [block_words(b) for b in TRICKY_BLOCKS] == fresh
    forget_block_words()
    docs = [TRICKY_BLOCKS, TRICKY_BLOCKS[::-1], ["one two", None, "three"]]
    without = batch_signals(docs, ["en"] * 3, [0, 0, 1], None)
    for d in docs:
        for b in d:
            if b is not None:
                hold_block_words(b, words(b))
    assert batch_signals(docs, ["en"] * 3, [0, 0, 1], None) == without
    forget_block_words()


def test_base_language():
    assert [base_language(x) for x in ("en", "en-US", "eng_Latn", "__label__zh", "ZH_Hans", None, "")] == \
        ["en", "en", "en", "zh", "zh", None, None]


# --- counts and character ratios ----------------------------------------------------------------

def test_counts_char_ratios_and_images():
    s = sig(["Hello, world!", None, "Das ist gut."], n_images=1)
    assert s["word_count"] == 5
    assert s["char_count"] == 25
    assert s["mean_word_length"] == approx(19 / 5)
    assert s["punctuation_ratio"] == approx(3 / 25)
    assert s["special_char_ratio"] == approx(3 / 25)
    assert s["image_ratio"] == approx(1 / 3)
    assert s["words_per_image"] == approx(5.0)
    assert s["alpha_word_ratio"] == 1.0
    assert set(s) == set(QUALITY_FIELDS)


def test_special_chars_are_not_only_punctuation():
    # "a+b=c €5 😀": symbols + = € 😀 are special but not punctuation; 10 characters
    s = sig(["a+b=c €5 😀"])
    assert s["char_count"] == 10
    assert s["special_char_ratio"] == approx(4 / 10)
    assert s["punctuation_ratio"] == 0.0


def test_alpha_word_ratio_uses_whitespace_tokens_like_gopher():
    # tokens: "Price:" has a letter; "100" "$" "|" "20" "%" do not
    assert sig(["Price: 100 $ | 20 %"])["alpha_word_ratio"] == approx(1 / 6)


def test_empty_document_is_all_null():
    s = sig([], n_images=0)
    assert s["word_count"] == 0 and s["char_count"] == 0
    assert all(s[k] is None for k in QUALITY_FIELDS if k not in ("word_count", "char_count"))


def test_document_of_only_images():
    s = sig([None, None], n_images=2)
    assert s["word_count"] == 0 and s["char_count"] == 0
    assert s["image_ratio"] == 1.0
    assert s["words_per_image"] == 0.0
    others = set(QUALITY_FIELDS) - {"word_count", "char_count", "image_ratio", "words_per_image"}
    assert all(s[k] is None for k in others)


def test_text_without_images_has_null_words_per_image():
    s = sig(["one two"], n_images=0)
    assert s["image_ratio"] == 0.0 and s["words_per_image"] is None


# --- lines --------------------------------------------------------------------------------------

def test_bullets_ellipses_end_punctuation_symbols():
    s = sig(["• one\n- two\n- three…", "four...\nfive.", "  \n", "six #7"])
    # lines: "• one" "- two" "- three…" "four..." "five." "six #7" (blank lines are not lines)
    assert s["bullet_line_ratio"] == approx(3 / 6)
    assert s["ellipsis_line_ratio"] == approx(2 / 6)
    assert s["lines_end_punct_ratio"] == approx(3 / 6)   # "…", "...", "."
    # words: one two three four five six 7 -> 7; symbols: "…" "..." "#"
    assert s["word_count"] == 7
    assert s["symbol_word_ratio"] == approx(3 / 7)


def test_hyphen_needs_a_space_to_be_a_bullet():
    assert sig(["-5 degrees\n-- x"])["bullet_line_ratio"] == 0.0


def test_cjk_and_arabic_terminal_punctuation():
    assert sig(["今天很好。\nهل أنت بخير؟\nno stop"])["lines_end_punct_ratio"] == approx(2 / 3)


# --- duplicates ---------------------------------------------------------------------------------

def test_duplicate_lines_and_paragraphs():
    texts = ["a b\nc d\na b", "x y z", None, "x y z", "c d"]
    s = sig(texts, n_images=1)
    total = 11 + 5 + 5 + 3
    assert s["char_count"] == total
    assert s["dup_para_frac"] == approx(1 / 4)           # the second "x y z"
    assert s["dup_para_char_frac"] == approx(5 / total)
    # lines: "a b" "c d" "a b" "x y z" "x y z" "c d": the 2nd of each repeats
    assert s["dup_line_frac"] == approx(3 / 6)
    assert s["dup_line_char_frac"] == approx((3 + 5 + 3) / total)


# --- n-grams ------------------------------------------------------------------------------------

def test_top_ngrams():
    s = sig(["a b a b c"])  # 9 characters, 5 one-character words
    assert s["top_2gram_char_frac"] == approx(4 / 9)   # "a b" twice: words 0-3
    assert s["top_3gram_char_frac"] == approx(3 / 9)   # all once: the first, "a b a"
    assert s["top_4gram_char_frac"] == approx(4 / 9)
    assert s["dup_5gram_char_frac"] == 0.0             # one 5-gram only


def test_top_ngram_counts_overlapping_characters_once():
    s = sig(["a a a a"])   # "a a" occurs 3 times, overlapping: covers the 4 words once
    assert s["top_2gram_char_frac"] == approx(4 / 7)
    assert s["top_3gram_char_frac"] == approx(4 / 7)


def test_top_ngram_tie_takes_the_first_occurring():
    # "x y" and "p q" both twice; "x y" comes first: its words are longer
    s = sig(["xx yy p q xx yy p q"])
    assert s["top_2gram_char_frac"] == approx(8 / 19)


def test_duplicated_ngrams():
    text = "one two three four five one two three four five"   # 47 characters
    s = sig([text])
    assert s["char_count"] == 47
    assert s["dup_5gram_char_frac"] == approx(19 / 47)       # the second copy
    for n in range(6, 11):
        assert s[f"dup_{n}gram_char_frac"] == 0.0


def test_duplicated_ngrams_three_copies_and_longer_n():
    s = sig(["a b c d e a b c d e a b c d e"])   # 15 words, 29 characters
    for n in (5, 6, 10):
        assert s[f"dup_{n}gram_char_frac"] == approx(10 / 29), n   # copies 2 and 3


def test_ngrams_span_blocks_but_not_documents():
    block = "one two three four five"
    s = sig([block, None, block], n_images=1)
    assert s["dup_5gram_char_frac"] == approx(19 / 46)
    rows = batch_signals([[block], [block]], ["en", "en"], [0, 0], None)
    assert [r["dup_5gram_char_frac"] for r in rows] == [0.0, 0.0]


def test_cjk_ngrams_count_characters():
    s = sig(["哈哈哈哈"])
    assert s["word_count"] == 4
    assert s["top_2gram_char_frac"] == 1.0
    assert s["dup_5gram_char_frac"] == 0.0
    s = sig(["我爱北京我爱北京"])    # 8 words; 4-gram 我爱北京 twice
    assert s["top_4gram_char_frac"] == 1.0
    assert s["top_3gram_char_frac"] == approx(6 / 8)   # 我爱北 twice (first of the tied ones)


def _reference(ws: list[str], char_count: int) -> dict:
    """Plain-Python definitions, for the vectorised version to agree with."""
    out = {}
    L = [len(w) for w in ws]
    for n in (2, 3, 4):
        grams = [tuple(ws[i:i + n]) for i in range(len(ws) - n + 1)]
        if not grams:
            out[n] = 0
            continue
        top = Counter(grams).most_common(1)[0][0]
        cov = set()
        for i, g in enumerate(grams):
            if g == top:
                cov.update(range(i, i + n))
        out[n] = sum(L[i] for i in cov)
    for n in range(5, 11):
        seen, cov = set(), set()
        for i in range(len(ws) - n + 1):
            g = tuple(ws[i:i + n])
            if g in seen:
                cov.update(range(i, i + n))
            seen.add(g)
        out[n] = sum(L[i] for i in cov)
    return {n: v / char_count for n, v in out.items()}


def test_vectorised_ngrams_agree_with_reference_on_random_batches():
    rng = random.Random(7)
    vocab = ["a", "bb", "ccc", "dd", "e", "ffff", "猫", "ก็"]
    docs = []
    for _ in range(60):
        n = rng.choice([0, 1, 3, 5, 12, 40, 120])
        period = rng.choice([0, 3, 7])
        ws = [rng.choice(vocab[: rng.choice([2, 4, 8])]) for _ in range(n)]
        if period and n > period:
            ws = [ws[i % period] if rng.random() < 0.8 else ws[i] for i in range(n)]
        docs.append([" ".join(ws)] if ws else [])
    rows = batch_signals(docs, ["en"] * len(docs), [0] * len(docs), None)
    for texts, row in zip(docs, rows):
        if not texts:
            assert row["top_2gram_char_frac"] is None
            continue
        ref = _reference(words(texts[0]), len(texts[0]))
        for n in (2, 3, 4):
            assert row[f"top_{n}gram_char_frac"] == approx(ref[n]), (texts, n)
        for n in range(5, 11):
            assert row[f"dup_{n}gram_char_frac"] == approx(ref[n]), (texts, n)


# --- stopwords ----------------------------------------------------------------------------------

def test_stopword_ratio_english_case_insensitive():
    en = stopwordsiso.stopwords("en")
    assert {"the", "and"} <= en and not {"cat", "dog"} & en
    assert sig(["The cat and the dog"])["stopword_ratio"] == approx(3 / 5)
    assert sig(["THE CAT AND THE DOG"])["stopword_ratio"] == approx(3 / 5)


def test_stopword_ratio_chinese_multi_character_entries():
    zh = stopwordsiso.stopwords("zh")
    assert {"首先", "很", "好"} <= zh and not {"首", "先", "猫"} & zh
    # the entry 首先 covers the words 首 and 先: 4 of 5 words
    assert sig(["首先猫很好"], language="zh")["stopword_ratio"] == approx(4 / 5)


def test_stopword_ratio_right_to_left():
    ar, he = stopwordsiso.stopwords("ar"), stopwordsiso.stopwords("he")
    assert {"في", "من"} <= ar and not {"الكتاب", "جميل"} & ar
    assert sig(["في الكتاب جميل من"], language="ar")["stopword_ratio"] == approx(2 / 4)
    assert {"הוא", "של"} <= he and not {"ספר", "יפה"} & he
    assert sig(["הוא ספר יפה של"], language="he")["stopword_ratio"] == approx(2 / 4)


def test_stopword_ratio_null_without_list_or_language():
    assert sig(["the cat"], language=None)["stopword_ratio"] is None
    assert sig(["the cat"], language="xx")["stopword_ratio"] is None
    assert sig(["the cat"], language="eng_Latn")["stopword_ratio"] == approx(1 / 2)


# --- flagged words ------------------------------------------------------------------------------

def test_flagged_words_from_a_file_with_phrases(tmp_path):
    f = tmp_path / "flagged.txt"
    f.write_text("# comment\nbadword\nvery bad phrase\n\n", encoding="utf-8")
    fl = QualityConfig(flagged_words_path=str(f)).load_flagged()
    # words: This badword is a very bad phrase BADWORD -> 8; hits: badword, BADWORD, the phrase
    s = sig(["This badword is a very bad phrase, BADWORD."], language="de", flagged=fl)
    assert s["flagged_word_ratio"] == approx(3 / 8)


def test_flagged_words_folder_per_language_and_fallback(tmp_path):
    (tmp_path / "en.txt").write_text("spam\n", encoding="utf-8")
    (tmp_path / "de.txt").write_text("mist\n", encoding="utf-8")
    fl = FlaggedWords(str(tmp_path), fallback="en")
    assert sig(["spam mist"], language="de", flagged=fl)["flagged_word_ratio"] == approx(1 / 2)
    assert sig(["spam spam mist x"], language="fr", flagged=fl)["flagged_word_ratio"] == approx(2 / 4)
    assert sig(["spam spam mist x"], language=None, flagged=fl)["flagged_word_ratio"] == approx(2 / 4)
    none = FlaggedWords(str(tmp_path), fallback=None)
    assert sig(["spam"], language="fr", flagged=none)["flagged_word_ratio"] is None
    assert sig(["spam"], flagged=None)["flagged_word_ratio"] is None


def test_default_flagged_list_is_offline_and_multilingual(default_flagged):
    assert sig(["free porn here"], flagged=default_flagged)["flagged_word_ratio"] == approx(1 / 3)
    assert sig(["a nice day"], flagged=default_flagged)["flagged_word_ratio"] == 0.0
    # 三级片 is one entry of three characters (= three words): one occurrence
    assert sig(["看三级片"], language="zh", flagged=default_flagged)["flagged_word_ratio"] == approx(1 / 4)


def test_wordlist_count_and_cover():
    wl = WordList(["new york", "york", "a b c"])
    ws = words("New York is in York; a b c a b")
    assert wl.count(ws) == 4       # "new york", "York" twice, "a b c"
    assert wl.covered(ws) == 6     # New York York a b c


def test_quality_config_validation(tmp_path):
    with pytest.raises(ValueError, match="quality.flagged_words_path"):
        QualityConfig(flagged_words_path=str(tmp_path / "missing.txt"))
    with pytest.raises(ValueError, match="quality.flagged_words_path"):
        QualityConfig(flagged_words_path=str(tmp_path))   # a folder without <lang>.txt
    with pytest.raises(ValueError, match="quality.flagged_words_fallback"):
        QualityConfig(flagged_words_fallback="")


# --- operator -----------------------------------------------------------------------------------

def test_operator_fills_quality_and_keeps_rows(default_flagged):
    rows = [
        doc_row(id="a", language="en"),
        doc_row(id="b", language="zh", texts=["首先猫很好", None], images=[None, "https://x/i.png"],
                image_info=[None, {"alt": None, "width": None, "height": None}], num_texts=1),
        doc_row(id="c", language=None, texts=[None], images=["https://x/j.png"],
                image_info=[{"alt": None, "width": None, "height": None}], num_texts=0),
        doc_row(id="d", language=None, texts=[], images=[], image_info=[], num_texts=0, num_images=0),
    ]
    table = pa.Table.from_pylist(rows, schema=DOCUMENT)
    op = QualitySignals(QualityConfig())
    out = op(table)
    assert out.schema == table.schema and out.num_rows == 4
    assert out["id"].to_pylist() == ["a", "b", "c", "d"]
    assert out.column("quality").type == QUALITY
    q = out["quality"].to_pylist()
    for row, got in zip(rows, q):
        n_img = sum(i is not None for i in row["images"])
        want = document_signals(row["texts"], row["language"], n_img, default_flagged)
        for k in QUALITY_FIELDS:
            assert got[k] == (approx(want[k], rel=1e-6) if isinstance(want[k], float) else want[k]), k
    assert q[0]["word_count"] == 3 and q[1]["stopword_ratio"] == approx(4 / 5)
    assert q[2]["image_ratio"] == 1.0 and q[3]["image_ratio"] is None
    assert op.stats.counters["in"] == 4 and op.stats.counters["out"] == 4
    validate_documents(out)


def test_operator_on_empty_and_multi_chunk_tables():
    op = QualitySignals(QualityConfig())
    empty = op(DOCUMENT.empty_table())
    assert empty.num_rows == 0 and empty.schema == DOCUMENT
    a = pa.Table.from_pylist([doc_row(id="a", texts=["one two three one two three"], images=[None],
                                      image_info=[None], num_texts=1, num_images=0)], schema=DOCUMENT)
    out = op(pa.concat_tables([a, a]))
    q = out["quality"].to_pylist()
    assert [x["word_count"] for x in q] == [6, 6]
    assert [x["top_3gram_char_frac"] for x in q] == [approx(22 / 27)] * 2   # one two three, twice


def test_ngrams_without_pandas_give_the_same_values(monkeypatch):
    import operators.text.quality as q
    texts = [["a b a b c"], ["a a a a"], ["one two three four five one two three four five"], []]
    want = batch_signals(texts, ["en"] * 4, [0] * 4, None)
    monkeypatch.setattr(q, "_factorizer", lambda: None)
    assert batch_signals(texts, ["en"] * 4, [0] * 4, None) == want
