"""The crawl flow end to end on a local Ray (num_cpus=2)."""
import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from flows.crawl import run
from flows.make_sample import write_sample_warc
from flows.config import load_config
from operators.io.schema import DOCUMENT, validate_documents
from tests.test_provenance import record_at

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    path = tmp_path_factory.mktemp("sample") / "sample.warc.gz"
    manifest = write_sample_warc(str(path))
    return path, manifest


def read_dir(path: Path):
    files = sorted(path.glob("*.parquet"))
    return [r for f in files for r in pq.read_table(f).to_pylist()], files


def test_sample_run_end_to_end(ray_local, sample, tmp_path):
    warc, manifest = sample
    cfg = load_config(ROOT / "configs/local.yaml", [], input=[str(warc)], output=str(tmp_path))
    res = run(cfg, [str(warc)])
    assert not res.failed
    docs, doc_files = read_dir(tmp_path / "documents")
    rejected, _ = read_dir(tmp_path / "rejected")
    for f in doc_files:
        assert pq.read_schema(f).names == DOCUMENT.names
        validate_documents(pq.read_table(f))  # types cast to the schema, OBELICS invariants hold
    articles = [p for p in manifest["html_pages"] if p["kind"] in ("article", "near_copy")]
    assert {r["drop_reason"] for r in rejected} <= {"http_status", "no_text", "duplicate"}
    # the planted near-copy (exact Jaccard 0.81 with its original) and its original: one is
    # removed, naming the other, which the keep rule prefers (more text)
    pair = set(manifest["near_copy_of"])
    (dup,) = [r for r in rejected if r["url"] in pair]
    kept = next(d for d in docs if d["url"] in pair - {dup["url"]})
    assert dup["drop_reason"] == "duplicate" and dup["dup_cluster_id"] == kept["id"] == kept["dup_cluster_id"]
    assert kept["text_chars"] >= dup["text_chars"]
    assert {d["url"] for d in docs} == {p["url"] for p in articles} - {dup["url"]}
    assert any(r["http_status"] == 404 for r in rejected)
    # every kept document has text, and images come with absolute URLs
    for d in docs:
        assert d["num_texts"] > 0
        assert all(i.startswith(("http://", "https://")) for i in d["images"] if i)
        assert d["provenance"]["run_id"] == res.run_id
        assert d["provenance"]["warc_path"] == str(warc)
    assert sum(d["num_images"] for d in docs) > 0
    assert {d["html_lang"] for d in docs} >= {"en", "de", "fr", "ja", "ru", "ar"}
    # identified languages agree with the declared ones on the sample; signals are filled
    for d in docs:
        assert d["language"] == d["html_lang"].split("-")[0] and d["language_score"] > 0.5
        assert len(d["text_languages"]) == len(d["texts"])
        assert d["quality"]["word_count"] >= 50 and d["quality"]["dup_line_frac"] is not None
    # the run record
    rdir = tmp_path / "_runs" / res.run_id
    stats = json.loads((rdir / "stats.json").read_text())
    assert (rdir / "config.yaml").exists() and (rdir / "versions.json").exists()
    ops = {o["name"]: o["counters"] for o in stats["operators"]}
    assert ops["read"]["out"] == len(docs) + len(rejected)
    assert ops["read"]["dropped_not_html"] >= 2 and ops["read"]["dropped_revisit"] == 1
    assert ops["select"]["in"] == ops["extract"]["out"] == len(docs) + len(rejected)
    assert ops["dedup"]["documents_in_clusters"] == 2 and ops["duplicates"]["dropped_duplicate"] == 1
    assert ops["images"]["image_urls_repeated"] == 0  # no image of the sample is used 11 times
    assert ops["write"]["rows_documents"] == len(docs)
    assert not list((rdir).glob("_staging"))


def test_repeated_images_are_removed(ray_local, sample, tmp_path):
    warc, _ = sample
    # with a threshold of 0 every image of a kept document counts as repeated: all are removed
    cfg = load_config(ROOT / "configs/local.yaml", ["dedup.max_image_repeats=0"], input=[str(warc)],
                      output=str(tmp_path))
    res = run(cfg, [str(warc)])
    docs, _ = read_dir(tmp_path / "documents")
    assert docs and all(d["num_images"] == 0 and not any(d["images"]) for d in docs)
    assert all(len(d["texts"]) == len(d["image_info"]) == len(d["text_languages"]) for d in docs)
    images = next(o for o in res.stats if o["name"] == "images")["counters"]
    assert images["images_removed_repeated"] == images["image_refs_removed"] > 0


def test_ids_are_stable_across_runs(ray_local, sample, tmp_path):
    warc, _ = sample
    ids = []
    for sub in ("a", "b"):
        cfg = load_config(ROOT / "configs/local.yaml", [], input=[str(warc)], output=str(tmp_path / sub))
        run(cfg, [str(warc)])
        docs, _ = read_dir(tmp_path / sub / "documents")
        ids.append(sorted(d["id"] for d in docs))
    assert ids[0] == ids[1] and len(set(ids[0])) == len(ids[0])


def test_no_select_keeps_everything(ray_local, sample, tmp_path):
    warc, _ = sample
    cfg = load_config(ROOT / "configs/local.yaml", ["select.enabled=false"], input=[str(warc)], output=str(tmp_path))
    run(cfg, [str(warc)])
    docs, _ = read_dir(tmp_path / "documents")
    assert not (tmp_path / "rejected").exists()
    assert any(d["drop_reason"] == "http_status" for d in docs)


def test_language_allowlist_keeps_only_those_languages(ray_local, sample, tmp_path):
    warc, manifest = sample
    cfg = load_config(ROOT / "configs/local.yaml", ["select.languages=[de, fr]"], input=[str(warc)],
                      output=str(tmp_path))
    res = run(cfg, [str(warc)])
    docs, _ = read_dir(tmp_path / "documents")
    rejected, _ = read_dir(tmp_path / "rejected")
    expected = {p["url"] for p in manifest["html_pages"] if p["kind"] == "article" and p["lang"] in ("de", "fr")}
    assert {d["url"] for d in docs} == expected and {d["language"] for d in docs} == {"de", "fr"}
    not_allowed = [r for r in rejected if r["drop_reason"] == "language_not_allowed"]
    assert len(not_allowed) == len([p for p in manifest["html_pages"]
                                    if p["kind"] in ("article", "near_copy") and p["lang"] not in ("de", "fr")])
    assert not [r for r in rejected if r["drop_reason"] == "duplicate"]  # its original was not allowed
    select = next(o for o in res.stats if o["name"] == "select")["counters"]
    assert select["dropped_language_not_allowed"] == len(not_allowed)


@pytest.mark.shared
def test_every_shared_warc_in_one_run(ray_local, shared_data, tmp_path):
    paths = sorted(str(p) for p in shared_data.glob("*warc*/**/*.warc*") if p.is_file())
    assert len(paths) >= 10
    cfg = load_config(ROOT / "configs/local.yaml", ["max_failed_warc_fraction=1.0"], input=paths,
                      output=str(tmp_path))
    res = run(cfg, paths)
    assert not res.failed
    stats = json.loads((tmp_path / "_runs" / res.run_id / "stats.json").read_text())
    read = next(o for o in stats["operators"] if o["name"] == "read")
    assert read["counters"]["files"] == len(paths)
    damaged = {Path(e["file"]).name for e in read["errors"] if e["kind"] == "damaged_warc"}
    assert {"example-trunc.warc", "clipped.warc.gz"} <= damaged
    docs, _ = read_dir(tmp_path / "documents")
    rejected, _ = read_dir(tmp_path / "rejected")
    assert len(docs) > 20
    # provenance of every output row from the real Common Crawl WARCs leads back to its record
    cc_rows = [r for r in docs + rejected if "/cc-warc-" in r["provenance"]["warc_path"]]
    assert len(cc_rows) >= 10
    # offline (fetch off), Common Crawl's pages keep their image URLs, each marked not yet fetched
    cc_images = [(url, info) for r in docs if "/cc-warc-" in r["provenance"]["warc_path"]
                 for url, info in zip(r["images"], r["image_info"]) if url is not None]
    assert len(cc_images) >= 20
    assert {info["status"] for _, info in cc_images} == {"not_fetched"}
    for r in cc_rows:
        p = r["provenance"]
        rid, uri, _ = record_at(p["warc_path"], p["warc_record_offset"], p["warc_record_length"])
        assert rid == p["warc_record_id"] and uri == r["url"]


def test_failure_rate_fails_the_run(ray_local, tmp_path):
    bad = tmp_path / "bad.warc.gz"
    bad.write_bytes(b"\x1f\x8b\x08\x00garbage" * 10)
    cfg = load_config(ROOT / "configs/local.yaml", [], input=[str(bad)], output=str(tmp_path / "o"))
    res = run(cfg, [str(bad)])
    assert res.failed
    stats = json.loads((tmp_path / "o" / "_runs" / res.run_id / "stats.json").read_text())
    assert stats["status"] == "failed" and "1 of 1" in stats["failure"]


def cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "flows.crawl", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600)


@pytest.mark.slow
def test_cli_rejects_unknown_key_and_missing_input(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("extract:\n  engnie: lexbor\n")
    r = cli("--config", str(cfg), "--input", "x.warc")
    assert r.returncode == 2 and "unknown config key extract.engnie" in r.stderr
    r = cli("--config", "configs/local.yaml", "--input", str(tmp_path / "none*.warc.gz"))
    assert r.returncode == 2 and "matches no file" in r.stderr
    # CLIP on without loadable weights fails at start, naming the setting, before any work
    (tmp_path / "a.warc.gz").write_bytes(b"")
    r = cli("--config", "configs/local.yaml", "--input", str(tmp_path / "a.warc.gz"), "--output", str(tmp_path / "o"),
            "--set", "images.clip.enabled=true", "--set", f"images.clip.weights={tmp_path / 'missing.pt'}")
    assert r.returncode == 2 and "images.clip.weights" in r.stderr and "no such file" in r.stderr, r.stderr
    assert not (tmp_path / "o").exists()
    r = cli("--config", "configs/local.yaml", "--input", str(tmp_path / "a.warc.gz"),
            "--set", "images.nsfw.model=clip_mlp", "--set", "images.nsfw.mlp_weights=/x.pt")
    assert r.returncode == 2 and "images.nsfw.model: clip_mlp" in r.stderr, r.stderr


@pytest.mark.slow
def test_cli_runs_and_prints_summary(sample, tmp_path):
    warc, _ = sample
    r = cli("--config", "configs/local.yaml", "--input", str(warc), "--output", str(tmp_path / "o"),
            "--set", "ray.num_cpus=2", "--no-select")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "documents:" in r.stdout and "dropped: none" in r.stdout and "would_drop_http_status" in r.stdout
    docs, _ = read_dir(tmp_path / "o" / "documents")
    assert [d["drop_reason"] for d in docs if d["http_status"] == 404] == ["http_status"]
    assert not (tmp_path / "o" / "rejected").exists()


@pytest.mark.slow
def test_distributed_dedup_path_gives_the_same_corpus(ray_local, sample, tmp_path):
    """dedup.single_task_max_documents=0 sends the unit through the distributed stages: the
    same documents and the same drops as the one-task path."""
    warc, _ = sample
    out = {}
    for name, limit in (("one", 250_000), ("many", 0)):
        cfg = load_config(ROOT / "configs/local.yaml", [f"dedup.single_task_max_documents={limit}"],
                          input=[str(warc)], output=str(tmp_path / name))
        assert not run(cfg, [str(warc)]).failed
        docs, _ = read_dir(tmp_path / name / "documents")
        rejected, _ = read_dir(tmp_path / name / "rejected")
        out[name] = ({(d["id"], d["dup_cluster_id"], d["num_images"]) for d in docs},
                     {(r["id"], r["drop_reason"], r["dup_cluster_id"]) for r in rejected})
    assert out["one"] == out["many"]
    assert any(reason == "duplicate" for _, reason, _ in out["one"][1])


@__import__("ray").remote(num_cpus=1, num_returns=2, max_retries=3)
def _dies_once(path, index, k, start, end, exact, cfg, run_id):
    """process_span whose worker process dies the first time it gets the unit's second span."""
    import os

    from flows.pipeline import process_span_records
    marker = Path(cfg.output).parent / f"{Path(cfg.output).name}.died"
    if k == 1 and not marker.exists():
        marker.write_text(str(k))
        os._exit(1)
    return process_span_records(path, index, k, start, end, exact, cfg, run_id)


def streamed(warc, out, process) -> tuple[dict, list[str], list]:
    """The sample's streaming pass in spans of 20 kB with `process` as the span task: (counters
    by operator, span part names, KEYS tables)."""
    import ray

    from flows.pipeline import Counts, streaming_pass
    cfg = load_config(ROOT / "configs/local.yaml", ["ray.bytes_per_task=20000"], input=[str(warc)], output=str(out))
    results, keys, reads = streaming_pass(cfg, ray.put(cfg), [str(warc)], "r1", process)
    counts = Counts()
    counts.add([reads[str(warc)].stats])
    for r in results:
        counts.add(r["stats"])
    return ({s["name"]: s["counters"] for s in counts.table()}, sorted(r["part"] for r in results),
            ray.get(keys))


def test_a_retried_task_counts_once(ray_local, sample, tmp_path):
    """Counts travel with task results: a span whose worker died and that Ray ran again is
    counted once, and its staged files are there once."""
    warc, _ = sample
    got = {}
    for name, process in (("clean", None), ("retried", _dies_once)):
        counters, parts, keys = streamed(warc, tmp_path / name, process)
        got[name] = (counters, parts, sum(k.num_rows for k in keys))
    assert (tmp_path / "retried.died").exists()
    assert got["clean"] == got["retried"]
    assert len(got["clean"][1]) >= 3 and got["clean"][0]["extract"]["in"] == got["clean"][0]["read"]["out"]


@__import__("ray").remote(num_cpus=1, num_returns=2)
def _false_start(path, index, k, start, end, exact, cfg, run_id):
    """process_span whose span 1 begins at a later member than it should (as when a gzip header
    inside a record passes for a member start) until the driver reads it again from an exact start."""
    from flows.pipeline import process_span_records
    if k == 1 and not exact:
        start = end - 1
    return process_span_records(path, index, k, start, end, exact, cfg, run_id)


def test_a_span_that_does_not_join_its_predecessor_is_read_again_from_its_end(ray_local, sample, tmp_path, caplog):
    warc, _ = sample
    got = {}
    for name, process in (("clean", None), ("false start", _false_start)):
        counters, parts, keys = streamed(warc, tmp_path / name, process)
        got[name] = (counters, parts, sorted(i for k in keys for i in k["id"].to_pylist()))
    assert "span 1 did not join span 0" in caplog.text
    assert got["clean"] == got["false start"]


def test_broken_link_finds_the_first_span_that_does_not_join():
    from flows.pipeline import broken_link

    def span(first, nxt, whole=False):
        return {"first": first, "next": nxt, "whole": whole}
    assert broken_link([span(0, 100), span(100, 250), span(250, 400)]) is None
    assert broken_link([span(0, 100), span(130, 250), span(250, 400)]) == 1   # began past a member
    assert broken_link([span(0, 100), span(100, 250), span(None, 400)]) == 2    # nothing where there is
    assert broken_link([span(0, 400), span(None, 400)]) is None                  # a last span with no member
    assert broken_link([span(0, 400, whole=True), span(None, 400)]) is None      # read whole by span 0
    assert broken_link([span(None, None), span(None, None)]) is None             # unreadable file


def test_final_pass_groups_spread_a_small_unit_over_the_cpus_and_cap_a_large_one():
    from flows.pipeline import MIN_PART_ROWS, part_groups
    chunks = [{"part": f"w000000-{i:05d}", "kept": "k", "rejected": None, "kept_rows": 250, "rejected_rows": 0}
              for i in range(24)]   # 6,000 documents in chunks of 250
    sizes = lambda groups: [sum(r["kept_rows"] for r in g) for g in groups]  # noqa: E731
    assert sizes(part_groups(chunks, 20_000, cpus=1)) == [6000]
    assert sizes(part_groups(chunks, 20_000, cpus=2)) == [3000, 3000]
    assert sizes(part_groups(chunks, 20_000, cpus=64)) == [2000, 2000, 2000]   # never below MIN_PART_ROWS
    assert MIN_PART_ROWS == 2000
    assert sizes(part_groups(chunks, 2_500, cpus=1)) == [2000, 2000, 2000]      # writer.part_rows caps a part, evenly
    groups = part_groups(chunks, 1_000, cpus=2)
    assert [r["part"] for g in groups for r in g] == sorted(r["part"] for r in chunks)   # in chunk order
    assert part_groups([], 20_000, cpus=2) == []
