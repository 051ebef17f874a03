"""A unit's dedup in one task (operators/dedup/unit.py): the same clusters as the reference and as
the distributed stages, URL duplicates, repeated images, and the outcome written into documents.
Ray-free except the one test that runs the distributed path beside it."""
from __future__ import annotations

import random
from datetime import datetime, timezone

import pyarrow as pa
import pytest

from tests.dedup_reference import components as reference_components
from operators.dedup.clusters import DedupConfig
from operators.dedup.minhash import KEYS, dedup_columns
from operators.stats import Stats
from operators.dedup.unit import apply_outcome, cluster, components, deduplicate
from tests.factories import doc_row
from tests.test_dedup import MAX_BUCKET, SCHEMA, _planted_rows, _reference

UTC = timezone.utc


def make_document(url: str, texts: list, images: list | None = None, warc_date=None) -> dict:
    import hashlib
    images = images or [None] * len(texts)
    row = doc_row(id=hashlib.sha1(url.encode()).hexdigest(), url=url, texts=texts, images=images,
                  image_info=[{"alt": None} if u else None for u in images],
                  num_images=sum(1 for u in images if u), num_texts=sum(1 for t in texts if t))
    row["provenance"] = dict(row["provenance"], warc_date=warc_date)
    return row


def test_components_equal_the_reference_union_find():
    rng = random.Random(3)
    ids = [f"d{i:03d}" for i in range(300)]
    edges = [tuple(sorted(rng.sample(ids, 2))) for _ in range(250)]
    forest = components(pa.table({"src": [a for a, _ in edges], "dst": [b for _, b in edges]}))
    got = dict(zip(forest["node"].to_pylist(), forest["parent"].to_pylist()))
    want = {n: r for n, r in reference_components(edges).items() if n != r}
    assert got == want
    assert components(pa.table({"src": pa.array([], pa.string()), "dst": pa.array([], pa.string())})).num_rows == 0


def test_cluster_on_planted_graph_equals_reference():
    rows = _planted_rows()
    keys = pa.Table.from_pylist(rows, schema=SCHEMA)
    counts: dict = {}
    got = cluster(keys, None, DedupConfig(max_bucket=MAX_BUCKET, threshold=None), counts)
    want = _reference(rows)
    clustered = {i: v for i, v in want.items() if sum(1 for w in want.values() if w[0] == v[0]) > 1}
    assert {r["id"]: (r["dup_cluster_id"], r["dup_kept"]) for r in got.to_pylist()} == clustered
    assert counts["capped_buckets"] == 1 and counts["capped_examples"][0]["size"] == 40


def _near_duplicate_docs(n_groups: int = 12, seed: int = 7) -> list[dict]:
    """Documents in groups of near copies (a few words changed), plus unrelated ones."""
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(3000)]
    docs = []
    for g in range(n_groups):
        base = [rng.choice(vocab) for _ in range(300)]
        for m in range(rng.randint(1, 4)):
            words = list(base)
            for _ in range(rng.choice([0, 3, 10, 60])):   # 60 changed words: below J 0.8
                words[rng.randrange(len(words))] = rng.choice(vocab)
            docs.append(make_document(f"https://g{g}.example/{m}", texts=[" ".join(words)],
                                      warc_date=datetime(2024, 1, 1 + m, tzinfo=UTC)))
    return docs


def _keys(docs: list[dict], config: DedupConfig) -> pa.Table:
    from operators.io.schema import DOCUMENT
    _, keys = dedup_columns(pa.Table.from_pylist(docs, schema=DOCUMENT), config, keys=True)
    return keys


def test_url_duplicates_newest_fetch_wins_and_index_is_superseded():
    cfg = DedupConfig()
    old = datetime(2023, 1, 1, tzinfo=UTC)
    docs = [make_document("https://a.example/p", texts=["first fetch of a page " * 20], warc_date=old),
            make_document("https://a.example/p#frag", texts=["second fetch of a page " * 20],
                          warc_date=datetime(2024, 1, 1, tzinfo=UTC)),
            make_document("https://b.example/q", texts=["another page entirely " * 20], warc_date=old)]
    keys = _keys(docs, cfg)
    index = pa.table({"id": ["old-b"], "url_key": [keys["url_key"][2].as_py()], "warc_date": [0],
                      "text_chars": [5], "num_images": [0], "text_hash": ["x"],
                      "minhash_bands": pa.array([None], pa.list_(pa.uint64())), "signature": pa.array([None], pa.binary())})
    out = deduplicate(keys, cfg, index_docs=index)
    drops = {r["id"]: (r["drop_reason"], r["dup_cluster_id"]) for r in out.docs.to_pylist()}
    assert drops[docs[0]["id"]] == ("duplicate_url", docs[1]["id"])
    assert out.superseded.to_pylist() == [{"id": "old-b", "superseded_by": docs[2]["id"]}]
    assert out.counts["duplicate_url"] == 1 and out.counts["superseded"] == 1


def test_repeated_images_counted_over_kept_documents_and_index():
    cfg = DedupConfig(max_image_repeats=2)
    docs = [make_document(f"https://s{i}.example/", texts=[f"page number {i} " * 30 + "x" * i, None],
                          images=[None, "https://cdn.example/logo.png"]) for i in range(3)]
    keys = _keys(docs, cfg)
    img = Stats("images")
    out = deduplicate(keys, cfg, image_stats=img)
    assert sorted(out.repeated["id"].to_pylist()) == sorted(d["id"] for d in docs)
    assert out.image_counts.to_pylist() == [{"url": "https://cdn.example/logo.png", "documents": 3}]
    assert img.counters["image_urls_repeated"] == 1
    # two documents now, but earlier runs used the URL once: 3 > 2 again
    out = deduplicate(keys.slice(0, 2), cfg, index_images=pa.table({"url": ["https://cdn.example/logo.png"],
                                                                     "documents": [1]}))
    assert out.repeated.num_rows == 2


def test_apply_outcome_marks_drops_and_clusters():
    from operators.io.schema import DOCUMENT
    docs = pa.Table.from_pylist([make_document(f"https://x.example/{i}", texts=[f"text {i} " * 20])
                                 for i in range(3)], schema=DOCUMENT)
    ids = docs["id"].to_pylist()
    outcome = pa.table({"id": [ids[0], ids[1]], "drop_reason": ["duplicate", None],
                        "dup_cluster_id": [ids[1], ids[1]]})
    stats = Stats("duplicates")
    out = apply_outcome(docs, outcome, {}, True, stats, Stats("images"))
    rows = {r["id"]: r for r in out.to_pylist()}
    assert rows[ids[0]]["drop_reason"] == "duplicate" and rows[ids[0]]["dup_cluster_id"] == ids[1]
    assert rows[ids[1]]["drop_reason"] is None and rows[ids[1]]["dup_cluster_id"] == ids[1]
    assert rows[ids[2]]["dup_cluster_id"] == ids[2]   # a singleton names itself
    assert stats.counters["dropped_duplicate"] == 1 and stats.counters["out"] == 2
    # selection off: the reason is recorded, the document stays
    stats = Stats("duplicates")
    apply_outcome(docs, outcome, {}, False, stats, Stats("images"))
    assert stats.counters["would_drop_duplicate"] == 1 and stats.counters["out"] == 3


def test_keys_table_matches_the_schema_and_skips_dropped_documents():
    cfg = DedupConfig()
    docs = _near_duplicate_docs(3)
    docs[0]["drop_reason"] = "no_text"
    keys = _keys(docs, cfg)
    assert keys.schema == KEYS and keys.num_rows == len(docs) - 1
    sig = keys["signature"][0].as_py()
    assert len(sig) == 4 * cfg.num_perm


@pytest.mark.ray
@pytest.mark.slow
def test_single_task_and_distributed_paths_give_the_same_clusters(ray_local):
    import ray

    from flows.ray_ops import duplicate_clusters
    cfg = DedupConfig()
    docs = _near_duplicate_docs()
    keys = _keys(docs, cfg)
    out = deduplicate(keys, cfg)
    one = {r["id"]: r["dup_cluster_id"] for r in out.docs.to_pylist()}
    assert out.counts["duplicates_removed"] > 0 and out.counts["pairs_below_threshold"] > 0
    ds = ray.data.from_arrow(keys, override_num_blocks=3)
    assigned, counts = duplicate_clusters(ds, max_bucket=cfg.max_bucket, num_partitions=3, verify=cfg,
                                          threshold=cfg.threshold)
    many = {r["id"]: r["dup_cluster_id"] for r in assigned.take_all()}
    assert one == many
    assert counts["edges"] == out.counts["edges"] and counts["clusters"] == out.counts["clusters"]


def test_repeated_content_counts_bytes_under_any_url_and_earlier_runs():
    from operators.dedup.unit import repeated_content
    refs = pa.table({"url": ["u1", "u2", "u3", "p1", "x"], "id": ["a", "b", "c", "a", "b"]})
    res = pa.table({"url": ["u1", "u2", "u3", "p1", "x"], "status": ["ok", "ok", "ok", "ok", "http_error"],
                    "sha256": ["L", "L", "L", "P", None]})
    stats = Stats("repeated_content")
    removed, counts = repeated_content(refs, res, None, 2, stats)
    assert sorted(removed.to_pylist(), key=str) == sorted([{"id": i, "url": u} for i, u in
                                                           [("a", "u1"), ("b", "u2"), ("c", "u3")]], key=str)
    assert sorted(counts.to_pylist(), key=str) == sorted([{"url": "sha256:L", "documents": 3},
                                                          {"url": "sha256:P", "documents": 1}], key=str)
    # under the limit in this unit, over it with an earlier run's uses of the same bytes
    index = pa.table({"url": ["sha256:P"], "documents": pa.array([2], pa.int64())})
    removed, _ = repeated_content(refs, res, index, 2, Stats("r"))
    assert {("a", "u1"), ("a", "p1")} <= {(r["id"], r["url"]) for r in removed.to_pylist()}
    # nothing had: nothing counted
    removed, counts = repeated_content(refs, res.filter(pa.compute.equal(res["status"], "http_error")), None, 0,
                                       Stats("r"))
    assert removed.num_rows == 0 and counts.num_rows == 0


def test_repeated_content_counts_near_copies_by_perceptual_hash():
    """Three re-encodings of one picture (three sha256, one pHash) and a photo used once: with
    max 2 the near-copies go, counted apart from the exact-byte pass; off, nothing goes."""
    from operators.dedup.unit import repeated_content
    refs = pa.table({"url": ["r1", "r2", "r3", "ph"], "id": ["a", "b", "c", "a"]})
    res = pa.table({"url": ["r1", "r2", "r3", "ph"], "status": ["ok"] * 4, "sha256": ["S1", "S2", "S3", "S4"],
                    "phash": ["ff00ff00ff00ff00"] * 3 + ["0123456789abcdef"]})
    stats = Stats("repeated_content")
    removed, counts = repeated_content(refs, res, None, 2, stats)
    assert sorted((r["id"], r["url"]) for r in removed.to_pylist()) == [("a", "r1"), ("b", "r2"), ("c", "r3")]
    assert stats.counters["near_copy_refs_removed"] == 3 and stats.counters["phash_repeated"] == 1
    assert stats.counters.get("image_refs_removed", 0) == 0       # no exact repeat
    got = {r["url"]: r["documents"] for r in counts.to_pylist()}
    assert got["phash:ff00ff00ff00ff00"] == 3 and got["sha256:S1"] == 1 and got["phash:0123456789abcdef"] == 1
    # earlier runs' pHash counts add up: one near-copy now, two before
    index = pa.table({"url": ["phash:ff00ff00ff00ff00", "sha256:S9"], "documents": pa.array([2, 7], pa.int64())})
    removed, _ = repeated_content(refs.slice(0, 1), res, index, 2, Stats("r"))
    assert [(r["id"], r["url"]) for r in removed.to_pylist()] == [("a", "r1")]
    # turned off: by bytes only
    removed, counts = repeated_content(refs, res, None, 2, Stats("r"), phash=False)
    assert removed.num_rows == 0 and not any(u.startswith("phash:") for u in counts["url"].to_pylist())
