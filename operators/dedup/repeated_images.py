"""Repeated images: an image URL used by more than `dedup.max_image_repeats` of the run's kept
documents (logos, buttons, ads, share icons) is removed from every document that uses it, as
OBELICS does with a threshold of 10. Ray-free batch functions; `flows/ray_ops.remove_repeated_images`
runs them over hash partitions (by URL to count, by document id to remove), so no structure on
the driver grows with the corpus.

A URL counts once per document (a document showing the same logo twice counts one use).
Documents that selection already dropped are not counted and not changed.

The key of an image is a function of (url, image_info entry): `image_url` (the default) or, once
images are fetched, `image_content` (the sha256 of the bytes, so the same logo under many URLs is
one image). Counting, the index's `images` table and removal only see the key string. The flow
counts URLs before fetching and content keys (`sha256:<hex>`, and `phash:<hex>` for near-copies)
after it (operators/dedup/unit.repeated_content, `dedup.image_content_repeats`,
`dedup.image_phash_repeats`).
"""
from __future__ import annotations

from typing import Callable, Optional

import pyarrow as pa
import pyarrow.compute as pc

from operators.stats import Stats

REFS = pa.schema([pa.field("url", pa.string()), pa.field("id", pa.string())])


def image_url(url: str | None, info: dict | None) -> str | None:
    """Image key: the URL."""
    return url


def image_content(url: str | None, info: dict | None) -> str | None:
    """Image key: the sha256 of the fetched bytes (None until the image is fetched)."""
    return (info or {}).get("sha256")


ImageKey = Callable[[Optional[str], Optional[dict]], Optional[str]]


def _keys(images: list, infos: list | None, key: ImageKey) -> list:
    if key is image_url:
        return images
    infos = infos or [None] * len(images)
    return [key(u, m) if u is not None else None for u, m in zip(images, infos)]


def image_refs(table: pa.Table, key: ImageKey = image_url) -> pa.Table:
    """(url, id) once per distinct image key (`url` holds the key) of each kept document."""
    urls, ids = [], []
    infos = table["image_info"].to_pylist() if key is not image_url else [None] * table.num_rows
    for doc_id, images, info, dropped in zip(table["id"].to_pylist(), table["images"].to_pylist(), infos,
                                             table["drop_reason"].to_pylist()):
        if dropped is not None or not images:
            continue
        for u in dict.fromkeys(k for k in _keys(images, info, key) if k):
            urls.append(u)
            ids.append(doc_id)
    return pa.table({"url": pa.array(urls, pa.string()), "id": pa.array(ids, pa.string())}, schema=REFS)


COUNTS = pa.schema([pa.field("url", pa.string()), pa.field("id", pa.string()), pa.field("n", pa.int64())])


def ref_counts(refs: pa.Table) -> pa.Table:
    """This run's references as count rows: (url, id, n=1)."""
    return pa.table({"url": refs["url"], "id": refs["id"],
                     "n": pa.array([1] * refs.num_rows, pa.int64())}, schema=COUNTS)


def index_counts(index_images: pa.Table) -> pa.Table:
    """Earlier runs' counts (the index's `images` table) as count rows: (url, id=null, n)."""
    return pa.table({"url": index_images["url"], "id": pa.nulls(index_images.num_rows, pa.string()),
                     "n": index_images["documents"]}, schema=COUNTS)


def repeated_refs(part: pa.Table, max_repeats: int, stats: Stats) -> pa.Table:
    """Within one partition holding every count row of its URLs (`ref_counts`, and `index_counts`
    of earlier runs): this run's references (url, id, n) of URLs used by more than `max_repeats`
    documents in all, and one row (url, id=null, n) per URL with this run's number of documents
    using it (for the index)."""
    if part.num_rows == 0:
        return COUNTS.empty_table()
    if "n" not in part.column_names:
        part = ref_counts(part)
    totals = part.group_by("url").aggregate([("n", "sum")])
    frequent = totals.filter(pc.greater(totals["n_sum"], max_repeats))["url"]
    this_run = part.filter(pc.is_valid(part["id"]))
    runs = this_run.group_by("url").aggregate([("id", "count")])
    stats.incr("image_urls", runs.num_rows)
    hit = pc.and_(pc.is_in(part["url"], value_set=frequent), pc.is_valid(part["id"]))
    out = part.filter(hit)
    stats.incr("image_urls_repeated", int(pc.sum(pc.is_in(runs["url"], value_set=frequent)).as_py() or 0))
    stats.incr("image_refs_removed", out.num_rows)
    counts = pa.table({"url": runs["url"], "id": pa.nulls(runs.num_rows, pa.string()),
                       "n": runs["id_count"].cast(pa.int64())}, schema=COUNTS)
    return pa.concat_tables([out.select(COUNTS.names).cast(COUNTS), counts])


def remove_images(docs: pa.Table, drop: dict[str, set[str]], stats: Stats, key: ImageKey = image_url) -> pa.Table:
    """Remove, from each document in `drop`, its images whose key (`key`: URL by default) is in
    its set (all aligned lists stay aligned); `num_images` and `images_dropped` are updated."""
    if not drop or docs.num_rows == 0:
        return docs
    aligned = ("texts", "images", "image_info", "text_languages", "text_language_scores")
    present = [c for c in aligned if c in docs.column_names]
    cols = {c: docs[c].to_pylist() for c in present}
    num_images = docs["num_images"].to_pylist()
    dropped = docs["images_dropped"].to_pylist()
    for i, doc_id in enumerate(docs["id"].to_pylist()):
        urls = drop.get(doc_id)
        if not urls:
            continue
        images = cols["images"][i]
        keys = _keys(images, cols["image_info"][i] if "image_info" in cols else None, key)
        keep = [j for j, (u, k) in enumerate(zip(images, keys)) if u is None or k not in urls]
        removed = len(images) - len(keep)
        if not removed:
            continue
        for c in present:
            if cols[c][i] is not None:
                cols[c][i] = [cols[c][i][j] for j in keep]
        num_images[i] -= removed
        dropped[i] = (dropped[i] or 0) + removed
        stats.incr("images_removed_repeated", removed)
        stats.incr("documents_changed")
    for c in present:
        docs = docs.set_column(docs.schema.get_field_index(c), c, pa.array(cols[c], docs.schema.field(c).type))
    docs = docs.set_column(docs.schema.get_field_index("num_images"), "num_images",
                           pa.array(num_images, docs.schema.field("num_images").type))
    return docs.set_column(docs.schema.get_field_index("images_dropped"), "images_dropped",
                           pa.array(dropped, docs.schema.field("images_dropped").type))
