import pyarrow as pa
import pytest

from operators.io.schema import DOCUMENT, QUALITY
from operators.text.select import Select, SelectConfig
from operators.io.writer import split_by_selection
from tests.factories import doc_row


def table(*rows):
    return pa.Table.from_pylist(list(rows), schema=DOCUMENT)


def test_rules_record_first_and_all_reasons():
    t = table(doc_row(id="ok"), doc_row(id="404", http_status=404),
              doc_row(id="empty", texts=[], images=[], image_info=[]),
              doc_row(id="both", http_status=500, texts=[], images=[], image_info=[]))
    op = Select(SelectConfig())
    out = op(t)
    assert out["drop_reason"].to_pylist() == [None, "http_status", "no_text", "http_status"]
    assert out["drop_reasons"].to_pylist() == [None, ["http_status"], ["no_text"], ["http_status", "no_text"]]
    c = op.stats.counters
    assert (c["in"], c["out"], c["dropped"], c["dropped_http_status"], c["dropped_no_text"]) == (4, 1, 3, 2, 1)
    parts = split_by_selection(out, select_enabled=True)
    assert parts["documents"]["id"].to_pylist() == ["ok"]
    assert parts["rejected"]["id"].to_pylist() == ["404", "empty", "both"]


def test_disabled_selection_keeps_everything_but_records_reasons():
    t = table(doc_row(id="ok"), doc_row(id="404", http_status=404))
    op = Select(SelectConfig(enabled=False))
    out = op(t)
    assert out["drop_reason"].to_pylist() == [None, "http_status"]
    assert op.stats.counters["out"] == 2 and op.stats.counters["would_drop_http_status"] == 1
    assert op.stats.counters["dropped"] == 0
    parts = split_by_selection(out, select_enabled=False)
    assert parts["documents"].num_rows == 2 and parts["rejected"].num_rows == 0


def test_thresholds_from_config():
    t = table(doc_row(id="short", texts=["hi"], images=[None], image_info=[None]), doc_row(id="404", http_status=404))
    out = Select(SelectConfig(require_http_ok=False, min_text_chars=10))(t)
    assert out["drop_reason"].to_pylist() == ["no_text", None]


def q(**signals):
    return {f.name: signals.get(f.name) for f in QUALITY}


def test_language_allowlist_and_scores():
    t = table(doc_row(id="en", language="en", language_score=0.95),
              doc_row(id="de-low", language="de", language_score=0.5),
              doc_row(id="fr", language="fr", language_score=0.99),
              doc_row(id="none", language=None, language_score=None))
    out = Select(SelectConfig(languages=("en", "de"), min_language_score=0.6,
                              min_language_score_by_language={"de": 0.4}))(t)
    assert out["drop_reason"].to_pylist() == [None, None, "language_not_allowed", "language_not_allowed"]
    out = Select(SelectConfig(min_language_score=0.6))(t)
    assert out["drop_reason"].to_pylist() == [None, "low_language_score", None, "low_language_score"]
    out = Select(SelectConfig(min_language_score_by_language={"de": 0.6}))(t)
    assert out["drop_reason"].to_pylist() == [None, "low_language_score", None, None]


def test_quality_thresholds_in_config_order_and_nulls_pass():
    t = table(doc_row(id="ok", quality=q(word_count=100, dup_line_frac=0.1, stopword_ratio=0.3)),
              doc_row(id="short", quality=q(word_count=10, dup_line_frac=0.5, stopword_ratio=0.3)),
              doc_row(id="rep", quality=q(word_count=100, dup_line_frac=0.5, stopword_ratio=None)),
              doc_row(id="nosig", quality=None))
    op = Select(SelectConfig(quality={"min_word_count": 50, "max_dup_line_frac": 0.3, "min_stopword_ratio": 0.1}))
    out = op(t)
    assert out["drop_reason"].to_pylist() == [None, "min_word_count", "max_dup_line_frac", None]
    assert out["drop_reasons"].to_pylist()[1] == ["min_word_count", "max_dup_line_frac"]
    c = op.stats.counters
    assert c["dropped_min_word_count"] == 1 and c["fails_max_dup_line_frac"] == 2 and c["dropped_max_dup_line_frac"] == 1


@pytest.mark.parametrize("key", ["max_dup_lines", "between_word_count", "word_count"])
def test_unknown_quality_rule_is_an_error_naming_it(key):
    with pytest.raises(ValueError, match=f"select.quality.{key}: not a rule"):
        SelectConfig(quality={key: 1.0})


def test_duplicates_are_dropped_only_among_kept_documents():
    from operators.text.select import SelectDuplicates
    t = table(doc_row(id="a", dup_cluster_id="a"),
              doc_row(id="b", dup_cluster_id="a"),
              doc_row(id="c", dup_cluster_id="a", drop_reason="no_text", drop_reasons=["no_text"]),
              doc_row(id="d", dup_cluster_id=None))
    op = SelectDuplicates(SelectConfig())
    out = op(t)
    assert out["drop_reason"].to_pylist() == [None, "duplicate", "no_text", None]
    assert out["drop_reasons"].to_pylist() == [None, ["duplicate"], ["no_text"], None]
    assert out["dup_cluster_id"].to_pylist()[1] == "a"  # names the kept document
    c = op.stats.counters
    assert (c["in"], c["out"], c["dropped_duplicate"]) == (4, 2, 1)
    out = SelectDuplicates(SelectConfig(enabled=False))(t)
    assert out["drop_reason"].to_pylist() == [None, "duplicate", "no_text", None]
