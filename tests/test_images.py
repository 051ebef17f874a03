"""Repeated-image removal: the batch functions (no Ray); the flow test is in test_flow.py."""
import pyarrow as pa
import pyarrow.compute as pc

from operators.dedup.repeated_images import image_refs, index_counts, ref_counts, remove_images, repeated_refs
from operators.io.schema import DOCUMENT, validate_documents
from operators.stats import Stats
from tests.factories import doc_row

LOGO = "https://example.com/logo.png"


def doc(doc_id, images, **over):
    texts = [None if i else "Some text here." for i in images]
    info = [{"alt": None, "width": 100, "height": 100} if i else None for i in images]
    return doc_row(id=doc_id, texts=texts, images=images, image_info=info,
                   num_images=sum(i is not None for i in images), num_texts=sum(i is None for i in images), **over)


def test_refs_count_each_url_once_per_kept_document():
    t = pa.Table.from_pylist([doc("a", [LOGO, None, LOGO, "https://x/1.jpg"]),
                              doc("b", [LOGO], drop_reason="duplicate", drop_reasons=["duplicate"])], schema=DOCUMENT)
    refs = image_refs(t)
    assert sorted(zip(refs["url"].to_pylist(), refs["id"].to_pylist())) == [(LOGO, "a"), ("https://x/1.jpg", "a")]


def test_repeated_refs_keeps_only_urls_over_the_threshold():
    part = pa.table({"url": [LOGO, LOGO, LOGO, "u2", "u2"], "id": ["a", "b", "c", "a", "b"]})
    stats = Stats("images")
    out = repeated_refs(part, 2, stats)
    refs = out.filter(pc.is_valid(out["id"]))
    assert sorted(refs["id"].to_pylist()) == ["a", "b", "c"] and set(refs["url"].to_pylist()) == {LOGO}
    assert (stats.counters["image_urls"], stats.counters["image_urls_repeated"]) == (2, 1)
    # one count row per URL for the index: this run's documents using it
    counts = out.filter(pc.is_null(out["id"]))
    assert dict(zip(counts["url"].to_pylist(), counts["n"].to_pylist())) == {LOGO: 3, "u2": 2}
    out3 = repeated_refs(part, 3, Stats("images"))
    assert out3.filter(pc.is_valid(out3["id"])).num_rows == 0


def test_repeated_refs_adds_counts_of_earlier_runs():
    part = pa.concat_tables([ref_counts(pa.table({"url": [LOGO, "u2"], "id": ["a", "a"]})),
                             index_counts(pa.table({"url": [LOGO, "u3"], "documents": pa.array([10, 50], pa.int64())}))])
    out = repeated_refs(part, 10, Stats("images"))
    refs = out.filter(pc.is_valid(out["id"]))
    assert refs.to_pylist() == [{"url": LOGO, "id": "a", "n": 1}]   # 10 earlier + 1 now > 10
    counts = out.filter(pc.is_null(out["id"]))
    assert sorted(counts["url"].to_pylist()) == [LOGO, "u2"]       # u3 was not used in this run


def test_remove_images_keeps_lists_aligned_and_counts():
    t = pa.Table.from_pylist([doc("a", [LOGO, None, "https://x/1.jpg", LOGO]), doc("b", [None, "https://x/2.jpg"])],
                             schema=DOCUMENT)
    stats = Stats("images")
    out = validate_documents(remove_images(t, {"a": {LOGO}}, stats))
    a, b = out.to_pylist()
    assert a["images"] == [None, "https://x/1.jpg"] and a["texts"] == ["Some text here.", None]
    assert a["num_images"] == 1 and a["images_dropped"] == 2
    assert b["images"] == [None, "https://x/2.jpg"] and b["num_images"] == 1
    assert stats.counters["images_removed_repeated"] == 2 and stats.counters["documents_changed"] == 1


def test_content_key_hook_counts_the_same_bytes_under_many_urls():
    from operators.dedup.repeated_images import image_content
    sha = "ab" * 32
    rows = []
    for i in range(3):
        r = doc(f"d{i}", [None, f"https://cdn{i}.example/logo.png"])
        r["image_info"] = [None, {"alt": None, "width": 1, "height": 1, "sha256": sha}]
        rows.append(r)
    t = pa.Table.from_pylist(rows)
    refs = image_refs(t, key=image_content)
    assert refs["url"].to_pylist() == [sha] * 3
    out = repeated_refs(refs, 2, Stats("images"))
    drop = {r["id"]: {r["url"]} for r in out.filter(pc.is_valid(out["id"])).to_pylist()}
    stats = Stats("images")
    gone = remove_images(t, drop, stats, key=image_content).to_pylist()
    assert all(d["images"] == [None] for d in gone) and stats.counters["images_removed_repeated"] == 3
