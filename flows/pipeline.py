"""One commit unit on Ray core tasks: the flow at the speed of its operators.

    process_span (a task per span of a WARC, `ray.bytes_per_task` bytes): reads its span (a
        byte range; the first gzip member in it, up to the first record start after it: see
        operators.io.warc.Span), then extract, language, clean, signals, select, dedup keys; stages
        the selection's drops and the kept documents (one file each); returns its counts, the
        span's read outcome and its narrow KEYS table (no text). The driver checks that a WARC's
        spans join end to start (`broken_link`) and reads again one that does not.
    dedup_unit (one task): URL, exact and near duplicates and repeated images on the unit's key
        tables and what they can match in the index (operators/dedup/unit.py,
        operators/dedup/probe.py), with the image references of the documents it keeps; or the
        distributed stages for a unit above dedup.single_task_max_documents. `warm_tail` imports
        its modules (and the image stage's) on a worker the last spans leave idle
    image stage (narrow rows only): references of the documents still kept -> resolved,
        decoded, scored (flows/image_tasks.py; GPU actors: flows/ray_ops.image_results); a
        winner the image rules drop is left out and dedup runs again (`MAX_ROUNDS`)
    finalize_part (a task per group of consecutive spans, `writer.part_rows` documents): the
        outcome and image results written into the kept documents, which go to one `documents/`
        part and one `rejected/` part (with the selection's drops), plus their index rows; then
        the unit's probe part for later units
    units overlap: the next unit's streaming pass runs while this one finishes (flows/crawl.py)

Documents are read once, by the task that processes them, and written twice (staged, final);
what crosses between tasks is key tables and outcomes, never records. Every task returns its counts with its
result and the driver merges them, so a task Ray retries counts once (its files have fixed
names and are rewritten). The ledger gets each WARC's outcome as a `ReadResult`.
"""
from __future__ import annotations

import gc
import logging
import posixpath
import time
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import ray

from flows.staged import cached, read_staged, write_staged
from operators.io.read import ReadResult
from operators.stats import Counts, Stats

log = logging.getLogger("interleaf")

KEPT = "kept"               # staging folder of a unit's kept documents before the final pass
SELECTED_OUT = "selected_out"  # staging folder of the selection's drops, joined into rejected/ by the final pass
WARC_IMAGES = "warc_images"  # staging folder of the image records read from the unit's WARCs


@dataclass
class UnitRun:
    """The driver's view of one unit after the final pass."""
    stats: list[dict]
    staged: list[str]
    per_warc: dict[str, list[int]]
    reads: dict[str, ReadResult]
    phases: list[dict]
    dedup_counts: dict | None = None
    cpus: int = 0          # CPUs of the cluster during the unit (for the CPU share per phase)


# ---------------------------------------------------------------- counting

def _add_per_warc(into: dict[str, list[int]], more: dict[str, list[int]]) -> None:
    for path, (kept, rejected) in more.items():
        c = into.setdefault(path, [0, 0])
        c[0] += kept
        c[1] += rejected


def count_by_warc(table: pa.Table, select_enabled: bool) -> dict[str, list[int]]:
    """[documents, rejected] rows per provenance.warc_path of a table about to be written."""
    out: dict[str, list[int]] = {}
    if table.num_rows == 0:
        return out
    paths = pc.struct_field(table["provenance"], "warc_path")
    dropped = pc.is_valid(table["drop_reason"]) if select_enabled else pa.array([False] * table.num_rows)
    t = pa.table({"p": paths, "r": pc.cast(dropped, pa.int64())}).group_by("p").aggregate(
        [("r", "count"), ("r", "sum")])
    for p, n, r in zip(t["p"].to_pylist(), t["r_count"].to_pylist(), t["r_sum"].to_pylist()):
        out[p] = [n - r, r]
    return out


def chain(cfg, run_id: str) -> list:
    """The per-document operators of `cfg`, built once per worker process (models load once, for
    every unit of a run and every run with the same config), set to `run_id`, counts at zero."""
    from operators.text.clean import CleanBlocks
    from operators.text.documents import ExtractDocuments, RunInfo
    from operators.text.langid import IdentifyLanguage
    from operators.text.pii import RedactPII
    from operators.text.quality import QualitySignals
    from operators.text.select import Select
    info = RunInfo(run_id=run_id, config_hash=cfg.config_hash())
    ops = cached(("chain", info.config_hash), lambda: [
        ExtractDocuments(cfg.extract, info), IdentifyLanguage(cfg.langid), CleanBlocks(cfg.clean, cfg.quality),
        RedactPII(cfg.pii), QualitySignals(cfg.quality), Select(cfg.select)])
    ops[0].run = info
    for op in ops:
        op.stats.drain()
    return ops


# ---------------------------------------------------------------- the streaming pass

def read_span(path: str, index: int, k: int, span, cfg, run_id: str) -> tuple[list[dict], dict]:
    """The HTML records of one span of a WARC (operators.io.warc.Span) as RECORD rows (dicts: the
    extractor takes them as they are; an Arrow table of their HTML would be built only to be
    read back), and what reading it gave: counts, where it began and ended (`first`, `next`,
    `whole`), the file of its image records (images.from_warc: the same pass, staged as one
    Parquet file)."""
    from operators.io.read import IMAGE_RECORD
    from operators.io.warc import IMAGE_MARK, iter_records
    stats = Stats("read")
    with_images = cfg.images.enabled and cfg.images.from_warc
    buf: list[dict] = []
    images: list[dict] = []
    for rec in iter_records(path, cfg.reader, stats, with_images=with_images, span=span):
        if rec.pop(IMAGE_MARK, False):
            images.append(rec)
        else:
            buf.append(rec)
    stats.incr("out", len(buf))
    image_file = None
    if images:
        stats.incr("image_records", len(images))
        image_file = write_staged(cfg.output, run_id, WARC_IMAGES, f"w{index:06d}-{k:05d}",
                                   pa.Table.from_pylist(images, schema=IMAGE_RECORD))
    return buf, {
        "records": len(buf), "stats": stats.to_dict(), "image_file": image_file,
        "first": span.first, "next": span.next, "whole": span.whole}


def process_records(records: list[dict], part: str, cfg, run_id: str) -> tuple[dict, pa.Table | None]:
    """The per-document operators over RECORD rows (a span's, in `process_span_records`);
    the selection's drops and the kept documents staged (one file each) for the final pass.
    Returns (result, KEYS table or None without dedup)."""
    from operators.dedup.minhash import KEYS, dedup_columns
    from operators.io.schema import DOCUMENT, validate_documents
    from operators.text.quality import forget_block_words
    cpu0 = time.process_time()
    ops = chain(cfg, run_id)
    minhash = Stats("minhash")
    sel = cfg.select.enabled
    rejected_parts: list[pa.Table] = []
    kept_parts: list[pa.Table] = []
    keys: list[pa.Table] = []
    per_warc: dict[str, list[int]] = {}
    step = cfg.ray.records_per_batch
    extract, rest = ops[0], ops[1:]
    for lo in range(0, len(records), step):
        t = extract.from_records(records[lo:lo + step])
        for op in rest:
            t = op(t)
        if cfg.dedup.enabled:
            t, k = dedup_columns(t, cfg.dedup, minhash, keys=True)
            keys.append(k)
        t = validate_documents(t)
        if sel:
            dropped = pc.is_valid(t["drop_reason"])
            rejected, t = t.filter(dropped), t.filter(pc.invert(dropped))
            if rejected.num_rows:   # no part in dedup: each is its own cluster
                rejected = rejected.set_column(rejected.schema.get_field_index("dup_cluster_id"), "dup_cluster_id",
                                               rejected["id"])
                rejected_parts.append(rejected)
                _add_per_warc(per_warc, count_by_warc(rejected, True))
        kept_parts.append(t)
    forget_block_words()   # the last batch's words, held by clean for quality and MinHash
    kept = pa.concat_tables(kept_parts) if kept_parts else DOCUMENT.empty_table()
    kept_file = write_staged(cfg.output, run_id, KEPT, part, kept) if kept.num_rows else None
    rejected = pa.concat_tables(rejected_parts) if rejected_parts else DOCUMENT.empty_table()
    rejected_file = None
    if rejected.num_rows and cfg.writer.write_rejected:
        rejected_file = write_staged(cfg.output, run_id, SELECTED_OUT, part, rejected)
    stats = [op.stats.drain() for op in ops] + ([minhash.to_dict()] if cfg.dedup.enabled else [])
    result = {"part": part, "stats": stats, "kept": kept_file, "kept_rows": kept.num_rows,
              "rejected": rejected_file, "rejected_rows": rejected.num_rows,
              "per_warc": per_warc, "cpu_seconds": time.process_time() - cpu0}
    return result, (pa.concat_tables(keys) if keys else KEYS.empty_table()) if cfg.dedup.enabled else None


_SESSIONS: set[tuple] = set()   # Ray sessions whose workers were warmed (warm_chain)


def _fresh_session() -> bool:
    ctx = ray.get_runtime_context()
    key = (ctx.get_job_id(), ctx.get_node_id())
    if key in _SESSIONS:
        return False
    _SESSIONS.clear()
    _SESSIONS.add(key)
    return True


@ray.remote(num_cpus=1)
def warm_chain(cfg, run_id: str) -> None:
    """Build the span task's operators (imports, models) in a worker while the first spans are read."""
    chain(cfg, run_id)


WARM_TAIL_TASKS = 4   # warm_tail tasks in a session's first unit (later units find the modules imported)


@ray.remote(num_cpus=1)
def warm_tail(images: bool) -> None:
    """Import what the unit's tasks after the streaming pass run (dedup, the image stage, the
    final pass) in a worker that has no span left to process, so that the single dedup task
    that follows does not pay for its imports while the other CPUs wait."""
    import operators.dedup.probe  # noqa: F401
    import operators.dedup.unit  # noqa: F401
    if images:
        import flows.image_tasks  # noqa: F401
        import operators.images.stage  # noqa: F401


def process_span_records(path: str, index: int, k: int, start: int, end: int | None, exact: bool, cfg,
                         run_id: str) -> tuple[dict, pa.Table | None]:
    """The body of the `process_span` task: read one span of a WARC and run the per-document
    operators over its records (`process_records`); the result carries the span's read outcome
    under "read"."""
    from operators.io.warc import Span
    cpu0 = time.process_time()
    records, read = read_span(path, index, k, Span(start, end, exact), cfg, run_id)
    result, keys = process_records(records, f"w{index:06d}-{k:05d}", cfg, run_id)
    result["read"] = read
    result["cpu_seconds"] = time.process_time() - cpu0
    return result, keys


@ray.remote(num_cpus=1, num_returns=2)
def process_span(path, index, k, start, end, exact, cfg, run_id):
    return process_span_records(path, index, k, start, end, exact, cfg, run_id)


def span_plan(path: str, cfg) -> list[tuple[int, int | None]]:
    """[start, end) byte ranges of about `ray.bytes_per_task` covering the WARC (one range when it
    is small or its size cannot be had: its reading task then reports why)."""
    from operators.io.storage import open_input
    step = cfg.ray.bytes_per_task
    try:
        f = open_input(path, cfg.reader.io)
        try:
            size = f.size()
        finally:
            f.close()
    except Exception:  # noqa: BLE001 - unreadable: the span at 0 records it
        return [(0, None)]
    n = max(1, round(size / step))
    if n == 1:
        return [(0, None)]
    cuts = [size * i // n for i in range(1, n)]
    return list(zip([0] + cuts, cuts + [None]))


def merge_reads(path: str, reads: list[dict]) -> ReadResult:
    """One WARC's ReadResult from its spans' read outcomes (in span order)."""
    from operators.io.warc import failed_kinds
    stats = Stats("read")
    stats.incr("files")
    for r in reads:
        stats.merge(r["stats"])
    kinds = sorted(stats.error_kinds())
    if failed_kinds(kinds):
        stats.incr("files_failed")
    return ReadResult(path, sum(r["records"] for r in reads), kinds, stats.to_dict(),
                      [r["image_file"] for r in reads if r["image_file"]])


def broken_link(reads: list[dict]) -> int | None:
    """The first span (index) whose start does not join its predecessor's end, or None. A span
    that is not exact begins at the first gzip member after its start that holds a WARC record;
    its predecessor read up to the first record start at or after that point: the two agree
    unless a member header was found inside a record (a .warc.gz stored in a WARC), which the
    span read again from its predecessor's end fixes."""
    for k in range(1, len(reads)):
        prev, cur = reads[k - 1], reads[k]
        if prev["next"] is None:   # the file could not be read: nothing to join
            return None
        start = cur["first"] if cur["first"] is not None else cur["next"]
        if not prev["whole"] and start != prev["next"]:
            return k
    return None


def streaming_pass(cfg, cfg_ref, paths: list[str], run_id: str, process=None
                   ) -> tuple[list[dict], list, dict[str, ReadResult]]:
    """Read every WARC of the unit once, in spans of about `ray.bytes_per_task` bytes, each read
    and processed by one task (`process_span`: no reader process, no records through the object
    store), at most 2 per CPU in flight (`reader.concurrency`, when set, caps them: each is one
    reading stream). A WARC's spans must join end to start (`broken_link`); a span that does not
    is read again from its predecessor's end. Returns the span results that hold documents,
    their key refs (in the same order) and each WARC's ReadResult. `process`: the remote
    function for a span (tests wrap `process_span`)."""
    process = process or process_span
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    max_in_flight = 2 * cpus + 2
    if cfg.reader.concurrency:
        max_in_flight = min(max_in_flight, cfg.reader.concurrency)
    # a new session's workers import the operators and load their models while the first
    # spans are submitted, not inside the first span's clock
    warming = [warm_chain.remote(cfg_ref, run_id) for _ in range(cpus)] if _fresh_session() else []
    warming_tail: list = []
    plans: dict[int, list] = {}
    done: dict[int, dict[int, tuple]] = {}
    todo: list[tuple] = []            # (index, k, start, end, exact), next first
    in_flight: dict[Any, tuple] = {}  # result ref -> (keys ref, index, k)
    results: list[dict] = []
    key_refs: list = []
    reads: dict[str, ReadResult] = {}
    redone: dict[int, int] = {}
    pending = list(enumerate(paths))
    pending.reverse()

    def refill() -> None:
        while not todo and pending:
            index, path = pending.pop()
            plans[index] = span_plan(path, cfg)
            done[index] = {}
            todo.extend((index, k, lo, hi, False) for k, (lo, hi) in reversed(list(enumerate(plans[index]))))

    refill()
    while todo or in_flight or pending:
        while len(in_flight) < max_in_flight and (todo or pending):
            refill()
            index, k, lo, hi, exact = todo.pop()
            res, keys = process.remote(paths[index], index, k, lo, hi, exact, cfg_ref, run_id)
            in_flight[res] = (keys, index, k)
        if warming and not todo and not pending and not warming_tail:   # the last spans are in flight
            warming_tail = [warm_tail.remote(cfg.images.enabled) for _ in range(min(cpus, WARM_TAIL_TASKS))]
        ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=5.0)
        for w in ready:
            keys, index, k = in_flight.pop(w)
            done[index][k] = (ray.get(w), keys)
            if len(done[index]) < len(plans[index]):
                continue
            spans = [done[index][j][0]["read"] for j in range(len(plans[index]))]
            bad = broken_link(spans)
            if bad is not None and redone.get(index, 0) < len(plans[index]):
                redone[index] = redone.get(index, 0) + 1
                log.warning("%s: span %d did not join span %d (a gzip member header inside a record?); "
                            "reading it again from byte %s", paths[index], bad, bad - 1, spans[bad - 1]["next"])
                del done[index][bad]
                todo.append((index, bad, spans[bad - 1]["next"], plans[index][bad][1], True))
                continue
            for j in range(len(plans[index])):
                result, keys_ref = done[index][j]
                if result["kept_rows"] or result["rejected_rows"] or result["read"]["records"]:
                    results.append(result)
                    key_refs.append(keys_ref)
            reads[paths[index]] = merge_reads(paths[index], spans)
            del done[index]
    in_flight.clear()
    del warming, warming_tail
    gc.collect()   # refs caught in cycles are freed now, while the session is alive
    return results, key_refs, reads


# ---------------------------------------------------------------- deduplication

@ray.remote(num_cpus=1)
def dedup_unit(cfg, excluded: pa.Array, *keys: pa.Table):
    """The unit's outcome in one task, leaving out the `excluded` documents (winners of an
    earlier round that the image rules drop), and with images on the image references of the
    documents it kept (`image_refs`: no second task and round trip for them)."""
    from operators.dedup.probe import unit_index
    from operators.dedup.unit import deduplicate
    cpu0 = time.process_time()
    table = _keys_less(keys, excluded)
    index_docs = index_images = None
    read: dict = {}
    if cfg.dedup.index:
        index_docs, index_images, read = unit_index(cfg.output, table)
    images = Stats("images")
    out = deduplicate(table, cfg.dedup, index_docs, index_images, images)
    out.counts.update(read)
    refs = image_refs(out, excluded, table) if cfg.images.enabled else None
    return out, images.to_dict(), time.process_time() - cpu0, refs


def dedup_distributed(cfg, key_refs: list, excluded: pa.Array) -> tuple[Any, dict]:
    """The same outcome by the distributed stages (flows/ray_ops.duplicate_clusters) for a unit
    too large for one task; URL duplicates and repeated images (narrow rows) in one task each."""
    from flows.ray_ops import duplicate_clusters, read_index
    from operators.dedup import index as di
    from operators.dedup.unit import OUTCOME
    pre = ray.get(_url_pass.remote(cfg, excluded, *key_refs))
    ds = ray.data.from_arrow_refs(key_refs)
    losers = set(pre.docs["id"].to_pylist()) | set(excluded.to_pylist())
    if losers:
        ds = ds.filter(lambda r, ids=losers: r["id"] not in ids)
    index_docs = None
    if cfg.dedup.index:
        index_docs = read_index(cfg.output, "docs")
        gone = set(pre.superseded["id"].to_pylist())
        gone |= set(di.read_table(cfg.output, "superseded", columns=["id"])["id"].to_pylist())
        if index_docs is not None and gone:
            index_docs = index_docs.filter(lambda r, ids=gone: r["id"] not in ids)
    parts = partitions(cfg)
    assigned, counts = duplicate_clusters(ds.materialize(), max_bucket=cfg.dedup.max_bucket, num_partitions=parts,
                                          verify=cfg.dedup, threshold=cfg.dedup.threshold,
                                          index_docs=index_docs, index_threshold=cfg.dedup.index_threshold)
    rows = [pre.docs]
    t = _gather(assigned)
    if t is not None:
        rows.append(pa.table({"id": t["id"], "drop_reason": pc.if_else(
            t["dup_kept"], pa.scalar(None, pa.string()), pa.scalar("duplicate")),
            "dup_cluster_id": t["dup_cluster_id"]}, schema=OUTCOME))
    pre.docs = pa.concat_tables(rows)
    image_stats = {"name": "images", "counters": {}, "errors": []}
    if cfg.dedup.max_image_repeats is not None:
        dropped = pre.docs.filter(pc.is_valid(pre.docs["drop_reason"]))["id"]
        dropped = pa.concat_arrays([dropped.combine_chunks(), excluded])
        pre.repeated, pre.image_counts, image_stats = ray.get(_repeated_pass.remote(cfg, dropped, *key_refs))
    pre.counts = {**counts, "duplicate_url": pre.counts["duplicate_url"], "superseded": pre.counts["superseded"]}
    return pre, image_stats


def _keys_less(keys: tuple, ids: pa.Array | None) -> pa.Table:
    """The unit's key tables as one, less the rows whose id is in `ids`."""
    from operators.dedup.minhash import KEYS
    table = pa.concat_tables(keys) if keys else KEYS.empty_table()
    if ids is not None and len(ids):
        table = table.filter(pc.invert(pc.is_in(table["id"], value_set=ids)))
    return table


def partitions(cfg) -> int:
    """Hash partitions of the unit's keyed stages (flows/ray_ops.shuffle_partitions)."""
    from flows.ray_ops import shuffle_partitions
    return shuffle_partitions(cfg.dedup.num_partitions)


def _gather(ds) -> pa.Table | None:
    """A (small, narrow) dataset's rows on the driver, None when it has none (blocks without
    rows may come without columns)."""
    tables = [t for t in ray.get(list(ds.to_arrow_refs())) if t.num_rows]
    return pa.concat_tables(tables) if tables else None


@ray.remote(num_cpus=1)
def _url_pass(cfg, excluded: pa.Array, *keys: pa.Table):
    """URL duplicates only (the distributed path's first step): no band keys, no text hashes."""
    import dataclasses

    from operators.dedup.probe import unit_index
    from operators.dedup.unit import deduplicate
    table = _keys_less(keys, excluded)
    index_docs = unit_index(cfg.output, table)[0] if cfg.dedup.index else None
    table = table.set_column(table.schema.get_field_index("minhash_bands"), "minhash_bands",
                             pa.nulls(table.num_rows, table.schema.field("minhash_bands").type))
    table = table.set_column(table.schema.get_field_index("text_hash"), "text_hash",
                             pa.nulls(table.num_rows, pa.string()))
    return deduplicate(table, dataclasses.replace(cfg.dedup, max_image_repeats=None), index_docs, None)


@ray.remote(num_cpus=1)
def _repeated_pass(cfg, dropped: pa.Array, *keys: pa.Table):
    from operators.dedup.probe import unit_index
    from operators.dedup.unit import repeated_images
    table = _keys_less(keys, dropped)
    index_images = unit_index(cfg.output, table)[1] if cfg.dedup.index else None
    stats = Stats("images")
    rep, counts = repeated_images(table, index_images, cfg.dedup.max_image_repeats, stats)
    return rep, counts, stats.to_dict()


# ---------------------------------------------------------------- the final pass

def _staged_batches(output: str, rels: list[str], rows: int):
    """The staged parts' documents in batches of at most `rows` (a task's memory stays bounded
    whatever the size of its group of parts)."""
    from operators.io.storage import resolve
    fs, root = resolve(output)
    for rel in rels:
        with fs.open_input_file(posixpath.join(root.rstrip("/"), rel)) as f:
            for batch in pq.ParquetFile(f).iter_batches(batch_size=rows):
                yield pa.Table.from_batches([batch])


def finalize_records(kept: list[str], selected_out: list[str], part: str, keys: pa.Table | None, outcome,
                     image_results: pa.Table | None, cfg, run_id: str) -> dict:
    """The body of `finalize_part`: staged parts of kept documents (`kept`, joined into one
    output part, read in batches of `writer.row_group_rows`) with the unit's outcome and image
    results written in, then `documents/` and `rejected/` parts (with the selection's drops of
    the same chunks, `selected_out`) and their index rows."""
    from operators.dedup.index import DOCS, stage_part
    from operators.dedup.unit import apply_outcome
    from operators.io.writer import PartWriter
    cpu0 = time.process_time()
    sel = cfg.select.enabled
    dup_stats, img_stats = Stats("duplicates"), Stats("images")
    clip = None
    if cfg.images.enabled and cfg.images.clip.enabled:
        from operators.images.stage import ClipDocuments
        clip = cached(("clip", cfg.config_hash()), lambda: ClipDocuments(cfg.images))
        clip.stats.drain()
    writer = PartWriter(cfg.output, run_id, part, cfg.writer, select_enabled=sel)
    per_warc: dict[str, list[int]] = {}
    index_rows: list[pa.Table] = []
    res = image_results if image_results is not None else pa.table({"id": pa.array([], pa.string()),
                                                                     "url": pa.array([], pa.string())})
    repeated: dict[str, set[str]] = {}
    if keys is not None:   # the unit's tables cut to this group's documents once (only they have keys)
        mine = keys["id"]
        outcome_docs = outcome.docs.filter(pc.is_in(outcome.docs["id"], value_set=mine))
        rep = outcome.repeated.filter(pc.is_in(outcome.repeated["id"], value_set=mine))
        for i, u in zip(rep["id"].to_pylist(), rep["url"].to_pylist()):
            repeated.setdefault(i, set()).add(u)
        res = res.filter(pc.is_in(res["id"], value_set=mine))
    for docs in _staged_batches(cfg.output, kept, cfg.writer.row_group_rows):
        ids = docs["id"]
        if keys is not None:
            rows = outcome_docs.filter(pc.is_in(outcome_docs["id"], value_set=ids))
            docs = apply_outcome(docs, rows, repeated, sel, dup_stats, img_stats)
        if cfg.images.enabled:
            from operators.images.stage import apply_results
            docs = apply_results(docs, res.filter(pc.is_in(res["id"], value_set=ids)), cfg.images, img_stats)
            if clip is not None:
                docs = clip(docs)
        writer.write(docs)
        _add_per_warc(per_warc, count_by_warc(docs, sel))
        if keys is not None and cfg.dedup.index:
            final = docs.filter(pc.is_null(docs["drop_reason"]))
            k = keys.filter(pc.is_in(keys["id"], value_set=final["id"].cast(pa.string())))
            if k.num_rows:
                at = pc.index_in(k["id"], value_set=final["id"].cast(pa.string()))
                index_rows.append(pa.table({
                    "id": k["id"], "url_key": k["url_key"], "warc_date": k["warc_date"],
                    "text_chars": final["text_chars"].take(at).cast(pa.int64()),
                    "num_images": final["num_images"].take(at).cast(pa.int64()),
                    "text_hash": k["text_hash"], "minhash_bands": k["minhash_bands"],
                    "signature": k["signature"]}, schema=DOCS))
    for docs in _staged_batches(cfg.output, selected_out, cfg.writer.row_group_rows):
        writer.write(docs)   # the selection's drops of the same chunks (counted per WARC by their chunks)
    staged = writer.close()
    if index_rows:
        path = stage_part(cfg.output, run_id, "docs", part, pa.concat_tables(index_rows))
        staged += [path] if path else []
    stats = [dup_stats.to_dict()] if keys is not None else []
    if clip is not None:
        stats.append(clip.stats.drain())
    if cfg.images.enabled or img_stats.counters:
        stats.append(img_stats.to_dict())
    stats.append(writer.stats.to_dict())
    return {"part": part, "stats": stats, "staged": staged, "per_warc": per_warc,
            "cpu_seconds": time.process_time() - cpu0}


@ray.remote(num_cpus=1)
def finalize_part(kept, selected_out, part, outcome, image_results, cfg, run_id, *keys):
    return finalize_records(kept, selected_out, part, pa.concat_tables(keys) if keys else None, outcome,
                            image_results, cfg, run_id)


MIN_PART_ROWS = 2000   # a small unit's final pass is spread over the CPUs, in parts of at least this many rows


def part_groups(results: list[dict], rows: int, cpus: int = 1) -> list[list[dict]]:
    """Span results in WARC and span order, in groups of consecutive spans (one output part
    each) of about the same number of documents, kept and rejected: enough groups that each gets
    about `rows` at most (a group closes with the span that reaches its share), and at least
    `cpus` groups when each still gets `MIN_PART_ROWS` (so that a small unit's final pass does
    not run on one CPU while the others wait)."""
    chunks = sorted((r for r in results if r["kept"] or r["rejected"]), key=lambda r: r["part"])
    total = sum(r["kept_rows"] + r["rejected_rows"] for r in chunks)
    n_groups = max(-(-total // rows), min(cpus, total // MIN_PART_ROWS), 1)
    target = -(-total // n_groups)
    groups: list[list[dict]] = []
    n = target
    for r in chunks:
        if n >= target:
            groups.append([])
            n = 0
        groups[-1].append(r)
        n += r["kept_rows"] + r["rejected_rows"]
    return groups


# ---------------------------------------------------------------- one unit

class _Phases:
    def __init__(self) -> None:
        self.last = time.time()
        self.rows: list[dict] = []

    def mark(self, name: str, documents: int, cpu: float) -> None:
        now = time.time()
        self.rows.append({"name": name, "seconds": round(now - self.last, 3), "documents": int(documents),
                          "cpu_seconds": round(cpu, 3)})
        self.last = now


@dataclass
class Streamed:
    """A unit after its streaming pass (what `finish_unit` needs)."""
    cfg_ref: Any
    results: list[dict]
    key_refs: list
    reads: dict[str, ReadResult]
    phases: "_Phases"


def stream_unit(cfg, paths: list[str], run_id: str, process=None) -> Streamed:
    """The unit's streaming pass (read → keys); the next unit's can run while this one finishes."""
    phases = _Phases()
    cfg_ref = ray.put(cfg)
    results, key_refs, reads = streaming_pass(cfg, cfg_ref, paths, run_id, process)
    phases.mark("read, extract, language, signals, select, keys",
                sum(r.stats.get("counters", {}).get("out", 0) for r in reads.values()),
                sum(r["cpu_seconds"] for r in results))   # a span task's CPU includes its reading
    return Streamed(cfg_ref, results, key_refs, reads, phases)


def run_unit_flow(cfg, paths: list[str], run_id: str, process=None) -> UnitRun:
    """Run the unit's flow (module docstring) and stage everything its commit moves."""
    return finish_unit(cfg, paths, run_id, stream_unit(cfg, paths, run_id, process))


def finish_unit(cfg, paths: list[str], run_id: str, streamed: Streamed) -> UnitRun:
    """Dedup, images and the final pass of a streamed unit; stages everything its commit moves.
    Reads the dedup index: the previous unit must have committed."""
    from operators.dedup.index import stage_part
    from operators.dedup.unit import Outcome
    counts = Counts()
    cfg_ref, results, key_refs, reads, phases = (streamed.cfg_ref, streamed.results, streamed.key_refs,
                                                 streamed.reads, streamed.phases)
    for p in paths:   # the read counts first, in input order
        if p in reads:
            counts.add([reads[p].stats])
    for r in results:
        counts.add(r["stats"])
    staged: list[str] = []
    per_warc: dict[str, list[int]] = {}
    for r in results:
        _add_per_warc(per_warc, r["per_warc"])
    kept_rows = sum(r["kept_rows"] for r in results)
    phases.last = time.time()   # a unit finishing after the next one's streaming: its phases from here
    outcome = None
    dedup_counts = None
    resolved = Resolved(cfg, reads, run_id, counts)
    if cfg.dedup.enabled and kept_rows:
        # Dedup, then the images of the documents it kept; a cluster's keeper or a URL's newest
        # fetch that the image rules will drop is left out and dedup runs again, so that the next
        # member wins (only documents that end up published win). Rounds: 1 unless that happens.
        excluded = pa.array([], pa.string())
        content_stats = None
        rounds = 0
        dedup_cpu = dedup_wall = 0.0
        while True:
            rounds += 1
            t = time.time()
            if kept_rows <= cfg.dedup.single_task_max_documents:
                outcome, image_stats, cpu, refs = ray.get(dedup_unit.remote(cfg_ref, excluded, *key_refs))
            else:
                outcome, image_stats = dedup_distributed(cfg, key_refs, excluded)
                cpu, refs = 0.0, None
            dedup_cpu += cpu
            dedup_wall += time.time() - t
            if not cfg.images.enabled:
                break
            if refs is None:
                refs = ray.get(_image_refs.remote(outcome, excluded, *key_refs))
            resolved.add(refs)
            if cfg.dedup.max_image_repeats is not None and cfg.dedup.image_content_repeats:
                outcome, content_stats = ray.get(_content_repeats.remote(cfg_ref, outcome, refs, resolved.ref()))
            drops = ray.get(_winners_dropped.remote(cfg_ref, outcome, excluded, resolved.ref(), *key_refs))
            if not len(drops) or rounds >= MAX_ROUNDS:
                break
            excluded = pa.concat_arrays([excluded, drops])
        dedup_counts = {**outcome.counts, "image_rule_rounds": rounds, "winners_dropped_by_image_rules": len(excluded)}
        counts.add([image_stats] + ([content_stats] if content_stats else []))
        if cfg.dedup.index:
            if outcome.superseded.num_rows:
                sup = outcome.superseded.append_column("run_id", pa.array([run_id] * outcome.superseded.num_rows,
                                                                          pa.string()))
                staged += [stage_part(cfg.output, run_id, "superseded", "000000", sup)]
            if cfg.dedup.max_image_repeats is not None and outcome.image_counts.num_rows:
                staged += [stage_part(cfg.output, run_id, "images", "000000", outcome.image_counts)]
        phases.rows.append({"name": "deduplication", "seconds": round(dedup_wall, 3), "documents": kept_rows,
                            "cpu_seconds": round(dedup_cpu, 3)})
        if cfg.images.enabled:
            phases.rows.append({"name": "images", "seconds": round(resolved.wall, 3), "documents": kept_rows,
                                "cpu_seconds": round(resolved.cpu, 3)})
        phases.last = time.time()
    elif cfg.dedup.enabled:
        outcome = Outcome()
    if cfg.images.enabled and kept_rows and not cfg.dedup.enabled:   # the references come from the staged parts
        resolved.add(ray.get(_image_refs_from_parts.remote(cfg, [r["kept"] for r in results if r["kept"]])))
        phases.mark("images", kept_rows, resolved.cpu)
    staged += resolved.staged
    results_ref = resolved.ref() if cfg.images.enabled else None
    outcome_ref = ray.put(outcome) if outcome is not None else None
    keys_by_part = {r["part"]: k for r, k in zip(results, key_refs)}
    final = [finalize_part.remote([r["kept"] for r in group if r["kept"]], [r["rejected"] for r in group if r["rejected"]],
                                  group[0]["part"], outcome_ref, results_ref, cfg_ref, run_id,
                                  *([keys_by_part[r["part"]] for r in group] if cfg.dedup.enabled else []))
             for group in part_groups(results, cfg.writer.part_rows, int(ray.cluster_resources().get("CPU", 1)))]
    done = ray.get(final)
    for d in done:
        counts.add(d["stats"])
        staged += d["staged"]
        _add_per_warc(per_warc, d["per_warc"])
    if cfg.dedup.enabled and cfg.dedup.index and outcome is not None:
        docs_files = [f for f in staged if "/index/docs/" in f]
        if docs_files or outcome.image_counts.num_rows or outcome.superseded.num_rows:
            staged.append(ray.get(_probe_part.remote(cfg_ref, run_id, docs_files, outcome.image_counts,
                                                     outcome.superseded)))
    phases.mark("write", sum(sum(v) for v in per_warc.values()), sum(d["cpu_seconds"] for d in done))
    return UnitRun(counts.table(), staged, per_warc, reads, phases.rows, dedup_counts,
                   int(ray.cluster_resources().get("CPU", 0)))


MAX_ROUNDS = 8   # dedup/image-rule rounds of a unit (each leaves out at least one more winner)


class Resolved:
    """The image stage's results of a unit so far, by (document, URL): references are added as
    dedup keeps documents; a URL resolved before is not fetched again."""

    def __init__(self, cfg, reads: dict[str, ReadResult], run_id: str, counts: Counts):
        self.cfg, self.run_id, self.counts = cfg, run_id, counts
        self.files = [f for r in reads.values() for f in r.image_files]
        self.table: pa.Table | None = None
        self.staged: list[str] = []
        self.rounds = 0
        self.cpu = self.wall = 0.0
        self._ref = None

    def add(self, refs: pa.Table) -> None:
        """Resolve the references (url, id) not resolved yet."""
        t0, c0 = time.time(), time.process_time()
        if self.table is not None and refs.num_rows:
            have = pc.binary_join_element_wise(self.table["id"], self.table["url"], "\n")
            key = pc.binary_join_element_wise(refs["id"], refs["url"], "\n")
            refs = refs.filter(pc.invert(pc.is_in(key, value_set=have)))
            known = pc.is_in(refs["url"], value_set=self.table["url"])
            if pc.any(known).as_py():   # the URL's result is known: the same for this document
                old = refs.filter(known)
                by_url = self.table.drop_columns(["id"])
                first = pc.index_in(old["url"], value_set=by_url["url"])
                copied = by_url.take(first).append_column("id", old["id"]).select(self.table.column_names)
                self.table = pa.concat_tables([self.table, copied])
                self._ref = None
                refs = refs.filter(pc.invert(known))
        if refs.num_rows:
            self.rounds += 1
            table, staged = self._resolve(refs)
            self.staged += staged
            if table is not None:
                self.table = table if self.table is None else pa.concat_tables([self.table, table.select(
                    self.table.column_names)])
                self._ref = None
        self.wall += time.time() - t0
        self.cpu += time.process_time() - c0

    def ref(self):
        if self._ref is None and self.table is not None:
            self._ref = ray.put(self.table)
        return self._ref

    def _resolve(self, refs: pa.Table) -> tuple[pa.Table | None, list[str]]:
        from flows.ray_ops import StatsCollector, image_results, stage_embeddings, stage_images
        from operators.images.stage import RESOLVE_IN, warc_image_rows
        from operators.io.storage import resolve
        cfg = self.cfg
        parts = partitions(cfg)
        if not cfg.images.actors.num_gpus:   # CPU scoring: plain tasks
            from flows.image_tasks import run_image_tasks
            table, staged, stats, cpu = run_image_tasks(cfg, refs, self.files, self.run_id, parts,
                                                        prefix=f"r{self.rounds}-",
                                                        also_seen=self.table["sha256"] if self.table is not None
                                                        else None)
            self.counts.add(stats)
            self.cpu += cpu
            return table, staged
        rows = ray.data.from_arrow(pa.table({"url": refs["url"], "id": refs["id"],
                                             "date": pa.nulls(refs.num_rows, pa.string()),
                                             "data": pa.nulls(refs.num_rows, pa.binary())}, schema=RESOLVE_IN))
        if self.files:
            fs, root = resolve(cfg.output)
            records = ray.data.read_parquet([posixpath.join(root.rstrip("/"), f) for f in self.files],
                                            filesystem=fs)
            rows = rows.union(records.map_batches(warc_image_rows, batch_format="pyarrow"))
        collector = StatsCollector.remote(cfg.ray.max_errors_kept)
        try:
            resolved, uniq, scores, _types = image_results(rows, cfg.images, parts, collector)
            table = _gather(resolved.materialize())
            staged = stage_images(uniq, cfg.output, self.run_id, cfg.images.keep_bytes, parts)
            if scores is not None and cfg.images.clip.enabled and cfg.images.clip.embeddings_table:
                staged += stage_embeddings(scores, cfg.output, self.run_id, cfg.images.clip.model, parts)
            self.counts.add(ray.get(collector.get.remote()))
        finally:
            ray.kill(collector)
        return table, staged


@ray.remote(num_cpus=1)
def _probe_part(cfg, run_id: str, docs_files: list[str], images: pa.Table, superseded: pa.Table) -> str:
    from operators.dedup.probe import stage_unit_part
    return stage_unit_part(cfg.output, run_id, docs_files, images, superseded, cfg.dedup.bands, cfg.dedup.num_perm)


@ray.remote(num_cpus=1)
def _content_repeats(cfg, outcome, refs: pa.Table, results: pa.Table | None):
    """`outcome` with the images repeated by content among `refs` (the (url, id) references the
    image stage resolved) added (dedup.unit.repeated_content): their
    (id, url) references to `repeated`, this unit's content-key counts to `image_counts` (the
    index keeps them beside the URL counts); and the pass's stats."""
    from operators.dedup.probe import image_counts_for
    from operators.dedup.unit import CONTENT_KEY, PHASH_KEY, repeated_content
    stats = Stats("repeated_content")
    if results is None or results.num_rows == 0:
        return outcome, stats.to_dict()
    phash = cfg.dedup.image_phash_repeats and "phash" in results.column_names
    keys = {CONTENT_KEY + s for s in results.filter(pc.is_valid(results["sha256"]))["sha256"].to_pylist()}
    if phash:
        keys |= {PHASH_KEY + h for h in results.filter(pc.is_valid(results["phash"]))["phash"].to_pylist()}
    index = image_counts_for(cfg.output, sorted(keys)) if cfg.dedup.index and keys else None
    removed, counts = repeated_content(refs, results, index, cfg.dedup.max_image_repeats, stats, phash=phash)
    if removed.num_rows:
        outcome.repeated = pa.concat_tables([outcome.repeated, removed.cast(outcome.repeated.schema)])
    if counts.num_rows:
        outcome.image_counts = pa.concat_tables([outcome.image_counts, counts.cast(outcome.image_counts.schema)])
    return outcome, stats.to_dict()


@ray.remote(num_cpus=1)
def _winners_dropped(cfg, outcome, excluded: pa.Array, results: pa.Table | None, *keys: pa.Table) -> pa.Array:
    """Ids of the documents that won something in this outcome (kept a cluster of two or more,
    or are the newest fetch of a URL fetched again) and that the image rules will drop."""
    from operators.images.stage import image_rule_drops
    d = outcome.docs
    winners = pa.concat_arrays([
        d.filter(pc.and_(pc.is_null(d["drop_reason"]), pc.equal(d["id"], d["dup_cluster_id"])))["id"].combine_chunks(),
        d.filter(pc.equal(d["drop_reason"], "duplicate_url"))["dup_cluster_id"].combine_chunks()])
    table = _keys_less(keys, excluded)
    table = table.filter(pc.is_in(table["id"], value_set=winners))
    if table.num_rows == 0 or results is None:
        return pa.array([], pa.string())
    removed: dict[str, set[str]] = {}
    for i, u in zip(outcome.repeated["id"].to_pylist(), outcome.repeated["url"].to_pylist()):
        removed.setdefault(i, set()).add(u)
    drops = image_rule_drops(table.select(["id", "images"]), results, cfg.images, removed)
    return pa.array(sorted(drops), pa.string())


def image_refs(outcome, excluded: pa.Array, keys: pa.Table) -> pa.Table:
    """(url, id) of the images of the documents dedup kept, less the repeated ones."""
    from operators.dedup.unit import image_ref_rows
    gone = pa.concat_arrays([outcome.docs.filter(pc.is_valid(outcome.docs["drop_reason"]))["id"].combine_chunks(),
                             excluded])
    refs = image_ref_rows(_keys_less((keys,), gone))
    if outcome.repeated.num_rows:
        key = pc.binary_join_element_wise(refs["id"], refs["url"], "\n")
        rep = pc.binary_join_element_wise(outcome.repeated["id"], outcome.repeated["url"], "\n")
        refs = refs.filter(pc.invert(pc.is_in(key, value_set=rep)))
    return refs


@ray.remote(num_cpus=1)
def _image_refs(outcome, excluded: pa.Array, *keys: pa.Table) -> pa.Table:
    return image_refs(outcome, excluded, _keys_less(keys, None))


@ray.remote(num_cpus=1)
def _image_refs_from_parts(cfg, kept: list[str]) -> pa.Table:
    from operators.dedup.repeated_images import image_refs
    tables = [image_refs(read_staged(cfg.output, k).select(["id", "images", "image_info", "drop_reason"]))
              for k in kept]
    return pa.concat_tables(tables) if tables else pa.table({"url": pa.array([], pa.string()),
                                                             "id": pa.array([], pa.string())})
