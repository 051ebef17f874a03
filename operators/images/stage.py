"""The image stage: every image of the kept documents resolved, checked, hashed and scored.

For each distinct image URL of a run's kept documents (after deduplication):

1. bytes: from an image record of the input WARCs when one has that URL (`images.from_warc`;
   browser-made crawls keep the images a page showed; the newest record wins), else fetched
   (`images.fetch`, operators/images/fetch.py: SSRF-safe, size/time limits, opt-out), else
   `not_fetched`;
2. decoded (operators/images/decode.py): format, size, sha256 of the bytes, a perceptual hash, a stored
   copy (thumbnail), or a decode status (decode_error, too_large_pixels, ...);
3. scored: Open-NSFW on each unique image (by sha256), in actors that load the model once.

The results go into each image's `image_info` entry (status, source, http_status, error,
fetched_width/height, format, sha256, phash, bytes, nsfw). Then per document: images whose fetch
or decode failed are removed (`images.failed: remove`) or kept with their status (`keep`);
images never tried (`not_fetched`: fetch off and not in the WARCs) are always kept, with their
URL and status, for a later image pass (flows.retry_images), as OBELICS and MMC4 publish image
URLs for users to download; a document
with an image scoring >= `images.nsfw.threshold` is dropped as `nsfw`; one left with fewer than
`images.min_images` images as `too_few_images`. Unique images (by sha256) go to the
content-addressed `images/` table, once per output.

Everything here is Ray-free: batch functions over pyarrow tables; flows/ray_ops.resolve_images
runs them over URL-keyed and id-keyed shuffles.
"""
from __future__ import annotations


import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from operators.base import Operator, Resources
from operators.images.config import (FAILED_POLICIES, ActorConfig, ClipConfig, DecodeConfig,  # noqa: F401
                                     FetchConfig, ImagesConfig, NsfwConfig)
from operators.images.decode import decode
from operators.dedup.repeated_images import image_refs
from operators.io.schema import DropReasons
from operators.stats import Stats



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
EMBEDDING = pa.list_(pa.float32())
SCORES = pa.schema([pa.field("sha256", pa.string()), pa.field("nsfw", pa.float32()),
                    pa.field("clip_embedding", EMBEDDING)])


def reference_rows(docs: pa.Table) -> pa.Table:
    """(url, id) once per distinct image URL of each kept document, as RESOLVE_IN rows."""
    refs = image_refs(docs)
    n = refs.num_rows
    return pa.table({"url": refs["url"], "id": refs["id"], "date": pa.nulls(n, pa.string()),
                     "data": pa.nulls(n, pa.binary())}, schema=RESOLVE_IN)


# What a retry run (flows/retry_images.py) fetches again: failures that may pass another time.
NOT_ATTEMPTED = "not_fetched"   # never tried (fetch off, not in the WARCs): kept whatever images.failed says
RETRY_STATUSES = ("timeout", "connection_error", NOT_ATTEMPTED)
RETRY_HTTP = (408, 425, 429, 500, 502, 503, 504)


def retryable(info: dict | None, statuses: tuple[str, ...] = RETRY_STATUSES,
              http: tuple[int, ...] = RETRY_HTTP) -> bool:
    """Whether an image's result is a transient failure worth fetching again."""
    status = (info or {}).get("status")
    if status in statuses:
        return True
    return status == "http_error" and (info.get("http_status") is None or info["http_status"] in http)


def retry_reference_rows(docs: pa.Table, statuses: tuple[str, ...] = RETRY_STATUSES) -> pa.Table:
    """(url, id) of the retryable images (`retryable`) of each kept document, as RESOLVE_IN rows."""
    urls, ids = [], []
    for doc_id, images, infos, dropped in zip(docs["id"].to_pylist(), docs["images"].to_pylist(),
                                              docs["image_info"].to_pylist(), docs["drop_reason"].to_pylist()):
        if dropped is not None:
            continue
        for u in dict.fromkeys(u for u, m in zip(images, infos) if u and retryable(m, statuses)):
            urls.append(u)
            ids.append(doc_id)
    n = len(urls)
    return pa.table({"url": pa.array(urls, pa.string()), "id": pa.array(ids, pa.string()),
                     "date": pa.nulls(n, pa.string()), "data": pa.nulls(n, pa.binary())}, schema=RESOLVE_IN)


def warc_image_rows(records: pa.Table) -> pa.Table:
    """Image records of the input WARCs (operators/io/warc.iter_image_records rows) as RESOLVE_IN rows."""
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
        from operators.images.fetch import fetch_images   # aiohttp: only where images are fetched
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

PREPARED = pa.schema([pa.field("sha256", pa.string()),
                      pa.field("nsfw_input", pa.binary()),    # Open-NSFW: 224x224x3 uint8 RGB crop
                      pa.field("clip_input", pa.binary())])   # CLIP: HxWx3 uint8 pixels, the model's input size


def _open(table: pa.Table, stats: Stats) -> tuple[list, list[int]]:
    """Stored copies (`data`) -> PIL images and their row indices; unreadable ones counted."""
    import io

    from PIL import Image
    images, keep = [], []
    for i, data in enumerate(table["data"].to_pylist()):
        try:
            img = Image.open(io.BytesIO(data))
            img.load()
            images.append(img)
            keep.append(i)
        except Exception:  # noqa: BLE001 - a stored copy that does not open: no score, counted
            stats.incr("unreadable")
    return images, keep


class PrepareImages(Operator):
    """The CPU half of scoring, in plain CPU tasks before the model actors: each unique image
    (kind-1 rows, stored copy in `data`) decoded once and cut to each model's input as uint8
    pixels (Open-NSFW: resize, JPEG round trip, crop; CLIP: the model's resize and crop). The
    actors only convert, normalise and run the model on their device, so a GPU never waits on
    PIL; uint8 is 4x less to ship than float input."""

    name = "prepare_images"
    resources = Resources(num_cpus=1.0)

    def __init__(self, config: ImagesConfig, clip_head=None):
        super().__init__()
        from operators.images.clip import clip_cpu_transform
        self.nsfw = config.nsfw.enabled and config.nsfw.model == "open_nsfw"
        self.clip_head = None
        if config.clip.enabled:
            self.clip_head = clip_head or clip_cpu_transform(config.clip)

    def __call__(self, table: pa.Table) -> pa.Table:
        from operators.images.nsfw import open_nsfw_prepare
        from operators.images.clip import to_pixels
        n = table.num_rows
        self.stats.incr("in", n)
        images, keep = _open(table, self.stats)
        cols = {"nsfw_input": [None] * n, "clip_input": [None] * n}
        for j, i in enumerate(keep):
            im = images[j]
            if self.nsfw:
                cols["nsfw_input"][i] = open_nsfw_prepare(im).tobytes()
            if self.clip_head is not None:
                cols["clip_input"][i] = to_pixels([im], self.clip_head)[0].tobytes()
        self.stats.incr("prepared", len(keep))
        return pa.table({"sha256": table["sha256"], **{k: pa.array(v, pa.binary()) for k, v in cols.items()}},
                        schema=PREPARED)


class ScoreImages(Operator):
    """Scores of each unique image -> SCORES: `nsfw` (Open-NSFW, or the LAION-style head on the
    CLIP embedding with nsfw.model=clip_mlp) and `clip_embedding` (L2-normalised, with
    images.clip on). Takes PREPARED rows (the flow: PrepareImages tasks before it) or kind-1 rows
    with `data` (prepared here first). Models load once per actor and run on its GPU when it has
    one."""

    name = "score_images"
    resources = Resources(num_cpus=1.0)

    def __init__(self, config: ImagesConfig, clip_scorer=None):
        super().__init__()
        from operators.images.nsfw import ClipNsfwHead, OpenNsfw
        from operators.images.clip import ClipScorer
        self.config = config
        nsfw = config.nsfw
        # the actor reserves resources.num_cpus: the models' CPU thread pools stay within it (ONNX
        # Runtime and torch would otherwise take every core of the node, for every actor on it)
        threads = max(1, int(self.resources.num_cpus))
        self.open_nsfw = OpenNsfw(nsfw, threads=threads) if nsfw.enabled and nsfw.model == "open_nsfw" else None
        self.clip = None
        if config.clip.enabled:
            self.clip = clip_scorer or ClipScorer(config.clip, threads=threads)
        self.head = None
        if nsfw.enabled and nsfw.model == "clip_mlp":
            self.head = ClipNsfwHead(nsfw.mlp_weights, embed_dim=self.clip.embed_dim, device=nsfw.device)
        self._prepare = None

    def _prepared(self, table: pa.Table) -> pa.Table:
        if "data" not in table.column_names:
            return table
        if self._prepare is None:
            self._prepare = PrepareImages(self.config, clip_head=self.clip._split[0] if self.clip else None)
            self._prepare.stats = self.stats
        return self._prepare(table)

    @staticmethod
    def _pixels(col: pa.ChunkedArray, rows: list[int], shape: tuple[int, int]) -> np.ndarray:
        h, w = shape
        buf = [col[i].as_py() for i in rows]
        return np.frombuffer(b"".join(buf), np.uint8).reshape(len(rows), h, w, 3)

    def __call__(self, table: pa.Table) -> pa.Table:
        table = self._prepared(table)
        n = table.num_rows
        self.stats.incr("in", n)
        scores = np.full(n, np.nan, np.float32)
        emb_col = pa.nulls(n, EMBEDDING)
        if self.clip is not None:
            rows = [i for i, v in enumerate(pc.is_valid(table["clip_input"]).to_pylist()) if v]
            if rows:
                size = self.clip.model.visual.image_size
                shape = (size, size) if isinstance(size, int) else tuple(size)
                emb = self.clip.encode_prepared(self._pixels(table["clip_input"], rows, shape))
                self.stats.incr("clip_embedded", len(rows))
                out: list = [None] * n
                for j, i in enumerate(rows):
                    out[i] = emb[j].tolist()
                emb_col = pa.array(out, EMBEDDING)
                if self.head is not None:
                    scores[rows] = np.asarray(self.head(emb), np.float32)
        if self.open_nsfw is not None:
            rows = [i for i, v in enumerate(pc.is_valid(table["nsfw_input"]).to_pylist()) if v]
            if rows:
                scores[rows] = self.open_nsfw.score_prepared(self._pixels(table["nsfw_input"], rows, (224, 224)))
        if self.config.nsfw.enabled:
            self.stats.incr("nsfw_scored", int((~np.isnan(scores)).sum()))
            self.stats.incr("nsfw_over_threshold", int((scores >= self.config.nsfw.threshold).sum()))
        self.stats.incr("out", n)
        return pa.table({"sha256": table["sha256"], "nsfw": pa.array(scores, pa.float32(), mask=np.isnan(scores)),
                         "clip_embedding": emb_col}, schema=SCORES)


def attach_scores(block: pa.Table) -> pa.Table:
    """A partition holding whole sha256 keys of kind-0 rows (tag 0) and SCORES rows (tag 1) ->
    the kind-0 rows with `nsfw` and `clip_embedding`."""
    refs = block.filter(pc.equal(block["_tag"], 0))
    scores = block.filter(pc.equal(block["_tag"], 1))
    idx = pc.index_in(refs["sha256"], value_set=scores["sha256"].combine_chunks())
    refs = refs.drop_columns(["_tag"])
    for name in ("nsfw", "clip_embedding"):
        if name in scores.column_names:
            refs = refs.drop_columns([name]).append_column(name, scores[name].combine_chunks().take(idx))
    return refs


# ---------------------------------------------------------------- back into the documents

_INFO_KEYS = [f.name for f in RESULT_FIELDS] + ["nsfw"]


CLIP_EMB = "_clip_emb"   # with CLIP on: each image's embedding, between apply_results and ClipDocuments


def apply_results(docs: pa.Table, results: pa.Table, config: ImagesConfig, stats: Stats,
                  only_listed: bool = False) -> pa.Table:
    """Fill each image's `image_info` from `results` (kind-0 rows of these documents: id, url,
    result fields, nsfw, clip_embedding), remove failed images (images.failed=remove), drop
    documents by the `nsfw` rule, and by `too_few_images` unless CLIP is on (ClipDocuments
    applies it after removing the images CLIP rejects; the embeddings travel to it in `_clip_emb`,
    aligned with `images`). Aligned lists stay aligned. `only_listed` (a retry run): images
    without a row in `results` keep their earlier result; the rules apply to the whole document."""
    clip_on = config.clip.enabled
    if docs.num_rows == 0:
        return docs.append_column(CLIP_EMB, pa.nulls(0, pa.list_(EMBEDDING))) if clip_on else docs
    by_doc: dict[str, dict[str, dict]] = {}
    cols = [c for c in ["id", "url", "clip_embedding"] + _INFO_KEYS if c in results.column_names]
    for r in results.select(cols).to_pylist():
        by_doc.setdefault(r["id"], {})[r["url"]] = r
    d = _Docs(docs)
    threshold = config.nsfw.threshold
    embeddings: list = [None] * docs.num_rows
    for i, doc_id in enumerate(docs["id"].to_pylist()):
        if d.reasons.first[i] is not None:
            continue  # dropped before: its images were not resolved
        res = by_doc.get(doc_id, {})
        infos = d.data["image_info"][i]
        keep = []
        nsfw_hit = False
        emb = [None] * len(d.data["images"][i])
        for j, u in enumerate(d.data["images"][i]):
            if u is None:
                keep.append(j)
                continue
            r = res.get(u)
            info = dict(infos[j] or {})
            if r is None and only_listed:
                r = info            # not retried: as the earlier run left it
            else:
                r = r or {"status": "not_fetched", "error": "no result for this URL"}
                info.update({k: r.get(k) for k in _INFO_KEYS})
            infos[j] = info
            emb[j] = r.get("clip_embedding")
            ok = r.get("status") == "ok"
            if r.get("nsfw") is not None and r["nsfw"] >= threshold:
                nsfw_hit = True
            if ok or config.failed == "keep":
                keep.append(j)
            elif r.get("status") == NOT_ATTEMPTED:
                keep.append(j)      # never tried: kept for a later image pass (flows.retry_images)
                stats.incr("images_kept_not_fetched")
            else:
                stats.incr("images_removed_failed")
        d.keep_only(i, keep)
        embeddings[i] = [emb[j] for j in keep]
        if nsfw_hit:
            d.drop(i, "nsfw", stats)
        elif not clip_on and d.num_images[i] < config.min_images:
            d.drop(i, "too_few_images", stats)
    docs = d.table()
    if clip_on:
        docs = docs.append_column(CLIP_EMB, pa.array(embeddings, pa.list_(EMBEDDING)))
    return docs


def image_rule_drops(docs: pa.Table, results: pa.Table, config: ImagesConfig,
                     removed: dict[str, set[str]] | None = None) -> dict[str, str]:
    """The documents `apply_results` will drop, and why (`nsfw`, `too_few_images`), decided on
    narrow rows: `docs` (id, images: the document's image URL at each image position), `results`
    (id, url, status, nsfw) and `removed` (id -> URLs removed before, the repeated images). The
    flow asks this before it fixes a duplicate cluster's keeper or a URL's newest fetch, so that
    only a document that will be published can win. With CLIP on, `too_few_images` is decided
    after CLIP (ClipDocuments, which needs the text): only `nsfw` is known here."""
    removed = removed or {}
    by_doc: dict[str, dict[str, dict]] = {}
    cols = [c for c in ("id", "url", "status", "nsfw") if c in results.column_names]
    for r in results.select(cols).to_pylist():
        by_doc.setdefault(r["id"], {})[r["url"]] = r
    threshold = config.nsfw.threshold
    out: dict[str, str] = {}
    for doc_id, images in zip(docs["id"].to_pylist(), docs["images"].to_pylist()):
        gone = removed.get(doc_id, ())
        res = by_doc.get(doc_id, {})
        kept = 0
        nsfw_hit = False
        for u in images or []:
            if u is None or u in gone:
                continue
            r = res.get(u) or {"status": "not_fetched"}
            if r.get("nsfw") is not None and r["nsfw"] >= threshold:
                nsfw_hit = True
            if r.get("status") in ("ok", NOT_ATTEMPTED) or config.failed == "keep":
                kept += 1
        if nsfw_hit:
            out[doc_id] = "nsfw"
        elif not config.clip.enabled and kept < config.min_images:
            out[doc_id] = "too_few_images"
    return out


class _Columns(dict):
    """Column name -> the batch's values of that column as a Python list, converted on first use."""

    def __init__(self, docs: pa.Table):
        super().__init__()
        self.docs = docs

    def __missing__(self, name: str) -> list:
        values = self[name] = self.docs[name].to_pylist()
        return values


class _Docs:
    """A batch of documents as Python lists, for the image rules: the aligned lists (texts,
    images, image_info, text languages), num_images, images_dropped and the drop reasons; remove
    positions, drop documents, then `table()` writes them back into the batch."""

    ALIGNED = ("texts", "images", "image_info", "text_languages", "text_language_scores")

    def __init__(self, docs: pa.Table):
        self.docs = docs
        self.aligned = [c for c in self.ALIGNED if c in docs.column_names]
        self.data = _Columns(docs)   # converted when first used: most batches touch images and image_info only
        self.num_images = docs["num_images"].to_pylist()
        self.images_dropped = docs["images_dropped"].to_pylist()
        self.reasons = DropReasons(docs)

    def keep_only(self, i: int, keep: list[int]) -> int:
        """Keep positions `keep` of document i (every aligned list); returns the images removed."""
        removed = len(self.data["images"][i]) - len(keep)
        if removed:
            for c in self.aligned:
                if self.data[c][i] is not None:
                    self.data[c][i] = [self.data[c][i][j] for j in keep]
            self.num_images[i] -= removed
            self.images_dropped[i] = (self.images_dropped[i] or 0) + removed
        return removed

    def drop(self, i: int, reason: str, stats: Stats) -> None:
        self.reasons.add(i, reason)
        stats.drop(reason)

    def table(self) -> pa.Table:
        docs = self.docs
        cols = {c: self.data[c] for c in self.aligned if c in self.data}   # the others are as they were
        cols.update(num_images=self.num_images, images_dropped=self.images_dropped, **self.reasons.columns())
        for name, values in cols.items():
            i = docs.schema.get_field_index(name)
            docs = docs.set_column(i, name, pa.array(values, docs.schema.field(name).type))
        return docs


class ClipDocuments(Operator):
    """CLIP image-text similarity per document (images.clip): each image's embedding (from the
    unique-image actors, in `_clip_emb`) against the document's text blocks, encoded here with the
    CLIP text tower. Per image, into `image_info`: `clip` (the highest cosine similarity to a text
    block within `images.clip.window` blocks before and after it; 0: the whole document),
    `clip_mean` (the mean over that window) and `clip_block` (position in `texts` of the most
    similar block). With `keep_matrix`, `clip_similarity` holds the full image x text-block matrix
    (rows: the document's images in order, null for an image without an embedding; columns: its
    text blocks in order), as MMC4 keeps it.

    Rules: an image whose `clip` is under the model's threshold (`images.clip.thresholds`) leaves
    the document (counted `images_removed_clip`); an image with no text block in its window, or
    without an embedding (kept after a failed fetch), stays unjudged. Then documents left with
    fewer than `images.min_images` images are dropped (`too_few_images`)."""

    name = "clip"
    resources = Resources(num_cpus=1.0)

    def __init__(self, config: ImagesConfig, clip_scorer=None):
        super().__init__()
        from operators.images.clip import ClipScorer
        self.config = config
        self.scorer = clip_scorer or ClipScorer(config.clip, threads=max(1, int(self.resources.num_cpus)))
        self.threshold = config.clip.threshold

    def __call__(self, docs: pa.Table) -> pa.Table:
        self.stats.incr("in", docs.num_rows)
        emb_all = docs[CLIP_EMB].to_pylist()
        docs = docs.drop_columns([CLIP_EMB])
        d = _Docs(docs)
        data, first = d.data, d.reasons.first
        keep_matrix = self.config.clip.keep_matrix
        matrices: list = [None] * docs.num_rows
        todo, embs, texts, positions = [], [], [], []
        for i in range(docs.num_rows):
            if first[i] is not None or not emb_all[i]:
                continue
            image_pos = [j for j, u in enumerate(data["images"][i]) if u is not None]
            with_emb = [(j, e) for j, e in zip(image_pos, (emb_all[i][j] for j in image_pos)) if e is not None]
            if not with_emb:   # no image was had (not fetched, failed and kept): a row of nulls each
                matrices[i] = [None] * len(image_pos) if keep_matrix else None
                continue
            todo.append(i)
            positions.append([j for j, _ in with_emb])
            embs.append(np.asarray([e for _, e in with_emb], np.float32))
            texts.append(data["texts"][i])
        scored = self.scorer.score_documents(embs, texts, positions, window=self.config.clip.window,
                                             keep_matrix=keep_matrix) if todo else []
        for i, ipos, sc in zip(todo, positions, scored):
            infos = data["image_info"][i]
            low = set()
            for r, j in enumerate(ipos):
                info = dict(infos[j] or {})
                has = not np.isnan(sc.max[r])
                info["clip"] = float(sc.max[r]) if has else None
                info["clip_mean"] = float(sc.mean[r]) if has else None
                info["clip_block"] = int(sc.best[r]) if has else None
                infos[j] = info
                self.stats.incr("images_scored")
                if not has:
                    self.stats.incr("images_without_text")
                elif self.threshold is not None and sc.max[r] < self.threshold:
                    low.add(j)
            matrix_rows = None
            if keep_matrix and sc.matrix is not None:
                row_of = {j: r for r, j in enumerate(ipos)}
                matrix_rows = {j: sc.matrix[row_of[j]].tolist() for j in ipos}
            orig = data["images"][i]
            if matrix_rows is not None:
                matrices[i] = [matrix_rows.get(j) for j, u in enumerate(orig) if u is not None and j not in low]
            if low:
                d.keep_only(i, [j for j in range(len(orig)) if j not in low])
                self.stats.incr("images_removed_clip", len(low))
        for i in range(docs.num_rows):
            if first[i] is None and d.num_images[i] < self.config.min_images:
                d.drop(i, "too_few_images", self.stats)
        docs = d.table()
        if keep_matrix:
            docs = docs.set_column(docs.schema.get_field_index("clip_similarity"), "clip_similarity",
                                   pa.array(matrices, docs.schema.field("clip_similarity").type))
        self.stats.incr("out", docs.num_rows)
        return docs


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


EMBEDDING_TABLE = pa.schema([
    pa.field("sha256", pa.string(), nullable=False),   # the images/ table's key
    pa.field("model", pa.string(), nullable=False),    # images.clip.model that computed it
    pa.field("embedding", EMBEDDING),                  # L2-normalised image embedding
    pa.field("run_id", pa.string()),
])


def embedding_rows(scores: pa.Table, run_id: str, model: str) -> pa.Table:
    """SCORES rows with an embedding -> EMBEDDING_TABLE rows."""
    t = scores.filter(pc.is_valid(scores["clip_embedding"]))
    n = t.num_rows
    return pa.table({"sha256": t["sha256"], "model": pa.array([model] * n, pa.string()),
                     "embedding": t["clip_embedding"], "run_id": pa.array([run_id] * n, pa.string())},
                    schema=EMBEDDING_TABLE)
