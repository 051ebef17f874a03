"""The whole flow over a generated hostile corpus (tests/hostile.py): nothing crashes or hangs,
every control article comes through, and every hostile record ends as a document, a rejected row
with its reason, or a recorded error with file and offset."""
from __future__ import annotations

import json

import pytest

from flows.crawl import run
from flows.config import load_config
from tests.hostile import write_hostile_warcs
from tests.test_flow import ROOT


@pytest.mark.slow
def test_hostile_corpus_is_survived_and_every_record_accounted_for(ray_local, tmp_path):  # noqa: F811
    import duckdb
    m = write_hostile_warcs(tmp_path / "in")
    out = tmp_path / "out"
    cfg = load_config(ROOT / "configs/local.yaml", [], input=m["files"], output=str(out))
    res = run(cfg, m["files"])   # returns: no crash, no hang (each page has extract.max_seconds)
    con = duckdb.connect()
    docs = {u for (u,) in con.sql(f"SELECT url FROM read_parquet('{out}/documents/*.parquet')").fetchall()}
    rejected = dict(con.sql(f"SELECT url, drop_reason FROM read_parquet('{out}/rejected/*.parquet')").fetchall())
    assert set(m["control"]) <= docs, set(m["control"]) - docs
    record = json.loads((out / "_runs" / res.run_id / "stats.json").read_text())
    read = next(op for op in record["operators"] if op["name"] == "read")
    errors = {(e["kind"], e["file"].rsplit("/", 1)[-1]): e for e in read["errors"]}
    # pages the reader refuses are counted drops, each recorded (record_refused, a warning): over
    # reader.max_payload_bytes once decoded (the 20 MB page, the three 1 GB bombs, cut at the
    # limit while decoding) and the unparseable HTTP head
    assert read["counters"]["dropped_too_large"] == 4 and read["counters"]["dropped_bad_http"] == 1
    counted = {"http://hostile.example/single-line", "http://hostile.example/gzip-bomb",
               "http://hostile.example/brotli-bomb", "http://hostile.example/zstd-bomb",
               "http://hostile.example/huge-header"}
    damaged = {"http://hostile.example/corrupt-member", "http://hostile.example/short-length"}
    for url in m["hostile"]:
        assert (url in docs) + (url in rejected) + (url in counted) + (url in damaged) == 1, url
    refused = {e["url"]: e for e in read["errors"] if e["kind"] == "record_refused"}
    assert set(refused) == counted   # each refused record recorded with its file and offset
    assert all(e["file"].endswith("hostile.warc.gz") and e["offset"] > 0 for e in refused.values())
    assert all(reason for url, reason in rejected.items() if url in m["hostile"])
    # the corrupt member is recorded where it starts and reading went on after it
    corrupt = [e for e in read["errors"] if e["kind"] == "damaged_warc" and e.get("offset") == m["corrupt_member_offset"]]
    assert corrupt and "reading resumes" in corrupt[0]["error"] and read["counters"]["resumed_after_damage"] >= 1
    assert any("after its Content-Length" in e["error"] for e in read["errors"] if e["kind"] == "damaged_warc")
    # the broken files: each recorded with its file (and offset where there is one)
    assert errors[("unreadable_warc", "empty.warc.gz")]["error"].startswith("empty file")
    assert errors[("damaged_warc", "not-a-warc.warc.gz")]["offset"] == 0
    assert errors[("damaged_warc", "cut.warc.gz")]["offset"] > 0
    assert ("gzip_not_per_record", "whole-gzip.warc.gz") in errors   # a warning: its pages are kept
    # the article after 60,000 nested divs, the 6 MB attribute, the charset lie and the NUL bytes
    for name in ("deep", "big-attribute", "charset-lie", "nul-bytes", "srcset", "garbage-status"):
        assert f"http://hostile.example/{name}" in docs, name
