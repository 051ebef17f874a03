"""Hand-made rows for unit tests."""
from datetime import datetime, timezone


def doc_row(**over):
    row = {
        "id": "d1", "url": "https://example.com/a", "canonical_url": None, "title": "A", "html_lang": "en",
        "texts": ["Hello world.", None, "Caption."],
        "images": [None, "https://example.com/i.png", None],
        "image_info": [None, {"alt": "an image", "width": 640, "height": 480}, None],
        "num_texts": 2, "num_images": 1, "text_chars": 20, "images_dropped": 0,
        "http_status": 200, "content_type": "text/html", "charset": "utf-8",
        "drop_reason": None, "drop_reasons": None,
        "provenance": {
            "warc_path": "/x.warc.gz", "warc_record_offset": 0, "warc_record_length": 10,
            "warc_record_id": "<urn:uuid:1>", "warc_date": datetime(2024, 1, 1, tzinfo=timezone.utc),
            "payload_digest": None, "pipeline_version": "0", "config_hash": "h", "run_id": "r",
        },
    }
    row.update(over)
    if "texts" in over and "text_chars" not in over:
        row["text_chars"] = sum(len(t) for t in row["texts"] if t)
    return row
