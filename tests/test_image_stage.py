"""The image stage's batch functions (no Ray): resolving URLs, applying results to documents,
NSFW scoring; the flow tests are in test_flow_images.py."""
import pyarrow as pa
import pytest

from operators.images.fetch import FetchConfig
from operators.images.stage import (RESOLVED, ImagesConfig, ScoreImages, apply_results, reference_rows,
                                   resolve_block, unique_images, warc_image_rows)
from operators.images.config import ClipConfig, NsfwConfig
from operators.io.read import IMAGE_RECORD
from operators.io.schema import DOCUMENT, validate_documents
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


def test_images_never_tried_are_kept_whatever_images_failed_says():
    """not_fetched (fetch off, not in the WARCs) is not a failure: the image stays in place with its
    URL and status for a later image pass, and counts for min_images; a failed attempt is removed."""
    docs = pa.Table.from_pylist([doc("d1", [None, A, None, B, C])], schema=DOCUMENT)
    res = _results([_res("d1", A, "not_fetched"), _res("d1", B, "http_error")])   # C: no result at all
    stats = Stats("images")
    cfg = ImagesConfig(failed="remove", min_images=2)
    d1 = apply_results(docs, res, cfg, stats).to_pylist()[0]
    assert d1["drop_reason"] is None and d1["images"] == [None, A, None, C] and d1["num_images"] == 2
    assert [i and i["status"] for i in d1["image_info"]] == [None, "not_fetched", None, "not_fetched"]
    assert stats.counters["images_kept_not_fetched"] == 2 and stats.counters["images_removed_failed"] == 1


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
    op = ScoreImages(ImagesConfig())
    out = op(rows).to_pylist()
    assert [r["sha256"] for r in out] == ["a", "b", "c"]
    assert 0 <= out[0]["nsfw"] <= 1 and 0 <= out[1]["nsfw"] <= 1 and out[2]["nsfw"] is None
    assert all(r["clip_embedding"] is None for r in out)   # CLIP off
    assert op.stats.counters["nsfw_scored"] == 2 and op.stats.counters["unreadable"] == 1


def test_config_checks_name_the_key():
    with pytest.raises(ValueError, match="images.failed"):
        ImagesConfig(failed="drop")
    with pytest.raises(ValueError, match="images.min_images"):
        ImagesConfig(min_images=-1)
    with pytest.raises(ValueError, match="images.nsfw.model: clip_mlp .* images.clip.enabled"):
        ImagesConfig(nsfw=NsfwConfig(model="clip_mlp", mlp_weights="/x.pt"))
    with pytest.raises(ValueError, match="images.clip.model_config"):
        ClipConfig(model="ViT-B-32", model_config="/configs/other-model.json")
    ImagesConfig(clip=ClipConfig(enabled=True, weights="/nonexistent.pt"))  # checked at start: check_loadable
    # every file in configs/ keeps the private-network switch off
    from pathlib import Path

    import yaml
    configs = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))
    assert configs
    for path in configs:
        cfg = yaml.safe_load(path.read_text())
        assert not cfg.get("images", {}).get("fetch", {}).get("allow_private_networks", False), path


# ---------------------------------------------------------------------------------------------
# CLIP: embeddings in the unique-image actors, similarities per document

@pytest.fixture(scope="module")
def tiny_scorer():
    from operators.images.clip import ClipScorer
    from tests.clip_models import TEST_CLIP_NAME, build_random_test_clip
    model, preprocess, tokenizer = build_random_test_clip(seed=0)
    return ClipScorer(ClipConfig(model=TEST_CLIP_NAME, device="cpu"), model=model, preprocess=preprocess,
                      tokenizer=tokenizer)


def clip_config(threshold=-1.0, **over):
    from tests.clip_models import TEST_CLIP_NAME
    return ImagesConfig(clip=ClipConfig(enabled=True, model=TEST_CLIP_NAME, weights="unused-injected.pt",
                                        thresholds={TEST_CLIP_NAME: threshold}, **over.pop("clip", {})), **over)


def test_score_images_with_clip_and_the_mlp_head(tiny_scorer, tmp_path):
    import numpy as np
    import torch

    from operators.images.nsfw import ClipNsfwHead
    rows = pa.table({"sha256": ["a", "b", "c"],
                     "data": [image_bytes("PNG", seed=1), image_bytes("JPEG", seed=2), b"garbage"]})
    head = tmp_path / "head.pt"
    torch.save(ClipNsfwHead.random_state_dict(tiny_scorer.embed_dim), head)
    cfg = clip_config(nsfw=NsfwConfig(model="clip_mlp", mlp_weights=str(head)))
    op = ScoreImages(cfg, clip_scorer=tiny_scorer)
    out = op(rows).to_pylist()
    emb = np.asarray([out[0]["clip_embedding"], out[1]["clip_embedding"]], np.float32)
    np.testing.assert_allclose(emb, tiny_scorer([_pil(1, "PNG"), _pil(2, "JPEG")]), atol=1e-5)
    assert out[2]["clip_embedding"] is None and out[2]["nsfw"] is None
    expected = ClipNsfwHead(str(head), embed_dim=tiny_scorer.embed_dim)(emb)
    assert [out[0]["nsfw"], out[1]["nsfw"]] == pytest.approx(expected.tolist(), abs=1e-6)
    assert op.stats.counters["clip_embedded"] == 2 and op.stats.counters["nsfw_scored"] == 2


def _pil(seed, fmt):
    import io

    from PIL import Image
    return Image.open(io.BytesIO(image_bytes(fmt, seed=seed))).convert("RGB")


def _emb_results(scorer, spec):
    """_res rows with the tiny model's embedding of image `seed` for each (doc, url, seed, status)."""
    rows = []
    for doc_id, url, seed, status in spec:
        r = _res(doc_id, url, status)
        r["clip_embedding"] = scorer([_pil(seed, "PNG")])[0].tolist() if status == "ok" else None
        rows.append(r)
    t = pa.Table.from_pylist(rows)
    return t.set_column(t.schema.get_field_index("nsfw"), "nsfw", t["nsfw"].cast(pa.float32()))


def test_clip_documents_scores_filters_and_keeps_the_matrix(tiny_scorer):
    import numpy as np

    from operators.images.stage import CLIP_EMB, ClipDocuments
    d1 = doc("d1", [None, A, None, B, None])
    d1["texts"] = ["A red circle on a beige background.", None, "Stock prices fell today.", None,
                   "The weather will be sunny."]
    d2 = doc("d2", [None, C])
    docs = pa.Table.from_pylist([d1, d2], schema=DOCUMENT)
    res = _emb_results(tiny_scorer, [("d1", A, 1, "ok"), ("d1", B, 2, "timeout"), ("d2", C, 3, "ok")])
    # keep the failed image (no embedding: never judged by CLIP); whole-document window
    cfg = clip_config(threshold=-1.0, failed="keep", clip={"window": 0, "keep_matrix": True})
    staged = apply_results(docs, res, cfg, Stats("images"))
    assert CLIP_EMB in staged.column_names
    assert staged[CLIP_EMB].to_pylist()[0][1] is not None and staged[CLIP_EMB].to_pylist()[0][3] is None
    op = ClipDocuments(cfg, clip_scorer=tiny_scorer)
    out = validate_documents(op(staged)).to_pylist()
    a = out[0]["image_info"][1]
    text_emb = tiny_scorer.encode_texts([t for t in d1["texts"] if t])
    sims = np.asarray(res["clip_embedding"][0].as_py(), np.float32) @ text_emb.T
    assert a["clip"] == pytest.approx(float(sims.max()), abs=1e-5)
    assert a["clip_mean"] == pytest.approx(float(sims.mean()), abs=1e-5)
    assert a["clip_block"] == [0, 2, 4][int(sims.argmax())]
    assert out[0]["image_info"][3]["clip"] is None and out[0]["image_info"][3]["status"] == "timeout"
    m = out[0]["clip_similarity"]
    assert len(m) == 2 and m[1] is None and m[0] == pytest.approx(sims.tolist(), abs=1e-5)
    assert op.stats.counters["images_scored"] == 2
    # window 1: the image at position 1 is compared with the blocks at 0 and 2 only
    one = clip_config(threshold=-1.0, failed="keep", clip={"window": 1})
    w = ClipDocuments(one, clip_scorer=tiny_scorer)(apply_results(docs, res, one, Stats("images"))).to_pylist()
    assert w[0]["image_info"][1]["clip_mean"] == pytest.approx(float(sims[:2].mean()), abs=1e-5)

    # a threshold above every similarity: CLIP removes the scored images, min_images drops d1
    high = clip_config(threshold=1.0, failed="keep", min_images=2)
    out = {d["id"]: d for d in validate_documents(
        ClipDocuments(high, clip_scorer=tiny_scorer)(apply_results(docs, res, high, Stats("images")))).to_pylist()}
    assert out["d1"]["images"] == [None, None, B, None] and out["d1"]["num_images"] == 1
    assert out["d1"]["images_dropped"] == 1 and out["d1"]["drop_reason"] == "too_few_images"
    assert out["d2"]["images"] == [None] and out["d2"]["drop_reason"] == "too_few_images"
    assert out["d1"]["clip_similarity"] is None   # keep_matrix off


def test_apply_results_defers_too_few_images_to_clip(tiny_scorer):
    docs = pa.Table.from_pylist([doc("d1", [None, A])], schema=DOCUMENT)
    res = _emb_results(tiny_scorer, [("d1", A, 1, "timeout")])
    out = apply_results(docs, res, clip_config(min_images=1), Stats("images"))
    assert out["drop_reason"].to_pylist() == [None]   # decided after CLIP
    assert out["num_images"].to_pylist() == [0]


@pytest.mark.parametrize("failed,min_images", [("remove", 0), ("remove", 2), ("keep", 2), ("remove", 1)])
def test_image_rule_drops_agree_with_apply_results(failed, min_images):
    """The narrow verdict the flow asks before fixing a cluster's keeper is the one apply_results
    then reaches on the whole documents, repeated images removed first."""
    import random

    from operators.images.stage import image_rule_drops
    from operators.dedup.repeated_images import remove_images
    rng = random.Random(5)
    urls = [f"https://i.example/{k}.png" for k in range(6)]
    statuses = {u: rng.choice(["ok", "ok", "http_error", "not_fetched"]) for u in urls}
    nsfw = {u: rng.choice([None, 0.1, 0.95]) if statuses[u] == "ok" else None for u in urls}
    statuses[urls[1]], nsfw[urls[1]] = "ok", 0.95
    docs = [doc(f"d{i}", [rng.choice(urls + [None, None]) for _ in range(rng.randint(1, 5))]) for i in range(40)]
    table = pa.Table.from_pylist(docs, schema=DOCUMENT)
    removed = {f"d{i}": {urls[0]} for i in range(0, 40, 3)}
    results = pa.Table.from_pylist([{"id": d["id"], "url": u, "status": statuses[u], "nsfw": nsfw[u]}
                                    for d in docs for u in dict.fromkeys(x for x in d["images"] if x)
                                    if u not in removed.get(d["id"], ())])
    cfg = ImagesConfig(fetch=FetchConfig(enabled=False), failed=failed, min_images=min_images)
    out = apply_results(remove_images(table, removed, Stats("images")), results, cfg, Stats("images"))
    want = {r["id"]: r["drop_reason"] for r in out.to_pylist() if r["drop_reason"]}
    narrow = table.select(["id"]).append_column("images", pa.array(
        [[u for u in d["images"] if u] for d in docs], pa.list_(pa.string())))
    assert image_rule_drops(narrow, results, cfg, removed) == want
    assert "nsfw" in want.values() and (min_images < 2 or "too_few_images" in want.values())


def test_the_fetch_stage_is_partitioned_by_host_so_per_host_limits_hold_stage_wide():
    import pyarrow as pa

    from flows.image_tasks import by_host
    urls = [f"https://{h}.example.com/img/{i}.png" for h in ("a", "b", "c", "d", "e") for i in range(7)]
    refs = pa.table({"url": urls, "id": [f"d{i}" for i in range(len(urls))]})
    groups = by_host(refs, 4)
    assert sum(g.num_rows for g in groups) == len(urls)
    for g in groups:   # no host is split over two groups (two tasks would each allow per_host)
        hosts = {u.split("/")[2] for u in g["url"].to_pylist()}
        assert all(sum(u.split("/")[2] == h for u in urls) == sum(u.split("/")[2] == h for u in g["url"].to_pylist())
                   for h in hosts)
