"""The Ray Data adapter: operators and their declared resources to Ray Data calls, for what
works on Ray Data rather than on the plain tasks of flows/pipeline.py: the distributed dedup
stages (a commit unit above `dedup.single_task_max_documents`), the image stage with GPU scoring
actors (`images.actors.num_gpus`), and the retry run (flows/retry_images.py). Operator counts of
these stages travel to a `StatsCollector` actor after every batch (the flow's tasks return theirs
with their results).
"""
from __future__ import annotations

import logging
import os
import uuid
from functools import partial
from types import GeneratorType
from typing import Any, Callable

import pyarrow as pa
import pyarrow.compute as pc
import ray
from ray.data import ActorPoolStrategy

from operators.base import Operator
from operators.stats import Counts, Stats

log = logging.getLogger(__name__)


def init_ray(address: str | None, num_cpus: int | None) -> None:
    """Connect to `address`, or to RAY_ADDRESS when set, or start a local Ray."""
    if ray.is_initialized():
        return
    kwargs: dict[str, Any] = {"log_to_driver": True, "logging_level": logging.WARNING}
    if address:
        kwargs["address"] = address
    elif not os.environ.get("RAY_ADDRESS") and num_cpus:
        kwargs["num_cpus"] = num_cpus
    ray.init(**kwargs)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = True


@ray.remote(num_cpus=0)
class StatsCollector:
    """Sums the count deltas that operators send from their workers."""

    def __init__(self, max_errors: int = 1000):
        self.counts = Counts()
        self.max_errors = max_errors

    def add(self, delta: dict) -> None:
        self.counts.add([delta])

    def get(self) -> list[dict]:
        return self.counts.table()


def ship(collector, stats: Stats) -> None:
    """Send the counts gathered since the last call. Waits for the collector, so that everything a
    task counted has arrived by the time the task ends (the driver reads the totals after the last
    task; fire-and-forget calls could still be in flight then). One round trip per batch."""
    delta = stats.drain()
    if delta["counters"] or delta["errors"]:
        ray.get(collector.add.remote(delta))


class _Runner:
    """Builds the operator once per worker process (or actor) and forwards its counts."""

    def __init__(self, factory: Callable[[], Operator], collector, key: str = ""):
        self.factory = factory
        self.key = key
        self.collector = collector
        self.op: Operator | None = None

    def _ship(self) -> None:
        ship(self.collector, self.op.stats)

    def __call__(self, batch: pa.Table):
        if self.op is None:
            self.op = self.factory()
        res = self.op(batch)
        if isinstance(res, GeneratorType):
            for out in res:
                self._ship()
                yield out
        else:
            self._ship()
            yield res
        self._ship()


_TASK_RUNNERS: dict[str, _Runner] = {}


def _run_task(batch: pa.Table, runner: _Runner):
    """Stateless-task entry: reuse one operator per worker process for the same runner."""
    cached = _TASK_RUNNERS.get(runner.key)
    if cached is None:
        while len(_TASK_RUNNERS) >= 16:  # a long-lived worker serves many flows: keep the newest
            _TASK_RUNNERS.pop(next(iter(_TASK_RUNNERS)))
        cached = _TASK_RUNNERS[runner.key] = runner
    yield from cached(batch)


def apply(ds: ray.data.Dataset, factory: Callable[[], Operator], op_cls: type[Operator],
          collector, **overrides: Any) -> ray.data.Dataset:
    """Map `op_cls` (built by `factory`) over `ds` with the resources it declares."""
    res = op_cls.resources
    batch_size = overrides.pop("batch_size", res.batch_size)
    kwargs: dict[str, Any] = dict(batch_format="pyarrow", batch_size=batch_size,
                                  num_cpus=res.num_cpus, zero_copy_batch=True)
    if res.num_gpus:
        kwargs["num_gpus"] = res.num_gpus
    kwargs.update(overrides)
    if res.pool_size:
        return ds.map_batches(_Runner, fn_constructor_kwargs={"factory": factory, "collector": collector},
                              compute=ActorPoolStrategy(min_size=1, max_size=res.pool_size), **kwargs)
    key = f"{op_cls.name}:{uuid.uuid4().hex}"  # one operator instance per worker process and flow
    return ds.map_batches(_run_task, fn_kwargs={"runner": _Runner(factory, collector, key)}, **kwargs)


# ---------------------------------------------------------------- duplicate clustering
# Stages and their memory/scaling are described in operators/dedup/clusters.py. Every keyed stage is
# `_by_key`: a hash repartition by the key (Ray Data's hash shuffle; with `keys=` each partition
# comes out as ONE block, which is what `groupby().map_groups()` relies on too) followed by a
# vectorised function over the whole block. Dataset.join is not used: in Ray 2.60 it needs
# `polars`, which is not a dependency of this project.

def _nonempty(ds: ray.data.Dataset) -> ray.data.Dataset:
    """`ds` materialised, less its empty blocks: a map task whose batches all come out empty
    leaves Ray an empty block without columns, and a hash shuffle that concatenates it with the
    others fails ("Schema at index 1 was different: ... vs <nothing>")."""
    ds = ds.materialize()
    refs = [ref for bundle in ds.iter_internal_ref_bundles()
            for ref, meta in zip(bundle.block_refs, bundle.metadata) if meta.num_rows]
    if not refs or len(refs) == ds.num_blocks():
        return ds
    return ray.data.from_arrow_refs(refs)


def shuffle_partitions(num_partitions: int | None = None) -> int:
    """Hash partitions of a keyed stage: `num_partitions` (dedup.num_partitions), or 2 per CPU of
    the cluster (at least 2): the one rule every shuffle of the flow follows."""
    return num_partitions or max(2, 2 * int(ray.cluster_resources().get("CPU", 1)))


def _by_key(ds: ray.data.Dataset, key: str, num_partitions: int, udf: Callable, /, **fn_kwargs: Any
            ) -> ray.data.Dataset:
    ds = _nonempty(ds)
    return ds.repartition(num_partitions, keys=[key]).map_batches(
        udf, batch_format="pyarrow", batch_size=None, zero_copy_batch=True, fn_kwargs=fn_kwargs)


def _with_host(batch: pa.Table) -> pa.Table:
    from operators.io.urls import url_host
    return batch.append_column("host", pa.array([url_host(u) for u in batch["url"].to_pylist()], pa.string()))


def _counted(batch: pa.Table, fn: Callable, name: str, collector, **kwargs: Any) -> pa.Table:
    stats = Stats(name)
    out = fn(batch, stats=stats, **kwargs)
    ship(collector, stats)
    return out


def _resolve_then(batch: pa.Table, then: Callable, **kwargs: Any) -> pa.Table:
    from operators.dedup.clusters import resolve
    return then(resolve(batch), **kwargs)


def _jump(batch: pa.Table, collector) -> pa.Table:
    from operators.dedup.clusters import jumped, resolve
    t = jumped(resolve(batch))
    stats = Stats("dedup_jump")
    stats.incr("changed", int(pc.sum(t["changed"]).as_py() or 0))
    ship(collector, stats)
    return t.select(["node", "parent"])


def _kept(batch: pa.Table, collector) -> pa.Table:
    from operators.dedup.clusters import kept_in_components
    t = kept_in_components(batch)
    stats = Stats("dedup_keep")
    stats.incr("documents_in_clusters", t.num_rows)
    stats.incr("clusters", int(pc.sum(t["dup_kept"]).as_py() or 0))
    stats.incr("duplicates_of_earlier_runs", int(pc.sum(t["kept_old"]).as_py() or 0))
    ship(collector, stats)
    return t.drop_columns(["kept_old"])


def _counters(collector) -> dict[str, dict]:
    return {s["name"]: s for s in ray.get(collector.get.remote())}


def duplicate_clusters(ds: ray.data.Dataset, key_column: str = "minhash_bands",
                       extra_key_column: str | None = "text_hash", max_bucket: int = 1000,
                       num_partitions: int | None = None, max_rounds: int = 64,
                       verify: Any = None, threshold: float | None = None,
                       index_docs: ray.data.Dataset | None = None, index_threshold: float | None = None
                       ) -> tuple[ray.data.Dataset, dict]:
    """(id, dup_cluster_id, dup_kept) for every document of `ds` in a duplicate cluster of >= 2
    (a materialised dataset), and counts. Reads `id`, `text_chars`, `num_images`,
    `provenance.warc_date` (or `warc_date`), `key_column`, `extra_key_column` (and `texts` when
    verifying) from `ds`; `ds` is read several times, so pass a re-readable dataset (read_parquet,
    or materialised), not a long lazy pipeline.

    `threshold` (with `verify`, the MinHash config that made the keys): candidate pairs are kept
    as edges only when their Jaccard similarity reaches it (exact on shingles within the run; the
    signature estimate against `index_docs`, at `index_threshold`, default `threshold`). `index_docs`: earlier runs' kept documents (the
    dedup index's `docs` table): they take part in the buckets and components, win their
    components (they are published), and get no output row."""
    from operators.dedup import clusters as dedup
    from operators.dedup import verify as verification

    names = set(ds.schema().names)
    needed = ["id", "text_chars", "num_images", key_column] + ([extra_key_column] if extra_key_column else [])
    if threshold is not None:
        needed.append("shingles" if "shingles" in names else "texts")
        if verify is None:
            raise ValueError("duplicate_clusters: threshold needs the MinHash config (verify=)")
    missing = [n for n in needed if n not in names]
    if missing:
        raise ValueError(f"cluster_duplicates: the dataset has no column {', '.join(missing)} "
                         f"(columns: {', '.join(sorted(names))})")
    parts = shuffle_partitions(num_partitions)
    collector = StatsCollector.remote()
    try:
        pair_fn = dict(fn=dedup.band_pairs, name="dedup_pairs", collector=collector, key_column=key_column,
                       extra_key_column=extra_key_column)
        pairs = ds.map_batches(_counted, batch_format="pyarrow", zero_copy_batch=True, fn_kwargs=pair_fn)
        if index_docs is not None:
            pairs = pairs.union(index_docs.map_batches(
                _counted, batch_format="pyarrow", zero_copy_batch=True,
                fn_kwargs=dict(pair_fn, name="dedup_index_pairs", old=True)))
        cands = _by_key(pairs, "key", parts, _counted, fn=dedup.bucket_edges, name="dedup_buckets",
                        collector=collector, max_bucket=max_bucket).materialize()
        n_cands = cands.count()
        if threshold is not None and n_cands:
            docs = ds.map_batches(verification.document_rows, batch_format="pyarrow", zero_copy_batch=True,
                                  fn_kwargs={"config": verify})
            if index_docs is not None:
                docs = docs.union(index_docs.map_batches(verification.index_rows, batch_format="pyarrow"))
            docs = docs.materialize()
            v1 = _by_key(cands.map_batches(verification.candidate_rows, batch_format="pyarrow").union(docs), "k",
                         parts, verification.attach_src)
            edges = _by_key(v1.union(docs), "k", parts, _counted, fn=verification.verify_pairs, name="dedup_verify",
                            collector=collector, threshold=threshold,
                            estimate_threshold=index_threshold).materialize()
            del docs
        else:
            edges = cands.map_batches(lambda b: b.select(["src", "dst"]), batch_format="pyarrow").materialize()
        n_edges = edges.count()
        forest = None
        rounds = jumps = 0
        remaining = n_edges
        while remaining:
            rounds += 1
            if rounds > max_rounds:
                raise RuntimeError(f"duplicate clustering did not converge in {max_rounds} rounds "
                                   f"({remaining} edges left)")
            hooks = _by_key(edges, "dst", parts, dedup.hook)
            forest = (hooks if forest is None else forest.union(hooks)).materialize()
            while True:   # pointer jumping until every node points at its root
                jumps += 1
                before = _counters(collector).get("dedup_jump", {}).get("counters", {}).get("changed", 0)
                forest = _by_key(forest.map_batches(dedup.jump_views, batch_format="pyarrow"), "k",
                                 parts, _jump, collector=collector).materialize()
                after = _counters(collector).get("dedup_jump", {}).get("counters", {}).get("changed", 0)
                if after == before:
                    break
            fmap = forest.map_batches(dedup.forest_map, batch_format="pyarrow")
            for end in ("src", "dst"):
                views = edges.map_batches(dedup.relabel_views, batch_format="pyarrow", fn_kwargs={"end": end})
                edges = _by_key(views.union(fmap), "k", parts, _resolve_then, then=dedup.relabeled, end=end)
            edges = edges.materialize()
            remaining = edges.count()
            log.info("dedup round %d: %d edges left, %d jumps so far", rounds, remaining, jumps)
        if forest is None:
            assigned = ray.data.from_arrow(dedup.kept_in_components(pa.table({
                "root": pa.array([], pa.string()), "id": pa.array([], pa.string()),
                "rank": pa.array([], pa.binary())})).drop_columns(["kept_old"])).materialize()
        else:
            views = ds.map_batches(dedup.keep_views, batch_format="pyarrow", zero_copy_batch=True)
            if index_docs is not None:
                views = views.union(index_docs.map_batches(dedup.index_keep_views, batch_format="pyarrow"))
            cmap = forest.map_batches(dedup.component_map, batch_format="pyarrow")
            mem = _by_key(views.union(cmap), "k", parts, _resolve_then, then=dedup.members)
            assigned = _by_key(mem, "root", parts, _kept, collector=collector).materialize()
        got = _counters(collector)
    finally:
        ray.kill(collector)
    c = lambda stage, key: got.get(stage, {}).get("counters", {}).get(key, 0)  # noqa: E731
    capped = [e for e in got.get("dedup_buckets", {}).get("errors", []) if e["kind"] == "capped_bucket"]
    counts = {
        "documents_with_keys": c("dedup_pairs", "docs_in"), "pairs": c("dedup_pairs", "pairs"),
        "index_documents": c("dedup_index_pairs", "docs_in"),
        "buckets": c("dedup_buckets", "buckets"), "buckets_text": c("dedup_buckets", "buckets_text"),
        "star_buckets": c("dedup_buckets", "star_buckets"),
        "capped_buckets": c("dedup_buckets", "capped_buckets"),
        "capped_bucket_ids": c("dedup_buckets", "capped_bucket_ids"),
        "capped_examples": [{"key": e["key"], "size": e["size"]} for e in capped[:20]],
        "candidate_pairs": n_cands,
        **{k: c("dedup_verify", k) for k in ("pairs_exact_text", "pairs_checked_exact", "pairs_checked_estimate",
                                             "pairs_below_threshold", "pairs_without_document")},
        "edges": n_edges, "rounds": rounds, "jumps": jumps,
        "clusters": c("dedup_keep", "clusters"),
        "documents_in_clusters": c("dedup_keep", "documents_in_clusters"),
        "duplicates_of_earlier_runs": c("dedup_keep", "duplicates_of_earlier_runs"),
    }
    counts["duplicates_removed"] = counts["documents_in_clusters"] - counts["clusters"]
    log.warning("dedup: %s", {k: v for k, v in counts.items() if k != "capped_examples"})
    return assigned, counts


_DUP_COLUMNS = ("_k", "_cid", "_kept", "_tag")


def _column_order(names) -> list[str]:
    """DOCUMENT's columns in schema order, then any others by name."""
    from operators.io.schema import DOCUMENT
    pos = {n: i for i, n in enumerate(DOCUMENT.names)}
    return sorted(names, key=lambda n: (pos.get(n, len(pos)), n))


def _canonical(table: pa.Table) -> pa.Table:
    """The table with its columns in `_column_order` and every top-level field nullable: blocks
    that went through different stages (or came out of an empty shuffle partition) can differ
    in column order or nullability only, which a shuffle's concatenation refuses."""
    order = _column_order(table.column_names)
    if order != table.column_names:
        table = table.select(order)
    if all(f.nullable for f in table.schema):
        return table
    return table.cast(pa.schema([f.with_nullable(True) for f in table.schema]))


def _docs_side(batch: pa.Table, side_columns: dict[str, tuple[str, pa.DataType]]) -> pa.Table:
    """Document rows tagged 0, keyed by id, with the side table's columns null."""
    batch = _canonical(batch)
    n = batch.num_rows
    batch = batch.append_column("_k", batch["id"].cast(pa.string()))
    for name, (_source, type_) in side_columns.items():
        batch = batch.append_column(name, pa.nulls(n, type_))
    return batch.append_column("_tag", pa.array([0] * n, pa.int8()))


def _side_rows(batch: pa.Table, schema: pa.Schema, side_columns: dict[str, tuple[str, pa.DataType]]) -> pa.Table:
    """Side rows tagged 1, keyed by their `id`, with every document column null."""
    n = batch.num_rows
    cols = {f.name: pa.nulls(n, f.type) for f in schema}
    cols["_k"] = batch["id"]
    cols.update({name: batch[source] for name, (source, _type) in side_columns.items()})
    cols["_tag"] = pa.array([1] * n, pa.int8())
    fields = [pa.field(f.name, f.type) for f in schema] + [pa.field("_k", pa.string())] + [
        pa.field(name, type_) for name, (_source, type_) in side_columns.items()] + [pa.field("_tag", pa.int8())]
    return pa.table(cols, schema=pa.schema(fields))


def _join_by_id(ds: ray.data.Dataset, side: ray.data.Dataset, side_columns: dict[str, tuple[str, pa.DataType]],
                num_partitions: int, resolve: Callable, **kwargs: Any) -> ray.data.Dataset:
    """Bring each document together with the side rows that carry its id (one hash shuffle of the
    documents by id; no `Dataset.join`, which needs polars); `resolve` gets one partition with
    both, told apart by `_tag`. `side_columns`: helper column -> (side column, type)."""
    s = ds.schema()
    types = {n: t if isinstance(t, pa.DataType) else t.to_arrow_dtype() for n, t in zip(s.names, s.types)}
    schema = pa.schema([pa.field(n, types[n]) for n in _column_order(types)])
    docs = ds.map_batches(_docs_side, batch_format="pyarrow", fn_kwargs={"side_columns": side_columns})
    rows = side.map_batches(_side_rows, batch_format="pyarrow",
                            fn_kwargs={"schema": schema, "side_columns": side_columns})
    return _by_key(docs.union(rows), "_k", num_partitions, resolve, **kwargs)


def _with_cluster(batch: pa.Table, cid, kept) -> pa.Table:
    """Set dup_cluster_id/dup_kept; a dup_cluster_id set before (a URL duplicate's newer fetch)
    is kept."""
    if "dup_cluster_id" in batch.column_names:
        cid = pc.coalesce(batch["dup_cluster_id"], cid)
        batch = batch.drop_columns(["dup_cluster_id"])
    return batch.append_column("dup_cluster_id", cid).append_column("dup_kept", kept)


def _attach_resolve(batch: pa.Table) -> pa.Table:
    docs = batch.filter(pc.equal(batch["_tag"], 0))
    a = batch.filter(pc.equal(batch["_tag"], 1))
    idx = pc.index_in(docs["_k"], value_set=a["_k"].combine_chunks())
    cid = pc.coalesce(a["_cid"].combine_chunks().take(idx), docs["_k"])
    kept = pc.coalesce(a["_kept"].combine_chunks().take(idx), pa.scalar(True))
    return _with_cluster(docs.drop_columns(list(_DUP_COLUMNS)), cid, kept)


def _singletons(batch: pa.Table) -> pa.Table:
    return _with_cluster(batch, batch["id"].cast(pa.string()), pa.array([True] * batch.num_rows, pa.bool_()))


def cluster_duplicates(ds: ray.data.Dataset, key_column: str = "minhash_bands",
                       extra_key_column: str | None = "text_hash", max_bucket: int = 1000,
                       num_partitions: int | None = None, max_rounds: int = 64, verify: Any = None,
                       threshold: float | None = None, index_docs: ray.data.Dataset | None = None,
                       index_threshold: float | None = None) -> tuple[ray.data.Dataset, dict]:
    """The rows of `ds` (in another order) with `dup_cluster_id` (the kept document's id; a
    singleton's own id; an id set before is kept) and `dup_kept`, and the counts of
    `duplicate_clusters` (see there for `verify`, `threshold`, `index_docs`, `index_threshold`). Shuffles the full
    documents once (by id); to avoid that, store `duplicate_clusters`' table apart."""
    assigned, counts = duplicate_clusters(ds, key_column, extra_key_column, max_bucket,
                                          num_partitions, max_rounds, verify, threshold, index_docs,
                                          index_threshold)
    if not counts["documents_in_clusters"]:
        return ds.map_batches(_singletons, batch_format="pyarrow"), counts
    parts = shuffle_partitions(num_partitions)
    side_columns = {"_cid": ("dup_cluster_id", pa.string()), "_kept": ("dup_kept", pa.bool_())}
    return _join_by_id(ds, assigned, side_columns, parts, _attach_resolve), counts




# ---------------------------------------------------------------- URL duplicates, the index

def _drop_listed(batch: pa.Table) -> pa.Table:
    rows = batch.filter(pc.equal(batch["_tag"], 0))
    listed = batch.filter(pc.equal(batch["_tag"], 1))["_k"]
    return rows.filter(pc.invert(pc.is_in(rows["_k"], value_set=listed.combine_chunks()))) \
        .drop_columns(["_k", "_x", "_tag"])


def without_ids(ds: ray.data.Dataset, ids: ray.data.Dataset, num_partitions: int) -> ray.data.Dataset:
    """The rows of `ds` whose `id` is not in `ids` (a dataset with an `id` column): one shuffle by id."""
    return _join_by_id(ds, ids, {"_x": ("id", pa.string())}, num_partitions, _drop_listed)


def read_index(output: str, itable: str) -> ray.data.Dataset | None:
    """The committed rows of one dedup-index table as a dataset (None when there are none)."""
    from operators.dedup.index import TABLES, committed_files
    from operators.io.storage import resolve
    files = committed_files(output, itable)
    if not files:
        return None
    fs, _ = resolve(output)
    return ray.data.read_parquet(files, filesystem=fs, schema=TABLES[itable])


def stage_table(ds: ray.data.Dataset, output: str, run_id: str, folder: str, schema: pa.Schema) -> list[str]:
    """Write `ds` (conformed to `schema`) as the run's staged parts under `_staging/<folder>`;
    returns their paths relative to the output (for `operators.io.writer.commit`)."""
    import posixpath

    import pyarrow.fs as pafs

    from operators.io.storage import resolve
    from operators.io.layout import staging_dir
    fs, root = resolve(output)
    root = root.rstrip("/")
    path = posixpath.join(staging_dir(root, run_id), folder)
    ds.map_batches(lambda b: b.select(schema.names).cast(schema), batch_format="pyarrow") \
        .write_parquet(path, filesystem=fs)
    try:
        infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    except FileNotFoundError:
        return []
    return sorted(posixpath.relpath(i.path, root) for i in infos
                  if i.type == pafs.FileType.File and i.path.endswith(".parquet"))


# ---------------------------------------------------------------- images

def _kind(batch: pa.Table, kind: int, drop_data: bool) -> pa.Table:
    t = batch.filter(pc.equal(batch["kind"], kind))
    return t.drop_columns(["data"]) if drop_data else t


def _tag(batch: pa.Table, tag: int, columns: dict[str, pa.DataType]) -> pa.Table:
    """`batch` with every column of `columns` (null where missing) and `_tag`."""
    n = batch.num_rows
    cols = {name: batch[name] if name in batch.column_names else pa.nulls(n, type_) for name, type_ in columns.items()}
    cols["_tag"] = pa.array([tag] * n, pa.int8())
    return pa.table(cols)


def _images_apply(batch: pa.Table, config: Any, helpers: dict, collector, only_listed: bool = False) -> pa.Table:
    from operators.images.stage import apply_results
    docs = batch.filter(pc.equal(batch["_tag"], 0))
    side = batch.filter(pc.equal(batch["_tag"], 1))
    results = pa.table({"id": side["_k"], **{src: side[helper] for helper, (src, _t) in helpers.items()}})
    docs = docs.drop_columns(["_k", "_tag"] + list(helpers))
    stats = Stats("images")
    out = apply_results(docs, results, config, stats, only_listed=only_listed)
    ship(collector, stats)
    return out


def _actor_kwargs(config: Any, factory: Callable, collector) -> dict[str, Any]:
    """map_batches arguments for a pool of image-model actors (images.actors: GPUs, pool, batch)."""
    a = config.actors
    kwargs: dict[str, Any] = dict(batch_format="pyarrow", batch_size=a.batch_size, num_cpus=1,
                                  fn_constructor_kwargs={"factory": factory, "collector": collector},
                                  compute=ActorPoolStrategy(min_size=1, max_size=a.pool_size))
    if a.num_gpus:
        kwargs["num_gpus"] = a.num_gpus
    return kwargs


def resolve_images(ds: ray.data.Dataset, warc_records: ray.data.Dataset | None, config: Any, num_partitions: int,
                   collector, retry: Callable | None = None
                   ) -> tuple[ray.data.Dataset, ray.data.Dataset, ray.data.Dataset | None]:
    """The image stage (operators/images/stage.py): references of the kept documents and the
    input's image records shuffled by host, each URL resolved once (WARC record, else fetch) and
    decoded; unique images (by sha256) scored by model actors (NSFW, CLIP image embeddings);
    results joined back to the documents by id; with CLIP on, a second actor pool scores each
    document's images against its text blocks. Returns the documents, the unique images (kind-1
    rows, for images/) and their scores (sha256, nsfw, clip_embedding; None when nothing was
    scored). `ds` is read twice: pass a materialised dataset. `retry` (a retry run): the function
    that picks the references to resolve again (images.stage.retry_reference_rows); the other
    images keep their earlier results."""
    from operators.images import stage as st
    rows = ds.map_batches(retry or st.reference_rows, batch_format="pyarrow", zero_copy_batch=True)
    if warc_records is not None:
        rows = rows.union(warc_records.map_batches(st.warc_image_rows, batch_format="pyarrow"))
    refs, uniq, scores, result_types = image_results(rows, config, num_partitions, collector)
    side_columns = {f"_r_{name}": (name, type_) for name, type_ in result_types.items()}
    docs = _join_by_id(ds, refs, side_columns, num_partitions, _images_apply, config=config,
                       helpers=side_columns, collector=collector, only_listed=retry is not None)
    if config.clip.enabled:
        docs = docs.map_batches(_Runner, **_actor_kwargs(config, partial(st.ClipDocuments, config), collector))
    return docs, uniq, scores


def image_results(rows: ray.data.Dataset, config: Any, num_partitions: int, collector
                  ) -> tuple[ray.data.Dataset, ray.data.Dataset, ray.data.Dataset | None, dict]:
    """The image stage on narrow rows (images.stage.RESOLVE_IN: references and WARC image
    records): each URL resolved once and decoded, unique images scored by the model actors.
    Returns the references with their results (id, url, result fields, scores), the unique
    images, their scores (None when nothing was scored) and the result columns' types."""
    from operators.images import stage as st
    # by host (each host's URLs in one partition: the fetcher's per-host limits hold stage-wide)
    rows = rows.map_batches(_with_host, batch_format="pyarrow")
    resolved = _by_key(rows, "host", num_partitions, _counted, fn=st.resolve_block, name="fetch",
                       collector=collector, config=config).materialize()
    refs = resolved.map_batches(_kind, fn_kwargs={"kind": 0, "drop_data": True}, batch_format="pyarrow")
    decoded = resolved.map_batches(_kind, fn_kwargs={"kind": 1, "drop_data": False}, batch_format="pyarrow")
    uniq = _by_key(decoded, "sha256", num_partitions, st.unique_images).materialize()
    score_types = {f.name: f.type for f in st.SCORES if f.name != "sha256"}
    result_types = {"url": pa.string(), **{f.name: f.type for f in st.RESULT_FIELDS}, **score_types}
    scores = None
    if config.scoring and uniq.count():
        # decode and cut to each model's input in CPU tasks; the actors only run the models
        prepared = apply(uniq, partial(st.PrepareImages, config), st.PrepareImages, collector)
        scores = prepared.map_batches(_Runner, **_actor_kwargs(config, partial(st.ScoreImages, config),
                                                               collector)).materialize()
        cols = {"id": pa.string(), **result_types}
        has_image = refs.map_batches(lambda b: b.filter(pc.is_valid(b["sha256"])), batch_format="pyarrow")
        failed = refs.map_batches(lambda b: b.filter(pc.is_null(b["sha256"])), batch_format="pyarrow")
        both = has_image.map_batches(_tag, fn_kwargs={"tag": 0, "columns": cols}, batch_format="pyarrow").union(
            scores.map_batches(_tag, fn_kwargs={"tag": 1, "columns": cols}, batch_format="pyarrow"))
        # every block in one column layout before the union (a batch may span blocks of both sides)
        refs = _by_key(both, "sha256", num_partitions, st.attach_scores).map_batches(
            _select_as, fn_kwargs={"columns": cols}, batch_format="pyarrow").union(
            failed.map_batches(_select_as, fn_kwargs={"columns": cols}, batch_format="pyarrow"))
    else:
        refs = refs.map_batches(_select_as, fn_kwargs={"columns": {"id": pa.string(), **result_types}},
                                batch_format="pyarrow")
    return refs, uniq, scores, result_types


def _select_as(batch: pa.Table, columns: dict[str, pa.DataType]) -> pa.Table:
    """`batch` with exactly `columns`, in that order (null where missing)."""
    n = batch.num_rows
    return pa.table({name: batch[name].cast(type_) if name in batch.column_names else pa.nulls(n, type_)
                     for name, type_ in columns.items()})


def _key_column(batch: pa.Table, columns: list[str]) -> pa.Table:
    """`batch` with `id`: its key columns joined by a space (sha256, or sha256 and model)."""
    key = batch[columns[0]] if len(columns) == 1 else pc.binary_join_element_wise(
        *[batch[c] for c in columns], " ")
    return batch.append_column("id", key)


def _stage_new(rows: ray.data.Dataset, output: str, run_id: str, folder: str, schema: pa.Schema,
               key: list[str], num_partitions: int) -> list[str]:
    """Stage `rows` for the content-addressed table `folder`, less the keys (`key` columns) an
    earlier run of this output already wrote there: each key is written once per output."""
    from flows.report import table_dataset
    from operators.io.storage import resolve
    existing = table_dataset(output, folder)
    if existing is not None:
        fs, _ = resolve(output)
        seen = ray.data.read_parquet(existing.files, filesystem=fs).select_columns(key).map_batches(
            lambda b: _key_column(b, key).select(["id"]), batch_format="pyarrow")
        keyed = rows.map_batches(_key_column, fn_kwargs={"columns": key}, batch_format="pyarrow")
        rows = without_ids(keyed, seen, num_partitions).map_batches(lambda b: b.drop_columns(["id"]),
                                                                     batch_format="pyarrow")
    return stage_table(rows, output, run_id, folder, schema)


def stage_images(unique: ray.data.Dataset, output: str, run_id: str, keep_bytes: bool, num_partitions: int
                 ) -> list[str]:
    """Stage the run's unique images for the content-addressed `images/` table, less those an
    earlier run of this output already wrote (by sha256)."""
    from operators.images.stage import IMAGE_TABLE, image_table_rows
    if not unique.count():   # nothing decoded (no images, or none could be had)
        return []
    rows = unique.map_batches(image_table_rows, fn_kwargs={"run_id": run_id, "keep_bytes": keep_bytes},
                              batch_format="pyarrow")
    return _stage_new(rows, output, run_id, "images", IMAGE_TABLE, ["sha256"], num_partitions)


def stage_embeddings(scores: ray.data.Dataset, output: str, run_id: str, model: str, num_partitions: int
                     ) -> list[str]:
    """Stage the run's CLIP image embeddings for `image_embeddings/` (sha256, model, embedding),
    less the (sha256, model) pairs an earlier run of this output already wrote."""
    from operators.images.stage import EMBEDDING_TABLE, embedding_rows
    rows = scores.map_batches(embedding_rows, fn_kwargs={"run_id": run_id, "model": model},
                              batch_format="pyarrow")
    return _stage_new(rows, output, run_id, "image_embeddings", EMBEDDING_TABLE, ["sha256", "model"],
                      num_partitions)
