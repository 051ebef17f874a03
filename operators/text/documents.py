"""Records to document rows: runs the extractor on each HTML record and adds id and provenance."""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from datetime import datetime, timezone

import pyarrow as pa

from operators.base import Operator, Resources
from operators.text.extract import ExtractConfig, extract_document
from operators.io.schema import DOCUMENT, PIPELINE_VERSION


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    config_hash: str
    pipeline_version: str = PIPELINE_VERSION


def document_id(warc_record_id: str | None, warc_path: str, offset: int) -> str:
    """Stable id from the WARC record (never run order): sha1 of its record id and file name.

    The file name is part of the key because the same records can reach a run twice under
    different names (a WARC copied or re-uploaded): those become distinct documents that dedup
    then collapses as exact duplicates, instead of two rows with one id. A record without an id
    (broken archives) falls back to the file name and byte offset, just as stable.
    """
    name = os.path.basename(warc_path)
    key = f"{warc_record_id}@{name}" if warc_record_id else f"{name}@{offset}"
    return hashlib.sha1(key.encode("utf-8", "replace")).hexdigest()


def parse_warc_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        return None


class ExtractDocuments(Operator):
    """One HTML record in, one document row out (kept or later rejected by `Select`)."""

    name = "extract"
    resources = Resources(num_cpus=1.0)

    def __init__(self, config: ExtractConfig, run: RunInfo):
        super().__init__()
        self.config = config
        self.run = run

    def __call__(self, records: pa.Table) -> pa.Table:
        return self.from_records(records.to_pylist())

    def from_records(self, records: list[dict]) -> pa.Table:
        """The DOCUMENT table of RECORD rows given as dicts (as the reader yields them: the flow's
        span task hands them over without building an Arrow table of their HTML first)."""
        self.stats.incr("in", len(records))
        rows = [self.document(rec) for rec in records]
        self.stats.incr("out", len(rows))
        return pa.Table.from_pylist(rows, schema=DOCUMENT)

    def document(self, rec: dict) -> dict:
        try:
            res = extract_document(rec["html"] or "", rec["url"], self.config)
        except Exception as e:  # the extractor is built not to raise; a bug must not kill the run
            self.stats.error("extract", url=rec["url"], warc_path=rec["warc_path"],
                             offset=rec["warc_record_offset"], error=f"{type(e).__name__}: {e}")
            res = None
        texts = res.texts if res else []
        images = res.images if res else []
        info = res.image_info if res else []
        dropped = res.dropped_images if res else {}
        if res is not None and res.error:
            self.stats.error("extract", url=rec["url"], warc_path=rec["warc_path"],
                             offset=rec["warc_record_offset"], error=res.error)
            if res.error.startswith("timeout"):
                self.stats.incr("timeouts")   # given up after extract.max_seconds: dropped as no_text
        if res is not None and res.truncated:
            self.stats.incr("html_truncated")
        for reason, n in dropped.items():
            self.stats.incr(f"images_dropped_{reason}", n)
        n_images = sum(i is not None for i in images)
        self.stats.incr("images", n_images)
        return {
            "id": document_id(rec["warc_record_id"], rec["warc_path"], rec["warc_record_offset"]),
            "url": rec["url"],
            "canonical_url": res.canonical_url if res else None,
            "title": res.title if res else None,
            "html_lang": res.html_lang if res else None,
            "texts": texts,
            "images": images,
            "image_info": info,
            "num_texts": len(texts) - n_images,
            "num_images": n_images,
            "text_chars": sum(len(t) for t in texts if t is not None),
            "images_dropped": sum(dropped.values()),
            "http_status": rec.get("http_status"),
            "content_type": rec.get("content_type"),
            "charset": rec.get("charset"),
            "drop_reason": None,
            "drop_reasons": None,
            "provenance": {
                "warc_path": rec["warc_path"],
                "warc_record_offset": rec["warc_record_offset"],
                "warc_record_length": rec["warc_record_length"],
                "warc_record_id": rec["warc_record_id"],
                "warc_date": parse_warc_date(rec.get("warc_date")),
                "payload_digest": rec.get("payload_digest"),
                "pipeline_version": self.run.pipeline_version,
                "config_hash": self.run.config_hash,
                "run_id": self.run.run_id,
            },
        }
