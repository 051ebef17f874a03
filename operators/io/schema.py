"""The output contract: one Arrow schema per table, and the checks every writer runs.

Documents follow the OBELICS convention: `texts` and `images` are aligned lists in reading order,
exactly one of them non-null at each position; `image_info` is aligned with them (null at text
positions). Later stages add fields to `image_info` and signal columns; readers should use
DuckDB's `union_by_name` or pyarrow's schema unification across versions.
"""
from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

PIPELINE_VERSION = "0.1.0"

IMAGE_INFO = pa.struct([
    pa.field("alt", pa.string()),
    pa.field("width", pa.int32()),       # declared in the HTML (attributes), not measured
    pa.field("height", pa.int32()),
    # filled by the image stage (operators/images/stage.py); null when it did not run
    pa.field("status", pa.string()),     # ok | not_fetched | http_error | timeout | too_large | not_image |
                                         # refused_address | refused_scheme | opted_out | too_many_redirects |
                                         # connection_error | invalid_url | decode_error | too_large_pixels | too_small
    pa.field("source", pa.string()),     # warc (an image record of the input) | fetch
    pa.field("http_status", pa.int32()),
    pa.field("error", pa.string()),
    pa.field("fetched_width", pa.int32()),   # measured on the decoded image
    pa.field("fetched_height", pa.int32()),
    pa.field("format", pa.string()),     # jpeg, png, gif, webp, ...
    pa.field("sha256", pa.string()),     # of the bytes: the key of the images/ table
    pa.field("phash", pa.string()),      # 64-bit DCT perceptual hash, 16 hex digits
    pa.field("bytes", pa.int64()),
    pa.field("nsfw", pa.float32()),      # P(NSFW) from images.nsfw.model (Open-NSFW, or the CLIP MLP head)
    # CLIP (images.clip; null when it is off, or the image has no embedding or no text block in its window)
    pa.field("clip", pa.float32()),      # highest cosine similarity to a text block within images.clip.window
    pa.field("clip_mean", pa.float32()), # mean cosine similarity over that window
    pa.field("clip_block", pa.int32()),  # position in `texts` of the most similar text block
])

LANGUAGE_CANDIDATE = pa.struct([
    pa.field("language", pa.string()),
    pa.field("score", pa.float32()),
])

# Text-quality signals of a document (operators/text/quality.py computes them; selection reads them).
# Ratios are in [0, 1]; a signal that does not apply (no words, no stopword list for the
# language, no images) is null. "Lines" are the lines of the text blocks, "paragraphs" the blocks.
QUALITY = pa.struct([
    pa.field("word_count", pa.int32()),
    pa.field("char_count", pa.int32()),
    pa.field("mean_word_length", pa.float32()),
    pa.field("stopword_ratio", pa.float32()),          # share of words in the language's stopword list
    pa.field("alpha_word_ratio", pa.float32()),        # share of words with at least one letter (Gopher)
    pa.field("punctuation_ratio", pa.float32()),       # punctuation characters / characters
    pa.field("special_char_ratio", pa.float32()),      # non-letter, non-digit, non-space characters / characters
    pa.field("symbol_word_ratio", pa.float32()),       # ('#' + '...' + '…') / words (Gopher)
    pa.field("lines_end_punct_ratio", pa.float32()),   # lines ending in terminal punctuation (C4)
    pa.field("bullet_line_ratio", pa.float32()),       # lines starting with a bullet (Gopher)
    pa.field("ellipsis_line_ratio", pa.float32()),     # lines ending with an ellipsis (Gopher)
    pa.field("dup_line_frac", pa.float32()),           # duplicated lines / lines (Gopher)
    pa.field("dup_line_char_frac", pa.float32()),      # characters in duplicated lines / characters
    pa.field("dup_para_frac", pa.float32()),
    pa.field("dup_para_char_frac", pa.float32()),
    pa.field("top_2gram_char_frac", pa.float32()),     # characters covered by the most frequent 2-gram (Gopher)
    pa.field("top_3gram_char_frac", pa.float32()),
    pa.field("top_4gram_char_frac", pa.float32()),
    pa.field("dup_5gram_char_frac", pa.float32()),     # characters covered by duplicated 5-grams (Gopher)
    pa.field("dup_6gram_char_frac", pa.float32()),
    pa.field("dup_7gram_char_frac", pa.float32()),
    pa.field("dup_8gram_char_frac", pa.float32()),
    pa.field("dup_9gram_char_frac", pa.float32()),
    pa.field("dup_10gram_char_frac", pa.float32()),
    pa.field("flagged_word_ratio", pa.float32()),      # words in the flagged-word list / words
    pa.field("image_ratio", pa.float32()),             # images / (images + text blocks); null if empty
    pa.field("words_per_image", pa.float32()),         # words / images; null without images
])

PROVENANCE = pa.struct([
    pa.field("warc_path", pa.string(), nullable=False),
    pa.field("warc_record_offset", pa.int64(), nullable=False),
    pa.field("warc_record_length", pa.int64(), nullable=False),
    pa.field("warc_record_id", pa.string()),
    pa.field("warc_date", pa.timestamp("s", tz="UTC")),
    pa.field("payload_digest", pa.string()),
    pa.field("pipeline_version", pa.string(), nullable=False),
    pa.field("config_hash", pa.string(), nullable=False),
    pa.field("run_id", pa.string(), nullable=False),
])

DOCUMENT = pa.schema([
    pa.field("id", pa.string(), nullable=False),         # sha1 of the WARC record id + file name: stable across runs
    pa.field("url", pa.string(), nullable=False),
    pa.field("canonical_url", pa.string()),
    pa.field("title", pa.string()),
    pa.field("html_lang", pa.string()),
    pa.field("texts", pa.list_(pa.string()), nullable=False),
    pa.field("images", pa.list_(pa.string()), nullable=False),
    pa.field("image_info", pa.list_(IMAGE_INFO), nullable=False),
    pa.field("num_texts", pa.int32(), nullable=False),
    pa.field("num_images", pa.int32(), nullable=False),
    pa.field("text_chars", pa.int64(), nullable=False),
    pa.field("images_dropped", pa.int32(), nullable=False),  # candidate images removed (data:, icons, ...)
    # images.clip.keep_matrix: image x text-block cosine similarities (rows: the images in order, null
    # for one without an embedding; columns: every text block in order), as MMC4 keeps them
    pa.field("clip_similarity", pa.list_(pa.list_(pa.float32()))),
    pa.field("language", pa.string()),                   # ISO 639-1 (else 639-3) code: "en", "zh", "hbs"; "und" unsure
    pa.field("language_score", pa.float32()),
    pa.field("language_top3", pa.list_(LANGUAGE_CANDIDATE)),
    pa.field("language_source", pa.string()),            # which decided `language`: fasttext, lingua, markers
    pa.field("text_languages", pa.list_(pa.string())),   # aligned with texts; null at images / unidentified
    pa.field("text_language_scores", pa.list_(pa.float32())),
    pa.field("blocks_removed", pa.int32()),              # text blocks removed by block-level cleaning
    pa.field("pii_replaced", pa.int32()),                # e-mails, phones, IPs replaced (operators/text/pii.py); null: off
    pa.field("quality", QUALITY),
    pa.field("text_hash", pa.string()),                  # exact-duplicate key: hash of the normalised text
    pa.field("minhash_bands", pa.list_(pa.uint64())),    # one LSH band key per band (operators/dedup/minhash.py)
    pa.field("dup_cluster_id", pa.string()),             # id of the document kept for this one's cluster
    pa.field("http_status", pa.int32()),
    pa.field("content_type", pa.string()),
    pa.field("charset", pa.string()),
    pa.field("drop_reason", pa.string()),                # first failing selection rule; null = kept
    pa.field("drop_reasons", pa.list_(pa.string())),     # every failing rule
    pa.field("provenance", PROVENANCE, nullable=False),
])

# The batch between the reader and the extractor: one row per HTML response record.
RECORD = pa.schema([
    pa.field("url", pa.string()),
    pa.field("warc_path", pa.string()),
    pa.field("warc_record_offset", pa.int64()),
    pa.field("warc_record_length", pa.int64()),
    pa.field("warc_record_id", pa.string()),
    pa.field("warc_date", pa.string()),
    pa.field("payload_digest", pa.string()),
    pa.field("http_status", pa.int32()),
    pa.field("content_type", pa.string()),
    pa.field("charset", pa.string()),
    pa.field("html", pa.large_string()),
])

# `rejected/` has the same columns: a dropped document keeps everything computed for it.
REJECTED = DOCUMENT


class SchemaError(ValueError):
    pass


def put_column(table: pa.Table, name: str, values) -> pa.Table:
    """`table` with its DOCUMENT column `name` set to `values` (a list or array, as the field's
    type), appended when the table does not have it yet."""
    field = DOCUMENT.field(name)
    arr = values if isinstance(values, pa.Array) and values.type == field.type else pa.array(values, field.type)
    i = table.schema.get_field_index(name)
    return table.set_column(i, field, arr) if i >= 0 else table.append_column(field, arr)


def conform(table: pa.Table, schema: pa.Schema = DOCUMENT) -> pa.Table:
    """Return `table` with exactly `schema`'s columns, in order and type, or raise SchemaError."""
    missing = [n for n in schema.names if n not in table.column_names]
    extra = [n for n in table.column_names if n not in schema.names]
    if missing or extra:
        raise SchemaError(f"columns differ from the schema: missing {missing}, unexpected {extra}")
    table = table.select(schema.names)
    try:
        table = table.cast(schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as e:
        raise SchemaError(f"cannot cast to the document schema: {e}") from e
    return table


def validate_documents(table: pa.Table) -> pa.Table:
    """Conform to DOCUMENT and check the row invariants; returns the conformed table."""
    table = conform(table, DOCUMENT)
    if table.num_rows == 0:
        return table
    for name in ("id", "url", "texts", "images", "image_info", "provenance"):
        if table[name].null_count:
            raise SchemaError(f"column {name} has {table[name].null_count} null values")
    n_t = pc.list_value_length(table["texts"])
    n_i = pc.list_value_length(table["images"])
    n_m = pc.list_value_length(table["image_info"])
    bad = pc.or_(pc.not_equal(n_t, n_i), pc.not_equal(n_t, n_m))
    if pc.any(bad).as_py():
        row = pc.index(bad, True).as_py()
        raise SchemaError(f"row {row} (id {table['id'][row]}): texts, images and image_info differ in length")
    for name in ("text_languages", "text_language_scores"):  # aligned with texts where present
        n_l = pc.list_value_length(table[name])
        off = pc.fill_null(pc.not_equal(n_l, n_t), False)
        if pc.any(off).as_py():
            row = pc.index(off, True).as_py()
            raise SchemaError(f"row {row} (id {table['id'][row]}): {name} is not aligned with texts")
    t_null = pc.is_null(pc.list_flatten(table["texts"]))
    i_null = pc.is_null(pc.list_flatten(table["images"]))
    if not pc.all(pc.xor(t_null, i_null), min_count=0).as_py():
        raise SchemaError("a position has both or neither of text and image (OBELICS convention broken)")
    m_null = pc.is_null(pc.list_flatten(table["image_info"]))
    if not pc.all(pc.equal(m_null, i_null), min_count=0).as_py():
        raise SchemaError("image_info must be non-null exactly at image positions")
    return table


class DropReasons:
    """`drop_reason` (the first) and `drop_reasons` (every one) of a DOCUMENT table as lists: the one
    way a dropping step (select, the duplicate rules, the image rules) records why."""

    def __init__(self, table: pa.Table):
        self.first: list[str | None] = table["drop_reason"].to_pylist()
        self.all: list[list[str]] = [list(r) if r else [] for r in table["drop_reasons"].to_pylist()]

    def add(self, i: int, reason: str) -> None:
        """Document i fails `reason` (its first reason if it had none)."""
        if self.first[i] is None:
            self.first[i] = reason
        self.all[i].append(reason)

    def columns(self) -> dict[str, list]:
        return {"drop_reason": self.first, "drop_reasons": [r or None for r in self.all]}

    def write(self, table: pa.Table) -> pa.Table:
        for name, values in self.columns().items():
            table = put_column(table, name, values)
        return table


def count_drop(stats, reason: str, enabled: bool) -> None:
    """A drop counted as one (`dropped_<reason>`) with selection on, as `would_drop_<reason>` off."""
    if enabled:
        stats.drop(reason)
    else:
        stats.incr(f"would_drop_{reason}")


def drop_kept(table: pa.Table, why: list[str | None], enabled: bool, stats) -> pa.Table:
    """Documents no rule dropped yet that have a reason in `why` (aligned with the rows) get it as
    their drop reason, counted (`count_drop`); the stats' `out` counts what stays."""
    reasons = DropReasons(table)
    for i, reason in enumerate(why):
        if reason is not None and reasons.first[i] is None:
            reasons.add(i, reason)
            count_drop(stats, reason, enabled)
    stats.incr("out", sum(r is None for r in reasons.first) if enabled else len(reasons.first))
    return reasons.write(table)
