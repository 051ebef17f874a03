"""Duplicate clustering: band collisions -> edges -> connected components -> one kept document each.

Design, definitions and the measurements behind them: docs/dedup-clusters.md.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from operators.dedup.encoding import DATE_NULL, rank_columns, signature_bytes  # noqa: F401 (rank_columns: unit.py reads it here)
from operators.dedup.minhash import MinHashConfig
from operators.stats import Stats


@dataclass(frozen=True)
class DedupConfig(MinHashConfig):
    """The `dedup` config section: MinHash/LSH parameters (inherited) and the clustering's."""
    enabled: bool = True              # false: no keys, no clustering, no `duplicate` rule
    max_bucket: int = 1000            # a band bucket with more documents gives no edges (counted, recorded)
    num_partitions: int | None = None  # shuffle partitions; None: 2 per CPU of the cluster
    max_image_repeats: int | None = 10  # image URLs used by more kept documents are removed (OBELICS: 10); null: off
    image_content_repeats: bool = True  # also count fetched images by their bytes (sha256), under any URL
    image_phash_repeats: bool = True    # ... and by perceptual hash (pHash): near-copies count as one image
    threshold: float | None = 0.8     # candidate pairs below this Jaccard are not duplicates; null: no check
    index_threshold: float = 0.75     # the same against earlier runs, on the signature estimate (sd ~0.03 at 0.8)
    index: bool = True                # dedup against earlier runs' index in the output, and append to it
    single_task_max_documents: int = 250_000  # a unit with at most this many documents with keys is deduplicated in
                                      # one task (operators/dedup/unit.py); larger ones by the distributed stages

    def __post_init__(self):
        super().__post_init__()
        if self.threshold is not None and (isinstance(self.threshold, bool) or not 0 < self.threshold <= 1):
            raise ValueError(f"dedup.threshold must be in (0, 1] or null, got {self.threshold!r}")
        if isinstance(self.index_threshold, bool) or not 0 < self.index_threshold <= 1:
            raise ValueError(f"dedup.index_threshold must be in (0, 1], got {self.index_threshold!r}")
        if not isinstance(self.max_bucket, int) or isinstance(self.max_bucket, bool) or self.max_bucket < 2:
            raise ValueError(f"dedup.max_bucket must be an integer >= 2, got {self.max_bucket!r}")
        if not isinstance(self.single_task_max_documents, int) or self.single_task_max_documents < 0:
            raise ValueError("dedup.single_task_max_documents must be an integer >= 0")
        if self.num_partitions is not None and self.num_partitions < 1:
            raise ValueError("dedup.num_partitions must be >= 1 or null")
        if self.max_image_repeats is not None and self.max_image_repeats < 0:
            raise ValueError("dedup.max_image_repeats must be >= 0 or null")


TEXT_KEY_PREFIX = b"\xff\xff"


# ---------------------------------------------------------------- batch functions (vectorised)

def _np(col) -> np.ndarray:
    return col.to_numpy(zero_copy_only=False) if not isinstance(col, np.ndarray) else col


def _group_starts(sorted_keys: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Boolean mask: True where a run of equal keys starts (keys sorted)."""
    n = len(sorted_keys)
    starts = np.ones(n, bool)
    if n > 1:
        keys = sorted_keys.combine_chunks() if isinstance(sorted_keys, pa.ChunkedArray) else sorted_keys
        starts[1:] = ~_np(pc.fill_null(pc.equal(keys[1:], keys[:-1]), False))
    return starts


PAIRS = pa.schema([pa.field("key", pa.binary()), pa.field("id", pa.string()), pa.field("old", pa.bool_())])


def band_pairs(table: pa.Table, key_column: str = "minhash_bands",
               extra_key_column: str | None = "text_hash", stats: Stats | None = None,
               old: bool = False) -> pa.Table:
    """(key: binary, id: string, old: bool) for every band key (with its band position) and text
    hash of the documents with text that selection kept (`drop_reason` null, where the column
    exists). `old`: the rows are earlier runs' documents (from the index)."""
    has_text = pc.fill_null(pc.greater(table["text_chars"], 0), False)
    if "drop_reason" in table.column_names:
        has_text = pc.and_(has_text, pc.is_null(table["drop_reason"]))
    table = table.filter(has_text)
    keys: list[pa.Array] = []
    ids: list[pa.Array] = []
    id_col = table["id"].combine_chunks().cast(pa.string())
    if key_column in table.column_names and table.num_rows:
        bands = table[key_column].combine_chunks()
        values = _np(pc.list_flatten(bands)).astype(np.uint64)
        parents = _np(pc.list_parent_indices(bands))
        if len(values):
            first = np.searchsorted(parents, parents, side="left")   # index of the row's first band
            position = (np.arange(len(values)) - first).astype(">u2")
            raw = np.empty((len(values), 10), np.uint8)
            raw[:, :2] = position.view(np.uint8).reshape(-1, 2)
            raw[:, 2:] = values.astype(">u8").view(np.uint8).reshape(-1, 8)
            fixed = pa.FixedSizeBinaryArray.from_buffers(pa.binary(10), len(values),
                                                         [None, pa.py_buffer(raw.tobytes())])
            keys.append(fixed.cast(pa.binary()))
            ids.append(id_col.take(pa.array(parents)))
    if extra_key_column and extra_key_column in table.column_names and table.num_rows:
        th = table[extra_key_column].combine_chunks()
        ok = pc.is_valid(th)
        th = th.filter(ok)
        if len(th):
            keys.append(pc.binary_join_element_wise(pa.scalar(TEXT_KEY_PREFIX), th.cast(pa.binary()),
                                                    pa.scalar(b"")))
            ids.append(id_col.filter(ok))
    if not keys:
        return PAIRS.empty_table()
    n = sum(len(k) for k in keys)
    out = pa.table({"key": pa.concat_arrays(keys), "id": pa.concat_arrays(ids),
                    "old": pa.array(np.full(n, old))}, schema=PAIRS)
    if stats is not None:
        stats.incr("docs_in", table.num_rows)
        stats.incr("pairs", out.num_rows)
    return out


ALL_PAIRS_MAX = 32   # band buckets up to this size give every pair (verification needs them); larger ones a star


def _all_pairs(start_idx: np.ndarray, sizes: np.ndarray, which: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row index pairs (i < j) of every pair inside the groups `which` (given by start and size)."""
    src, dst = [], []
    for s in np.unique(sizes[which]):
        starts = start_idx[which][sizes[which] == s]
        a, b = np.triu_indices(int(s), 1)
        src.append((starts[:, None] + a[None, :]).ravel())
        dst.append((starts[:, None] + b[None, :]).ravel())
    if not src:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(src), np.concatenate(dst)


CANDIDATES = pa.schema([pa.field("src", pa.string()), pa.field("dst", pa.string()),
                        pa.field("verified", pa.bool_())])


def bucket_edges(pairs: pa.Table, max_bucket: int, stats: Stats | None = None,
                 all_pairs_max: int = ALL_PAIRS_MAX) -> pa.Table:
    """Candidate pairs (src < dst, `verified`) of every bucket in `pairs` (holding whole buckets).

    An exact-text bucket gives a star (smallest id to each other id), `verified` true: its
    members are equal. A band bucket of up to `all_pairs_max` ids gives every pair, so that
    verification can drop a false pair without losing the true ones beside it; a larger one a
    star (counted as `star_buckets`); above `max_bucket` ids none (recorded as `capped_bucket`).
    With an `old` column (documents of earlier runs, from the index), pairs of two old documents
    are left out: they were settled when those runs ran."""
    if pairs.num_rows == 0:
        return CANDIDATES.empty_table()
    cols = ["key", "id"] + (["old"] if "old" in pairs.column_names else [])
    t = pairs.select(cols).sort_by([("key", "ascending"), ("id", "ascending")])
    # one row per (key, id): a document listed twice under a key counts once
    same = np.zeros(t.num_rows, bool)
    if t.num_rows > 1:
        same[1:] = ~_group_starts(t["key"])[1:] & _np(pc.equal(t["id"][1:], t["id"][:-1]))
    t = t.filter(pa.array(~same))
    starts = _group_starts(t["key"])
    group = np.cumsum(starts) - 1
    start_idx = np.flatnonzero(starts)
    sizes = np.diff(np.append(start_idx, t.num_rows))
    keys_at_start = t["key"].take(pa.array(start_idx))
    is_text = _np(pc.fill_null(pc.equal(pc.binary_slice(keys_at_start, 0, len(TEXT_KEY_PREFIX)),
                                        pa.scalar(TEXT_KEY_PREFIX)), False)).astype(bool)
    capped_group = (sizes > max_bucket) & ~is_text
    multi = sizes >= 2
    every_pair = multi & ~is_text & ~capped_group & (sizes <= all_pairs_max)
    star = multi & ~capped_group & ~every_pair
    if stats is not None:
        stats.incr("buckets", int(multi.sum()))
        stats.incr("buckets_text", int((multi & is_text).sum()))
        stats.incr("star_buckets", int((star & ~is_text).sum()))
        stats.incr("capped_buckets", int(capped_group.sum()))
        stats.incr("capped_bucket_ids", int(sizes[capped_group].sum()))
        for g in np.flatnonzero(capped_group):
            stats.error("capped_bucket", key=keys_at_start[int(g)].as_py().hex(), size=int(sizes[g]))
    emit = ~starts & star[group]
    star_dst = np.flatnonzero(emit)
    star_src = start_idx[group[emit]]
    ap_src, ap_dst = _all_pairs(start_idx, sizes, every_pair)
    src_idx = np.concatenate([star_src, ap_src]).astype(np.int64)
    dst_idx = np.concatenate([star_dst, ap_dst]).astype(np.int64)
    verified = np.concatenate([is_text[group[star_dst]], np.zeros(len(ap_src), bool)])
    if "old" in t.column_names and len(src_idx):
        old = _np(pc.fill_null(t["old"], False)).astype(bool)
        fresh = ~(old[src_idx] & old[dst_idx])
        src_idx, dst_idx, verified = src_idx[fresh], dst_idx[fresh], verified[fresh]
    ids = t["id"].combine_chunks() if isinstance(t["id"], pa.ChunkedArray) else t["id"]
    out = pa.table({"src": ids.take(pa.array(src_idx)), "dst": ids.take(pa.array(dst_idx)),
                    "verified": pa.array(verified)}, schema=CANDIDATES)
    if stats is not None:
        stats.incr("edges", out.num_rows)
    return out


def hook(edges: pa.Table) -> pa.Table:
    """Edges (src < dst) holding every edge of their dst -> (node=dst, parent=min src)."""
    if edges.num_rows == 0:
        return pa.table({"node": pa.array([], pa.string()), "parent": pa.array([], pa.string())})
    t = edges.sort_by([("dst", "ascending"), ("src", "ascending")])
    first = pa.array(_group_starts(t["dst"]))
    return pa.table({"node": t["dst"].filter(first), "parent": t["src"].filter(first)})


# The generic "lookup" block: query rows (tag 0) carry a key `k` and payload `v`, `w`; map rows
# (tag 1) map `k` -> `v`. A partition holds every row of its keys, so a query row finds its
# mapping in its own block.
LOOKUP = pa.schema([pa.field("k", pa.string()), pa.field("v", pa.string()),
                    pa.field("w", pa.binary()), pa.field("tag", pa.int8())])


def lookup_rows(k, v, w=None, tag: int = 0) -> pa.Table:
    n = len(k)
    return pa.table({"k": k, "v": v, "w": w if w is not None else pa.nulls(n, pa.binary()),
                     "tag": pa.array(np.full(n, tag, np.int8))}, schema=LOOKUP)


def resolve(block: pa.Table) -> pa.Table:
    """Query rows with `r` = the mapped value of `k` (or `k` itself) and `hit` (was mapped)."""
    tag = block["tag"]
    q = block.filter(pc.equal(tag, 0))
    m = block.filter(pc.equal(tag, 1))
    idx = pc.index_in(q["k"], value_set=m["k"].combine_chunks())
    mapped = m["v"].combine_chunks().take(idx) if m.num_rows else pa.nulls(q.num_rows, pa.string())
    hit = pc.is_valid(idx)
    r = pc.if_else(hit, mapped, q["k"])
    return pa.table({"k": q["k"], "v": q["v"], "w": q["w"], "r": r, "hit": hit})


def jump_views(forest: pa.Table) -> pa.Table:
    """Forest (node, parent) as query rows (k=parent, v=node) and map rows (k=node, v=parent)."""
    return pa.concat_tables([lookup_rows(forest["parent"], forest["node"]),
                             lookup_rows(forest["node"], forest["parent"], tag=1)])


def jumped(resolved: pa.Table) -> pa.Table:
    """After `resolve` of `jump_views`: (node, parent=grandparent or parent, changed)."""
    return pa.table({"node": resolved["v"], "parent": resolved["r"], "changed": resolved["hit"]})


def forest_map(forest: pa.Table) -> pa.Table:
    """Map rows node -> root of a fully jumped forest."""
    return lookup_rows(forest["node"], forest["parent"], tag=1)


def relabel_views(edges: pa.Table, end: str) -> pa.Table:
    """Edges as query rows keyed by endpoint `end` ("src" or "dst"), the other in `v`."""
    other = "dst" if end == "src" else "src"
    return lookup_rows(edges[end], edges[other])


def relabeled(resolved: pa.Table, end: str) -> pa.Table:
    """After `resolve` of `relabel_views(edges, end)`: the edges with `end` replaced by its root;
    after both ends, self-loops are dropped, src < dst restored and duplicate edges of the block
    dropped."""
    other = "dst" if end == "src" else "src"
    t = pa.table({end: resolved["r"], other: resolved["v"]}).select(["src", "dst"])
    if end == "dst":
        lo = pc.min_element_wise(t["src"], t["dst"])
        hi = pc.max_element_wise(t["src"], t["dst"])
        t = pa.table({"src": lo, "dst": hi}).filter(pc.not_equal(lo, hi))
        if t.num_rows > 1:
            t = t.sort_by([("src", "ascending"), ("dst", "ascending")])
            dup = np.zeros(t.num_rows, bool)
            dup[1:] = _np(pc.and_(pc.equal(t["src"][1:], t["src"][:-1]),
                                  pc.equal(t["dst"][1:], t["dst"][:-1])))
            t = t.filter(pa.array(~dup))
    return t


_RANK = np.dtype([("text_chars", ">i8"), ("num_images", ">i8"), ("date", ">i8")])


def pack_rank(ranks: pa.Table) -> pa.Array:
    """The rank fields as 24 bytes whose byte order is the keep rule's order (before the id)."""
    n = ranks.num_rows
    raw = np.empty(n, _RANK)
    # negate counts so that "most" sorts first; flip the sign bit so signed order = byte order
    raw["text_chars"] = -_np(ranks["text_chars"]).astype(np.int64) ^ np.int64(-2**63)
    raw["num_images"] = -_np(ranks["num_images"]).astype(np.int64) ^ np.int64(-2**63)
    raw["date"] = _np(ranks["date"]).astype(np.int64) ^ np.int64(-2**63)
    return pa.FixedSizeBinaryArray.from_buffers(pa.binary(24), n, [None, pa.py_buffer(raw.tobytes())]) \
        .cast(pa.binary())


def keep_views(docs: pa.Table) -> pa.Table:
    """Documents as query rows: k = id, v = id, w = packed rank (documents already dropped, e.g.
    as URL duplicates, take no part: one may share its id with an earlier run's document)."""
    if "drop_reason" in docs.column_names:
        docs = docs.filter(pc.is_null(docs["drop_reason"]))
    ranks = rank_columns(docs)
    return lookup_rows(ranks["id"], ranks["id"], pack_rank(ranks))


def component_map(forest: pa.Table) -> pa.Table:
    """Map rows id -> component label for every clustered id: children and roots of the forest."""
    return pa.concat_tables([lookup_rows(forest["node"], forest["parent"], tag=1),
                             lookup_rows(forest["parent"], forest["parent"], tag=1)])


def members(resolved: pa.Table) -> pa.Table:
    """After `resolve` of documents against `component_map`: (root, id, rank) of clustered ids."""
    t = resolved.filter(resolved["hit"])
    return pa.table({"root": t["r"], "id": t["v"], "rank": t["w"]})


OLD_RANK = bytes(24)   # rank of an earlier run's document: before every document of this run


def index_keep_views(index_docs: pa.Table) -> pa.Table:
    """Earlier runs' documents as query rows with the lowest rank: a component that holds one
    keeps it (it is published already) and drops this run's members."""
    n = index_docs.num_rows
    ids = index_docs["id"].cast(pa.string())
    return lookup_rows(ids, ids, pa.array([OLD_RANK] * n, pa.binary()))


def kept_in_components(block: pa.Table) -> pa.Table:
    """Block holding whole components (root, id, rank) -> (id, dup_cluster_id, dup_kept,
    kept_old) for this run's documents (earlier runs' documents get no row; `kept_old`: the
    component's kept document is one of theirs)."""
    empty = pa.table({"id": pa.array([], pa.string()), "dup_cluster_id": pa.array([], pa.string()),
                      "dup_kept": pa.array([], pa.bool_()), "kept_old": pa.array([], pa.bool_())})
    if block.num_rows == 0:
        return empty
    t = block.sort_by([("root", "ascending"), ("rank", "ascending"), ("id", "ascending")])
    starts = _group_starts(t["root"])
    group = np.cumsum(starts) - 1
    start_idx = np.flatnonzero(starts)
    kept_ids = t["id"].take(pa.array(start_idx))
    cluster = kept_ids.take(pa.array(group))
    old = _np(pc.equal(t["rank"], pa.scalar(OLD_RANK, pa.binary()))).astype(bool)
    out = pa.table({"id": t["id"], "dup_cluster_id": cluster, "dup_kept": pa.array(starts),
                    "kept_old": pa.array(old[start_idx][group])})
    return out.filter(pa.array(~old))


# ---------------------------------------------------------------- URL duplicates
# The same URL fetched more than once (in several WARCs of a run, or in an earlier run): the most
# recent fetch is kept. Keyed by `operators.io.urls.url_key` (scheme, default port, fragment
# ignored). Ties on the date go to an earlier run's document (it is published), then to the keep
# rule. A losing document of this run is dropped as `duplicate_url` naming the winner in
# `dup_cluster_id`; a losing document of an earlier run is recorded as superseded in the index
# (`_index/superseded`): readers of the corpus leave it out, later runs no longer match against it.
# Only documents selection kept take part: a newer fetch that failed selection (a 404, a thin
# page) does not replace a good older one.

URL_VIEWS = pa.schema([pa.field("k", pa.string()), pa.field("id", pa.string()), pa.field("date", pa.int64()),
                       pa.field("rank", pa.binary()), pa.field("old", pa.bool_())])
URL_LOSERS = pa.schema([pa.field("id", pa.string()), pa.field("winner", pa.string()), pa.field("old", pa.bool_())])


def url_views(docs: pa.Table) -> pa.Table:
    """(url key, id, date, rank, old=false) of this run's documents selection kept (documents, or
    key rows (operators/dedup/minhash.KEYS), whose URL key is computed already)."""
    from operators.io.urls import url_key
    if "drop_reason" in docs.column_names:
        docs = docs.filter(pc.is_null(docs["drop_reason"]))
    ranks = rank_columns(docs)
    if "url_key" in docs.column_names:
        keys = docs["url_key"]
    else:
        keys = pa.array([url_key(u) for u in docs["url"].to_pylist()], pa.string())
    date = pc.if_else(pc.equal(ranks["date"], int(DATE_NULL)), pa.scalar(None, pa.int64()), ranks["date"])
    t = pa.table({"k": keys, "id": ranks["id"], "date": date, "rank": pack_rank(ranks),
                  "old": pa.array(np.zeros(docs.num_rows, bool))}, schema=URL_VIEWS)
    return t.filter(pc.is_valid(t["k"]))


def index_url_views(index_docs: pa.Table) -> pa.Table:
    """The same rows for earlier runs' documents (the index's `docs` table)."""
    n = index_docs.num_rows
    t = pa.table({"k": index_docs["url_key"], "id": index_docs["id"], "date": index_docs["warc_date"],
                  "rank": pa.array([OLD_RANK] * n, pa.binary()), "old": pa.array(np.ones(n, bool))},
                 schema=URL_VIEWS)
    return t.filter(pc.is_valid(t["k"]))


def url_losers(block: pa.Table, stats: Stats | None = None) -> pa.Table:
    """A block holding whole URL keys -> (id, winner, old) of every fetch that is not its URL's
    most recent one (nulls dates oldest; ties: earlier run, then the keep rule, then id)."""
    if block.num_rows == 0:
        return URL_LOSERS.empty_table()
    newest_first = pc.fill_null(pc.negate(block["date"]), np.iinfo(np.int64).max)
    t = block.append_column("_d", newest_first).append_column("_new", pc.invert(block["old"]))
    t = t.sort_by([("k", "ascending"), ("_d", "ascending"), ("_new", "ascending"), ("rank", "ascending"),
                   ("id", "ascending")])
    starts = _group_starts(t["k"])
    group = np.cumsum(starts) - 1
    winners = t["id"].take(pa.array(np.flatnonzero(starts))).take(pa.array(group))
    lose = pa.array(~starts)
    out = pa.table({"id": t["id"].filter(lose), "winner": winners.filter(lose), "old": t["old"].filter(lose)},
                   schema=URL_LOSERS)
    if stats is not None:
        old = _np(out["old"]).astype(bool)
        stats.incr("urls", int(starts.sum()))
        stats.incr("duplicate_url", int((~old).sum()))
        stats.incr("superseded", int(old.sum()))
        stats.incr("same_document_as_earlier_run", int(pc.sum(pc.equal(out["id"], out["winner"])).as_py() or 0))
    return out


# ---------------------------------------------------------------- rows for the persistent index

def index_doc_rows(docs: pa.Table, config: MinHashConfig) -> pa.Table:
    """The dedup index's `docs` rows (operators/dedup/index.DOCS) of the documents a run keeps
    (`drop_reason` null): URL key, date, rank fields, exact and band keys, and the signature
    (recomputed from the text: 4 bytes x num_perm) that later runs verify their pairs against."""
    from operators.dedup.index import DOCS
    from operators.dedup.minhash import document_text, signatures
    from operators.io.urls import url_key
    if "drop_reason" in docs.column_names:
        docs = docs.filter(pc.is_null(docs["drop_reason"]))
    n = docs.num_rows
    if n == 0:
        return DOCS.empty_table()
    ranks = rank_columns(docs)
    date = pc.if_else(pc.equal(ranks["date"], int(DATE_NULL)), pa.scalar(None, pa.int64()), ranks["date"])
    bands = docs["minhash_bands"].combine_chunks()
    sig = signature_bytes(signatures([document_text(t) for t in docs["texts"].to_pylist()], config))
    sig = pc.if_else(pc.is_valid(bands), sig, pa.scalar(None, pa.binary()))
    return pa.table({"id": ranks["id"], "url_key": pa.array([url_key(u) for u in docs["url"].to_pylist()], pa.string()),
                     "warc_date": date, "text_chars": ranks["text_chars"], "num_images": ranks["num_images"],
                     "text_hash": docs["text_hash"].cast(pa.string()), "minhash_bands": bands, "signature": sig},
                    schema=DOCS)
