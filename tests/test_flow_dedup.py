"""Deduplication across runs, end to end on a local Ray: a second run over a superset of the
first one's input keeps nothing the first one kept, and an interrupted commit leaves the index as
it was (and is rolled forward by the next run)."""
from __future__ import annotations

import io
import json
from datetime import datetime, timedelta, timezone

import pytest
from warcio.archiveiterator import ArchiveIterator
from warcio.warcwriter import WARCWriter

from flows.crawl import run
from operators.dedup import index as dedup_index
from flows.config import load_config
from operators.io.urls import url_key
from tests.test_flow import ROOT, read_dir, sample  # noqa: F401  (module-scoped fixture)


def refetch(src, dst, picks: dict[str, str], days: int = 1) -> None:
    """Write `dst`: the response records of `src` whose URL is in `picks`, fetched again `days`
    later under the URL picks[url] (new record ids; HTTP headers and raw body as they were)."""
    with open(src, "rb") as f_in, open(dst, "wb") as f_out:
        w = WARCWriter(f_out, gzip=True)
        for rec in ArchiveIterator(f_in):
            url = rec.rec_headers.get_header("WARC-Target-URI")
            if rec.rec_type != "response" or url not in picks:
                continue
            date = datetime.strptime(rec.rec_headers.get_header("WARC-Date"), "%Y-%m-%dT%H:%M:%SZ")
            when = (date.replace(tzinfo=timezone.utc) + timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")
            body = rec.raw_stream.read()
            w.write_record(w.create_warc_record(picks[url], "response", payload=io.BytesIO(body),
                                                http_headers=rec.http_headers,
                                                warc_headers_dict={"WARC-Date": when}))


def corpus(out) -> list[dict]:
    """What a reader of the output sees: every committed document, less the superseded ones."""
    docs, _ = read_dir(out / "documents")
    gone = set(dedup_index.read_table(str(out), "superseded")["id"].to_pylist())
    return [d for d in docs if d["id"] not in gone]


# These tests read the same WARC again on purpose: the ledger would skip it (tests/test_flow_ledger.py);
# deduplication must keep the corpus right without it.
NO_LEDGER = ["ledger.enabled=false"]


def _ops(res) -> dict:
    return {o["name"]: o["counters"] for o in res.stats}


def test_second_run_over_a_superset_keeps_nothing_twice(ray_local, sample, tmp_path):  # noqa: F811
    warc, _ = sample
    out = tmp_path / "out"
    cfg = load_config(ROOT / "configs/local.yaml", NO_LEDGER, input=[str(warc)], output=str(out))
    first = run(cfg, [str(warc)])
    kept1, _ = read_dir(out / "documents")
    assert dedup_index.read_table(str(out), "docs").num_rows == len(kept1) >= 5
    refreshed, mirrored = sorted(d["url"] for d in kept1)[:2]
    mirror_url = "https://mirror.example.net/copy/" + mirrored.rsplit("/", 1)[-1]
    new_warc = tmp_path / "later.warc.gz"
    refetch(warc, new_warc, {refreshed: refreshed, mirrored: mirror_url})

    second = run(cfg, [str(warc), str(new_warc)])
    assert not second.failed
    docs, _ = read_dir(out / "documents")
    rejected, _ = read_dir(out / "rejected")
    new_docs = [d for d in docs if d["provenance"]["run_id"] == second.run_id]
    new_rej = {r["url"]: r for r in rejected if r["provenance"]["run_id"] == second.run_id}
    old_by_url = {d["url"]: d for d in kept1}
    # the only document the second run keeps is the newer fetch of `refreshed`
    assert [d["url"] for d in new_docs] == [refreshed]
    assert new_docs[0]["provenance"]["warc_path"] == str(new_warc)
    # ... which supersedes the first run's fetch in the index
    sup = dedup_index.read_table(str(out), "superseded").to_pylist()
    assert sup == [{"id": old_by_url[refreshed]["id"], "superseded_by": new_docs[0]["id"], "run_id": second.run_id}]
    # the first run's documents, read again, are URL duplicates (of themselves, or of the newer fetch)
    for d in kept1:
        r = [r for r in rejected if r["provenance"]["run_id"] == second.run_id and r["id"] == d["id"]]
        assert len(r) == 1 and r[0]["drop_reason"] == "duplicate_url", d["url"]
    # the mirrored copy under another URL is a duplicate of the first run's document
    assert new_rej[mirror_url]["drop_reason"] == "duplicate"
    assert new_rej[mirror_url]["dup_cluster_id"] == old_by_url[mirrored]["id"]
    ops = _ops(second)
    # the mirrored copy, and the first run's near-copy loser read again
    assert ops["dedup"]["duplicates_of_earlier_runs"] == 2 and ops["dedup"]["superseded"] == 1
    assert ops["dedup"]["index_documents"] == len(kept1) - 1   # less the superseded one
    # what a reader sees: as many documents as after the first run, no URL or text twice
    seen = corpus(out)
    assert len(seen) == len(kept1)
    assert len({url_key(d["url"]) for d in seen}) == len(seen)
    assert len({d["text_hash"] for d in seen}) == len(seen)
    assert dedup_index.committed_runs(str(out)) == sorted([first.run_id, second.run_id])

    # a third run over the same inputs adds nothing
    third = run(cfg, [str(warc), str(new_warc)])
    assert not [d for d in read_dir(out / "documents")[0] if d["provenance"]["run_id"] == third.run_id]
    assert len(corpus(out)) == len(kept1)


@pytest.mark.parametrize("crash_at", ["before_intent", "during_moves"])
def test_interrupted_commit_leaves_the_index_as_it_was(ray_local, sample, tmp_path, monkeypatch, crash_at):  # noqa: F811
    warc, _ = sample
    out = tmp_path / "out"
    cfg = load_config(ROOT / "configs/local.yaml", NO_LEDGER, input=[str(warc)], output=str(out))
    run(cfg, [str(warc)])
    index_before = dedup_index.read_table(str(out), "docs").sort_by("id")
    docs_before = sorted(d["id"] for d in read_dir(out / "documents")[0])
    new_warc = tmp_path / "later.warc.gz"
    url = sorted(d["url"] for d in read_dir(out / "documents")[0])[0]
    refetch(warc, new_warc, {url: url})

    import operators.io.writer as writer
    real_write_text, real_resolve = writer.write_text, writer.resolve

    def crash_on_intent(output, rel, text):
        if rel.endswith("commit.json"):
            raise OSError("simulated crash before the commit intent")
        return real_write_text(output, rel, text)

    class CrashingFS:
        """The output filesystem, crashing at the second move of a staged part: the intent and
        one part are in place, the rest of the commit never happens."""
        moves = 0

        def __init__(self, fs):
            self.fs = fs

        def move(self, src, dst):
            if "/_staging/" in src:
                CrashingFS.moves += 1
                if CrashingFS.moves > 1:
                    raise OSError("simulated crash in the middle of the commit")
            return self.fs.move(src, dst)

        def __getattr__(self, name):
            return getattr(self.fs, name)

    def crashing_resolve(path):
        fs, root = real_resolve(path)
        return CrashingFS(fs), root

    if crash_at == "before_intent":
        monkeypatch.setattr(writer, "write_text", crash_on_intent)
    else:
        monkeypatch.setattr(writer, "resolve", crashing_resolve)
    with pytest.raises(OSError, match="simulated crash"):
        run(cfg, [str(new_warc)])
    monkeypatch.undo()
    # the index reads as before the interrupted run
    assert dedup_index.read_table(str(out), "docs").sort_by("id").equals(index_before)
    assert len(dedup_index.committed_runs(str(out))) == 1
    if crash_at == "before_intent":
        assert sorted(d["id"] for d in read_dir(out / "documents")[0]) == docs_before
    else:
        # the crash, then the run's own attempt to complete the commit (which crashes too)
        assert CrashingFS.moves == 3 and len(writer.abandoned_runs(str(out))) == 0

    # the next run rolls an interrupted commit forward (or ignores an abandoned one); either way
    # the corpus ends with one document per URL
    res = run(cfg, [str(new_warc)])
    assert not res.failed
    seen = corpus(out)
    assert len({url_key(d["url"]) for d in seen}) == len(seen) == len(docs_before)
    stats = json.loads((out / "_runs" / res.run_id / "stats.json").read_text())
    assert stats["status"] == "ok"
