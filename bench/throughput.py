"""Pages per second: read only, read + extract, every operator of the flow, the whole flow on Ray,
and trafilatura on the same pages.

    python ../shared/tools/pages_to_warc.py --data-root ../shared/data --out /tmp/bench --repeat 5
    python bench/throughput.py /tmp/bench/*.warc.gz [--flow] [--trafilatura-pages 1350]

Read, read+extract and the operator chain run in this process on one core; the chain table gives
each operator's own rate (CPU time of its calls: read, extract, langid, clean, quality, select,
minhash, write; the clustering shuffles run only in the flow). `--flow` also runs `flows.crawl` on a local Ray with `--cpus` CPUs (reported per core).
trafilatura runs on N HTML records spread evenly over all of them (`--trafilatura-pages`; on
`--repeat 4` inputs 1,350 takes one copy of every page), with the scorer's baseline call.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from operators.text.extract import ExtractConfig, extract_document  # noqa: E402
from operators.stats import Stats  # noqa: E402
from operators.io.warc import ReaderConfig, iter_html_records  # noqa: E402


def read_only(paths):
    n = 0
    for p in paths:
        for _ in iter_html_records(p, ReaderConfig(), Stats("read")):
            n += 1
    return n


def read_extract(paths, cfg):
    n = 0
    for p in paths:
        for rec in iter_html_records(p, ReaderConfig(), Stats("read")):
            extract_document(rec["html"], rec["url"], cfg)
            n += 1
    return n


def chain(paths):
    """Every operator of the crawl flow in one process; CPU seconds spent in each."""
    import pyarrow as pa

    from operators.text.clean import CleanBlocks
    from flows.config import load_config
    from operators.text.documents import ExtractDocuments, RunInfo
    from operators.text.langid import IdentifyLanguage
    from operators.dedup.minhash import MinHashSignatures
    from operators.text.pii import RedactPII
    from operators.text.quality import QualitySignals
    from operators.io.read import ReadWarcs
    from operators.text.select import Select
    from operators.io.writer import PartWriter

    cfg = load_config(Path(__file__).resolve().parents[1] / "configs/local.yaml")
    ops = [("extract", ExtractDocuments(cfg.extract, RunInfo("bench", cfg.config_hash()))),
           ("langid", IdentifyLanguage(cfg.langid)), ("clean", CleanBlocks(cfg.clean, cfg.quality)),
           ("pii", RedactPII(cfg.pii)),
           ("quality", QualitySignals(cfg.quality)), ("select", Select(cfg.select)),
           ("minhash (dedup keys)", MinHashSignatures(cfg.dedup))]
    spent = {"read": 0.0, **{name: 0.0 for name, _ in ops}, "write": 0.0}
    out = tempfile.mkdtemp(prefix="interleaf-bench-")
    n = 0
    for i, path in enumerate(paths):
        writer = PartWriter(out, "bench", f"{i:04d}", cfg.writer)
        batches = ReadWarcs(cfg.reader, cfg.ray.records_per_batch)(pa.table({"warc_path": [path]}))
        while True:
            t = time.process_time()
            batch = next(batches, None)
            spent["read"] += time.process_time() - t
            if batch is None:
                break
            n += batch.num_rows
            for name, op in ops:
                t = time.process_time()
                batch = op(batch)
                spent[name] += time.process_time() - t
            t = time.process_time()
            writer.write(batch)
            spent["write"] += time.process_time() - t
        writer.close()
    return n, spent


def timed(fn, *a):
    t = time.perf_counter()
    n = fn(*a)
    return n, time.perf_counter() - t


def trafilatura_rate(paths, limit):
    """trafilatura on `limit` HTML records spread evenly over all of them (all when limit is
    more than there are): the first N records would be one set's pages (the shared sets differ:
    on the ground-truth WARCs trafilatura does ~60 pages/s on the first 500, ~51 on all 1,350)."""
    import trafilatura
    recs = [rec for p in paths for rec in iter_html_records(p, ReaderConfig(), Stats("read"))]
    if 0 < limit < len(recs):
        step = len(recs) / limit
        recs = [recs[int(i * step)] for i in range(limit)]
    t = time.perf_counter()
    for rec in recs:
        trafilatura.extract(rec["html"], url=rec["url"], include_images=True, output_format="xml",
                            favor_precision=False)
    return len(recs), time.perf_counter() - t


def flow_rate(paths, cpus):
    """Pages and seconds of `flows.crawl.run`, Ray already started (its start-up is reported apart)."""
    from flows.crawl import run
    from flows.ray_ops import init_ray
    from flows.config import load_config
    out = tempfile.mkdtemp(prefix="interleaf-bench-")
    cfg = load_config(Path(__file__).resolve().parents[1] / "configs/local.yaml", [f"ray.num_cpus={cpus}"],
                      input=list(paths), output=out)
    t = time.perf_counter()
    init_ray(None, cpus)
    startup = time.perf_counter() - t
    res = run(cfg, list(paths))
    n = next(s for s in res.stats if s["name"] == "read")["counters"]["out"]
    print(f"(local Ray start-up: {startup:.1f} s, not counted)", file=sys.stderr)
    return n, res.seconds


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("warcs", nargs="+")
    ap.add_argument("--flow", action="store_true", help="also time the whole flow on a local Ray")
    ap.add_argument("--cpus", type=int, default=os.cpu_count())
    ap.add_argument("--trafilatura-pages", type=int, default=1350,
                    help="records for trafilatura, spread evenly over all (0: skip trafilatura)")
    args = ap.parse_args()
    rows = []
    n, s = timed(read_only, args.warcs)
    rows.append(("read only (FastWARC + HTTP decode + charset)", n, s, 1))
    n, s = timed(read_extract, args.warcs, ExtractConfig())
    rows.append(("read + extract (lexbor engine)", n, s, 1))
    if args.trafilatura_pages:
        n, s = trafilatura_rate(args.warcs, args.trafilatura_pages)
        rows.append(("trafilatura.extract only (same pages)", n, s, 1))
    if args.flow:
        n, s = flow_rate(args.warcs, args.cpus)
        rows.append((f"whole flow on local Ray ({args.cpus} CPUs; every operator + dedup clustering)", n, s, args.cpus))
    print("| stage | pages | seconds | pages/s | pages/s/core |\n|---|---|---|---|---|")
    for name, n, s, cores in rows:
        print(f"| {name} | {n} | {s:.1f} | {n / s:.0f} | {n / s / cores:.0f} |")
    n, spent = chain(args.warcs)
    total = sum(spent.values())
    print("\n| operator (one process, CPU time) | seconds | docs/s/core | share |\n|---|---|---|---|")
    for name, s in spent.items():
        print(f"| {name} | {s:.1f} | {n / s:.0f} | {s / total:.0%} |")
    print(f"| all operators | {total:.1f} | {n / total:.0f} | 100% |")


if __name__ == "__main__":
    main()
