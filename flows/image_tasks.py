"""The image stage on Ray core tasks (CPU scoring): narrow references in, one results table out.

    references (id, url) and the unit's WARC image records
      -> resolve (P tasks, by host hash): each URL once from its WARC record or fetched, decoded
         (operators/images/stage.resolve_block); decoded images split by sha256 hash
      -> score (P tasks, by sha256 hash): unique images, prepared and scored (Open-NSFW, CLIP)
         with the models loaded once per worker; new images staged for images/ (and
         image_embeddings/)
      -> attach (one task): each reference's result with its image's scores

Counts come back with each task's result. With GPU scoring actors (`images.actors.num_gpus`),
the flow uses the Ray Data stage (flows/ray_ops.image_results) instead.
"""
from __future__ import annotations

import time
import zlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray

from operators.stats import Stats


def _bucket(values: list[str | None], n: int) -> np.ndarray:
    """A stable bucket in [0, n) for each string (crc32; the same on every worker)."""
    return np.fromiter((zlib.crc32((v or "").encode()) % n for v in values), np.int64, len(values))


def by_host(refs: pa.Table, parts: int) -> list[pa.Table]:
    """References (url, id) in `parts` groups by host hash, not by URL: each host's images are
    fetched by one task, whose per-host limits (images.fetch.per_host, per_host_rps) then hold
    for the whole stage, not once per worker."""
    from operators.io.urls import url_host
    b = _bucket([url_host(u) for u in refs["url"].to_pylist()], parts)
    return [refs.filter(pa.array(b == g)) for g in range(parts)]


def _cached_ops(cfg):
    from flows.staged import cached
    from operators.images.stage import PrepareImages, ScoreImages
    return cached(("score_images", cfg.config_hash()),
                   lambda: (PrepareImages(cfg.images), ScoreImages(cfg.images)))


def _resolve(refs: pa.Table, image_files: list[str], cfg, parts: int):
    """refs (url, id) of one URL bucket -> [kind-0 rows without data, stats, cpu, number of kind-1
    rows, kind-1 rows of sha256 bucket 0, ..., of bucket parts-1]."""
    from flows.staged import read_staged
    from operators.images.stage import RESOLVE_IN, resolve_block, warc_image_rows
    cpu0 = time.process_time()
    n = refs.num_rows
    rows = [pa.table({"url": refs["url"], "id": refs["id"], "date": pa.nulls(n, pa.string()),
                      "data": pa.nulls(n, pa.binary())}, schema=RESOLVE_IN)]
    urls = refs["url"]
    for f in image_files:   # the unit's WARC image records of these URLs
        recs = read_staged(cfg.output, f)
        recs = recs.filter(pc.is_in(recs["url"], value_set=urls))
        if recs.num_rows:
            rows.append(warc_image_rows(recs))
    stats = Stats("fetch")
    out = resolve_block(pa.concat_tables(rows), cfg.images, stats)
    kind0 = out.filter(pc.equal(out["kind"], 0)).drop_columns(["data"])
    decoded = out.filter(pc.equal(out["kind"], 1))
    b = _bucket(decoded["sha256"].to_pylist(), parts)
    buckets = [decoded.filter(pa.array(b == j)) for j in range(parts)]
    return [kind0, stats.to_dict(), time.process_time() - cpu0, decoded.num_rows] + buckets


def _score(cfg, run_id: str, part: str, seen: dict, *decoded: pa.Table):
    """Kind-1 rows of one sha256 bucket -> (scores, staged files, stats, cpu)."""
    from flows.staged import write_staged
    from operators.images.stage import (EMBEDDING_TABLE, IMAGE_TABLE, SCORES, embedding_rows, image_table_rows,
                                       unique_images)
    cpu0 = time.process_time()
    rows = [t for t in decoded if t.num_rows]
    if not rows:
        return SCORES.empty_table(), [], [], time.process_time() - cpu0
    uniq = unique_images(pa.concat_tables(rows))
    stats: list[dict] = []
    scores = None
    if cfg.images.scoring:
        prepare, score = _cached_ops(cfg)
        scores = score(prepare(uniq))
        stats += [prepare.stats.drain(), score.stats.drain()]
    staged = []
    new = uniq
    if seen.get("images") is not None:
        new = uniq.filter(pc.invert(pc.is_in(uniq["sha256"], value_set=seen["images"])))
    if new.num_rows:
        staged.append(write_staged(cfg.output, run_id, "images", part,
                                    image_table_rows(new, run_id, cfg.images.keep_bytes).cast(IMAGE_TABLE)))
    if scores is not None and cfg.images.clip.enabled and cfg.images.clip.embeddings_table:
        emb = embedding_rows(scores, run_id, cfg.images.clip.model)
        if seen.get("image_embeddings") is not None:
            key = pc.binary_join_element_wise(emb["sha256"], emb["model"], " ")
            emb = emb.filter(pc.invert(pc.is_in(key, value_set=seen["image_embeddings"])))
        if emb.num_rows:
            staged.append(write_staged(cfg.output, run_id, "image_embeddings", part, emb.cast(EMBEDDING_TABLE)))
    return (scores if scores is not None else SCORES.empty_table()), staged, stats, time.process_time() - cpu0


def _attach(kind0: list[pa.Table], scores: list[pa.Table]) -> pa.Table:
    """Every reference (id, url, result fields) with its image's nsfw and clip_embedding."""
    from operators.images.stage import SCORES
    refs = pa.concat_tables([t for t in kind0 if t.num_rows]) if any(t.num_rows for t in kind0) else None
    if refs is None:
        return None
    refs = refs.drop_columns(["kind"])
    s = [t for t in scores if t.num_rows]
    s = pa.concat_tables(s) if s else SCORES.empty_table()
    idx = pc.index_in(refs["sha256"], value_set=s["sha256"])
    for name in ("nsfw", "clip_embedding"):
        refs = refs.append_column(name, s[name].take(idx))
    return refs


HEAD = 4   # the values of `_resolve` before its buckets


@ray.remote(num_cpus=1)
def resolve_task(refs, image_files, cfg, parts):
    return _resolve(refs, image_files, cfg, parts)


@ray.remote(num_cpus=1)
def score_task(cfg, run_id, part, seen, *decoded):
    return _score(cfg, run_id, part, seen, *decoded)


def existing_keys(output: str, table: str) -> pa.Array | None:
    """Keys of the rows earlier runs of this output wrote to a content-addressed table (each key
    is written once per output): sha256 for images/, "sha256 model" for image_embeddings/."""
    from flows.report import table_dataset
    ds = table_dataset(output, table)
    if ds is None:
        return None
    if table == "images":
        return ds.to_table(columns=["sha256"])["sha256"].combine_chunks()
    t = ds.to_table(columns=["sha256", "model"])
    return pc.binary_join_element_wise(t["sha256"], t["model"], " ").combine_chunks()


def run_image_tasks(cfg, refs: pa.Table, image_files: list[str], run_id: str, parts: int, prefix: str = "",
                    also_seen: pa.Array | None = None) -> tuple[pa.Table | None, list[str], list[dict], float]:
    """The stage (module docstring): (results by reference, staged files, stats, CPU seconds).
    `prefix`: of the staged files' names (one per call within a unit); `also_seen`: sha256 of
    images this unit staged before (written once)."""
    cfg_ref = ray.put(cfg)
    groups = by_host(refs, parts)
    resolved = [resolve_task.options(num_returns=parts + HEAD).remote(g, image_files, cfg_ref, parts)
                for g in groups if g.num_rows]
    heads = [ray.get(list(r[:HEAD])) for r in resolved]
    kind0 = [h[0] for h in heads]
    stats = [h[1] for h in heads]
    cpu = sum(h[2] for h in heads)
    if not sum(h[3] for h in heads):   # no image bytes (fetch off, none in the WARCs): nothing to score or store
        results = _attach(kind0, []) if kind0 else None
        return results, [], stats, cpu
    seen = {t: existing_keys(cfg.output, t) for t in ("images", "image_embeddings")}
    if also_seen is not None and len(also_seen):
        extra = also_seen.combine_chunks() if isinstance(also_seen, pa.ChunkedArray) else also_seen
        extra = extra.filter(pc.is_valid(extra))
        seen["images"] = extra if seen["images"] is None else pa.concat_arrays([seen["images"], extra])
        if cfg.images.clip.enabled:
            keys = pc.binary_join_element_wise(extra, pa.scalar(cfg.images.clip.model), " ")
            seen["image_embeddings"] = keys if seen["image_embeddings"] is None else pa.concat_arrays(
                [seen["image_embeddings"], keys])
    seen_ref = ray.put(seen)
    scored = ray.get([score_task.remote(cfg_ref, run_id, f"{prefix}{j:05d}", seen_ref, *[r[HEAD + j] for r in resolved])
                      for j in range(parts)]) if resolved else []
    staged = [f for s in scored for f in s[1]]
    for s in scored:
        stats += s[2]
        cpu += s[3]
    results = _attach(kind0, [s[0] for s in scored]) if kind0 else None
    return results, staged, stats, cpu

