"""The image stage's batch functions (no Ray): resolving URLs, applying results to documents,
NSFW scoring; the flow tests are in test_flow_images.py."""
import pyarrow as pa
import pytest

from operators.fetch import FetchConfig
from operators.image_stage import (RESOLVED, ImagesConfig, ScoreImages, apply_results, reference_rows,
                                   resolve_block, unique_images, warc_image_rows)
from operators.image_models import ClipConfig, NsfwConfig
from operators.read import IMAGE_RECORD
from operators.schema import DOCUMENT, validate_documents
from operators.stats import Stats
from tests.factories import doc_row
from tests.image_server import image_bytes

A, B, C = "https://a.example/1.png", "https://b.example/2.jpg", "https://c.example/3.png"


def doc(doc_id, images, **over):
    texts = [None if i else "Some text here." for i in images]
    info = [{"alt": "x", "width": 10, "height": 10} if i else None for i in images]
    return doc_row(id=doc_id, texts=texts, images=images, image_info=info,
                   num_images=sum(i is not None for i in images), num_texts=sum(i is None for i in images), **over)


def records(pairs):
    return pa.Table.from_pylist([{"url": u, "warc_path": "x.warc.gz", "warc_record_offset": 0, "warc_record_length": 1,
                                  "warc_record_id": "r", "warc_date": d, "content_type": "image/png", "data": b}
                                 for u, b, d in pairs], schema=IMAGE_RECORD)


OFFLINE = ImagesConfig(fetch=FetchConfig(enabled=False))


def test_resolve_block_takes_warc_records_and_reports_the_rest():
    docs = pa.Table.from_pylist([doc("d1", [None, A, B]), doc("d2", [A, None, C])], schema=DOCUMENT)
    png = image_bytes("PNG", seed=1)
    block = pa.concat_tables([reference_rows(docs), warc_image_rows(records([
        (A, b"not an image at all", "2024-01-01T00:00:00Z"),        # older record of A: the newer one wins
        (A, png, "2024-02-01T00:00:00Z"), (C, b"<html>oops</html>", "2024-01-01T00:00:00Z")]))])
    stats = Stats("fetch")
    out = resolve_block(block, OFFLINE, stats)
    assert out.schema == RESOLVED
    refs = {(r["id"], r["url"]): r for r in out.to_pylist() if r["kind"] == 0}
    assert set(refs) == {("d1", A), ("d1", B), ("d2", A), ("d2", C)}
    a = refs[("d1", A)]
    assert (a["status"], a["source"], a["format"], a["fetched_width"]) == ("ok", "warc", "png", 160)
    assert len(a["sha256"]) == 64 and len(a["phash"]) == 16 and a["bytes"] == len(png)
    assert refs[("d1", B)]["status"] == "not_fetched"
    assert refs[("d2", C)]["status"] == "not_image" and refs[("d2", C)]["source"] == "warc"
    images = [r for r in out.to_pylist() if r["kind"] == 1]
    assert [r["url"] for r in images] == [A] and images[0]["data"]   # one stored copy per decoded URL
    assert stats.counters["status_ok"] == 1 and stats.counters["urls"] == 3 and stats.counters["references"] == 4
    assert unique_images(out.filter(pa.compute.equal(out["kind"], 1))).num_rows == 1


def _results(rows):
    return pa.Table.from_pylist(rows)


def _res(doc_id, url, status, nsfw=None, sha="ab" * 32):
    return {"id": doc_id, "url": url, "status": status, "source": "warc", "http_status": None, "error": None,
            "fetched_width": 5, "fetched_height": 6, "format": "png", "sha256": sha if status == "ok" else None,
            "phash": "0" * 16, "bytes": 10, "nsfw": nsfw}


@pytest.mark.parametrize("failed", ["remove", "keep"])
def test_apply_results_fills_info_and_handles_failures(failed):
    docs = pa.Table.from_pylist([doc("d1", [None, A, None, B]),
                                 doc("d2", [A], drop_reason="no_text", drop_reasons=["no_text"])], schema=DOCUMENT)
    res = _results([_res("d1", A, "ok", 0.01), _res("d1", B, "http_error")])
    stats = Stats("images")
    out = validate_documents(apply_results(docs, res, ImagesConfig(failed=failed), stats)).to_pylist()
    d1, d2 = out
    assert d1["drop_reason"] is None
    if failed == "remove":
        assert d1["images"] == [None, A, None] and d1["num_images"] == 1 and d1["images_dropped"] == 1
        assert stats.counters["images_removed_failed"] == 1
    else:
        assert d1["images"] == [None, A, None, B] and d1["image_info"][3]["status"] == "http_error"
    info = d1["image_info"][1]
    assert (info["alt"], info["width"], info["status"], info["fetched_width"], info["sha256"]) == ("x", 10, "ok", 5, "ab" * 32)
    assert info["nsfw"] == pytest.approx(0.01)
    assert d2["image_info"][0]["status"] is None   # dropped before the image stage: untouched


def test_nsfw_and_too_few_images_rules():
    docs = pa.Table.from_pylist([doc("d1", [None, A]), doc("d2", [None, B]), doc("d3", [None, C, A])], schema=DOCUMENT)
    res = _results([_res("d1", A, "ok", 0.95), _res("d2", B, "timeout"), _res("d3", C, "ok", 0.1),
                    _res("d3", A, "ok", 0.2)])
    stats = Stats("images")
    out = {d["id"]: d for d in apply_results(docs, res, ImagesConfig(min_images=1), stats).to_pylist()}
    assert out["d1"]["drop_reason"] == "nsfw"
    assert out["d2"]["drop_reason"] == "too_few_images" and out["d2"]["num_images"] == 0
    assert out["d3"]["drop_reason"] is None and out["d3"]["num_images"] == 2
    assert stats.counters["dropped_nsfw"] == 1 and stats.counters["dropped_too_few_images"] == 1


def test_score_images_with_open_nsfw():
    rows = pa.table({"sha256": ["a", "b", "c"],
                     "data": [image_bytes("PNG", seed=1), image_bytes("JPEG", seed=2), b"garbage"]})
    op = ScoreImages(NsfwConfig())
    out = op(rows).to_pylist()
    assert [r["sha256"] for r in out] == ["a", "b", "c"]
    assert 0 <= out[0]["nsfw"] <= 1 and 0 <= out[1]["nsfw"] <= 1 and out[2]["nsfw"] is None
    assert op.stats.counters["scored"] == 2 and op.stats.counters["unreadable"] == 1


def test_config_checks_name_the_key():
    with pytest.raises(ValueError, match="images.failed"):
        ImagesConfig(failed="drop")
    with pytest.raises(ValueError, match="images.min_images"):
        ImagesConfig(min_images=-1)
    with pytest.raises(ValueError, match="images.clip.enabled"):
        ImagesConfig(clip=ClipConfig(enabled=True, weights="/nonexistent.pt"))
    # every file in configs/ keeps the private-network switch off
    from pathlib import Path

    import yaml
    configs = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))
    assert configs
    for path in configs:
        cfg = yaml.safe_load(path.read_text())
        assert not cfg.get("images", {}).get("fetch", {}).get("allow_private_networks", False), path
