"""flows.query (DuckDB views over an output store) and notebooks/explore.ipynb, on one run of the
flow over the built-in sample (local Ray, once per module), read from a folder and from S3 (moto on
127.0.0.1: tests/conftest.py)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from flows.query import OutputError, committed_files, connect
from operators.dedup import index as dedup_index
from operators.io.schema import IMAGE_INFO
from operators.io.writer import commit

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "explore.ipynb"
BUCKET = "interleaf-query"


def rows(folder: Path) -> list[dict]:
    return [r for f in sorted(folder.glob("*.parquet")) for r in pq.read_table(f).to_pylist()]


def one(con, sql: str, **params):
    return con.execute(sql, params).fetchone()[0]


def query(*args, env=None):
    return subprocess.run([sys.executable, "-m", "flows.query", *args], check=False, cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env=env)


def check_views(con, docs: list[dict], rejected: list[dict], run_id: str) -> None:
    """The views of `con` answer as the Parquet rows `docs` / `rejected` of one run say."""
    assert one(con, "SELECT count(*) FROM documents") == one(con, "SELECT count(*) FROM documents_all") == len(docs)
    assert sorted(r[0] for r in con.execute("SELECT id FROM documents").fetchall()) == sorted(d["id"] for d in docs)
    assert one(con, "SELECT count(*) FROM rejected") == len(rejected)
    assert one(con, "SELECT count(*) FROM superseded") == 0
    n_images = sum(d["num_images"] for d in docs)
    assert n_images > 0 and one(con, "SELECT count(*) FROM images") == n_images
    cols = [r[0] for r in con.execute("DESCRIBE images").fetchall()]
    assert cols[:5] == ["document_id", "document_url", "position", "image_index", "url"]
    assert set(IMAGE_INFO.names) <= set(cols)  # every image_info field, flattened by name
    # each image row points at its place in the document
    by_id = {d["id"]: d for d in docs}
    for doc_id, pos, idx, url, alt, sha in con.execute(
            "SELECT document_id, position, image_index, url, alt, sha256 FROM images").fetchall():
        d = by_id[doc_id]
        assert d["images"][pos] == url and d["texts"][pos] is None
        assert d["image_info"][pos]["alt"] == alt and d["image_info"][pos]["sha256"] == sha
        assert [u for u in d["images"] if u is not None][idx] == url
    # the runs table, from _runs/<run_id>/stats.json
    (run,) = con.execute("SELECT run_id, status, committed, inputs, documents_written, documents_rejected, "
                         "config_hash, seconds FROM runs").fetchall()
    assert run[:6] == (run_id, "ok", True, 1, len(docs), len(rejected))
    assert run[6] == docs[0]["provenance"]["config_hash"] and run[7] > 0
    # the content-addressed images/ table: every image of the documents that was had is in it; one
    # never tried (the local config does not fetch) stays in its document with no bytes
    assert one(con, "SELECT count(*) FROM images i ANTI JOIN image_table t USING (sha256) "
                    "WHERE i.status = 'ok'") == 0
    assert one(con, "SELECT count(*) FROM images WHERE status = 'not_fetched' AND sha256 IS NULL") == \
        one(con, "SELECT count(*) FROM images WHERE status <> 'ok'") == 1
    assert one(con, "SELECT count(*) FROM image_table WHERE data IS NULL") == 0


@pytest.mark.ray
def test_views_answer_as_the_parquet_files(flow_output):
    out, res = flow_output
    docs, rejected = rows(out / "documents"), rows(out / "rejected")
    assert docs and rejected
    con = connect(str(out))
    check_views(con, docs, rejected, res.run_id)
    assert one(con, "SELECT count(*) FROM image_table") == sum(
        pq.read_metadata(f).num_rows for f in (out / "images").glob("*.parquet"))
    files = committed_files(str(out))
    assert files["runs"] == [res.run_id] and not files["ignored"]
    assert sorted(files["documents"]) == sorted(str(p) for p in (out / "documents").glob("*.parquet"))


@pytest.mark.ray
def test_superseded_and_uncommitted_documents_are_left_out(flow_output, tmp_path):
    """A later run's `_index/superseded` part (written and committed through the real API) takes a
    document out of `documents` (and its images out of `images`); a part no run committed is not read."""
    src, res = flow_output
    out = tmp_path / "out"
    shutil.copytree(src, out)
    docs = rows(out / "documents")
    victim = max(docs, key=lambda d: d["num_images"])
    staged = dedup_index.stage_part(str(out), "r2", "superseded", "000000",
                                    {"id": [victim["id"]], "superseded_by": ["newer"], "run_id": ["r2"]})
    commit(str(out), "r2", [staged])
    stray = out / "documents" / "part-uncommitted-000000.parquet"
    shutil.copy(next((out / "documents").glob("*.parquet")), stray)  # as an interrupted commit leaves it

    con = connect(str(out))
    assert one(con, "SELECT count(*) FROM documents_all") == len(docs)
    assert one(con, "SELECT count(*) FROM documents") == len(docs) - 1
    assert one(con, "SELECT count(*) FROM documents WHERE id = $id", id=victim["id"]) == 0
    assert one(con, "SELECT count(*) FROM documents_all WHERE id = $id", id=victim["id"]) == 1
    assert one(con, "SELECT count(*) FROM images") == sum(d["num_images"] for d in docs) - victim["num_images"]
    assert one(con, "SELECT count(*) FROM images WHERE document_id = $id", id=victim["id"]) == 0
    assert con.execute("SELECT id, superseded_by, run_id FROM superseded").fetchall() == [(victim["id"], "newer", "r2")]
    assert con.execute("SELECT run_id, status, committed FROM runs ORDER BY run_id").fetchall() == [
        (res.run_id, "ok", True), ("r2", "committed", True)]
    assert committed_files(str(out))["ignored"] == [str(stray)]


def test_output_errors(tmp_path):
    with pytest.raises(OutputError, match="output not found"):
        connect(str(tmp_path / "nope"))
    (tmp_path / "documents").mkdir()
    (tmp_path / "documents" / "part-x-000000.parquet").write_bytes(b"")
    with pytest.raises(OutputError, match="no committed runs"):
        connect(str(tmp_path))
    with pytest.raises(OutputError, match="only local folders and s3://"):
        connect("gs://bucket/out")
    proc = query(str(tmp_path / "nope"), "-c", "SELECT 1")
    assert proc.returncode == 2 and "output not found" in proc.stderr and not proc.stdout
    proc = query(str(tmp_path), "-c", "SELECT 1")
    assert proc.returncode == 2 and "no committed runs" in proc.stderr


@pytest.mark.ray
def test_cli(flow_output):
    out, _ = flow_output
    n = len(rows(out / "documents"))
    proc = query(str(out), "--format", "csv", "-c", "SELECT count(*) AS n FROM documents")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"n\n{n}\n"
    proc = query(str(out), "--format", "json", "-c",
                 "SELECT 1 AS a; SELECT language, count(*) AS docs FROM documents GROUP BY 1 ORDER BY 2 DESC, 1")
    assert proc.returncode == 0, proc.stderr
    first, second = proc.stdout.split("]\n", 1)
    assert json.loads(first + "]") == [{"a": 1}]
    langs = json.loads(second)
    assert sum(r["docs"] for r in langs) == n and {"en", "de"} <= {r["language"] for r in langs}
    proc = query(str(out), "-c", "SELECT count(*) AS images FROM images")
    assert proc.returncode == 0 and "| images |" in proc.stdout and "(1 row)" in proc.stdout
    # bad SQL: DuckDB's own message, exit 2
    proc = query(str(out), "-c", "SELECT no_such_column FROM documents")
    assert proc.returncode == 2 and "Binder Error" in proc.stderr and "no_such_column" in proc.stderr
    proc = query(str(out), "-c", "SELEC 1")
    assert proc.returncode == 2 and "Parser Error" in proc.stderr
    # without -c: a shell reading statements that end with ';'
    shell = subprocess.run([sys.executable, "-m", "flows.query", str(out), "--format", "csv"], check=False, cwd=ROOT,
                           input="SELECT count(*) AS n\nFROM documents;\nSELECT nope;\n.tables\nSELECT 7 AS x;\n.quit\n",
                           capture_output=True, text=True, timeout=120)
    assert shell.returncode == 0, shell.stderr
    views = "documents  documents_all  images  rejected  superseded  runs  ledger  image_table"
    assert shell.stdout.splitlines() == ["n", str(n), views, "x", "7"]
    assert "Binder Error" in shell.stderr


@pytest.mark.ray
def test_s3_output(flow_output, moto_s3):
    """The same output in a bucket: read by DuckDB's httpfs, credentials from the environment."""
    out, res = flow_output
    client = moto_s3["client"]
    client.create_bucket(Bucket=BUCKET)
    for f in out.rglob("*"):
        if f.is_file():
            client.upload_file(str(f), BUCKET, f"crawl/{f.relative_to(out).as_posix()}")
    uri = f"s3://{BUCKET}/crawl"
    docs, rejected = rows(out / "documents"), rows(out / "rejected")
    con = connect(uri)
    check_views(con, docs, rejected, res.run_id)
    assert one(con, "SELECT loaded FROM duckdb_extensions() WHERE extension_name = 'httpfs'")
    assert all(p.startswith(f"{uri}/documents/part-") for p in committed_files(uri)["documents"])

    secret = "not-printed-" + "x" * 8
    env = {**os.environ, "AWS_SECRET_ACCESS_KEY": secret}   # moto accepts any key
    proc = query(uri, "--format", "csv", "-c", "SELECT count(*) AS n FROM documents", env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"n\n{len(docs)}\n"
    proc = query(uri, "-c", "SELECT * FROM duckdb_secrets(); SELECT no_such_column FROM images", env=env)
    assert proc.returncode == 2 and "no_such_column" in proc.stderr
    assert secret not in proc.stdout + proc.stderr
    proc = query(f"s3://{BUCKET}/nothing-here", "-c", "SELECT 1", env=env)
    assert proc.returncode == 2 and "output not found" in proc.stderr


def test_committed_notebook_has_no_outputs():
    import nbformat

    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)


@pytest.mark.ray
def test_notebook_executes(flow_output, monkeypatch):
    """Top to bottom on the sample run, in a kernel of this interpreter (jupyter_client starts the
    `python3` kernel spec with sys.executable); any cell error fails the test."""
    import nbclient
    import nbformat

    out, _ = flow_output
    monkeypatch.setenv("INTERLEAF_OUTPUT", str(out))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(nb, kernel_name="python3", timeout=300,
                            resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert f"output: {out}" in text
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 6   # the charts
    (page,) = [o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    assert page.count("<figure") >= 1 and page.count("<figure") == page.count("data:image/")  # stored copies
