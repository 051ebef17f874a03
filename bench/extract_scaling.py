"""Extraction time against page size, for pages of hostile shapes: is it linear whatever the shape?

    .venv/bin/python bench/extract_scaling.py [--sizes 100000,200000,400000,800000,1600000]

Each shape is generated at each size (characters of HTML) and extracted with the default
`ExtractConfig` (the lexbor engine; `max_html_chars` raised so that nothing is cut and the whole
page is walked); the table gives milliseconds and microseconds per KB. Linear: the µs/KB column
stays flat as the size doubles (a quadratic shape would double it at each step).
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from operators.text.extract import ExtractConfig, extract_document  # noqa: E402

PARA = ("<p>The committee met on Tuesday to discuss the new budget for the public library, and most "
        "members agreed that the opening hours should be extended next year.</p>")


def _fill(head: str, unit: str, tail: str, size: int) -> str:
    return head + unit * max(1, (size - len(head) - len(tail)) // len(unit)) + tail


SHAPES = {
    "paragraphs": lambda n: _fill("<html><body><article>", PARA, "</article></body></html>", n),
    "nested divs": lambda n: "<html><body>" + "<div>" * (n // 12) + "deep text" + "</div>" * (n // 12) + "</body></html>",
    "unclosed inline tags": lambda n: _fill("<html><body><p>", "<b><i>word ", "</p></body></html>", n),
    "images": lambda n: _fill("<html><body><article>" + PARA * 3, '<img src="/i/x.jpg" width="300" height="200">',
                              PARA + "</article></body></html>", n),
    "links (a menu)": lambda n: _fill("<html><body><nav>", '<a href="/x">item</a> ', "</nav>" + PARA + "</body></html>", n),
    "table cells": lambda n: _fill("<html><body><table><tr>", "<td>cell text</td>", "</tr></table></body></html>", n),
    "one long line of text": lambda n: "<html><body><p>" + "word " * (n // 5) + "</p></body></html>",
    "long attribute before the text": lambda n: ('<html><body><div data-x="' + "a" * n + '">' + PARA * 5
                                                 + "</div></body></html>"),
}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100000,200000,400000,800000,1600000")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    cfg = dataclasses.replace(ExtractConfig(), max_html_chars=max(sizes) * 3, max_seconds=600.0)
    print("| shape | " + " | ".join(f"{s // 1000} KB: ms (µs/KB)" for s in sizes) + " | largest / smallest µs/KB |")
    print("|---|" + "---|" * (len(sizes) + 1))
    for name, make in SHAPES.items():
        cells, per_kb = [], []
        for size in sizes:
            html = make(size)
            best = float("inf")
            for _ in range(3):
                t = time.process_time()
                extract_document(html, "https://example.com/", cfg)
                best = min(best, time.process_time() - t)
            per_kb.append(best * 1e6 / (len(html) / 1000))
            cells.append(f"{best * 1000:.1f} ({per_kb[-1]:.0f})")
        print(f"| {name} | " + " | ".join(cells) + f" | {per_kb[-1] / per_kb[0]:.2f} |")


if __name__ == "__main__":
    main()
