"""Verification of candidate pairs: the V1/V2 stages that put both documents' shingle sets next to
each band-collision pair and keep it as an edge only when its Jaccard similarity reaches the
threshold (exact on the shingle hashes within a run, the signature estimate against the index).
Block functions, as the distributed path (flows/ray_ops.py) runs them per partition; one task
calls `attach` and `verify` on the whole unit (operators/dedup/unit.py).

Design and measurements: docs/dedup-clusters.md.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from operators.dedup.clusters import _np
from operators.dedup.encoding import _u32_bytes
from operators.dedup.minhash import MinHashConfig
from operators.stats import Stats


# Band collisions are candidates, not duplicates: at the default 20 x 8 about 40% of the
# candidate pairs of a near-duplicate-rich corpus are below J = 0.8 (bench/dedup_benchmark.md).
# Two keyed stages put both documents' shingle sets next to each pair, then the pair is kept as
# an edge only when its Jaccard similarity reaches the threshold:
#   V1  by src: pair rows (k=src, v=dst) meet document rows (k=id); duplicate pairs (the same
#       pair from several bands) collapse; the src document's signature and shingle set ride on
#       the pair, which is re-keyed by dst;
#   V2  by dst: the pair meets the dst document: J is computed, the edge kept or counted away.
# Document rows carry the sorted distinct 32-bit shingle hashes (4 bytes per shingle, less than
# the text) and the MinHash signature (4 bytes per permutation). J is exact (on the shingle
# hashes) when both documents are of this run; a document of an earlier run (the index) has only
# its signature, so its pairs are judged by the signature estimate.

VERIFY = pa.schema([pa.field("k", pa.string()), pa.field("v", pa.string()), pa.field("ok", pa.bool_()),
                    pa.field("sig", pa.binary()), pa.field("sh", pa.binary()), pa.field("tag", pa.int8())])
EDGES = pa.schema([pa.field("src", pa.string()), pa.field("dst", pa.string())])


def candidate_rows(cands: pa.Table) -> pa.Table:
    """Candidate pairs as V1 query rows keyed by src."""
    n = cands.num_rows
    return pa.table({"k": cands["src"], "v": cands["dst"], "ok": cands["verified"],
                     "sig": pa.nulls(n, pa.binary()), "sh": pa.nulls(n, pa.binary()),
                     "tag": pa.array(np.zeros(n, np.int8))}, schema=VERIFY)


def document_rows(docs: pa.Table, config: MinHashConfig) -> pa.Table:
    """V1/V2 map rows for this run's documents that take part (text, keys, not dropped): the
    signature and the sorted distinct shingle hashes of each (computed from `texts`, or taken
    from the `signature` and `shingles` columns of key rows)."""
    from operators.dedup.minhash import distinct_hashes, document_text, hashed_batch, signatures_from_hashes
    take = pc.fill_null(pc.greater(docs["text_chars"], 0), False)
    if "drop_reason" in docs.column_names:
        take = pc.and_(take, pc.is_null(docs["drop_reason"]))
    if "minhash_bands" in docs.column_names:
        take = pc.and_(take, pc.is_valid(docs["minhash_bands"]))
    if not pc.all(take).as_py():   # (a filter copies every column, the shingle sets too)
        docs = docs.filter(take)
    n = docs.num_rows
    if n == 0:
        return VERIFY.empty_table()
    if "shingles" in docs.column_names and "signature" in docs.column_names:   # key rows (minhash.KEYS)
        return pa.table({"k": docs["id"].cast(pa.string()), "v": pa.nulls(n, pa.string()),
                         "ok": pa.nulls(n, pa.bool_()), "sig": docs["signature"], "sh": docs["shingles"],
                         "tag": pa.array(np.ones(n, np.int8))}, schema=VERIFY)
    h32, counts = hashed_batch([document_text(t) for t in docs["texts"].to_pylist()], config)
    sigs = signatures_from_hashes(h32, counts, config).astype(np.uint32)
    uniq, lens = distinct_hashes(h32, counts)
    sh = _u32_bytes(uniq, n, np.concatenate([[0], np.cumsum(lens)]))
    sig = _u32_bytes(sigs.reshape(-1), n, np.arange(n + 1) * config.num_perm)
    return pa.table({"k": docs["id"].cast(pa.string()), "v": pa.nulls(n, pa.string()),
                     "ok": pa.nulls(n, pa.bool_()), "sig": sig, "sh": sh,
                     "tag": pa.array(np.ones(n, np.int8))}, schema=VERIFY)


def index_rows(index_docs: pa.Table) -> pa.Table:
    """V1/V2 map rows for earlier runs' documents: their signature only."""
    n = index_docs.num_rows
    return pa.table({"k": index_docs["id"], "v": pa.nulls(n, pa.string()), "ok": pa.nulls(n, pa.bool_()),
                     "sig": index_docs["signature"], "sh": pa.nulls(n, pa.binary()),
                     "tag": pa.array(np.ones(n, np.int8))}, schema=VERIFY)


def _lookup(block: pa.Table) -> tuple[pa.Table, pa.Table]:
    """The block's query rows (tag 0) and map rows (tag 1)."""
    return block.filter(pc.equal(block["tag"], 0)), block.filter(pc.equal(block["tag"], 1))


def _map_index(q: pa.Table, m: pa.Table) -> pa.Array:
    """For each query row the index of its key's map row (or null)."""
    return pc.index_in(q["k"], value_set=m["k"].combine_chunks())


class _Values:
    """Zero-copy access to the values of a binary column (chunked or not) by row: `get(i)` is a
    view into the column's data buffer, or None for a null (a unit's shingle sets are tens of MB;
    nothing of them is copied to look at two)."""

    def __init__(self, column):
        chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
        self.parts = []
        starts = []
        row = 0
        for c in chunks:
            if c.type != pa.binary():
                c = c.cast(pa.binary())
            _, offs, data = c.buffers()
            offsets = np.frombuffer(offs, np.int32)[c.offset:c.offset + len(c) + 1] if offs is not None \
                else np.zeros(len(c) + 1, np.int32)
            values = np.frombuffer(data, np.uint8) if data is not None else np.zeros(0, np.uint8)
            valid = _np(pc.is_valid(c)).astype(bool)
            self.parts.append((offsets, values, valid))
            starts.append(row)
            row += len(c)
        self.starts = np.asarray(starts, np.int64)

    def get(self, i: int):
        k = int(np.searchsorted(self.starts, i, side="right")) - 1
        offsets, values, valid = self.parts[k]
        j = i - int(self.starts[k])
        if not valid[j]:
            return None
        return values[offsets[j]:offsets[j + 1]]


def attach_src(block: pa.Table) -> pa.Table:
    """V1 (a block holding whole keys): distinct pairs, each with its src document's signature
    and shingles (unless already verified), re-keyed by dst."""
    return attach(*_lookup(block))


def attach(q: pa.Table, m: pa.Table, carry: bool = True) -> pa.Table:
    """V1 on the pair rows `q` and the document rows `m` of the same keys (`attach_src`'s
    block apart, as one task has them). `carry=False`: the pairs do not carry the src document's
    signature and shingles (one task passes `m` to `verify` as `src` instead of copying them)."""
    if q.num_rows == 0:
        return VERIFY.empty_table()
    q = q.group_by(["k", "v"]).aggregate([("ok", "any")]).rename_columns(["k", "v", "ok"])
    if not carry:
        n = q.num_rows
        return pa.table({"k": q["v"], "v": q["k"], "ok": q["ok"], "sig": pa.nulls(n, pa.binary()),
                         "sh": pa.nulls(n, pa.binary()), "tag": pa.array(np.zeros(n, np.int8))}, schema=VERIFY)
    idx = _map_index(q, m)
    need = pc.and_(pc.invert(q["ok"]), pc.is_valid(idx))
    at = pc.if_else(need, idx, pa.scalar(None, idx.type))   # null: no copy for a verified pair
    sig = m["sig"].take(at)
    sh = m["sh"].take(at)
    return pa.table({"k": q["v"], "v": q["k"], "ok": q["ok"], "sig": sig, "sh": sh,
                     "tag": pa.array(np.zeros(q.num_rows, np.int8))}, schema=VERIFY)


def jaccard(sh_a, sh_b) -> float:
    """Exact Jaccard of two sorted distinct uint32 arrays given as bytes (or byte views)."""
    a = np.frombuffer(sh_a, "<u4")
    b = np.frombuffer(sh_b, "<u4")
    if not len(a) and not len(b):
        return 1.0
    inter = len(np.intersect1d(a, b, assume_unique=True))
    return inter / (len(a) + len(b) - inter)


def signature_jaccard(sig_a, sig_b) -> float:
    """MinHash estimate of J: the share of equal signature values."""
    a = np.frombuffer(sig_a, "<u4")
    b = np.frombuffer(sig_b, "<u4")
    return float((a == b).mean()) if len(a) == len(b) and len(a) else 0.0


def verify_pairs(block: pa.Table, threshold: float, stats: Stats | None = None,
                 estimate_threshold: float | None = None) -> pa.Table:
    """V2 (a block holding whole dst keys): the edges (src < dst) whose exact Jaccard reaches
    `threshold`, or, for a pair with an earlier run's document, whose signature estimate reaches
    `estimate_threshold` (default: `threshold`); exact-text pairs pass unchecked."""
    return verify(*_lookup(block), threshold, stats, estimate_threshold)


def verify(q: pa.Table, m: pa.Table, threshold: float, stats: Stats | None = None,
           estimate_threshold: float | None = None, src: pa.Table | None = None) -> pa.Table:
    """V2 on the pair rows `q` (from V1) and the document rows `m` (`verify_pairs`' block apart).
    `src`: document rows to look the src documents up in (by the pair's `v`), for pairs that
    do not carry them (`attach(..., carry=False)`)."""
    if estimate_threshold is None:
        estimate_threshold = threshold
    if q.num_rows == 0:
        return EDGES.empty_table()
    ok = _np(q["ok"]).astype(bool)
    keep = ok.copy()
    todo = np.flatnonzero(~ok)
    idx_np = _np(pc.fill_null(_map_index(q, m), -1)).astype(np.int64)
    m_sig, m_sh = _Values(m["sig"]), _Values(m["sh"])
    if src is None:   # the pair rows carry their src document's values
        src_sig, src_sh, src_at = _Values(q["sig"]), _Values(q["sh"]), np.arange(q.num_rows)
    else:
        src_sig, src_sh = (m_sig, m_sh) if src is m else (_Values(src["sig"]), _Values(src["sh"]))
        src_at = _np(pc.fill_null(pc.index_in(q["v"], value_set=src["k"].combine_chunks()), -1)).astype(np.int64)
    exact = estimated = rejected = missing = 0
    for i in todo.tolist():
        j, s_i = int(idx_np[i]), int(src_at[i])
        a_sig = src_sig.get(s_i) if s_i >= 0 else None
        if j < 0 or a_sig is None:
            missing += 1
            continue
        a_sh, b_sh = src_sh.get(s_i), m_sh.get(j)
        if a_sh is not None and b_sh is not None:
            exact += 1
            sim, bar = jaccard(a_sh, b_sh), threshold
        else:
            estimated += 1
            sim, bar = signature_jaccard(a_sig, m_sig.get(j)), estimate_threshold
        if sim >= bar:
            keep[i] = True
        else:
            rejected += 1
    if stats is not None:
        stats.incr("candidate_pairs", q.num_rows)
        stats.incr("pairs_exact_text", int(ok.sum()))
        stats.incr("pairs_checked_exact", exact)
        stats.incr("pairs_checked_estimate", estimated)
        stats.incr("pairs_below_threshold", rejected)
        stats.incr("pairs_without_document", missing)
        stats.incr("edges", int(keep.sum()))
    kept = q.filter(pa.array(keep))
    # rows are keyed by dst and carry src in v; src < dst by construction
    return pa.table({"src": kept["v"], "dst": kept["k"]}, schema=EDGES)
