import pyarrow as pa

from operators.schema import DOCUMENT
from operators.select import Select, SelectConfig
from operators.writer import split_by_selection
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
    assert op.stats.counters["out"] == 2
    parts = split_by_selection(out, select_enabled=False)
    assert parts["documents"].num_rows == 2 and parts["rejected"].num_rows == 0


def test_thresholds_from_config():
    t = table(doc_row(id="short", texts=["hi"], images=[None], image_info=[None]), doc_row(id="404", http_status=404))
    out = Select(SelectConfig(require_http_ok=False, min_text_chars=10))(t)
    assert out["drop_reason"].to_pylist() == ["no_text", None]
