"""The image stage in the crawl flow, against a local image server (127.0.0.1): statuses end up
in image_info, unique images in images/, and with the private-network switch off (the default)
the local server is refused while images stored in the WARC are still used."""
from __future__ import annotations

import io

import pyarrow.parquet as pq
import pytest
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from flows.crawl import run
from flows.config import load_config
from tests.image_server import ImageServer, image_bytes
from tests.test_flow import ROOT, read_dir, sample  # noqa: F401  (module-scoped fixture)

IN_WARC = "https://photos.example.org/harbour.jpg"
PARAS = [
    "The harbour at dawn is quiet. Fishing boats come back one by one, and the gulls follow them in.",
    "Crews sort the catch on deck while the light changes from grey to a pale, washed-out gold.",
    "By seven the market hall opens and the first buyers walk slowly along the long wooden tables.",
    "Prices are chalked on small boards; cod is dear this week, mackerel cheap after a good run.",
    "An old man mends nets on the quay, as he has done every morning for more than forty years.",
    "Tourists arrive later, with cameras, asking where the ferry to the island leaves from.",
    "In the afternoon the wind turns, and the water in the basin goes dark and choppy.",
    "The harbour master closes his office at six and walks home along the sea wall.",
    "Nobody can say how long the fleet will last; every year there are fewer boats and fewer young crews.",
]
CASES = {  # path -> (status, http_status) with the private-network switch on
    "/good.png": ("ok", 200), "/good.jpg": ("ok", 200), "/missing.png": ("http_error", 404),
    "/fake.jpg": ("not_image", 200), "/bomb.png": ("too_large_pixels", 200), "/noai.png": ("opted_out", 200),
    "/loop": ("too_many_redirects", 302),
}


@pytest.fixture(scope="module")
def server():
    with ImageServer() as srv:
        yield srv


@pytest.fixture(scope="module")
def warc(server, tmp_path_factory):
    path = tmp_path_factory.mktemp("img") / "page.warc.gz"
    return _page_warc(path, [server.url(p) for p in CASES] + [IN_WARC], "Morning",
                      images=[(IN_WARC, image_bytes("JPEG", seed=5))])


def _images(out):
    docs, _ = read_dir(out / "documents")
    assert len(docs) == 1, [d["url"] for d in docs]
    return {u: i for u, i in zip(docs[0]["images"], docs[0]["image_info"]) if u}


def test_statuses_end_up_in_image_info(ray_local, server, warc, tmp_path):  # noqa: F811
    overrides = ["images.fetch.enabled=true", "images.fetch.allow_private_networks=true", "images.failed=keep",
                 "images.fetch.read_timeout=5", "images.fetch.retries=0"]
    cfg = load_config(ROOT / "configs/local.yaml", overrides, input=[str(warc)], output=str(tmp_path))
    res = run(cfg, [str(warc)])
    assert not res.failed
    got = _images(tmp_path)
    for path, (status, http_status) in CASES.items():
        info = got[server.url(path)]
        assert (info["status"], info["source"]) == (status, "fetch"), (path, info)
        if status != "too_many_redirects":
            assert info["http_status"] == http_status, (path, info)
        assert (info["error"] is None) == (status == "ok"), (path, info)
    good = got[server.url("/good.png")]
    assert good["format"] == "png" and good["fetched_width"] > 0 and len(good["sha256"]) == 64
    assert 0 <= good["nsfw"] <= 1 and len(good["phash"]) == 16
    harbour = got[IN_WARC]
    assert (harbour["status"], harbour["source"], harbour["format"]) == ("ok", "warc", "jpeg")
    # the decoded images, once each, in the content-addressed table
    table = pq.read_table(tmp_path / "images").to_pylist()
    ok = {i["sha256"] for i in got.values() if i["status"] == "ok"}
    assert {r["sha256"] for r in table} == ok and len(table) == len(ok) == 3
    assert all(r["data"] and r["run_id"] == res.run_id for r in table)
    fetch = next(o for o in res.stats if o["name"] == "fetch")["counters"]
    assert fetch["source_warc"] == 1 and fetch["source_fetch"] == len(CASES)
    # a second run over the same page writes no image twice
    res2 = run(load_config(ROOT / "configs/local.yaml", overrides + ["dedup.index=false", "ledger.enabled=false"], input=[str(warc)],
                           output=str(tmp_path)), [str(warc)])
    assert len(pq.read_table(tmp_path / "images")) == 3 and not res2.failed


def test_private_addresses_refused_by_default(ray_local, server, warc, tmp_path):  # noqa: F811
    cfg = load_config(ROOT / "configs/local.yaml", ["images.fetch.enabled=true", "images.failed=keep"],
                      input=[str(warc)], output=str(tmp_path))
    assert cfg.images.fetch.allow_private_networks is False
    run(cfg, [str(warc)])
    got = _images(tmp_path)
    for path in CASES:
        assert got[server.url(path)]["status"] == "refused_address"
    assert got[IN_WARC]["status"] == "ok"
    # with the default `failed: remove`, refused images leave the document
    out2 = tmp_path / "removed"
    run(load_config(ROOT / "configs/local.yaml", ["images.fetch.enabled=true"], input=[str(warc)], output=str(out2)),
        [str(warc)])
    assert list(_images(out2)) == [IN_WARC]


@pytest.mark.slow
def test_clip_in_the_flow(ray_local, sample, tmp_path):  # noqa: F811
    """CLIP on (the tiny randomly initialised test model, loaded through the real checkpoint
    path): every kept image gets its similarity to nearby text, the matrix is kept, embeddings
    go to image_embeddings/ once per output, and the report says CLIP ran."""
    import numpy as np

    from tests.clip_models import TEST_CLIP_NAME, write_test_clip_files
    warc, _ = sample
    weights, model_config = write_test_clip_files(str(tmp_path / "clip"))
    overrides = ["images.clip.enabled=true", f"images.clip.model={TEST_CLIP_NAME}", f"images.clip.weights={weights}",
                 f"images.clip.model_config={model_config}", f"images.clip.thresholds={{{TEST_CLIP_NAME}: -1.0}}",
                 "images.clip.keep_matrix=true", "images.clip.window=1"]
    out = tmp_path / "out"
    cfg = load_config(ROOT / "configs/local.yaml", overrides, input=[str(warc)], output=str(out))
    res = run(cfg, [str(warc)])
    assert not res.failed
    docs, _ = read_dir(out / "documents")
    n_images = 0
    for d in docs:
        text_pos = [i for i, t in enumerate(d["texts"]) if t]
        rows = d["clip_similarity"] or []
        assert len(rows) == d["num_images"], d["url"]
        for k, (u, info) in enumerate((u, i) for u, i in zip(d["images"], d["image_info"]) if u):
            if info["status"] == "not_fetched":   # kept, never had: no embedding, a null row
                assert info["clip"] is None and rows[k] is None
                continue
            n_images += 1
            assert info["status"] == "ok" and -1 <= info["clip"] <= 1 and info["clip_block"] in text_pos
            assert len(rows[k]) == len(text_pos) and info["clip"] == pytest.approx(
                max(rows[k][text_pos.index(p)] for p in _window(text_pos, _position(d, k), 1)), abs=1e-5)
    assert n_images > 0
    emb = pq.read_table(out / "image_embeddings").to_pylist()
    stored = {r["sha256"] for r in pq.read_table(out / "images", columns=["sha256"]).to_pylist()}
    assert {r["sha256"] for r in emb} == stored and len(emb) == len(stored)
    assert all(r["model"] == TEST_CLIP_NAME and len(r["embedding"]) == 32 for r in emb)
    assert all(abs(np.linalg.norm(r["embedding"]) - 1) < 1e-4 for r in emb)
    clip = next(o for o in res.stats if o["name"] == "clip")["counters"]
    assert clip["images_scored"] >= n_images and clip.get("images_removed_clip", 0) == 0
    assert not any(o["name"] == "clip" and o["errors"] for o in res.stats)   # no "CLIP off" entry
    # a second run over the same WARC writes no embedding twice
    run(load_config(ROOT / "configs/local.yaml", overrides + ["dedup.index=false", "ledger.enabled=false"], input=[str(warc)],
                    output=str(out)), [str(warc)])
    assert len(pq.read_table(out / "image_embeddings")) == len(emb)


def _position(doc, k):
    """Position in `texts` of the document's k-th image."""
    return [i for i, u in enumerate(doc["images"]) if u][k]


def _window(text_pos, image_pos, window):
    """The text-block positions within `window` blocks before and after `image_pos`."""
    before = [p for p in text_pos if p < image_pos][-window:]
    after = [p for p in text_pos if p > image_pos][:window]
    return before + after


def _write_warc(path, records):
    """A gzipped WARC of response records (url, content type, body)."""
    with open(path, "wb") as f:
        w = WARCWriter(f, gzip=True)
        for url, ctype, data in records:
            http = StatusAndHeaders("200 OK", [("Content-Type", ctype), ("Content-Length", str(len(data)))],
                                    protocol="HTTP/1.1")
            w.write_record(w.create_warc_record(url, "response", payload=io.BytesIO(data), http_headers=http))
    return path


def _page_warc(path, srcs, when="Evening", images=()):
    """A WARC with one article page showing `srcs` between paragraphs, and image records
    (url, jpeg bytes) for those a browser-made crawl would have stored."""
    body = "".join(f"<p>{PARAS[i]}</p><figure><img src=\"{s}\" width=\"400\" height=\"300\" alt=\"Photo {i}\">"
                   f"</figure>" for i, s in enumerate(srcs))
    html = (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Harbour</title></head>"
            f"<body><article><h1>{when} at the harbour</h1>{body}<p>{PARAS[-1]}</p></article></body></html>").encode()
    records = [(f"https://harbour.example.org/{when.lower()}.html", "text/html; charset=utf-8", html)]
    records += [(url, "image/jpeg", data) for url, data in images]
    return _write_warc(path, records)


@pytest.mark.slow
def test_retry_run_fetches_only_the_failed_images(ray_local, server, tmp_path):  # noqa: F811
    """A run with images.failed=keep leaves a transient failure (503) and a permanent one (404) in
    the document; the retry run fetches only the 503 again, rewrites the document file under its
    own name (no duplicate row, the query views agree), and a retry with failed=remove drops the
    404 image."""
    from flows import retry_images
    from flows.query import connect
    flaky, good, missing = server.url("/flaky.png?k=retry"), server.url("/good.png"), server.url("/missing.png")
    warc = _page_warc(tmp_path / "page.warc.gz", [flaky, good, missing])
    base = ["images.fetch.enabled=true", "images.fetch.allow_private_networks=true", "images.failed=keep",
            "images.fetch.retries=0"]
    out = tmp_path / "out"
    cfg = load_config(ROOT / "configs/local.yaml", base, input=[str(warc)], output=str(out))
    first = run(cfg, [str(warc)])
    got = _images(out)
    assert (got[flaky]["status"], got[flaky]["http_status"]) == ("http_error", 503)
    assert got[missing]["status"] == "http_error" and got[good]["status"] == "ok"
    files_before = sorted(p.name for p in (out / "documents").glob("*.parquet"))
    hits_before = dict(server.hits)

    record = retry_images.run(cfg, [first.run_id])
    assert record["retryable_images"] == 1 and record["now_ok"] == 1
    assert "retry" in (out / "_runs" / record["run_id"] / "report.md").read_text().lower()
    got = _images(out)   # exactly one document: the file was replaced, not added to
    assert got[flaky]["status"] == "ok" and got[flaky]["sha256"] and got[flaky]["nsfw"] is not None
    assert got[missing]["status"] == "http_error" and got[good]["status"] == "ok"
    assert sorted(p.name for p in (out / "documents").glob("*.parquet")) == files_before
    assert server.hits["/flaky.png?k=retry"] == hits_before["/flaky.png?k=retry"] + 1
    assert server.hits["/good.png"] == hits_before["/good.png"] and server.hits["/missing.png"] == \
        hits_before["/missing.png"]
    flaky_sha = got[flaky]["sha256"]
    assert flaky_sha in {r["sha256"] for r in pq.read_table(out / "images").to_pylist()}
    con = connect(str(out))
    assert con.sql("SELECT count(*), count(DISTINCT id) FROM documents").fetchone() == (1, 1)
    assert con.sql("SELECT status FROM images WHERE url = ?", params=[flaky]).fetchone() == ("ok",)
    # nothing left to retry: no file rewritten
    again = retry_images.run(cfg, None)
    assert again["retryable_images"] == 0 and again["document_files_rewritten"] == []
    # a retry under failed=remove applies the rule to the whole document: the 404 image leaves it
    strict = load_config(ROOT / "configs/local.yaml", base[:-2] + ["images.failed=remove", "images.fetch.retries=0"],
                         output=str(out))
    retry_images.run(strict, None, statuses=("http_error",))
    got = _images(out)
    assert missing not in got and got[flaky]["status"] == "ok"


def test_an_offline_crawl_keeps_image_urls_and_a_later_image_pass_fills_them_in(ray_local, server, tmp_path):  # noqa: F811
    """configs/local.yaml as it is (fetch off, images.failed: remove): the page's images stay in
    the document, in place, as not_fetched; flows.retry_images with fetching on then fetches them
    (and only a failed attempt is removed, by the rule)."""
    from flows import retry_images
    good, missing = server.url("/good.png?k=offline"), server.url("/missing.png")
    warc = _page_warc(tmp_path / "page.warc.gz", [good, missing])
    out = tmp_path / "out"
    cfg = load_config(ROOT / "configs/local.yaml", [], input=[str(warc)], output=str(out))
    assert not cfg.images.fetch.enabled and cfg.images.failed == "remove"
    run(cfg, [str(warc)])
    docs, _ = read_dir(out / "documents")
    assert [u for u in docs[0]["images"] if u] == [good, missing]       # in the page's order
    assert {i["status"] for i in docs[0]["image_info"] if i} == {"not_fetched"}
    assert "/good.png?k=offline" not in server.hits
    online = load_config(ROOT / "configs/local.yaml", ["images.fetch.enabled=true",
                                                       "images.fetch.allow_private_networks=true",
                                                       "images.fetch.retries=0"], output=str(out))
    record = retry_images.run(online, None)
    assert record["retryable_images"] == 2 and record["now_ok"] == 1
    got = _images(out)
    assert got[good]["status"] == "ok" and got[good]["sha256"] and missing not in got


@pytest.mark.slow
def test_a_retry_run_that_raises_records_failed_and_leaves_no_collector(ray_local, tmp_path, monkeypatch):  # noqa: F811
    import json

    import ray

    import flows.ray_ops
    from flows import retry_images
    out = tmp_path / "out"
    (out / "documents").mkdir(parents=True)
    cfg = load_config(ROOT / "configs/local.yaml", [], output=str(out))
    made, real = [], flows.ray_ops.StatsCollector

    class Collector:   # flows.ray_ops.StatsCollector, remembering the actor it made
        @staticmethod
        def remote(*a):
            made.append(real.remote(*a))
            return made[-1]

    def broken(*a, **k):
        raise OSError("injected: the store went away")
    monkeypatch.setattr(retry_images, "_retry", broken)
    monkeypatch.setattr(flows.ray_ops, "StatsCollector", Collector)
    with pytest.raises(OSError, match="injected"):
        retry_images.run(cfg, None, run_id="retry-1")
    record = json.loads((out / "_runs" / "retry-1" / "stats.json").read_text())
    assert record["status"] == "failed" and "injected" in record["failure"]
    assert len(made) == 1
    with pytest.raises(ray.exceptions.RayActorError):   # killed, not left running
        ray.get(made[0].get.remote(), timeout=30)


def _pages_warc(path, pages):
    """A WARC of several article pages, each [(src, bytes or None)], and an image record for each
    image with bytes (a browser-made crawl)."""
    records = []
    for k, images in enumerate(pages):
        body = "".join(f"<p>{PARAS[(k + i) % len(PARAS)]} ({k}.{i})</p><figure><img src=\"{src}\" width=\"400\" "
                       f"height=\"300\" alt=\"Photo {k}.{i}\"></figure>" for i, (src, _) in enumerate(images))
        html = (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Harbour {k}</title></head>"
                f"<body><article><h1>Harbour day {k}</h1>{body}<p>{PARAS[-1]} Day {k}.</p></article></body></html>")
        records.append((f"https://harbour{k}.example.org/day.html", "text/html; charset=utf-8", html.encode()))
        records += [(src, "image/jpeg", data) for src, data in images if data is not None]
    return _write_warc(path, records)


def test_an_image_repeated_under_many_urls_is_removed_by_its_content_across_runs(ray_local, tmp_path):  # noqa: F811
    """The same logo bytes under a different URL on each page (a CDN's cache-busting query): no URL
    repeats, the content does; with max_image_repeats=2 it leaves the documents, the pages' own
    photos stay; the next run counts the earlier run's uses (the index keeps content counts)."""
    logo = image_bytes("JPEG", seed=77)
    # and a banner saved at three JPEG qualities: three byte strings, one perceptual hash
    pages = [[(f"https://cdn.example.org/logo.jpg?v={k}", logo),
              (f"https://ads.example.net/banner-{k}.jpg", image_bytes("JPEG", seed=79, quality=q)),
              (f"https://cdn.example.org/photo-{k}.jpg", image_bytes("JPEG", seed=100 + k))]
             for k, q in enumerate((55, 85, 95))]
    out = tmp_path / "out"
    sets = ["dedup.max_image_repeats=2", "select.enabled=false"]
    first = _pages_warc(tmp_path / "a.warc.gz", pages)
    res = run(load_config(ROOT / "configs/local.yaml", sets, input=[str(first)], output=str(out)), [str(first)])
    docs, _ = read_dir(out / "documents")
    assert len(docs) == 3
    for d in docs:
        kept = [u for u in d["images"] if u]
        assert len(kept) == 1 and "photo-" in kept[0], kept
    content = next(o for o in res.stats if o["name"] == "repeated_content")["counters"]
    assert content["image_urls_repeated"] == 1 and content["image_refs_removed"] == 3      # the logo's bytes
    assert content["phash_repeated"] == 2 and content["near_copy_refs_removed"] == 3      # + the banner
    # a later run: one page with the logo under yet another URL; 3 earlier uses + 1 > 2
    second = _pages_warc(tmp_path / "b.warc.gz", [[("https://cdn.example.org/logo.jpg?v=new", logo),
                                                   ("https://cdn.example.org/photo-new.jpg", image_bytes("JPEG", seed=9))]])
    run(load_config(ROOT / "configs/local.yaml", sets, input=[str(second)], output=str(out)), [str(second)])
    docs, _ = read_dir(out / "documents")
    new = next(d for d in docs if any(u and "photo-new" in u for u in d["images"]))
    assert [u for u in new["images"] if u] == ["https://cdn.example.org/photo-new.jpg"]
    # off: the logo stays everywhere
    out2 = tmp_path / "out2"
    run(load_config(ROOT / "configs/local.yaml", sets + ["dedup.image_content_repeats=false"], input=[str(first)],
                    output=str(out2)), [str(first)])
    docs, _ = read_dir(out2 / "documents")
    assert all(sum(1 for u in d["images"] if u) == 3 for d in docs)
