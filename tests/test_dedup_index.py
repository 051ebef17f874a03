"""The persistent dedup index and the crash-safe commit of a run (no Ray)."""
import json
import posixpath
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from operators.dedup import index as di
from operators.io import writer
from operators.io.schema import DOCUMENT
from operators.io.storage import resolve
from operators.io.writer import PartWriter, WriterConfig, abandoned_runs, clean_abandoned, commit, recover
from tests.factories import doc_row


def index_docs(*ids):
    return {"id": list(ids), "url_key": [f"example.com/{i}" for i in ids], "warc_date": [1700000000] * len(ids),
            "text_chars": [10] * len(ids), "num_images": [1] * len(ids), "text_hash": [f"h{i}" for i in ids],
            "minhash_bands": [[1, 2**64 - 1]] * len(ids), "signature": [b"\x00\x01"] * len(ids)}


def stage_run(out, run_id, ids, part="000000", superseded=()):
    """A run's staged files: its documents and its index parts (docs, images, superseded)."""
    w = PartWriter(out, run_id, part, WriterConfig())
    w.write(pa.Table.from_pylist([doc_row(id=i) for i in ids], schema=DOCUMENT))
    staged = w.close()
    staged.append(di.stage_part(out, run_id, "docs", part, index_docs(*ids)))
    staged.append(di.stage_part(out, run_id, "images", part,
                                {"url": ["https://example.com/i.png"], "documents": [len(ids)]}))
    sup = di.stage_part(out, run_id, "superseded", part,
                        {"id": [s for s, _ in superseded], "superseded_by": [b for _, b in superseded],
                         "run_id": [run_id] * len(superseded)})
    return staged + ([sup] if sup else [])


def ids(out):
    return sorted(di.read_table(out, "docs", ["id"])["id"].to_pylist())


def listing(path):
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())


def test_commit_moves_documents_and_index_then_a_second_run_appends(tmp_path):
    out = str(tmp_path)
    assert di.read_table(out, "docs").num_rows == 0 and di.read_table(out, "docs").schema == di.DOCS
    assert di.committed_runs(out) == [] and recover(out) == []

    staged = stage_run(out, "r1", ["a", "b"])
    assert min(staged) == "_runs/r1/_staging/documents/000000.parquet"
    assert "_runs/r1/_staging/index/docs/000000.parquet" in staged
    final = commit(out, "r1", staged)
    assert final == ["_index/docs/part-r1-000000.parquet", "_index/images/part-r1-000000.parquet",
                     "documents/part-r1-000000.parquet"]
    intent = json.loads((tmp_path / "_runs/r1/commit.json").read_text())
    assert intent["run_id"] == "r1" and sorted(dst for _, dst in intent["moves"]) == final
    manifest = json.loads((tmp_path / "_index/_committed/r1.json").read_text())
    assert manifest["run_id"] == "r1" and manifest["committed"].endswith("+00:00")
    assert manifest["files"] == {"docs": ["_index/docs/part-r1-000000.parquet"],
                                 "images": ["_index/images/part-r1-000000.parquet"], "superseded": []}
    assert not (tmp_path / "_runs/r1/_staging").exists()
    assert di.committed_files(out, "docs") == [str(tmp_path / "_index/docs/part-r1-000000.parquet")]
    t = di.read_table(out, "docs")
    assert t.schema == di.DOCS and t["id"].to_pylist() == ["a", "b"]
    assert t["minhash_bands"].to_pylist() == [[1, 2**64 - 1]] * 2

    commit(out, "r2", stage_run(out, "r2", ["c"], superseded=[("a", "c")]))
    assert di.committed_runs(out) == ["r1", "r2"]
    assert ids(out) == ["a", "b", "c"]
    assert di.read_table(out, "images")["documents"].to_pylist() == [2, 1]
    assert di.read_table(out, "superseded").to_pylist() == [{"id": "a", "superseded_by": "c", "run_id": "r2"}]
    assert sorted(p.name for p in (tmp_path / "documents").iterdir()) == \
        ["part-r1-000000.parquet", "part-r2-000000.parquet"]
    assert recover(out) == [] and abandoned_runs(out) == []


def test_manifest_marks_a_run_without_index_parts(tmp_path):
    out = str(tmp_path)
    w = PartWriter(out, "r1", "0", WriterConfig())
    w.write(pa.Table.from_pylist([doc_row()], schema=DOCUMENT))
    commit(out, "r1", w.close())
    assert di.committed_runs(out) == ["r1"]
    assert di.read_table(out, "docs").num_rows == 0
    commit(out, "r2", [])
    assert di.committed_runs(out) == ["r1", "r2"]


def test_unexpected_staged_paths_are_refused(tmp_path):
    for bad in ("_runs/r1/_staging/other/0.parquet", "_runs/r1/_staging/index/nope/0.parquet",
                "_runs/r1/_staging/index/0.parquet", "_runs/r2/_staging/documents/0.parquet",
                "documents/0.parquet"):
        with pytest.raises(ValueError, match=bad):
            commit(str(tmp_path), "r1", [bad])
    assert not (tmp_path / "_runs/r1/commit.json").exists()


def test_stage_part_conforms_to_the_schema(tmp_path):
    out = str(tmp_path)
    assert di.stage_part(out, "r1", "docs", "0", di.DOCS.empty_table()) is None
    assert not (tmp_path / "_runs").exists()
    with pytest.raises(ValueError, match="missing columns.*signature"):
        di.stage_part(out, "r1", "docs", "0", {k: v for k, v in index_docs("a").items() if k != "signature"})
    with pytest.raises(ValueError, match="unknown index table"):
        di.stage_part(out, "r1", "dogs", "0", index_docs("a"))
    cols = dict(index_docs("a"), minhash_bands=[[1, 2]], warc_date=[None], extra=["dropped"])
    rel = di.stage_part(out, "r1", "docs", "0", pa.table(cols))  # list<int64>, null: cast
    t = pq.read_table(tmp_path / rel)
    assert t.schema == di.DOCS and t["warc_date"].to_pylist() == [None]
    assert t["minhash_bands"].to_pylist() == [[1, 2]]
    with pytest.raises(ValueError, match="column 'text_chars'"):
        di.stage_part(out, "r1", "docs", "0", pa.table(dict(cols, text_chars=["many"])))


def test_crash_before_the_intent_changes_nothing(tmp_path, monkeypatch):
    out = str(tmp_path)
    commit(out, "r1", stage_run(out, "r1", ["a"]))
    before, docs_before = di.read_table(out, "docs"), listing(tmp_path / "documents")
    staged = stage_run(out, "r2", ["b"])

    real = writer.write_text

    def crash_on_intent(output, rel, text):
        if rel.endswith("commit.json"):
            raise OSError("crash")
        real(output, rel, text)

    monkeypatch.setattr(writer, "write_text", crash_on_intent)
    with pytest.raises(OSError, match="crash"):
        commit(out, "r2", staged)
    monkeypatch.undo()
    assert di.read_table(out, "docs").equals(before)
    assert listing(tmp_path / "documents") == docs_before
    assert abandoned_runs(out) == ["r2"]
    assert recover(out) == []  # left alone
    assert di.read_table(out, "docs").equals(before) and listing(tmp_path / "documents") == docs_before
    assert all((tmp_path / s).exists() for s in staged)
    # the next runs clean it up once nothing was written there for the grace period; committed
    # runs and the index are not touched
    assert clean_abandoned(out, 3600) == []                      # just written: maybe still going
    sizes = sum((tmp_path / s).stat().st_size for s in staged)
    removed = clean_abandoned(out, 3600, now=time.time() + 3601)
    assert removed == [{"run_id": "r2", "files": len(staged), "bytes": sizes}]
    assert not any((tmp_path / s).exists() for s in staged) and abandoned_runs(out) == []
    assert di.read_table(out, "docs").equals(before) and listing(tmp_path / "documents") == docs_before
    assert clean_abandoned(out, 0) == []


class CrashingFS:
    """A filesystem that fails on the (k+1)-th move of a staged file (moves of `.tmp` files pass)."""

    def __init__(self, fs, k):
        self.fs, self.k, self.n = fs, k, 0

    def move(self, src, dst):
        if not src.endswith(".tmp"):
            if self.n >= self.k:
                raise OSError("crash during the moves")
            self.n += 1
        self.fs.move(src, dst)

    def __getattr__(self, name):
        return getattr(self.fs, name)


def crash_commit_after(out, run_id, staged, k, monkeypatch):
    real = writer.resolve
    fs = CrashingFS(real(out)[0], k)
    monkeypatch.setattr(writer, "resolve", lambda path: (fs, real(path)[1]))
    with pytest.raises(OSError, match="crash during the moves"):
        commit(out, run_id, staged)
    monkeypatch.undo()
    assert fs.n == k


@pytest.mark.parametrize("k", [0, 1, 2, 3])
def test_crash_during_the_moves_is_rolled_forward(tmp_path, monkeypatch, k):
    out = str(tmp_path)
    commit(out, "r1", stage_run(out, "r1", ["a"]))
    before = di.read_table(out, "docs")
    staged = stage_run(out, "r2", ["b", "c"], superseded=[("a", "b")])
    assert len(staged) == 4
    crash_commit_after(out, "r2", staged, k, monkeypatch)

    # intent written, some files moved, no manifest: the index reads as before
    assert (tmp_path / "_runs/r2/commit.json").exists()
    assert not (tmp_path / "_index/_committed/r2.json").exists()
    assert di.read_table(out, "docs").equals(before) and di.committed_runs(out) == ["r1"]
    assert di.read_table(out, "superseded").num_rows == 0
    assert abandoned_runs(out) == []

    assert recover(out) == ["r2"]
    assert di.committed_runs(out) == ["r1", "r2"]
    assert ids(out) == ["a", "b", "c"]
    assert di.read_table(out, "superseded")["id"].to_pylist() == ["a"]
    assert listing(tmp_path / "documents") == ["part-r1-000000.parquet", "part-r2-000000.parquet"]
    assert not (tmp_path / "_runs/r2/_staging").exists()
    intent = json.loads((tmp_path / "_runs/r2/commit.json").read_text())
    assert all((tmp_path / dst).exists() for _, dst in intent["moves"])
    assert recover(out) == [] and ids(out) == ["a", "b", "c"]


def test_recover_refuses_a_lost_file(tmp_path, monkeypatch):
    out = str(tmp_path)
    staged = stage_run(out, "r1", ["a"])
    crash_commit_after(out, "r1", staged, 1, monkeypatch)
    lost = max(staged)
    (tmp_path / lost).unlink()
    with pytest.raises(FileNotFoundError, match=lost):
        recover(out)
    assert di.committed_runs(out) == []


def test_stray_index_files_are_not_read(tmp_path):
    out = str(tmp_path)
    commit(out, "r1", stage_run(out, "r1", ["a"]))
    stray = tmp_path / "_index/docs/part-rX-000000.parquet"
    pq.write_table(di.conform(index_docs("x"), "docs"), stray)
    (tmp_path / "_index/_committed/rY.json.tmp").write_text("{half")
    assert di.committed_files(out, "docs") == [str(tmp_path / "_index/docs/part-r1-000000.parquet")]
    assert ids(out) == ["a"]


def test_commit_recover_and_read_on_s3(moto_s3):
    client = moto_s3["client"]
    client.create_bucket(Bucket="interleaf-index")
    out = "s3://interleaf-index/out"

    assert recover(out) == [] and di.read_table(out, "docs").num_rows == 0
    commit(out, "r1", stage_run(out, "r1", ["a"]))
    staged = stage_run(out, "r2", ["b"], superseded=[("a", "b")])
    real = writer.resolve
    fs = CrashingFS(real(out)[0], 2)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(writer, "resolve", lambda path: (fs, real(path)[1]))
        with pytest.raises(OSError, match="crash during the moves"):
            commit(out, "r2", staged)
    assert fs.n == 2
    assert ids(out) == ["a"] and di.committed_runs(out) == ["r1"]
    assert abandoned_runs(out) == []

    assert recover(out) == ["r2"] and recover(out) == []
    assert ids(out) == ["a", "b"]
    assert di.read_table(out, "superseded")["superseded_by"].to_pylist() == ["b"]
    _, root = resolve(out)
    assert di.committed_files(out, "docs") == [posixpath.join(root, f"_index/docs/part-{r}-000000.parquet")
                                               for r in ("r1", "r2")]
    pages = client.get_paginator("list_objects_v2").paginate(Bucket="interleaf-index", Prefix="out/")
    got = sorted(o["Key"] for page in pages for o in page.get("Contents", []))
    assert "out/documents/part-r2-000000.parquet" in got and "out/_index/_committed/r2.json" in got
    assert not [k for k in got if "_staging" in k or k.endswith(".tmp")], got
