import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from operators.io.schema import DOCUMENT, SchemaError, validate_documents
from operators.io.writer import PartWriter, WriterConfig, commit, staging_dir
from tests.factories import doc_row


def table(*rows):
    return pa.Table.from_pylist(list(rows), schema=DOCUMENT)


def test_valid_rows_pass():
    assert validate_documents(table(doc_row())).num_rows == 1


@pytest.mark.parametrize("bad, msg", [
    (dict(texts=["a", None], images=[None, "u", None], image_info=[None, {}, None]), "differ in length"),
    (dict(texts=["a", "b"], images=[None, "u"], image_info=[None, {"alt": None, "width": 1, "height": 1}]),
     "both or neither"),
    (dict(texts=[None], images=[None], image_info=[None]), "both or neither"),
    (dict(texts=["a"], images=[None], image_info=[{"alt": "x", "width": 1, "height": 1}]), "image_info"),
])
def test_obelics_invariants_are_checked(bad, msg):
    with pytest.raises(SchemaError, match=msg):
        validate_documents(table(doc_row(**bad)))


def test_missing_or_extra_columns_rejected():
    t = table(doc_row())
    with pytest.raises(SchemaError, match="missing"):
        validate_documents(t.drop_columns(["title"]))
    with pytest.raises(SchemaError, match="unexpected"):
        validate_documents(t.append_column("oops", pa.array([1])))


def test_writer_stages_then_commits_atomically(tmp_path):
    out = str(tmp_path)
    w = PartWriter(out, "run1", "000001", WriterConfig(), select_enabled=True)
    w.write(table(doc_row(id="keep"), doc_row(id="drop", drop_reason="no_text", drop_reasons=["no_text"])))
    staged = w.close()
    assert sorted(staged) == ["_runs/run1/_staging/documents/000001.parquet",
                              "_runs/run1/_staging/rejected/000001.parquet"]
    # before commit, readers of documents/ see nothing
    assert not (tmp_path / "documents").exists()
    final = commit(out, "run1", staged)
    assert final == ["documents/part-run1-000001.parquet", "rejected/part-run1-000001.parquet"]
    docs = pq.read_table(tmp_path / final[0])
    assert docs["id"].to_pylist() == ["keep"] and docs.schema.names == DOCUMENT.names
    assert pq.read_table(tmp_path / final[1])["drop_reason"].to_pylist() == ["no_text"]
    assert not (tmp_path / staging_dir("", "run1").lstrip("/")).exists()


def test_small_writes_are_gathered_into_row_groups_of_the_configured_size(tmp_path):
    w = PartWriter(str(tmp_path), "r", "0", WriterConfig(row_group_rows=5))
    for i in range(12):   # one-row writes, as a final pass over small batches makes them
        w.write(table(doc_row(id=f"d{i:02d}")))
    [path] = w.close()
    meta = pq.ParquetFile(tmp_path / path).metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [5, 5, 2]
    assert pq.read_table(tmp_path / path)["id"].to_pylist() == [f"d{i:02d}" for i in range(12)]


def test_writer_refuses_rows_that_break_the_schema(tmp_path):
    w = PartWriter(str(tmp_path), "r", "0", WriterConfig())
    with pytest.raises(SchemaError):
        w.write(table(doc_row(texts=["a", "b"], images=[None], image_info=[None])))


def test_no_rejected_when_disabled(tmp_path):
    w = PartWriter(str(tmp_path), "r", "0", WriterConfig(write_rejected=False))
    w.write(table(doc_row(id="drop", drop_reason="no_text", drop_reasons=["no_text"])))
    assert w.close() == []


def test_documents_without_any_block_are_valid():
    t = table(doc_row(id="e1", texts=[], images=[], image_info=[]), doc_row(id="e2", texts=[], images=[], image_info=[]))
    assert validate_documents(t).num_rows == 2


def test_text_languages_must_align_with_texts_when_present():
    ok = doc_row(text_languages=["en", None, "en"], text_language_scores=[0.9, None, 0.8])
    assert validate_documents(table(ok, doc_row(id="none"))).num_rows == 2
    with pytest.raises(SchemaError, match="text_languages is not aligned"):
        validate_documents(table(doc_row(text_languages=["en"])))
