"""S3 input and output against a local S3-compatible server (moto on 127.0.0.1: tests/conftest.py).

pyarrow's S3FileSystem finds the server through AWS_ENDPOINT_URL_S3 (honoured since pyarrow 15);
Ray workers get the same variables through the runtime env.
"""
import glob
import io
import json
import os
import re
import subprocess
import sys
import zlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flows.make_sample import write_sample_warc
from flows.config import load_config
from operators.io.schema import DOCUMENT
from operators.stats import Stats
from operators.io.storage import expand_inputs
from operators.io.warc import ReaderConfig, iter_html_records
from tests.factories import doc_row

ROOT = Path(__file__).resolve().parents[1]
BUCKET = "interleaf-test"
KEYS = ("warcs/2024/sample.warc.gz", "warcs/2024/copy.warc.gz")


@pytest.fixture(scope="module")
def s3(moto_s3, tmp_path_factory):
    """moto's S3 (tests/conftest.py), with the sample WARC uploaded twice."""
    client = moto_s3["client"]
    client.create_bucket(Bucket=BUCKET)
    warc = tmp_path_factory.mktemp("sample") / "sample.warc.gz"
    manifest = write_sample_warc(str(warc))
    for key in KEYS:
        client.upload_file(str(warc), BUCKET, key)
    client.put_object(Bucket=BUCKET, Key="warcs/2024/README.txt", Body=b"not a WARC")
    client.put_object(Bucket=BUCKET, Key="warcs/2024/old/older.warc.gz", Body=warc.read_bytes())
    return {**moto_s3, "warc": warc, "manifest": manifest}


def test_uri_glob_has_local_glob_semantics(tmp_path):
    """The patterns matched on object keys select what glob.glob selects on the same tree."""
    from operators.io.storage import _glob_regex

    files = ["a.warc.gz", "b.warc.gz", "ab.warc", "x/a.warc.gz", "x/y/c.warc.gz", "x/y/z/d.warc",
             "]q.gz", "^a.gz", "-.gz", "x/]b.gz", "[a.gz"]
    for f in files:
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f).write_bytes(b"")
    patterns = ["*.warc.gz", "*", "**", "**/*.gz", "x/**", "x/**/*.warc*", "?.warc.gz", "[ab].warc.gz",
                "[!a]*.gz", "[]]q.gz", "[!]]*.gz", "[^a].gz", "[-a]*", "x/*/c.warc.gz", "**/c.warc.gz",
                "[a.gz", "*/]b.gz", "[a-b]*", "x/**/", "*/*"]
    for pat in patterns:
        hits = glob.glob(os.path.join(tmp_path, pat), recursive=True)
        want = sorted(os.path.relpath(h, tmp_path) for h in hits if os.path.isfile(h))
        rx = _glob_regex(pat)
        assert sorted(f for f in files if rx.fullmatch(f)) == want, pat


def keys(client, bucket=BUCKET, prefix=""):
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def test_expand_inputs_s3(s3):
    u = f"s3://{BUCKET}/warcs/2024"
    top = [f"{u}/copy.warc.gz", f"{u}/sample.warc.gz"]
    # `*` stays in its folder, as with local globs; `**` goes down
    assert expand_inputs([f"{u}/*.warc.gz"]) == top
    assert expand_inputs([f"s3://{BUCKET}/warcs/*/s?mple.warc.[gx]z"]) == [f"{u}/sample.warc.gz"]
    assert expand_inputs([f"s3://{BUCKET}/**/*.warc.gz"]) == top[:1] + [f"{u}/old/older.warc.gz"] + top[1:]
    # a folder: every WARC below it, not the README
    assert expand_inputs([f"{u}/"]) == top[:1] + [f"{u}/old/older.warc.gz"] + top[1:]
    assert expand_inputs([f"s3://{BUCKET}"]) == expand_inputs([f"{u}/"])
    # one object, and duplicates across patterns collapse
    assert expand_inputs([top[1], f"{u}/sample*"]) == [top[1]]
    for bad in (f"{u}/*.warc", f"s3://{BUCKET}/nope/*.warc.gz", f"{u}/nope.warc.gz",
                "s3://no-such-bucket-here/*.warc.gz", "s3://no-such-bucket-here/a.warc.gz"):
        with pytest.raises(FileNotFoundError, match=re.escape(repr(bad))):
            expand_inputs([top[0], bad])


def test_cli_s3_pattern_matching_nothing_exits_2(s3):
    bad = "s3://no-such-bucket-here/warcs/*.warc.gz"
    proc = subprocess.run(
        [sys.executable, "-m", "flows.crawl", "--config", str(ROOT / "configs/local.yaml"),
         "--input", bad, "--output", f"s3://{BUCKET}/out/cli"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)  # the S3 env is inherited
    assert proc.returncode == 2, proc.stderr
    assert repr(bad) in proc.stderr
    assert keys(s3["client"], prefix="out/cli") == []


def test_reader_on_s3_offsets_are_exact(s3):
    uri = f"s3://{BUCKET}/{KEYS[0]}"
    stats = Stats("read")
    rows = list(iter_html_records(uri, ReaderConfig(), stats))
    local = list(iter_html_records(str(s3["warc"]), ReaderConfig(), Stats("read")))
    assert not stats.to_dict()["errors"]
    assert len(rows) == len(local) > 5
    for r, lr in zip(rows, local):
        assert r["warc_path"] == uri
        del r["warc_path"], lr["warc_path"]
        assert r == lr
    for r in rows:
        off, n = r["warc_record_offset"], r["warc_record_length"]
        assert off >= 0 and n > 0
        body = s3["client"].get_object(Bucket=BUCKET, Key=KEYS[0],
                                       Range=f"bytes={off}-{off + n - 1}")["Body"].read()
        assert len(body) == n
        d = zlib.decompressobj(31)
        record = d.decompress(body)
        assert d.eof and not d.unused_data  # exactly one whole gzip member
        head = record.split(b"\r\n\r\n", 1)[0].decode()
        assert head.startswith("WARC/1.0\r\n")
        assert re.search(r"(?im)^WARC-Record-ID:\s*(\S+)", head).group(1) == r["warc_record_id"]
        assert r["url"].encode() in record


def test_writer_at_bucket_root(s3):
    """Output at a bucket root: ensure_dir, staged parts, commit, run records, report."""
    from flows.report import summarize
    from operators.io.writer import PartWriter, WriterConfig, commit, ensure_dir, write_text

    client = s3["client"]
    client.create_bucket(Bucket="interleaf-root")
    out = "s3://interleaf-root"
    ensure_dir(out)
    rows = [doc_row(id="a"), doc_row(id="b", drop_reason="no_text", drop_reasons=["no_text"]), doc_row(id="c")]
    table = pa.Table.from_pylist(rows, schema=DOCUMENT)
    w = PartWriter(out, "r1", "000000", WriterConfig())
    w.write(table)
    staged = w.close()
    assert keys(client, "interleaf-root", "_runs/r1/_staging/documents/") != []
    files = commit(out, "r1", staged)
    write_text(out, "_runs/r1/stats.json", "{}")
    got = keys(client, "interleaf-root")
    assert sorted(files) == ["documents/part-r1-000000.parquet", "rejected/part-r1-000000.parquet"]
    assert set(files) <= set(got) and "_runs/r1/stats.json" in got
    assert not [k for k in got if "_staging" in k or k.endswith(".tmp")], got
    assert summarize(out).splitlines()[0].startswith("documents: 2 ")
    assert summarize(out).splitlines()[-1] == "dropped: no_text 1"


@pytest.mark.ray
def test_flow_s3_in_s3_out(s3, ray_local):
    from flows.crawl import run
    from flows.report import summarize

    client = s3["client"]
    out = f"s3://{BUCKET}/out/crawl"
    cfg = load_config(ROOT / "configs/local.yaml", [],
                      input=[f"s3://{BUCKET}/warcs/2024/*.warc.gz"], output=out)
    paths = expand_inputs(cfg.input)
    assert len(paths) == 2
    res = run(cfg, paths)
    assert not res.failed

    got = keys(client, prefix="out/crawl/")
    parts = {t: [k for k in got if re.fullmatch(rf"out/crawl/{t}/part-{res.run_id}-[\w-]+\.parquet", k)]
             for t in ("documents", "rejected")}
    assert parts["documents"] and parts["rejected"], got
    rdir = f"out/crawl/_runs/{res.run_id}/"
    for name in ("stats.json", "config.yaml", "versions.json"):
        assert rdir + name in got
    assert not [k for k in got if "_staging" in k or k.endswith(".tmp")], got
    index = [k for k in got if k.startswith(("out/crawl/_index/", "out/crawl/images/"))
             and k.endswith((".parquet", ".probe"))]
    ledger = [f"out/crawl/_ledger/{res.run_id}.jsonl"]   # the WARCs' states, committed with the run
    assert sorted(f"out/crawl/{f}" for f in res.files) == sorted(parts["documents"] + parts["rejected"] + index
                                                                  + ledger)
    assert any("/images/part-" in k for k in index)   # the sample's images, from its WARC, in images/
    assert f"out/crawl/_index/_committed/{res.run_id}.json" in got and any("/_index/docs/" in k for k in index)
    assert any("/_index/probe/" in k for k in index)   # the part later runs probe (operators/dedup/probe.py)

    def rows(ks):
        return [r for k in ks for r in pq.read_table(
            io.BytesIO(client.get_object(Bucket=BUCKET, Key=k)["Body"].read())).to_pylist()]

    docs, rejected = rows(parts["documents"]), rows(parts["rejected"])
    # the same sample under two keys: every URL twice, with the same fetch date: one copy of each
    # page is kept, the other is a URL duplicate; the planted near-copy pair keeps one of its two
    pages = [p for p in s3["manifest"]["html_pages"] if p["kind"] in ("article", "near_copy")]
    assert len(docs) == len(pages) - 1 and len({d["url"] for d in docs}) == len(docs)
    url_dups = [r for r in rejected if r["drop_reason"] == "duplicate_url"]
    near = [r for r in rejected if r["drop_reason"] == "duplicate"]
    assert len(url_dups) == len(pages) and len(near) == 1
    kept_ids = {d["id"] for d in docs}
    assert near[0]["dup_cluster_id"] in kept_ids
    assert all(r["dup_cluster_id"] in kept_ids | {near[0]["id"]} for r in url_dups)
    assert {r["provenance"]["warc_path"] for r in docs + rejected} == set(paths)
    assert any(r["http_status"] == 404 for r in rejected)

    stats = json.loads(client.get_object(Bucket=BUCKET, Key=rdir + "stats.json")["Body"].read())
    assert stats["status"] == "ok" and stats["inputs"] == paths
    ops = {o["name"]: o["counters"] for o in stats["operators"]}
    assert ops["read"]["files"] == 2 and not ops["read"].get("files_failed")
    assert ops["write"]["rows_documents"] == len(docs)

    summary = summarize(out)
    assert summary.splitlines()[0].startswith(f"documents: {len(docs)} "), summary
    assert summarize(out, res.run_id).splitlines()[0] == summary.splitlines()[0]
