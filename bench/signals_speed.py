"""Speed of the quality signals and block cleaning (docs/s on one core) on realistic documents.

    # input: WARCs of the shared ground-truth pages (already made on the dev machines):
    python ../shared/tools/pages_to_warc.py --data-root ../shared/data --out /tmp/gt
    .venv/bin/python bench/signals_speed.py                 # all /tmp/gt/*.warc.gz
    .venv/bin/python bench/signals_speed.py /tmp/gt/l3s.warc.gz --rounds 5 --batch 256

Documents are built once by `ReadWarcs` + `ExtractDocuments` (not timed), then each operator runs
over them in batches of --batch rows, best of --rounds, in this process (one core):
  clean     CleanBlocks with the default CleanConfig
  quality   QualitySignals on the cleaned documents (the pipeline order)
  both      clean then quality, per batch
Times are CPU seconds of this process (time.process_time), so docs/s is per core even on a busy
machine.
Prints a Markdown table: documents, words per document, seconds, docs/s, MB of text/s.
"""
from __future__ import annotations

import argparse
import glob
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402

from operators.text.clean import CleanBlocks, CleanConfig  # noqa: E402
from operators.text.documents import ExtractDocuments, RunInfo  # noqa: E402
from operators.text.extract import ExtractConfig  # noqa: E402
from operators.text.quality import QualityConfig, QualitySignals  # noqa: E402
from operators.io.read import ReadWarcs  # noqa: E402
from operators.io.warc import ReaderConfig  # noqa: E402


def build_documents(paths: list[str]) -> pa.Table:
    read = ReadWarcs(ReaderConfig(), records_per_batch=256)
    extract = ExtractDocuments(ExtractConfig(), RunInfo(run_id="bench", config_hash="bench"))
    tables = [extract(batch) for batch in read(pa.table({"warc_path": paths}))]
    return pa.concat_tables(tables)


def timed(fn, batches, rounds):
    best = float("inf")
    out = None
    for _ in range(rounds):
        t = time.process_time()   # CPU time of this process: per-core cost, robust to other load
        out = [fn(b) for b in batches]
        best = min(best, time.process_time() - t)
    return best, out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("paths", nargs="*", default=None)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch", type=int, default=256, help="rows per operator call")
    args = ap.parse_args(argv)
    paths = args.paths or sorted(glob.glob("/tmp/gt/*.warc.gz"))
    if not paths:
        sys.exit("no input: make /tmp/gt with ../shared/tools/pages_to_warc.py (see the docstring)")
    docs = build_documents(paths)
    batches = [docs.slice(i, args.batch) for i in range(0, docs.num_rows, args.batch)]
    qcfg = QualityConfig()
    clean, quality = CleanBlocks(CleanConfig(), qcfg), QualitySignals(qcfg)
    t_clean, cleaned = timed(clean, batches, args.rounds)
    t_quality, scored = timed(quality, cleaned, args.rounds)
    t_both, _ = timed(lambda b: quality(clean(b)), batches, args.rounds)
    n = docs.num_rows
    scored = pa.concat_tables(scored)
    words = sum(q["word_count"] for q in scored["quality"].to_pylist())
    mb = sum(docs["text_chars"].to_pylist()) / 1e6
    print(f"{n} documents from {len(paths)} WARC(s), {words / max(n, 1):.0f} words/doc after cleaning, "
          f"{mb:.1f} M characters, batches of {args.batch}, best of {args.rounds}\n")
    print("| operator | docs | seconds | docs/s/core | M chars/s |")
    print("|---|---:|---:|---:|---:|")
    for name, t in (("clean", t_clean), ("quality", t_quality), ("clean + quality", t_both)):
        print(f"| {name} | {n} | {t:.2f} | {n / t:,.0f} | {mb / t:.1f} |")
    # by document size (characters of text before cleaning): what "typical pages" cost
    chars = np.asarray(docs["text_chars"].to_numpy(zero_copy_only=False))
    print(f"\nclean + quality by document size (median {np.median(chars):,.0f} characters):\n")
    print("| characters | docs | words/doc | docs/s/core |")
    print("|---|---:|---:|---:|")
    for lo, hi in ((0, 2000), (2000, 5000), (5000, 10000), (10000, 10**12)):
        sel = np.flatnonzero((chars >= lo) & (chars < hi))
        if not len(sel):
            continue
        sub = docs.take(sel)
        sub_batches = [sub.slice(i, args.batch) for i in range(0, sub.num_rows, args.batch)]
        t, _ = timed(lambda b: quality(clean(b)), sub_batches, args.rounds)
        w = sum(q["word_count"] for q in quality(clean(sub))["quality"].to_pylist()) / len(sel)
        label = f"{lo:,}-{hi:,}" if hi < 10**12 else f">= {lo:,}"
        print(f"| {label} | {len(sel)} | {w:.0f} | {len(sel) / t:,.0f} |")
    c = clean.stats.counters
    print(f"\nblocks (all rounds and tables): in {c['blocks_in']}, dropped {c['blocks_dropped']}: " + ", ".join(
        f"{k.removeprefix('blocks_dropped_')} {v}" for k, v in sorted(c.items()) if k.startswith("blocks_dropped_")))


if __name__ == "__main__":
    main()
