"""Every input kind through one I/O layer (operators/io/storage.py): http(s) Range reads with retries,
Common Crawl manifests (warc.paths.gz) from a local file, over HTTP and on S3 (moto), anonymous S3,
and the `reader` config keys that steer them. Servers run on 127.0.0.1 inside the tests
(tests/range_server.py, moto via tests/conftest.py)."""
from __future__ import annotations

import gzip
import re
from pathlib import Path

import pytest

from flows.make_sample import write_sample_warc
from operators.io import storage
from flows.config import ConfigError, load_config
from operators.stats import Stats
from operators.io.storage import HttpFile, IOOptions, expand_inputs, open_input, read_manifest
from operators.io.warc import ReaderConfig, iter_html_records, iter_image_records
from tests.range_server import RangeServer

ROOT = Path(__file__).resolve().parents[1]
CRAWL = "crawl-data/CC-MAIN-2024-51"
SEGS = [f"{CRAWL}/segments/1733066035857.0/warc/CC-MAIN-20241201000000-20241201{n:06d}-0000{n}.warc.gz"
        for n in (3, 1, 2)]  # not sorted: the manifest's order must be kept
FAST = ReaderConfig(retry_backoff=0.01)


def manifest_text(lines=SEGS) -> str:
    """A manifest with the odd things real ones may have: a comment, blank lines, a duplicate,
    trailing spaces and CRLF."""
    return ("# CC-MAIN-2024-51 WARC files\n" + lines[0] + "\r\n\n  " + lines[1] + "  \n"
            + lines[0] + "\n" + "\n".join(lines[2:]) + "\n")


def strip_path(rows):
    return [{k: v for k, v in r.items() if k != "warc_path"} for r in rows]


@pytest.fixture(scope="module")
def warc(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("warc") / "sample.warc.gz"
    write_sample_warc(str(path))
    return path


@pytest.fixture(scope="module")
def local_rows(warc):
    stats = Stats("read")
    rows = list(iter_html_records(str(warc), ReaderConfig(), stats))
    assert len(rows) > 5 and not stats.errors
    return rows


@pytest.fixture(scope="module")
def srv(warc):
    with RangeServer() as s:
        for seg in SEGS:
            s.add(f"/cc/{seg}", warc.read_bytes())
        s.add(f"/cc/{CRAWL}/warc.paths.gz", gzip.compress(manifest_text().encode()))
        yield s


@pytest.fixture
def small_blocks(monkeypatch):
    """Requests of a few KB, so the sample WARC (~130 KB) takes several, as a 1 GB file would."""
    monkeypatch.setattr(storage, "HTTP_FIRST_BLOCK", 4096)
    monkeypatch.setattr(storage, "HTTP_BLOCK", 16384)


# -- http(s) ---------------------------------------------------------------------------------------

def test_http_reader_equals_local_and_streams_by_ranges(srv, warc, local_rows, small_blocks):
    path = "/stream.warc.gz"
    url = srv.add(path, warc.read_bytes())
    stats = Stats("read")
    rows = list(iter_html_records(url, ReaderConfig(), stats))
    assert not stats.errors and not stats.counters.get("io_retries")
    assert all(r["warc_path"] == url for r in rows)
    assert strip_path(rows) == strip_path(local_rows)  # url, offsets, lengths, html, ...
    size = warc.stat().st_size
    ranges = srv.requests(path)
    assert len(ranges) > 3 and None not in ranges, ranges  # only Range requests
    spans = [tuple(int(x) for x in re.fullmatch(r"bytes=(\d+)-(\d+)", r).groups()) for r in ranges]
    assert max(b - a + 1 for a, b in spans) < size / 2  # never the whole file in one request
    images = list(iter_image_records(url, ReaderConfig(), Stats("img")))
    assert len(images) == len(list(iter_image_records(str(warc), ReaderConfig(), Stats("img")))) > 0


def test_http_file_is_a_seekable_file(srv, warc, small_blocks):
    data = warc.read_bytes()
    with open_input(srv.url(f"/cc/{SEGS[0]}"), IOOptions()) as f:
        assert isinstance(f, HttpFile) and f.size() == len(data)
        assert f.read(10) == data[:10] and f.tell() == 10
        assert f.read_at(100, 50_000) == data[50_000:50_100] and f.tell() == 10
        f.seek(len(data) - 5)
        assert f.read(100) == data[-5:] and f.read(1) == b""
        f.seek(-20, 2)
        assert f.read() == data[-20:]
        f.seek(0)
        assert f.read() == data
        assert f.read_at(10, len(data) + 5) == b""


def test_http_503_is_retried_then_gives_up_clearly(srv, warc, local_rows):
    url = srv.add("/flaky.warc.gz", warc.read_bytes(), plan=["503", "503"])
    stats = Stats("read")
    rows = list(iter_html_records(url, FAST, stats))
    assert strip_path(rows) == strip_path(local_rows) and not stats.errors
    assert stats.counters["io_retries"] == 2
    assert srv.requests("/flaky.warc.gz")[:3] == ["bytes=0-65535"] * 3  # the same range again

    url = srv.add("/flaky0.warc.gz", warc.read_bytes(), plan=["503", "503"])
    with pytest.raises(OSError, match=r"flaky0\.warc\.gz: HTTP 503 .*gave up after 1 tries"):
        open_input(url, IOOptions(retries=0))
    stats = Stats("read")
    assert list(iter_html_records(url, ReaderConfig(retries=0), stats)) == []
    assert [(e["kind"], e["file"]) for e in stats.errors] == [("unreadable_warc", url)]
    assert "HTTP 503" in stats.errors[0]["error"]
    # a server that keeps failing: retries run out, reported, not raised
    url = srv.add("/down.warc.gz", warc.read_bytes(), plan=["503"] * 3)
    stats = Stats("read")
    assert list(iter_html_records(url, ReaderConfig(retries=1, retry_backoff=0.01), stats)) == []
    assert stats.counters["errors_unreadable_warc"] == 1 and "gave up after 2 tries" in stats.errors[0]["error"]


def test_http_resets_are_retried_at_the_same_offset(srv, warc, local_rows, small_blocks):
    # first request: reset before any answer; second: half the body, then a reset
    path = "/reset.warc.gz"
    url = srv.add(path, warc.read_bytes(), plan=["reset", None, "cut"])
    stats = Stats("read")
    rows = list(iter_html_records(url, FAST, stats))
    assert strip_path(rows) == strip_path(local_rows) and not stats.errors
    assert stats.counters["io_retries"] == 2
    ranges = srv.requests(path)
    assert ranges[0] == ranges[1] == "bytes=0-4095"
    assert ranges[2] == ranges[3] and ranges[2].startswith("bytes=4096-")  # the cut range, again


def test_http_404_is_not_retried_and_is_a_counted_skip(srv):
    url = srv.url("/cc/missing.warc.gz")
    with pytest.raises(FileNotFoundError, match=re.escape(url)):
        open_input(url, IOOptions(retries=5, retry_backoff=0.01))
    assert srv.requests("/cc/missing.warc.gz") == ["bytes=0-65535"]  # one request, no retry
    stats = Stats("read")
    assert list(iter_html_records(url, FAST, stats)) == []
    assert stats.counters["errors_unreadable_warc"] == 1
    assert stats.errors[0]["kind"] == "unreadable_warc" and "404" in stats.errors[0]["error"]


def test_http_globs_are_refused(srv):
    with pytest.raises(ValueError, match="globs are not supported over http"):
        expand_inputs([srv.url("/cc/*.warc.gz")])
    assert expand_inputs([srv.url("/cc/" + SEGS[0])]) == [srv.url("/cc/" + SEGS[0])]
    with pytest.raises(FileNotFoundError, match=re.escape(repr(srv.url("/cc/nope.warc.gz"))) + " matches no file"):
        expand_inputs([srv.url("/cc/nope.warc.gz")])


# -- manifests -------------------------------------------------------------------------------------

def test_manifest_over_http_keeps_order_and_applies_base(srv, local_rows):
    base = srv.url("/cc/")
    manifest = srv.url(f"/cc/{CRAWL}/warc.paths.gz")
    paths = expand_inputs([manifest], cc_base=base)
    assert paths == [base + s for s in SEGS]  # manifest order, duplicate and comment gone
    assert read_manifest(manifest, base) == paths
    assert expand_inputs([manifest]) == ["https://data.commoncrawl.org/" + s for s in SEGS]  # default base
    assert expand_inputs([manifest], cc_base="s3://commoncrawl") == ["s3://commoncrawl/" + s for s in SEGS]
    for p in paths:  # and the WARCs it names read end to end over HTTP
        stats = Stats("read")
        assert strip_path(iter_html_records(p, FAST, stats)) == strip_path(local_rows) and not stats.errors
    with pytest.raises(FileNotFoundError, match=re.escape(repr(srv.url("/cc/nope/warc.paths.gz")))):
        expand_inputs([srv.url("/cc/nope/warc.paths.gz")], cc_base=base)


def test_local_manifest_plain_and_gz(tmp_path, warc):
    mirror = tmp_path / "mirror"
    for s in SEGS:
        (mirror / s).parent.mkdir(parents=True, exist_ok=True)
        (mirror / s).write_bytes(warc.read_bytes())
    plain = tmp_path / "warc.paths"
    plain.write_text(manifest_text(SEGS + ["https://example.org/x.warc.gz", str(warc)]))
    want = [str(mirror / s) for s in SEGS] + ["https://example.org/x.warc.gz", str(warc)]
    assert expand_inputs([str(plain)], cc_base=str(mirror)) == want
    assert expand_inputs([str(plain)], cc_base=f"file://{mirror}/") == want
    gz = tmp_path / "warc.paths.gz"
    gz.write_bytes(gzip.compress(manifest_text().encode()))
    assert expand_inputs([str(gz)], cc_base=str(mirror) + "/") == want[:3]
    # with globs: pattern order, each glob sorted, duplicates keep their first place
    got = expand_inputs([str(gz), str(mirror / "**/*.warc.gz"), str(warc)], cc_base=str(mirror))
    assert got == want[:3] + [str(warc)]
    # without a manifest: sorted, as before
    assert expand_inputs([str(warc), str(mirror / "**/*.warc.gz")]) == sorted(want[:3] + [str(warc)])
    empty = tmp_path / "empty.paths"
    empty.write_text("# nothing yet\n\n")
    with pytest.raises(FileNotFoundError, match=re.escape(repr(str(empty))) + ".*lists no file"):
        expand_inputs([str(empty)])
    with pytest.raises(FileNotFoundError, match=re.escape(repr(str(tmp_path / "no.paths.gz")))):
        expand_inputs([str(tmp_path / "no.paths.gz")])


# -- S3 (moto) -------------------------------------------------------------------------------------

BUCKET = "interleaf-inputs"


@pytest.fixture(scope="module")
def s3(moto_s3, warc):
    client = moto_s3["client"]
    client.create_bucket(Bucket=BUCKET)
    for s in SEGS:
        client.put_object(Bucket=BUCKET, Key=s, Body=warc.read_bytes())
    client.put_object(Bucket=BUCKET, Key=f"{CRAWL}/warc.paths.gz", Body=gzip.compress(manifest_text().encode()))
    client.put_object(Bucket=BUCKET, Key="public/sample.warc.gz", Body=warc.read_bytes(), ACL="public-read")
    return moto_s3


def test_s3_manifest_and_warcs_end_to_end(s3, local_rows):
    manifest = f"s3://{BUCKET}/{CRAWL}/warc.paths.gz"
    paths = expand_inputs([manifest], cc_base=f"s3://{BUCKET}/", io=FAST.io)
    assert paths == [f"s3://{BUCKET}/{s}" for s in SEGS]
    assert expand_inputs([manifest], cc_base=f"s3://{BUCKET}") == paths  # io defaulted, base without "/"
    for p, retries in zip(paths, (0, 2, 5)):
        stats = Stats("read")
        rows = list(iter_html_records(p, ReaderConfig(retries=retries), stats))
        assert not stats.errors and strip_path(rows) == strip_path(local_rows)
        assert {r["warc_path"] for r in rows} == {p}
    with pytest.raises(FileNotFoundError, match=re.escape(repr(f"s3://{BUCKET}/nope/warc.paths.gz"))):
        expand_inputs([f"s3://{BUCKET}/nope/warc.paths.gz"])
    stats = Stats("read")
    assert list(iter_html_records(f"s3://{BUCKET}/nope.warc.gz", FAST, stats)) == []
    assert stats.counters["errors_unreadable_warc"] == 1


def test_s3_anonymous(s3, local_rows):
    anon = ReaderConfig(s3_anonymous=True, retries=1)
    stats = Stats("read")
    rows = list(iter_html_records(f"s3://{BUCKET}/public/sample.warc.gz", anon, stats))
    assert not stats.errors and strip_path(rows) == strip_path(local_rows)
    # unsigned requests really are unsigned: a private object is refused, a counted skip
    stats = Stats("read")
    assert list(iter_html_records(f"s3://{BUCKET}/{SEGS[0]}", anon, stats)) == []
    assert stats.counters["errors_unreadable_warc"] == 1
    assert re.search(r"ACCESS_DENIED|AccessDenied|403", stats.errors[0]["error"]), stats.errors
    # and the same object signed reads
    assert len(list(iter_html_records(f"s3://{BUCKET}/{SEGS[0]}", ReaderConfig(), Stats("read")))) == len(rows)


def test_s3_retries_reach_pyarrow(srv, warc, monkeypatch, tmp_path):
    """`retries` becomes the AWS SDK's retry strategy: the range server speaks enough S3 (path-style
    HEAD and ranged GET) to fail on purpose. Signed and anonymous."""
    for k, v in {"AWS_ENDPOINT_URL_S3": srv.url(""), "AWS_ENDPOINT_URL": srv.url(""),
                 "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
                 "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "AWS_CONFIG_FILE": str(tmp_path / "config"),
                 "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "credentials")}.items():
        monkeypatch.setenv(k, v)
    for k in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION"):
        monkeypatch.delenv(k, raising=False)
    data = warc.read_bytes()
    for anonymous in (False, True):
        key = f"/fake-s3/flaky-{anonymous}.warc.gz"
        srv.add(key, data, plan=["503", None, "503", "cut"])  # HEAD fails, then a ranged GET twice
        with open_input(f"s3:/{key}", IOOptions(retries=2, s3_anonymous=anonymous)) as f:
            assert f.size() == len(data) and f.read() == data
        # HEAD (503), HEAD, then the same ranged GET three times (503, cut, whole)
        assert srv.requests(key) == [None, None] + [f"bytes=0-{len(data) - 1}"] * 3
        key = f"/fake-s3/flaky0-{anonymous}.warc.gz"
        srv.add(key, data, plan=["503"])
        with pytest.raises(OSError, match="503"):
            open_input(f"s3:/{key}", IOOptions(retries=0, s3_anonymous=anonymous))
        assert srv.requests(key) == [None]  # one try, no retry


# -- config ----------------------------------------------------------------------------------------

def test_reader_input_keys_defaults_and_local_yaml():
    cfg = load_config(ROOT / "configs/local.yaml")
    r = cfg.reader
    assert (r.cc_base, r.s3_anonymous, r.retries, r.retry_backoff, r.concurrency) == (
        "https://data.commoncrawl.org/", False, 5, 1.0, None)
    assert r == ReaderConfig()
    assert r.io == IOOptions(retries=5, retry_backoff=1.0, s3_anonymous=False)
    r = load_config(None, ["reader.cc_base=s3://commoncrawl/", "reader.s3_anonymous=true", "reader.retries=0",
                           "reader.retry_backoff=2", "reader.concurrency=200"]).reader
    assert (r.cc_base, r.s3_anonymous, r.retries, r.retry_backoff, r.concurrency) == (
        "s3://commoncrawl/", True, 0, 2.0, 200)


@pytest.mark.parametrize("override, message", [
    ("reader.retrys=3", r"unknown config key reader\.retrys"),
    ("reader.ccbase=x", r"unknown config key reader\.ccbase"),
    ("reader.retries=-1", r"reader\.retries must be an integer >= 0"),
    ("reader.retries=many", r"reader\.retries: expected int"),
    ("reader.retries=true", r"reader\.retries: expected int"),
    ("reader.retry_backoff=-0.5", r"reader\.retry_backoff must be"),
    ("reader.retry_backoff=soon", r"reader\.retry_backoff: expected float"),
    ("reader.s3_anonymous=maybe", r"reader\.s3_anonymous: expected bool"),
    ("reader.concurrency=0", r"reader\.concurrency must be null \(no limit\) or an integer >= 1"),
    ("reader.concurrency=lots", r"reader\.concurrency"),
    ("reader.concurrency=1.5", r"reader\.concurrency"),
    ("reader.cc_base=''", r"reader\.cc_base must be a non-empty"),
    ("reader.cc_base=3", r"reader\.cc_base: expected str"),
])
def test_reader_input_keys_are_checked(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])
