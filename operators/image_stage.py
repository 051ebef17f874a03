"""The image stage: every image of the kept documents resolved, checked, hashed and scored.

For each distinct image URL of a run's kept documents (after deduplication):

1. bytes: from an image record of the input WARCs when one has that URL (`images.from_warc`;
   browser-made crawls keep the images a page showed; the newest record wins), else fetched
   (`images.fetch`, operators/fetch.py: SSRF-safe, size/time limits, opt-out), else
   `not_fetched`;
2. decoded (operators/imageio.py): format, size, sha256 of the bytes, a perceptual hash, a stored
   copy (thumbnail), or a decode status (decode_error, too_large_pixels, ...);
3. scored: Open-NSFW on each unique image (by sha256), in actors that load the model once.

The results go into each image's `image_info` entry (status, source, http_status, error,
fetched_width/height, format, sha256, phash, bytes, nsfw). Then per document: images whose status
is not ok are removed (`images.failed: remove`) or kept with their status (`keep`); a document
with an image scoring >= `images.nsfw.threshold` is dropped as `nsfw`; one left with fewer than
`images.min_images` images as `too_few_images`. Unique images (by sha256) go to the
content-addressed `images/` table, once per output.

Everything here is Ray-free: batch functions over pyarrow tables; flows/ray_ops.resolve_images
runs them over URL-keyed and id-keyed shuffles.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from operators.base import Operator, Resources
from operators.fetch import FetchConfig, fetch_images
from operators.image_models import ClipConfig, NsfwConfig
from operators.imageio import DecodeConfig, decode
from operators.images import image_refs
from operators.stats import Stats

FAILED_POLICIES = ("remove", "keep")


@dataclass(frozen=True)
class ActorConfig:
    """Scoring actors: GPUs per actor (fractions share a card), actors, images per batch."""
    num_gpus: float = 0.0
    pool_size: int = 1
    batch_size: int = 64

    def __post_init__(self):
        if isinstance(self.num_gpus, bool) or not isinstance(self.num_gpus, (int, float)) or self.num_gpus < 0:
            raise ValueError(f"images.actors.num_gpus must be >= 0 (fractions share a GPU), got {self.num_gpus!r}")
        for key in ("pool_size", "batch_size"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"images.actors.{key} must be an integer >= 1, got {v!r}")


@dataclass(frozen=True)
class ImagesConfig:
    """The `images` config section."""
    enabled: bool = True              # false: images keep only what extraction found (URL, alt, declared size)
    from_warc: bool = True            # take an image's bytes from an image record of the input WARCs when there is one
    fetch: FetchConfig = field(default_factory=FetchConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    keep_bytes: bool = True           # write each unique image (stored copy) to images/, keyed by sha256
    failed: str = "remove"            # remove: images whose fetch/decode failed leave the document; keep: stay, with status
    min_images: int = 0               # documents left with fewer images are dropped (too_few_images); 0: keep text-only ones
    nsfw: NsfwConfig = field(default_factory=NsfwConfig)
    clip: ClipConfig = field(default_factory=ClipConfig)
    actors: ActorConfig = field(default_factory=ActorConfig)

    def __post_init__(self):
        if self.failed not in FAILED_POLICIES:
            raise ValueError(f"images.failed must be one of {', '.join(FAILED_POLICIES)}, got {self.failed!r}")
        if isinstance(self.min_images, bool) or not isinstance(self.min_images, int) or self.min_images < 0:
            raise ValueError(f"images.min_images must be an integer >= 0, got {self.min_images!r}")
        if self.clip.enabled:
            raise ValueError("images.clip.enabled: the CLIP stage is not wired into the crawl flow yet "
                             "(operators/image_models.ClipScorer works on its own); set it to false")


# ---------------------------------------------------------------- resolving URLs

# One row per distinct image URL of a partition, or per (document, URL) reference.
RESOLVE_IN = pa.schema([pa.field("url", pa.string()), pa.field("id", pa.string()),
                        pa.field("date", pa.string()), pa.field("data", pa.binary())])
RESULT_FIELDS = [
    pa.field("status", pa.string()), pa.field("source", pa.string()), pa.field("http_status", pa.int32()),
    pa.field("error", pa.string()), pa.field("fetched_width", pa.int32()), pa.field("fetched_height", pa.int32()),
    pa.field("format", pa.string()), pa.field("sha256", pa.string()), pa.field("phash", pa.string()),
    pa.field("bytes", pa.int64()),
]
# kind 0: a reference (id, url, result); kind 1: a unique decoded image (url, result, data)
RESOLVED = pa.schema([pa.field("kind", pa.int8()), pa.field("id", pa.string()), pa.field("url", pa.string())]
                     + RESULT_FIELDS + [pa.field("data", pa.binary())])
SCORES = pa.schema([pa.field("sha256", pa.string()), pa.field("nsfw", pa.float32())])


def reference_rows(docs: pa.Table) -> pa.Table:
    """(url, id) once per distinct image URL of each kept document, as RESOLVE_IN rows."""
    refs = image_refs(docs)
    n = refs.num_rows
    return pa.table({"url": refs["url"], "id": refs["id"], "date": pa.nulls(n, pa.string()),
                     "data": pa.nulls(n, pa.binary())}, schema=RESOLVE_IN)


def warc_image_rows(records: pa.Table) -> pa.Table:
    """Image records of the input WARCs (operators/warc.iter_image_records rows) as RESOLVE_IN rows."""
    n = records.num_rows
    return pa.table({"url": records["url"], "id": pa.nulls(n, pa.string()), "date": records["warc_date"],
                     "data": records["data"]}, schema=RESOLVE_IN)


def _result(status: str, source: str | None = None, http_status=None, error=None, dec=None) -> dict:
    r = {"status": status, "source": source, "http_status": http_status, "error": error}
    if dec is not None:
        r.update(fetched_width=dec.width, fetched_height=dec.height, format=dec.format, sha256=dec.sha256,
                 phash=dec.phash, bytes=dec.bytes)
    return r


def resolve_block(block: pa.Table, config: ImagesConfig, stats: Stats) -> pa.Table:
    """A partition holding every row of its URLs (references and WARC image records) -> RESOLVED:
    one kind-0 row per reference with the URL's result, one kind-1 row per URL that decoded
    (with the stored copy in `data`)."""
    if block.num_rows == 0:
        return RESOLVED.empty_table()
    is_ref = pc.is_valid(block["id"])
    refs = block.filter(is_ref)
    recs = block.filter(pc.invert(is_ref))
    urls = list(dict.fromkeys(refs["url"].to_pylist()))
    # the newest WARC record of each URL
    warc: dict[str, bytes] = {}
    if config.from_warc and recs.num_rows:
        order = sorted(range(recs.num_rows), key=lambda i: recs["date"][i].as_py() or "")
        rec_urls, rec_data = recs["url"].to_pylist(), recs["data"]
        for i in order:
            warc[rec_urls[i]] = rec_data[i].as_py()
    results: dict[str, dict] = {}
    stored: dict[str, bytes | None] = {}

    def take(u: str, data: bytes, source: str, http_status) -> None:
        dec = decode(data, config.decode)
        results[u] = _result(dec.status, source, http_status, dec.error, dec)
        if dec.ok:
            stored[u] = dec.stored(config.decode)

    to_fetch = []
    for u in urls:
        if u in warc:
            take(u, warc.pop(u), "warc", None)
        elif config.fetch.enabled:
            to_fetch.append(u)
        else:
            results[u] = _result("not_fetched", None, None, "not in the input WARCs; images.fetch.enabled is false")
    # every URL of the partition in one sliding window of `fetch.concurrency` requests; each body
    # is decoded and reduced to its stored copy as it arrives, so only bodies in flight are held
    # (chunks would wait for each chunk's slowest URL: 6x slower in bench/fetch_speed.py)

    def arrived(i: int, f) -> None:
        u = to_fetch[i]
        if f.status == "ok":
            take(u, f.data, "fetch", f.http_status)
        else:
            results[u] = _result(f.status, "fetch", f.http_status, f.error)
    if to_fetch:
        fetch_images(to_fetch, config.fetch, on_result=arrived)
    for r in results.values():
        stats.incr(f"status_{r['status']}")
        if r["source"]:
            stats.incr(f"source_{r['source']}")
    stats.incr("urls", len(urls))
    stats.incr("references", refs.num_rows)
    rows = []
    for doc_id, u in zip(refs["id"].to_pylist(), refs["url"].to_pylist()):
        rows.append({"kind": 0, "id": doc_id, "url": u, **results[u], "data": None})
    for u, data in stored.items():
        rows.append({"kind": 1, "id": None, "url": u, **results[u], "data": data})
    return pa.Table.from_pylist(rows, schema=RESOLVED)


def unique_images(block: pa.Table) -> pa.Table:
    """A partition holding whole sha256 keys of kind-1 rows -> one row per sha256 (the first URL)."""
    if block.num_rows == 0:
        return block
    t = block.sort_by([("sha256", "ascending"), ("url", "ascending")])
    keys = t["sha256"].to_pylist()
    first = [i == 0 or keys[i] != keys[i - 1] for i in range(len(keys))]
    return t.filter(pa.array(first))


# ---------------------------------------------------------------- scoring

class ScoreImages(Operator):
    """Open-NSFW score of each unique image (kind-1 RESOLVED rows, stored copy in `data`) ->
    SCORES (sha256, nsfw). Loads the model once per actor; decoding and preprocessing run on the
    actor's CPU, the model on its GPU when it has one."""

    name = "nsfw"
    resources = Resources(num_cpus=1.0)

    def __init__(self, config: NsfwConfig):
        super().__init__()
        from operators.image_models import OpenNsfw
        self.config = config
        self.model = OpenNsfw(config)

    def __call__(self, table: pa.Table) -> pa.Table:
        import io

        from PIL import Image
        self.stats.incr("in", table.num_rows)
        images, keep = [], []
        for i, data in enumerate(table["data"].to_pylist()):
            try:
                img = Image.open(io.BytesIO(data))
                img.load()
                images.append(img.convert("RGB"))
                keep.append(i)
            except Exception:  # noqa: BLE001 - a stored copy that does not open: no score, counted
                self.stats.incr("unreadable")
        scores = np.full(table.num_rows, np.nan, np.float32)
        if images:
            scores[keep] = np.asarray(self.model(images), np.float32)
        self.stats.incr("scored", len(keep))
        self.stats.incr("over_threshold", int((scores >= self.config.threshold).sum()))
        self.stats.incr("out", table.num_rows)
        return pa.table({"sha256": table["sha256"], "nsfw": pa.array(scores, pa.float32(),
                                                                     mask=np.isnan(scores))}, schema=SCORES)


def attach_scores(block: pa.Table) -> pa.Table:
    """A partition holding whole sha256 keys of kind-0 rows (tag 0) and SCORES rows (tag 1) ->
    the kind-0 rows with `nsfw`."""
    refs = block.filter(pc.equal(block["_tag"], 0))
    scores = block.filter(pc.equal(block["_tag"], 1))
    idx = pc.index_in(refs["sha256"], value_set=scores["sha256"].combine_chunks())
    nsfw = scores["nsfw"].combine_chunks().take(idx)
    return refs.drop_columns(["_tag", "nsfw"]).append_column("nsfw", nsfw)


# ---------------------------------------------------------------- back into the documents

_INFO_KEYS = [f.name for f in RESULT_FIELDS] + ["nsfw"]


def apply_results(docs: pa.Table, results: pa.Table, config: ImagesConfig, stats: Stats) -> pa.Table:
    """Fill each image's `image_info` from `results` (kind-0 rows of these documents: id, url,
    result fields, nsfw), remove failed images (images.failed=remove), drop documents by the
    `nsfw` and `too_few_images` rules. Aligned lists stay aligned."""
    if docs.num_rows == 0:
        return docs
    by_doc: dict[str, dict[str, dict]] = {}
    cols = [c for c in ["id", "url"] + _INFO_KEYS if c in results.column_names]
    for r in results.select(cols).to_pylist():
        by_doc.setdefault(r["id"], {})[r["url"]] = r
    aligned = [c for c in ("texts", "images", "image_info", "text_languages", "text_language_scores")
               if c in docs.column_names]
    data = {c: docs[c].to_pylist() for c in aligned}
    num_images = docs["num_images"].to_pylist()
    dropped_imgs = docs["images_dropped"].to_pylist()
    first = docs["drop_reason"].to_pylist()
    reasons = [list(r) if r else [] for r in docs["drop_reasons"].to_pylist()]
    threshold = config.nsfw.threshold
    for i, doc_id in enumerate(docs["id"].to_pylist()):
        if first[i] is not None:
            continue  # dropped before: its images were not resolved
        res = by_doc.get(doc_id, {})
        infos = data["image_info"][i]
        keep = []
        nsfw_hit = False
        for j, u in enumerate(data["images"][i]):
            if u is None:
                keep.append(j)
                continue
            r = res.get(u) or {"status": "not_fetched", "error": "no result for this URL"}
            info = dict(infos[j] or {})
            info.update({k: r.get(k) for k in _INFO_KEYS})
            infos[j] = info
            ok = r.get("status") == "ok"
            if r.get("nsfw") is not None and r["nsfw"] >= threshold:
                nsfw_hit = True
            if ok or config.failed == "keep":
                keep.append(j)
            else:
                stats.incr("images_removed_failed")
        removed = len(data["images"][i]) - len(keep)
        if removed:
            for c in aligned:
                if data[c][i] is not None:
                    data[c][i] = [data[c][i][j] for j in keep]
            num_images[i] -= removed
            dropped_imgs[i] = (dropped_imgs[i] or 0) + removed
        if nsfw_hit:
            first[i] = "nsfw"
            reasons[i].append("nsfw")
            stats.drop("nsfw")
        elif num_images[i] < config.min_images:
            first[i] = "too_few_images"
            reasons[i].append("too_few_images")
            stats.drop("too_few_images")
    for c in aligned:
        docs = docs.set_column(docs.schema.get_field_index(c), c, pa.array(data[c], docs.schema.field(c).type))
    for name, values in (("num_images", num_images), ("images_dropped", dropped_imgs)):
        docs = docs.set_column(docs.schema.get_field_index(name), name, pa.array(values, docs.schema.field(name).type))
    docs = docs.set_column(docs.schema.get_field_index("drop_reason"), "drop_reason", pa.array(first, pa.string()))
    return docs.set_column(docs.schema.get_field_index("drop_reasons"), "drop_reasons",
                           pa.array([r or None for r in reasons], pa.list_(pa.string())))


IMAGE_TABLE = pa.schema([
    pa.field("sha256", pa.string(), nullable=False),   # of the original bytes: the key
    pa.field("url", pa.string()),                      # the first URL it was found under in its run
    pa.field("format", pa.string()),
    pa.field("width", pa.int32()), pa.field("height", pa.int32()),
    pa.field("bytes", pa.int64()),                     # size of the original
    pa.field("phash", pa.string()),
    pa.field("data", pa.binary()),                     # the stored copy (images.decode: thumbnail, format); null without keep_bytes
    pa.field("run_id", pa.string()),
])


def image_table_rows(block: pa.Table, run_id: str, keep_bytes: bool) -> pa.Table:
    """Unique kind-1 rows -> IMAGE_TABLE rows."""
    n = block.num_rows
    return pa.table({"sha256": block["sha256"], "url": block["url"], "format": block["format"],
                     "width": block["fetched_width"], "height": block["fetched_height"], "bytes": block["bytes"],
                     "phash": block["phash"], "data": block["data"] if keep_bytes else pa.nulls(n, pa.binary()),
                     "run_id": pa.array([run_id] * n, pa.string())}, schema=IMAGE_TABLE)
