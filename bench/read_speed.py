"""Read-only throughput of the WARC reader: FastWARC-based vs warcio, gzip and uncompressed.

    # make an input first (Common-Crawl-style WARCs of the shared ground-truth pages):
    python ../shared/tools/pages_to_warc.py --data-root ../shared/data --out /tmp/bench --repeat 5
    .venv/bin/python bench/read_speed.py                       # all /tmp/bench/*.warc.gz
    .venv/bin/python bench/read_speed.py /tmp/bench/l3s.warc.gz --rounds 5

Rows of the table (one process, one core, best of --rounds; the uncompressed input is a
gunzipped copy made in a temporary folder):
  fastwarc-iter   FastWARC ArchiveIterator alone: every record, payload of responses read
  warcio-iter     warcio ArchiveIterator alone, same work (content_stream() of responses)
  interleaf       operators.io.warc.iter_html_records: the whole reader (HTTP decoding, HTML
                  sniffing, charset detection + str decode, provenance)
  warcio-reader   the same reader logic on top of warcio (its own de-chunking and content
                  decoding, then our charset decoding): what using warcio would cost
records/s counts every WARC record (warcinfo, response, ...), pages/s the HTML rows.
"""
from __future__ import annotations

import argparse
import glob
import gzip
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fastwarc.warc import ArchiveIterator, WarcRecordType  # noqa: E402
from warcio.archiveiterator import ArchiveIterator as WarcioIterator  # noqa: E402

from operators.io import http as H  # noqa: E402
from operators.stats import Stats  # noqa: E402
from operators.io.warc import ReaderConfig, iter_html_records  # noqa: E402

_RESPONSE = int(WarcRecordType.response)


def fastwarc_iter(paths):
    recs = pages = 0
    for p in paths:
        with open(p, "rb") as fh:
            for r in ArchiveIterator(fh, parse_http=False):
                recs += 1
                if int(r.record_type) == _RESPONSE:
                    r.reader.read()
                    pages += 1
    return recs, pages


def warcio_iter(paths):
    recs = pages = 0
    for p in paths:
        with open(p, "rb") as fh:
            for r in WarcioIterator(fh):
                recs += 1
                if r.rec_type == "response":
                    r.content_stream().read()
                    pages += 1
    return recs, pages


def interleaf(paths):
    recs = pages = 0
    for p in paths:
        stats = Stats("read")
        for _ in iter_html_records(p, ReaderConfig(), stats):
            pages += 1
        recs += stats.counters["records"]
        assert not stats.errors, stats.errors
    return recs, pages


def warcio_reader(paths):
    recs = pages = 0
    for p in paths:
        with open(p, "rb") as fh:
            for r in WarcioIterator(fh):
                recs += 1
                if r.rec_type != "response" or r.http_headers is None:
                    continue
                mime, cs = H.split_content_type(r.http_headers.get_header("Content-Type"))
                if mime not in H.HTML_MIMES:
                    continue
                body = r.content_stream().read()
                if not body:
                    continue
                html, _ = H.decode_html(body, cs)
                _ = (r.rec_headers.get_header("WARC-Target-URI"), html)
                pages += 1
    return recs, pages


READERS = [("fastwarc-iter", fastwarc_iter), ("warcio-iter", warcio_iter),
           ("interleaf", interleaf), ("warcio-reader", warcio_reader)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("inputs", nargs="*", help="*.warc.gz files (default: /tmp/bench/*.warc.gz)")
    ap.add_argument("--rounds", type=int, default=3, help="best of N (default 3)")
    ap.add_argument("--readers", default=",".join(n for n, _ in READERS))
    args = ap.parse_args()
    gz_paths = sorted(args.inputs or glob.glob("/tmp/bench/*.warc.gz"))
    if not gz_paths:
        sys.exit("no input: run ../shared/tools/pages_to_warc.py --data-root ../shared/data "
                 "--out /tmp/bench --repeat 5 first")
    wanted = args.readers.split(",")
    tmp = tempfile.mkdtemp(prefix="read_speed_")
    try:
        plain_paths = []
        for p in gz_paths:
            out = os.path.join(tmp, os.path.basename(p)[:-3])
            with gzip.open(p, "rb") as src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            plain_paths.append(out)
        gz_mb = sum(os.path.getsize(p) for p in gz_paths) / 1e6
        plain_mb = sum(os.path.getsize(p) for p in plain_paths) / 1e6
        print(f"input: {len(gz_paths)} files, {gz_mb:.1f} MB gz / {plain_mb:.1f} MB uncompressed;"
              f" best of {args.rounds}; python {sys.version.split()[0]}, one core")
        print(f"| {'input':5} | {'reader':14} | {'records':>7} | {'pages':>6} | {'s':>6} |"
              f" {'records/s':>9} | {'pages/s':>8} | {'MB/s':>6} |")
        print(f"|{'-' * 7}|{'-' * 16}|{'-' * 9}|{'-' * 8}|{'-' * 8}|{'-' * 11}|{'-' * 10}|{'-' * 8}|")
        for kind, paths, mb in (("gz", gz_paths, gz_mb), ("plain", plain_paths, plain_mb)):
            for name, fn in READERS:
                if name not in wanted:
                    continue
                best = None
                for _ in range(args.rounds):
                    t = time.perf_counter()
                    recs, pages = fn(paths)
                    dt = time.perf_counter() - t
                    best = dt if best is None else min(best, dt)
                print(f"| {kind:5} | {name:14} | {recs:7d} | {pages:6d} | {best:6.2f} |"
                      f" {recs / best:9.0f} | {pages / best:8.0f} | {mb / best:6.1f} |", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
