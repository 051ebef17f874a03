"""Extraction quality and speed on the shared ground-truth pages.

    .venv/bin/python bench/extraction_quality.py                      # lexbor engine
    .venv/bin/python bench/extraction_quality.py --engine trafilatura

Steps: pack the shared sets into WARCs + truth files once (`pages_to_warc.py`, into --gt-dir),
read the payloads back from the WARCs (exactly what the pipeline sees), run
`extract_document` on each page timing the call only (one process), write a Parquet of
`url, texts, images`, then score it with `score_extraction.py` next to the trafilatura baseline.
The baseline (slow: ~30 s of extraction) is cached as JSON in --baseline-cache.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from operators.text.extract import ExtractConfig, extract_document  # noqa: E402

SHARED = Path("/work/shared")
DEFAULT_TOOLS = SHARED / "tools"
DEFAULT_DATA = SHARED / "data"


def load_scorer(tools: Path):
    spec = importlib.util.spec_from_file_location("score_extraction", tools / "score_extraction.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def ensure_warcs(tools: Path, data: Path, gt_dir: Path) -> None:
    if any(gt_dir.glob("*.truth.jsonl")) and any(gt_dir.glob("*.warc.gz")):
        return
    subprocess.run([sys.executable, str(tools / "pages_to_warc.py"), "--data-root", str(data),
                    "--out", str(gt_dir)], check=True)


def load_pages(gt_dir: Path, sets: set | None) -> list[dict]:
    """[{url, set, html}] from the WARC payloads, decoded with the truth's charset."""
    from warcio.archiveiterator import ArchiveIterator

    pages = []
    for truth_file in sorted(gt_dir.glob("*.truth.jsonl")):
        truths = [json.loads(line) for line in truth_file.open(encoding="utf-8") if line.strip()]
        if sets and truths and truths[0]["set"] not in sets:
            continue
        warc = truth_file.with_name(truth_file.name.replace(".truth.jsonl", ".warc.gz"))
        i = 0
        with warc.open("rb") as handle:
            for record in ArchiveIterator(handle):
                if record.rec_type != "response":
                    continue
                truth = truths[i]
                i += 1
                payload = record.content_stream().read()
                pages.append({"url": truth["url"], "set": truth["set"],
                              "html": payload.decode(truth.get("charset") or "utf-8", "replace")})
    return pages


def run_extractor(pages: list[dict], config: ExtractConfig) -> tuple[list[dict], dict]:
    rows, timing = [], {}
    for page in pages:
        start = time.perf_counter()
        result = extract_document(page["html"], page["url"], config)
        elapsed = time.perf_counter() - start
        for name in (page["set"], "ALL"):
            entry = timing.setdefault(name, {"pages": 0, "seconds": 0.0})
            entry["pages"] += 1
            entry["seconds"] += elapsed
        rows.append({"url": page["url"], "texts": result.texts, "images": result.images})
    for entry in timing.values():
        entry["pages_per_second"] = entry["pages"] / entry["seconds"] if entry["seconds"] else None
    return rows, timing


def write_parquet(rows: list[dict], path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table({"url": pa.array([r["url"] for r in rows], pa.string()),
                      "texts": pa.array([r["texts"] for r in rows], pa.list_(pa.string())),
                      "images": pa.array([r["images"] for r in rows], pa.list_(pa.string()))})
    pq.write_table(table, path)


def baseline_report(tools: Path, gt_dir: Path, cache: Path) -> dict:
    if cache.exists():
        return json.loads(cache.read_text())
    out = subprocess.run([sys.executable, str(tools / "score_extraction.py"), "--truth", str(gt_dir),
                          "--baseline", "trafilatura", "--json"],
                         check=True, capture_output=True, text=True).stdout
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(out)
    return json.loads(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tools", type=Path, default=DEFAULT_TOOLS)
    parser.add_argument("--data-root", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--gt-dir", type=Path, default=Path("/tmp/interleaf-gt"),
                        help="where the WARCs and truth files are (written once if missing)")
    parser.add_argument("--out", type=Path, default=Path("/tmp/interleaf-extract/docs.parquet"))
    parser.add_argument("--baseline-cache", type=Path,
                        default=Path("/tmp/interleaf-extract/baseline.json"))
    parser.add_argument("--no-baseline", action="store_true", help="score our output only")
    parser.add_argument("--engine", default="lexbor", choices=["lexbor", "trafilatura"])
    parser.add_argument("--sets", help="comma-separated subset of sets")
    parser.add_argument("--json", type=Path, help="also write our per-set report as JSON here")
    parser.add_argument("--passes", type=int, default=1,
                        help="extract every page this many times; the last pass is also timed")
    args = parser.parse_args(argv)

    ensure_warcs(args.tools, args.data_root, args.gt_dir)
    sets = set(args.sets.split(",")) if args.sets else None
    pages = load_pages(args.gt_dir, sets)
    config = ExtractConfig(engine=args.engine)
    rows, timing = run_extractor(pages, config)
    warm = [run_extractor(pages, config)[1] for _ in range(args.passes - 1)]
    write_parquet(rows, args.out)

    scorer = load_scorer(args.tools)
    truth_lines = [t for t in scorer.load_truth([args.gt_dir]) if not sets or t["set"] in sets]
    keys = {scorer.join_key(t["url"]) for t in truth_lines}
    docs, stats = scorer.load_docs(args.out, keys)
    reports = {"docs": scorer.aggregate(truth_lines, docs)}
    base_timing = None
    if not args.no_baseline:
        base = baseline_report(args.tools, args.gt_dir, args.baseline_cache)
        reports["trafilatura"] = base["results"]["trafilatura"]
        base_timing = base.get("baseline_timing")
        if sets:
            reports["trafilatura"] = {k: v for k, v in reports["trafilatura"].items()
                                      if k in sets or k == "ALL"}
    if stats.get("malformed_rows"):
        print(f"warning: malformed rows: {stats['malformed_rows']}", file=sys.stderr)
    scorer.print_table(reports, base_timing)
    print(f"\nours ({args.engine}): " + ", ".join(
        f"{name} {entry['pages_per_second']:.0f}" for name, entry in timing.items()) +
        " pages/s (extract_document call only, one process, first pass)")
    if warm:
        print(f"ours ({args.engine}), pass {args.passes} (warm class-name caches): " + ", ".join(
            f"{name} {entry['pages_per_second']:.0f}" for name, entry in warm[-1].items()) +
            " pages/s")
    if args.json:
        args.json.write_text(json.dumps({"results": reports["docs"], "timing": timing,
                                         "warm_timing": warm[-1] if warm else None}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
