"""One commit unit's deduplication on its narrow key table, in one process (Ray-free).

The flow (flows/pipeline.py) gathers the KEYS rows (operators/dedup/minhash.KEYS) of every document
selection kept in a unit and hands them, with the dedup index's live rows, to `deduplicate`. It
runs the same rules as the distributed stages of operators/dedup/clusters.py, on one block instead of
hash partitions, so both give the same outcome (tests/test_unit_dedup.py):

1. URL duplicates (`dedup.url_losers`): the newest fetch of a URL wins; this run's losers are
   dropped as `duplicate_url` (naming the winner), earlier runs' losers are superseded.
2. Near and exact duplicates among the rest: band and text-hash buckets (`dedup.bucket_edges`),
   candidate pairs verified (`verify.attach` + `verify.verify`, the V1/V2 stages on the whole unit: exact
   Jaccard on the shingle hashes within the run, the signature estimate against the index),
   connected components by union-find (`components`), the keep rule per component
   (`dedup.kept_in_components`; an earlier run's document always wins).
3. Repeated images (`images.repeated_refs`): image URLs used by more than `max_image_repeats`
   of the documents still kept (earlier runs' counts added) are removed from them.

`apply_outcome` writes an outcome into a part of staged documents (the flow's final pass).
Memory: the key table (about 4 bytes per word of kept text for the shingle hashes, plus ~1 KB
per document) and the candidate pairs; the flow uses this path up to
`dedup.single_task_max_documents` and the distributed one beyond.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from operators.dedup import clusters as dd
from operators.dedup import verify as verification
from operators.dedup.repeated_images import index_counts, ref_counts, remove_images, repeated_refs
from operators.io.schema import drop_kept
from operators.stats import Stats

# One row per document whose outcome is not "kept, its own cluster".
OUTCOME = pa.schema([pa.field("id", pa.string()), pa.field("drop_reason", pa.string()),
                     pa.field("dup_cluster_id", pa.string())])
SUPERSEDED = pa.schema([pa.field("id", pa.string()), pa.field("superseded_by", pa.string())])
IMAGE_COUNTS = pa.schema([pa.field("url", pa.string()), pa.field("documents", pa.int64())])


@dataclass
class Outcome:
    docs: pa.Table = field(default_factory=OUTCOME.empty_table)          # OUTCOME rows
    repeated: pa.Table = field(default_factory=lambda: pa.table(        # (id, url) image refs to remove
        {"id": pa.array([], pa.string()), "url": pa.array([], pa.string())}))
    superseded: pa.Table = field(default_factory=SUPERSEDED.empty_table)  # earlier runs' documents replaced
    image_counts: pa.Table = field(default_factory=IMAGE_COUNTS.empty_table)  # this run's per-URL counts
    counts: dict = field(default_factory=dict)


def url_duplicates(keys: pa.Table, index_docs: pa.Table | None, stats: Stats) -> tuple[pa.Table, pa.Table]:
    """(this run's losers: id, winner; earlier runs' superseded documents: id, superseded_by)."""
    views = [dd.url_views(keys)]
    if index_docs is not None and index_docs.num_rows:
        views.append(dd.index_url_views(index_docs))
    losers = dd.url_losers(pa.concat_tables(views), stats=stats)
    old = losers["old"]
    new = losers.filter(pc.invert(old)).select(["id", "winner"])
    sup = losers.filter(old).select(["id", "winner"]).rename_columns(["id", "superseded_by"])
    return new, sup


def components(edges: pa.Table) -> pa.Table:
    """(node, parent) for every endpoint of `edges` (src, dst) that is not its component's
    smallest id, parent = that smallest id; the same forest the distributed hook/jump rounds
    end with."""
    if edges.num_rows == 0:
        return pa.table({"node": pa.array([], pa.string()), "parent": pa.array([], pa.string())})
    ids, inverse = np.unique(np.concatenate([edges["src"].to_numpy(zero_copy_only=False),
                                             edges["dst"].to_numpy(zero_copy_only=False)]), return_inverse=True)
    m = edges.num_rows
    parent = np.arange(len(ids))

    def find(x: int) -> int:
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:
            parent[x], x = root, parent[x]
        return root

    for a, b in zip(inverse[:m].tolist(), inverse[m:].tolist()):
        ra, rb = find(a), find(b)
        if ra != rb:   # ids are sorted: the smaller index is the smaller id, the root
            parent[max(ra, rb)] = min(ra, rb)
    roots = np.fromiter((find(i) for i in range(len(ids))), np.int64, len(ids))
    child = roots != np.arange(len(ids))
    return pa.table({"node": pa.array(ids[child], pa.string()), "parent": pa.array(ids[roots[child]], pa.string())})


def cluster(keys: pa.Table, index_docs: pa.Table | None, config, counts: dict) -> pa.Table:
    """(id, dup_cluster_id, dup_kept, kept_old) of this run's documents in a duplicate cluster of
    two or more (operators/dedup/clusters.py's rules on one block); adds the stages' counts to `counts`."""
    pair_stats, bucket_stats, verify = Stats("pairs"), Stats("buckets"), Stats("verify")
    pairs = [dd.band_pairs(keys, stats=pair_stats)]
    if index_docs is not None and index_docs.num_rows:
        old_stats = Stats("index_pairs")
        pairs.append(dd.band_pairs(index_docs, old=True, stats=old_stats))
        counts["index_documents"] = old_stats.counters.get("docs_in", 0)
    cands = dd.bucket_edges(pa.concat_tables(pairs), config.max_bucket, stats=bucket_stats)
    if config.threshold is not None and cands.num_rows:
        docs = [verification.document_rows(keys, config)]
        if index_docs is not None and index_docs.num_rows:
            docs.append(verification.index_rows(index_docs))
        docs = pa.concat_tables(docs)
        v1 = verification.attach(verification.candidate_rows(cands), docs, carry=False)
        edges = verification.verify(v1, docs, config.threshold, stats=verify, estimate_threshold=config.index_threshold,
                                    src=docs)
    else:
        edges = cands.select(["src", "dst"])
    b = bucket_stats.counters
    counts.update({
        "documents_with_keys": pair_stats.counters.get("docs_in", 0), "pairs": pair_stats.counters.get("pairs", 0),
        **{k: b.get(k, 0) for k in ("buckets", "buckets_text", "star_buckets", "capped_buckets", "capped_bucket_ids")},
        "capped_examples": [{"key": e["key"], "size": e["size"]} for e in bucket_stats.errors[:20]],
        "candidate_pairs": cands.num_rows,
        **{k: verify.counters.get(k, 0) for k in ("pairs_exact_text", "pairs_checked_exact", "pairs_checked_estimate",
                                                 "pairs_below_threshold", "pairs_without_document")},
        "edges": edges.num_rows, "rounds": 0, "jumps": 0,
    })
    forest = components(edges)
    if forest.num_rows == 0:
        return dd.kept_in_components(pa.table({"root": pa.array([], pa.string()), "id": pa.array([], pa.string()),
                                               "rank": pa.array([], pa.binary())}))
    members = pa.concat_tables([pa.table({"root": forest["parent"], "id": forest["node"]}),
                                pa.table({"root": forest["parent"], "id": forest["parent"]})])
    members = members.group_by(["root", "id"]).aggregate([])
    ranks = dd.rank_columns(keys)
    rank_of = pa.table({"id": ranks["id"], "rank": dd.pack_rank(ranks)})
    if index_docs is not None and index_docs.num_rows:
        rank_of = pa.concat_tables([rank_of, pa.table({
            "id": index_docs["id"].cast(pa.string()),
            "rank": pa.array([dd.OLD_RANK] * index_docs.num_rows, pa.binary())})])
    idx = pc.index_in(members["id"], value_set=rank_of["id"])
    members = members.append_column("rank", rank_of["rank"].take(idx))
    return dd.kept_in_components(members)


def deduplicate(keys: pa.Table, config, index_docs: pa.Table | None = None,
                index_images: pa.Table | None = None, image_stats: Stats | None = None) -> Outcome:
    """The unit's outcome from its KEYS rows and the index's `docs` (earlier runs' kept documents
    less those superseded before) and `images` rows. `config`: the dedup config; `image_stats`
    gets the repeated-image counts."""
    out = Outcome()
    url_stats = Stats("url_duplicates")
    losers, out.superseded = url_duplicates(keys, index_docs, url_stats)
    live_index = index_docs
    if index_docs is not None and out.superseded.num_rows:
        live_index = index_docs.filter(pc.invert(pc.is_in(index_docs["id"], value_set=out.superseded["id"])))
    live = keys.filter(pc.invert(pc.is_in(keys["id"], value_set=losers["id"]))) if losers.num_rows else keys
    counts: dict = {"index_documents": 0}
    clusters = cluster(live, live_index, config, counts)
    dropped = clusters.filter(pc.invert(clusters["dup_kept"]))
    kept_in = clusters.filter(clusters["dup_kept"])
    rows = [pa.table({"id": losers["id"], "drop_reason": pa.array(["duplicate_url"] * losers.num_rows, pa.string()),
                      "dup_cluster_id": losers["winner"]}, schema=OUTCOME),
            pa.table({"id": dropped["id"], "drop_reason": pa.array(["duplicate"] * dropped.num_rows, pa.string()),
                      "dup_cluster_id": dropped["dup_cluster_id"]}, schema=OUTCOME),
            pa.table({"id": kept_in["id"], "drop_reason": pa.nulls(kept_in.num_rows, pa.string()),
                      "dup_cluster_id": kept_in["dup_cluster_id"]}, schema=OUTCOME)]
    out.docs = pa.concat_tables(rows)
    counts.update({
        "duplicate_url": losers.num_rows, "superseded": out.superseded.num_rows,
        "clusters": kept_in.num_rows, "documents_in_clusters": clusters.num_rows,
        "duplicates_of_earlier_runs": int(pc.sum(clusters["kept_old"]).as_py() or 0) if clusters.num_rows else 0,
        "duplicates_removed": dropped.num_rows,
    })
    if config.max_image_repeats is not None:
        survivors = live.filter(pc.invert(pc.is_in(live["id"], value_set=dropped["id"]))) if dropped.num_rows else live
        out.repeated, out.image_counts = repeated_images(survivors, index_images, config.max_image_repeats,
                                                         image_stats if image_stats is not None else Stats("images"))
    out.counts = counts
    return out


def repeated_images(kept: pa.Table, index_images: pa.Table | None, max_repeats: int, stats: Stats
                    ) -> tuple[pa.Table, pa.Table]:
    """((id, url) references to remove, this run's (url, documents) counts for the index): image
    URLs used by more than `max_repeats` of the `kept` key rows and earlier runs' documents."""
    parts = [ref_counts(image_ref_rows(kept))]
    if index_images is not None and index_images.num_rows:
        parts.append(index_counts(index_images))
    counted = repeated_refs(pa.concat_tables(parts), max_repeats, stats)
    this_run = pc.is_valid(counted["id"])
    per_url = counted.filter(pc.invert(this_run))
    return (counted.filter(this_run).select(["id", "url"]),
            pa.table({"url": per_url["url"], "documents": per_url["n"]}, schema=IMAGE_COUNTS))


CONTENT_KEY = "sha256:"   # an image content key in the counts (and the index's images table) is this + hex
PHASH_KEY = "phash:"      # a perceptual-hash key (64-bit DCT pHash, 16 hex digits): near-copies share it


def repeated_content(refs: pa.Table, results: pa.Table, index_images: pa.Table | None, max_repeats: int,
                     stats: Stats, phash: bool = True) -> tuple[pa.Table, pa.Table]:
    """The same as `repeated_images`, by content: ((id, url) references to remove, this unit's
    ("sha256:<hex>" / "phash:<hex>", documents) counts for the index). `refs`: (url, id) of the
    unit's kept documents' images; `results`: the image stage's rows (url, status, sha256,
    phash): an image whose bytes were had counts under its content key, so one logo under many
    URLs (CDN variants, cache-busting queries) is one image, and with `phash` also under its
    perceptual hash, so its near-copies (re-encoded, resized, recompressed: OmniCorpus' rule)
    count together; it goes when either count is over `max_repeats`. An image never had is
    counted by URL only (that pass ran before fetching). `index_images`: earlier runs' counts of
    these keys. Stats: the sha256 pass under the URL pass's names (`image_urls_repeated`,
    `image_refs_removed`), the pHash pass as `phash_repeated` / `phash_refs_removed`, and the
    references only the pHash removed as `near_copy_refs_removed`."""
    ok = results.filter(pc.and_(pc.equal(results["status"], "ok"), pc.is_valid(results["sha256"])))
    kinds = [(CONTENT_KEY, dict(zip(ok["url"].to_pylist(), ok["sha256"].to_pylist())))]
    if phash and "phash" in ok.column_names:
        had = ok.filter(pc.is_valid(ok["phash"]))
        kinds.append((PHASH_KEY, dict(zip(had["url"].to_pylist(), had["phash"].to_pylist()))))
    sha_of = kinds[0][1]
    pairs = [(u, i) for u, i in zip(refs["url"].to_pylist(), refs["id"].to_pylist()) if u in sha_of]
    if not pairs:
        return pa.table({"id": pa.array([], pa.string()), "url": pa.array([], pa.string())}), IMAGE_COUNTS.empty_table()
    over: set = set()    # (key, id) references over the limit, either kind (the keys carry their prefix)
    counts = []
    for prefix, key_of in kinds:
        seen: set = set()
        keyed = [(prefix + key_of[u], i) for u, i in pairs if u in key_of]
        keyed = [p for p in keyed if p not in seen and not seen.add(p)]
        if not keyed:
            continue
        parts = [ref_counts(pa.table({"url": [k for k, _ in keyed], "id": [i for _, i in keyed]}))]
        if index_images is not None and index_images.num_rows:
            mine = index_images.filter(pc.starts_with(index_images["url"], prefix))
            if mine.num_rows:
                parts.append(index_counts(mine))
        kstats = stats if prefix == CONTENT_KEY else Stats("phash")
        counted = repeated_refs(pa.concat_tables(parts), max_repeats, kstats)
        this_run = pc.is_valid(counted["id"])
        hit = counted.filter(this_run)
        over |= set(zip(hit["url"].to_pylist(), hit["id"].to_pylist()))
        per_key = counted.filter(pc.invert(this_run))
        counts.append(pa.table({"url": per_key["url"], "documents": per_key["n"]}, schema=IMAGE_COUNTS))
        if kstats is not stats:
            stats.incr("phash_repeated", kstats.counters.get("image_urls_repeated", 0))
            stats.incr("phash_refs_removed", kstats.counters.get("image_refs_removed", 0))
    removed = []
    for u, i in pairs:
        hits = [prefix for prefix, key_of in kinds if u in key_of and (prefix + key_of[u], i) in over]
        if hits:
            removed.append((i, u))
            if hits == [PHASH_KEY]:
                stats.incr("near_copy_refs_removed")
    return (pa.table({"id": pa.array([i for i, _ in removed], pa.string()),
                      "url": pa.array([u for _, u in removed], pa.string())}),
            pa.concat_tables(counts) if counts else IMAGE_COUNTS.empty_table())


def image_ref_rows(keys: pa.Table) -> pa.Table:
    """(url, id) once per distinct image URL of each key row (operators/dedup/repeated_images.REFS), in order."""
    flat = pc.list_flatten(keys["images"])
    ids = keys["id"].take(pc.list_parent_indices(keys["images"]))
    t = pa.table({"url": flat, "id": ids})
    if t.num_rows < 2:
        return t
    pair = pc.binary_join_element_wise(t["id"], t["url"], "\n").to_pylist()
    first = pa.array([p not in seen and not seen.add(p) for seen in [set()] for p in pair])
    return t.filter(first)


def apply_outcome(docs: pa.Table, outcome: pa.Table, repeated: dict[str, set[str]], select_enabled: bool,
                  stats: Stats, image_stats: Stats) -> pa.Table:
    """Write a unit's dedup outcome into staged documents: `dup_cluster_id` (the kept document's
    id; a singleton's own id), `drop_reason(s)` `duplicate_url` / `duplicate` for documents no
    other rule dropped (with selection off they stay, as would-be drops), and the repeated image
    URLs (`repeated`: id -> URLs) removed. `outcome`: OUTCOME rows of these documents (or more)."""
    n = docs.num_rows
    stats.incr("in", n)
    ids = docs["id"].cast(pa.string())
    idx = pc.index_in(ids, value_set=outcome["id"])
    cid = pc.coalesce(outcome["dup_cluster_id"].take(idx), ids)
    why = outcome["drop_reason"].take(idx).to_pylist()
    docs = docs.set_column(docs.schema.get_field_index("dup_cluster_id"), "dup_cluster_id", cid)
    docs = drop_kept(docs, why, select_enabled, stats)
    if repeated:
        docs = remove_images(docs, repeated, image_stats)
    return docs
