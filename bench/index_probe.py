"""A unit's dedup against a large dedup index: does its cost follow the unit or the history?

    python bench/index_probe.py /tmp/b1/*.warc.gz --docs 10000000 [--parts 1] [--out /tmp/index-bench]

1. The unit: the WARCs' documents through the flow's chunk function in this process
   (flows.pipeline.process_records), giving the unit's key tables.
2. Its dedup (operators/dedup/unit.deduplicate) against an empty index.
3. A synthetic index of `--docs` earlier documents (random band keys, text and URL hashes; the
   payload zero-filled, as sparse files) in `--parts` probe parts, plus one real part holding the
   unit's own documents as an earlier crawl of the same pages (so that every document matches),
   committed with manifests as the flow does.
4. The same dedup reading what the unit's keys can match (operators/dedup/probe.unit_index), cold
   (first call) and warm; bytes the probe read; the process's memory before and after.

The figure of merit is the ratio of (4) to (2): the dedup phase against a history of `--docs`
documents over the same phase against none.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def unit_keys(warcs: list[str], out: str):
    import pyarrow as pa

    from flows.pipeline import process_span_records, span_plan
    from flows.config import load_config
    cfg = load_config(Path(__file__).resolve().parents[1] / "configs/local.yaml", [], input=warcs, output=out)
    keys = []
    for index, path in enumerate(warcs):   # the flow's span tasks, one after another in this process
        for k, (lo, hi) in enumerate(span_plan(path, cfg)):
            keys.append(process_span_records(path, index, k, lo, hi, False, cfg, "bench")[1])
    return cfg, pa.concat_tables(keys)


def synthetic_part(path: str, docs: int, bands: int, num_perm: int, seed: int) -> None:
    """A probe part of `docs` random documents, written array by array; the payload (ids, dates,
    signatures...) is left as zeros, a sparse region of the file (only matched rows are read)."""
    from operators.dedup import probe as dp
    rng = np.random.default_rng(seed)
    n_band = docs * bands
    specs = {"id": ("S64", (docs,)), "date": ("<i8", (docs,)), "chars": ("<i8", (docs,)),
             "images": ("<i8", (docs,)), "texthash": ("S64", (docs,)), "bands": ("<u8", (docs, bands)),
             "has_bands": ("|u1", (docs,)), "sig": ("<u4", (docs, num_perm)), "urlkey_off": ("<u8", (docs + 1,)),
             "urlkey": ("|u1", (0,))}
    lookups = {}
    for name, n in (("band", n_band), ("text", docs), ("url", docs)):
        k = rng.integers(1, 2**63, n, dtype=np.int64).astype(np.uint64)
        k.sort()
        lookups[name] = k
        specs[f"{name}_k"] = ("<u8", (n,))
        specs[f"{name}_r"] = ("<u4", (n,))
        specs[f"{name}_f"] = ("<u8", (len(k[::dp.BLOCK]),))
    for name in ("img", "sup"):
        specs[f"{name}_k"] = ("<u8", (0,))
        specs[f"{name}_r"] = ("<u4", (0,))
        specs[f"{name}_f"] = ("<u8", (0,))
    specs["img_n"] = ("<i8", (0,))
    head = dp.layout(specs, docs, bands, num_perm)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(head)
        base = f.tell()
        offsets = json.loads(head[16:].decode())["arrays"]
        for name, (dtype, shape) in specs.items():
            f.seek(base + offsets[name][0])
            if name.endswith("_k") and name[:-2] in lookups:
                f.write(lookups[name[:-2]].tobytes())
            elif name.endswith("_r") and name[:-2] in lookups:
                n = shape[0]
                for lo in range(0, n, 1 << 24):
                    f.write(rng.integers(0, docs, min(1 << 24, n - lo), dtype=np.uint32).tobytes())
            elif name.endswith("_f") and name[:-2] in lookups:
                f.write(lookups[name[:-2]][::dp.BLOCK].tobytes())
        end = base + max(o[0] + int(np.prod(o[2])) * np.dtype(o[1]).itemsize for o in offsets.values())
        f.truncate(end)


def commit_parts(out: str, rels: list[str]) -> None:
    from operators.dedup import index as di
    from operators.io.writer import write_text
    for i, rel in enumerate(rels):
        write_text(out, di.manifest_path(f"bench-{i:04d}"), json.dumps(
            {"run_id": f"bench-{i:04d}", "committed": "bench", "files": {"probe": [rel]}}))


def rss() -> float:
    import psutil
    return psutil.Process().memory_info().rss / 2**20


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("warcs", nargs="+")
    ap.add_argument("--docs", type=int, default=10_000_000)
    ap.add_argument("--parts", type=int, default=1)
    ap.add_argument("--out", default=None)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--no-twins", action="store_true",
                    help="leave the earlier crawl of the unit's pages out: the index holds only documents it cannot match")
    args = ap.parse_args()
    from operators.dedup import probe as dp
    from operators.dedup.index import DOCS
    from operators.dedup.unit import deduplicate
    out = args.out or tempfile.mkdtemp(prefix="interleaf-index-")
    t = time.perf_counter()
    cfg, keys = unit_keys(args.warcs, tempfile.mkdtemp(prefix="interleaf-unit-"))
    print(f"unit: {keys.num_rows} documents with keys ({time.perf_counter() - t:.1f} s to extract)")

    def timed(fn):
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            res = fn()
            times.append(time.perf_counter() - t0)
        return res, times

    _, empty = timed(lambda: deduplicate(keys, cfg.dedup))
    t = time.perf_counter()
    per = args.docs // args.parts
    rels = []
    for i in range(args.parts):
        rel = f"_index/probe/synthetic-{i:03d}.probe"
        synthetic_part(os.path.join(out, rel), per, cfg.dedup.bands, cfg.dedup.num_perm, seed=i)
        rels.append(rel)
    # the unit's own pages as an earlier crawl: every document of the unit has its twin in the index
    import pyarrow as pa
    twins = keys.select([f.name for f in DOCS if f.name in keys.column_names])
    twins = twins.set_column(0, "id", pa.array([f"old-{i}" for i in keys["id"].to_pylist()]))
    twins = twins.set_column(twins.schema.get_field_index("url_key"), "url_key",   # a mirror: exact duplicates
                             pa.array([f"https://mirror.example/{i}" for i in range(keys.num_rows)]))
    if args.no_twins:
        twins = twins.slice(0, 0)
    rels.append(dp.write_part(out, "_index/probe/earlier-crawl.probe", twins.select(DOCS.names).cast(DOCS), None,
                              None, cfg.dedup.bands, cfg.dedup.num_perm))
    commit_parts(out, rels)
    small = tempfile.mkdtemp(prefix="interleaf-index-small-")   # the earlier crawl alone: no history beyond it
    commit_parts(small, [dp.write_part(small, "_index/probe/earlier-crawl.probe", twins.select(DOCS.names).cast(DOCS),
                                       None, None, cfg.dedup.bands, cfg.dedup.num_perm)])
    size = sum(os.path.getsize(os.path.join(out, r)) for r in rels)
    print(f"index: {args.docs + twins.num_rows:,} documents in {len(rels)} probe parts, {size / 2**30:.1f} GiB "
          f"(payload sparse), built in {time.perf_counter() - t:.0f} s")
    os.system("sync")
    before = rss()
    t0 = time.perf_counter()
    docs, images, counts = dp.unit_index(out, keys)
    probe_cold = time.perf_counter() - t0
    outcome = deduplicate(keys, cfg.dedup, docs, images)
    cold = time.perf_counter() - t0

    def with_index(where):
        d, i, _ = dp.unit_index(where, keys)
        return deduplicate(keys, cfg.dedup, d, i)
    _, warm = timed(lambda: with_index(out))
    _, small_times = timed(lambda: with_index(small))
    after = rss()
    e, w, sm = statistics.median(empty), statistics.median(warm), statistics.median(small_times)
    print(f"matched: {counts['index_documents_matched']} earlier documents; the unit's duplicates of them: "
          f"{outcome.counts['duplicates_of_earlier_runs']}, URL duplicates {outcome.counts['duplicate_url']}")
    print("| dedup phase of the unit | seconds (median of %d) |\n|---|---|" % args.repeat)
    print(f"| against an empty index | {e:.3f} |")
    print(f"| against the earlier crawl alone ({twins.num_rows:,} documents) | {sm:.3f} |")
    print(f"| against {args.docs + twins.num_rows:,} documents, first call (probe {probe_cold:.3f} s) | {cold:.3f} |")
    print(f"| against {args.docs + twins.num_rows:,} documents, warm | {w:.3f} |")
    print(f"ratio (warm / empty): {w / e:.2f}; (warm / the earlier crawl alone): {w / sm:.2f}; probe read {counts['index_bytes_read'] / 2**20:.1f} MiB; "
          f"process RSS {before:.0f} -> {after:.0f} MiB")


if __name__ == "__main__":
    main()
