"""Where the readability set's image scores are lost: per page, and per expected image.

    .venv/bin/python bench/image_fidelity.py --truth /tmp/b1 --docs /tmp/gtn/documents
    .venv/bin/python bench/image_fidelity.py --truth /tmp/b1 --docs /tmp/gtn/documents --misses

`score_extraction.py` reports imgR / imgOrd as means over the pages that expect images, so a page
with one expected image weighs as much as one with forty-six. This prints each page's recall and
order with what it costs the mean (1 - score, over the number of pages), worst first; with
--misses, each expected image that is missing or out of order, with the truth's context (the text
the scorer looks for before the image) and the end of ours. Uses the scorer's own functions.
"""
from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

DEFAULT_TOOLS = Path(__file__).resolve().parents[2] / "shared" / "tools"   # ../shared beside the repo


def load_scorer(tools: Path):
    spec = importlib.util.spec_from_file_location("score_extraction", tools / "score_extraction.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def misses(scorer, doc: dict, blocks: list) -> list[tuple]:
    """(kind, image URL, truth context, our text before it) of each expected image that is
    missing ("missing") or fails the scorer's order rule ("order")."""
    out_keys = {scorer.image_key(u) for u in doc["images"]}
    found = []
    for keys, context in scorer.expected_images(blocks):
        url = sorted(keys)[0]
        if not keys & out_keys:
            found.append(("missing", url, context, ""))
            continue
        before = []
        for kind, value in doc["seq"] or []:
            if kind == "image" and scorer.image_key(value) in keys:
                break
            if kind == "text":
                before.append(value)
        ours = scorer.loose(" ".join(before))
        if context and context not in ours:
            found.append(("order", url, context, ours[-60:]))
    return found


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--truth", type=Path, required=True, help="pages_to_warc.py output folder")
    parser.add_argument("--docs", type=Path, required=True, help="Parquet folder (flows.crawl documents/)")
    parser.add_argument("--tools", type=Path, default=DEFAULT_TOOLS)
    parser.add_argument("--set", default="readability", help="truth set to look at")
    parser.add_argument("--misses", action="store_true", help="list each missing / misplaced image")
    args = parser.parse_args(argv)
    scorer = load_scorer(args.tools)
    truths = [t for t in scorer.load_truth([args.truth]) if t["set"] == args.set and
              scorer.expected_images(t.get("blocks") or [])]
    if not truths:
        raise SystemExit(f"no page of set {args.set!r} with expected images under {args.truth}")
    docs, _ = scorer.load_docs(args.docs, {scorer.join_key(t["url"]) for t in truths})
    rows = []
    for truth in truths:
        doc = docs.get(scorer.join_key(truth["url"]))
        count = len(scorer.expected_images(truth["blocks"]))
        if doc is None:
            rows.append((0.0, 0.0, count, truth["url"], None))
            continue
        scores = scorer.image_scores(doc, truth["blocks"])
        rows.append((scores["image_recall"], scores.get("image_order", 0.0), count, truth["url"],
                     misses(scorer, doc, truth["blocks"])))
    n = len(rows)
    print(f"{n} pages expect images; imgR {sum(r[0] for r in rows) / n:.3f}, "
          f"imgOrd {sum(r[1] for r in rows) / n:.3f}")
    print(f"{'imgR':>5} {'imgOrd':>6} {'-R':>6} {'-Ord':>6} {'images':>6}  page")
    for recall, order, count, url, found in sorted(rows, key=lambda r: (r[1] + r[0], r[3])):
        if recall == 1 and order == 1:
            continue
        print(f"{recall:5.2f} {order:6.2f} {(1 - recall) / n:6.3f} {(1 - order) / n:6.3f} {count:6d}  {url}"
              + ("  (not found)" if found is None else ""))
        for kind, image, context, ours in (found or []) if args.misses else []:
            print(f"      {kind:7} {image[-80:]}\n              truth: ...{context}"
                  + (f"\n              ours:  ...{ours}" if kind == "order" else ""))
    perfect = sum(r[0] == 1 and r[1] == 1 for r in rows)
    print(f"not listed: {perfect} of {n} pages (every image found and in order)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
