"""Block-level cleaning: rules, reasons, alignment of every list, images never removed."""
import pyarrow as pa
import pytest

from operators.text.clean import DEFAULT_BOILERPLATE, CleanBlocks, CleanConfig, required_literal
from operators.text.quality import QualityConfig
from operators.io.schema import DOCUMENT, validate_documents
from tests.factories import doc_row

IMG = {"alt": "a", "width": 640, "height": 480}
LONG = "This is a perfectly normal sentence with enough words in it."


def run(rows, config=CleanConfig(min_words=4), quality=QualityConfig()):  # OBELICS node-level minimum
    op = CleanBlocks(config, quality)
    out = op(pa.Table.from_pylist(rows, schema=DOCUMENT))
    validate_documents(out)
    return op, out


def interleaved(texts, images, **over):
    """A row from aligned `texts` / `images` (None where the other one is set)."""
    info = [IMG if i is not None else None for i in images]
    n_img = sum(i is not None for i in images)
    return doc_row(texts=texts, images=images, image_info=info, num_texts=len(texts) - n_img,
                   num_images=n_img, **over)


def test_short_blocks_removed_but_caption_after_image_spared():
    row = interleaved([LONG, "Too short", LONG, None, "A caption", "Menu", LONG],
                      [None, None, None, "https://x/1.png", None, None, None])
    op, out = run([row])
    r = out.to_pylist()[0]
    assert r["texts"] == [LONG, LONG, None, "A caption", LONG]
    assert r["images"] == [None, None, "https://x/1.png", None, None]
    assert [i and {k: i[k] for k in IMG} for i in r["image_info"]] == [None, None, IMG, None, None]
    assert r["num_texts"] == 4 and r["num_images"] == 1
    assert r["text_chars"] == 3 * len(LONG) + len("A caption")
    assert r["blocks_removed"] == 2
    c = op.stats.counters
    assert c["blocks_in"] == 6 and c["blocks_dropped"] == 2 and c["blocks_dropped_short"] == 2
    assert c["in"] == 1 and c["out"] == 1


def test_caption_sparing_can_be_turned_off():
    row = interleaved([None, "A caption"], ["https://x/1.png", None])
    _, out = run([row], CleanConfig(min_words=4, spare_captions=False))
    assert out.to_pylist()[0]["texts"] == [None]


def test_label_right_before_an_image_spared_and_can_be_turned_off():
    """A "Photo" label or a credit line just before an image places it (news pages); the
    readability set's image order rose 0.767 -> 0.794 with it (bench/RESULTS.md)."""
    row = interleaved([LONG, "Menu", LONG, "Photo", None, "Credit Jane Doe", "Share", LONG],
                      [None, None, None, None, "https://x/1.png", None, None, None])
    _, out = run([row])
    assert out.to_pylist()[0]["texts"] == [LONG, LONG, "Photo", None, "Credit Jane Doe", LONG]
    _, out = run([row], CleanConfig(min_words=4, spare_before_image=False))
    assert out.to_pylist()[0]["texts"] == [LONG, LONG, None, "Credit Jane Doe", LONG]
    # an image's neighbours are spared only from `short`: boilerplate goes anyway
    row = interleaved(["Click here", None], ["https://x/1.png", None][::-1])
    _, out = run([row])
    assert out.to_pylist()[0]["texts"] == [None]


def test_cjk_short_blocks_count_characters():
    row = doc_row(texts=["你好", "今天天气很好"], images=[None, None], image_info=[None, None], num_texts=2)
    _, out = run([row])
    assert out.to_pylist()[0]["texts"] == ["今天天气很好"]


def test_boilerplate_blocks_and_long_paragraphs_that_mention_them():
    mention = " ".join(["word"] * 60) + " click here"
    row = interleaved([
        "We use cookies to give you the best experience on our website.",
        "© 2024 Example Media. All rights reserved.",
        "Subscribe to our newsletter for weekly updates on everything.",
        "Share this article with your friends and family today",
        mention,
        LONG,
    ], [None] * 6)
    op, out = run([row])
    assert out.to_pylist()[0]["texts"] == [mention, LONG]
    assert op.stats.counters["blocks_dropped_boilerplate"] == 4
    assert "blocks_dropped_short" not in op.stats.counters


def test_boilerplate_is_case_insensitive_and_configurable():
    row = interleaved(["CLICK HERE to download the whole report now", "Buy cheap pills online today ok"], [None, None])
    op, out = run([row], CleanConfig(boilerplate_patterns=(r"\bcheap pills\b",)))
    assert out.to_pylist()[0]["texts"] == ["CLICK HERE to download the whole report now"]
    op, out = run([row])
    assert out.to_pylist()[0]["texts"] == ["Buy cheap pills online today ok"]
    op, out = run([row], CleanConfig(boilerplate=False))
    assert op.stats.counters["blocks_dropped"] == 0


def test_required_literal():
    assert required_literal(r"\ball rights reserved\b") == "all rights reserved"
    assert required_literal(r"\bShare on (?:facebook|twitter)\b") == "share on "
    assert required_literal(r"(?:a|b)+") is None
    assert all(required_literal(p) for p in DEFAULT_BOILERPLATE)


def test_special_character_blocks():
    row = interleaved(["#### $$$$ %%%% @@@@ ok go now fine", LONG], [None, None])
    op, out = run([row])
    assert out.to_pylist()[0]["texts"] == [LONG]
    assert op.stats.counters["blocks_dropped_special_chars"] == 1


def test_flagged_word_blocks(tmp_path):
    f = tmp_path / "flagged.txt"
    f.write_text("spamword\n", encoding="utf-8")
    spam = "spamword spamword buy now cheap"       # 2 of 5 words
    one = "one spamword in a long sentence of many ordinary words here today"  # 1 of 12
    row = interleaved([spam, one, LONG], [None] * 3)
    op, out = run([row], CleanConfig(max_flagged_word_ratio=0.1), QualityConfig(flagged_words_path=str(f)))
    assert out.to_pylist()[0]["texts"] == [one, LONG]
    assert op.stats.counters["blocks_dropped_flagged_words"] == 1


def test_other_language_blocks_off_by_default_then_by_score():
    row = interleaved(
        [LONG, "Dies ist ein ganz normaler deutscher Satz hier.", "Ein weiterer deutscher Satz mit Wörtern.", None],
        [None, None, None, "https://x/1.png"],
        language="en", text_languages=["en", "de", "de", None], text_language_scores=[0.99, 0.95, 0.5, None])
    op, out = run([row])
    assert op.stats.counters["blocks_dropped"] == 0
    op, out = run([row], CleanConfig(drop_other_language=True, other_language_min_score=0.8))
    r = out.to_pylist()[0]
    assert r["texts"] == [LONG, "Ein weiterer deutscher Satz mit Wörtern.", None]
    assert r["images"] == [None, None, "https://x/1.png"]
    assert r["text_languages"] == ["en", "de", None]
    assert r["text_language_scores"][0] == pytest.approx(0.99) and r["text_language_scores"][2] is None
    assert r["text_language_scores"][1] == pytest.approx(0.5)
    assert op.stats.counters["blocks_dropped_other_language"] == 1


def test_alignment_across_rows_with_null_and_misaligned_language_lists():
    rows = [
        interleaved(["x", None, LONG, "y"], [None, "https://x/1.png", None, None],
                    id="r0", text_languages=["en", None, "en", "en"], text_language_scores=[0.9, None, 0.8, 0.7]),
        interleaved([None, None], ["https://x/2.png", "https://x/3.png"], id="r1"),   # language lists null
        interleaved([LONG, "z"], [None, None], id="r2", text_languages=["en"], text_language_scores=[0.9]),
        interleaved([LONG], [None], id="r3", blocks_removed=2),
    ]
    op, out = run(rows, CleanConfig(min_words=4, spare_before_image=False))   # "x" goes
    got = {r["id"]: r for r in out.to_pylist()}
    assert got["r0"]["texts"] == [None, LONG]
    assert got["r0"]["images"] == ["https://x/1.png", None]
    assert got["r0"]["text_languages"] == [None, "en"]
    assert got["r0"]["text_language_scores"][0] is None and got["r0"]["text_language_scores"][1] == pytest.approx(0.8)
    assert got["r0"]["num_texts"] == 1 and got["r0"]["blocks_removed"] == 2
    assert got["r1"]["images"] == ["https://x/2.png", "https://x/3.png"] and got["r1"]["text_languages"] is None
    assert got["r1"]["blocks_removed"] == 0
    # r2's language lists do not match its texts: nulled (and counted), the rest stays aligned
    assert got["r2"]["texts"] == [LONG] and got["r2"]["text_languages"] is None
    assert op.stats.counters["errors_misaligned_text_languages"] == 1
    assert got["r3"]["texts"] == [LONG] and got["r3"]["blocks_removed"] == 2   # earlier count kept
    # images are never removed
    assert sum(i is not None for r in out.to_pylist() for i in r["images"]) == 3
    assert out["id"].to_pylist() == ["r0", "r1", "r2", "r3"]


def test_disabled_changes_nothing():
    row = interleaved(["x", LONG], [None, None])
    table = pa.Table.from_pylist([row], schema=DOCUMENT)
    op = CleanBlocks(CleanConfig(enabled=False), QualityConfig())
    assert op(table).equals(table)
    assert op.stats.counters["in"] == 1 and "blocks_in" not in op.stats.counters


def test_nothing_removed_keeps_lists_and_sets_zero():
    row = interleaved([LONG], [None])
    _, out = run([row])
    assert out.to_pylist()[0]["texts"] == [LONG] and out.to_pylist()[0]["blocks_removed"] == 0


@pytest.mark.parametrize("kw,key", [
    ({"min_words": -1}, "clean.min_words"),
    ({"boilerplate_max_words": 1.5}, "clean.boilerplate_max_words"),
    ({"max_special_char_ratio": 1.5}, "clean.max_special_char_ratio"),
    ({"max_flagged_word_ratio": -0.1}, "clean.max_flagged_word_ratio"),
    ({"other_language_min_score": 2}, "clean.other_language_min_score"),
    ({"boilerplate_patterns": ("(unclosed",)}, "clean.boilerplate_patterns"),
    ({"boilerplate_patterns": "click here"}, "clean.boilerplate_patterns"),
])
def test_config_validation(kw, key):
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        CleanConfig(**kw)


def test_config_accepts_a_list_of_patterns():
    assert CleanConfig(boilerplate_patterns=["a", "b"]).boilerplate_patterns == ("a", "b")


def test_multi_chunk_and_empty_tables():
    a = pa.Table.from_pylist([interleaved(["x", LONG], [None, None], id="a")], schema=DOCUMENT)
    b = pa.Table.from_pylist([interleaved([LONG, None, "y"], [None, "https://x/1.png", None], id="b")],
                             schema=DOCUMENT)
    op = CleanBlocks(CleanConfig(), QualityConfig())
    out = op(pa.concat_tables([a, b]))
    validate_documents(out)
    assert [r["texts"] for r in out.to_pylist()] == [[LONG], [LONG, None, "y"]]   # "y" is a caption
    empty = op(DOCUMENT.empty_table())
    assert empty.num_rows == 0 and empty.schema == DOCUMENT


def test_default_removes_one_word_blocks_only():
    row = doc_row(texts=["Share", "Read more", "A normal sentence here."], images=[None] * 3,
                  image_info=[None] * 3, num_texts=3)
    _, out = run([row], CleanConfig())
    assert out.to_pylist()[0]["texts"] == ["Read more", "A normal sentence here."]
