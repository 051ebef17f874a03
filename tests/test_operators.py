"""The reader and extractor as operators, without Ray."""
from datetime import datetime, timezone

import pyarrow as pa
import pytest

import operators.text.documents as documents
from flows.make_sample import write_sample_warc
from operators.text.documents import ExtractDocuments, RunInfo, document_id
from operators.text.extract import ExtractConfig
from operators.io.read import ReadWarcs
from operators.io.schema import RECORD, validate_documents
from operators.io.warc import ReaderConfig


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    path = tmp_path_factory.mktemp("s") / "sample.warc.gz"
    return str(path), write_sample_warc(str(path))


def paths_table(*paths):
    return pa.table({"warc_path": list(paths)})


def test_reader_yields_bounded_batches_and_counts(sample, tmp_path):
    path, manifest = sample
    bad = tmp_path / "cut.warc.gz"
    bad.write_bytes(open(path, "rb").read()[:5000])
    op = ReadWarcs(ReaderConfig(), records_per_batch=4)
    batches = list(op(paths_table(path, str(bad))))
    assert all(b.num_rows <= 4 for b in batches) and all(b.schema.equals(RECORD) for b in batches)
    n_html = len(manifest["html_pages"])
    total = sum(b.num_rows for b in batches)
    assert total >= n_html
    c = op.stats.counters
    assert c["files"] == 2 and c["files_failed"] == 1 and c["out"] == total
    assert op.stats.errors[0]["kind"] == "damaged_warc" and op.stats.errors[0]["file"] == str(bad)


def test_a_whole_file_gzip_warc_is_read_and_not_failed_only_warned(sample, tmp_path):
    import gzip
    path, manifest = sample
    whole = tmp_path / "whole.warc.gz"
    whole.write_bytes(gzip.compress(gzip.decompress(open(path, "rb").read())))   # one gzip member for all
    op = ReadWarcs(ReaderConfig())
    rows = sum(b.num_rows for b in op(paths_table(str(whole))))
    assert rows >= len(manifest["html_pages"])
    assert op.stats.counters["files"] == 1 and not op.stats.counters.get("files_failed")
    assert [e["kind"] for e in op.stats.errors] == ["gzip_not_per_record"]


def record(**over):
    rec = {"url": "https://example.com/a", "warc_path": "/data/x.warc.gz", "warc_record_offset": 123,
           "warc_record_length": 456, "warc_record_id": "<urn:uuid:abc>", "warc_date": "2024-01-02T03:04:05Z",
           "payload_digest": "sha1:XYZ", "http_status": 200, "content_type": "text/html", "charset": "utf-8",
           "html": "<html lang=en><title>T</title><body><article><p>" + "Some words here. " * 20
                   + "</p><img src='/i.jpg' width=300 height=200 alt='pic'></article></body></html>"}
    rec.update(over)
    return rec


def test_extract_builds_valid_rows_with_provenance():
    op = ExtractDocuments(ExtractConfig(), RunInfo(run_id="r1", config_hash="h1"))
    out = validate_documents(op(pa.Table.from_pylist([record()], schema=RECORD)))
    row = out.to_pylist()[0]
    # golden: sha1 of "<record id>@<file name>"; the id scheme never changes (README), so a literal
    assert row["id"] == "432925e1935e45680bcfeab943a236286a84bcde" == document_id("<urn:uuid:abc>", "/data/x.warc.gz", 123)
    assert row["title"] == "T" and row["html_lang"] == "en"
    assert row["images"][-1] == "https://example.com/i.jpg" and row["num_images"] == 1
    info = row["image_info"][-1]
    assert {k: info[k] for k in ("alt", "width", "height")} == {"alt": "pic", "width": 300, "height": 200}
    assert info["status"] is None   # the image stage has not run
    p = row["provenance"]
    assert (p["warc_record_offset"], p["warc_record_length"], p["run_id"], p["config_hash"]) == (123, 456, "r1", "h1")
    assert p["warc_date"] == datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    assert op.stats.counters["in"] == op.stats.counters["out"] == 1


def test_malformed_date_is_null_and_missing_record_id_falls_back_to_offset():
    op = ExtractDocuments(ExtractConfig(), RunInfo("r", "h"))
    row = op(pa.Table.from_pylist([record(warc_date=None, warc_record_id="")], schema=RECORD)).to_pylist()[0]
    assert row["provenance"]["warc_date"] is None
    # golden: sha1 of "<file name>@<offset>" (not the folder)
    assert row["id"] == "54fa2eda184df449c88a6d36a248300ec4c5d506" == document_id(None, "/elsewhere/x.warc.gz", 123)
    assert row["id"] != document_id(None, "/data/x.warc.gz", 124)


def test_extractor_bug_is_recorded_not_fatal(monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("bug")
    monkeypatch.setattr(documents, "extract_document", boom)
    op = ExtractDocuments(ExtractConfig(), RunInfo("r", "h"))
    out = validate_documents(op(pa.Table.from_pylist([record(), record(url="https://example.com/b")],
                                                     schema=RECORD)))
    assert out.num_rows == 2 and out["text_chars"].to_pylist() == [0, 0]
    assert op.stats.counters["errors_extract"] == 2
    assert op.stats.errors[0]["error"] == "RuntimeError: bug"


def test_a_page_past_the_extraction_time_limit_is_counted_and_kept_as_an_empty_document():
    big = "<html><body>" + "".join(f"<p>Paragraph {i} with some words.</p>" for i in range(30_000)) + "</body></html>"
    op = ExtractDocuments(ExtractConfig(max_seconds=0.02), RunInfo("r", "h"))
    out = validate_documents(op(pa.Table.from_pylist([record(html=big), record(url="https://example.com/b")],
                                                     schema=RECORD)))
    assert out.num_rows == 2 and out["text_chars"].to_pylist()[0] == 0 and out["text_chars"].to_pylist()[1] > 0
    assert op.stats.counters["timeouts"] == 1 and op.stats.errors[0]["error"].startswith("timeout:")


def test_unexpected_extractor_failure_is_an_empty_document_with_a_recorded_error(monkeypatch):
    import operators.text.extract as extract

    def boom(*a, **k):
        raise ValueError("pathological page")
    monkeypatch.setattr(extract, "_extract_lexbor", boom)
    res = extract.extract_document("<p>x</p>", "https://example.com/")
    assert res.texts == [] and res.error == "ValueError: pathological page"
    op = ExtractDocuments(ExtractConfig(), RunInfo("r", "h"))
    op(pa.Table.from_pylist([record()], schema=RECORD))
    assert op.stats.counters["errors_extract"] == 1


def test_extract_config_is_checked():
    with pytest.raises(ValueError, match="engine must be lexbor or trafilatura"):
        ExtractConfig(engine="lexbr")
    with pytest.raises(ValueError, match="max_link_density"):
        ExtractConfig(max_link_density=2)
