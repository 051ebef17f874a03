"""bench/image_fidelity.py: per-page image recall / order losses, with the shared scorer's rules."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parents[1]


def load_tool():
    spec = importlib.util.spec_from_file_location("image_fidelity", ROOT / "bench" / "image_fidelity.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.shared
def test_pages_and_misses_listed_worst_first(shared_data, tmp_path, capsys):
    truth = tmp_path / "truth"
    truth.mkdir()
    blocks_a = [{"type": "text", "text": "The council met on Tuesday."},
                {"type": "image", "url": "https://x.invalid/a1.jpg"},
                {"type": "text", "text": "It voted for the budget."},
                {"type": "image", "url": "https://x.invalid/a2.jpg"}]
    blocks_b = [{"type": "text", "text": "A quiet lake."}, {"type": "image", "url": "https://x.invalid/b.jpg"}]
    lines = [{"set": "readability", "url": "https://x.invalid/a", "text": "t", "blocks": blocks_a},
             {"set": "readability", "url": "https://x.invalid/b", "text": "t", "blocks": blocks_b},
             {"set": "readability", "url": "https://x.invalid/c", "text": "t", "blocks": blocks_b}]
    (truth / "readability.truth.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    # a: first image in place, second before its text (out of order); b: missing; c: perfect
    docs = {"url": ["https://x.invalid/a", "https://x.invalid/b", "https://x.invalid/c"],
            "texts": [["The council met on Tuesday.", None, None, "It voted for the budget."],
                      ["A quiet lake."], ["A quiet lake.", None]],
            "images": [[None, "https://x.invalid/a1.jpg", "https://x.invalid/a2.jpg", None],
                       [None], [None, "https://x.invalid/b.jpg"]]}
    pq.write_table(pa.table(docs), tmp_path / "docs.parquet")
    tool = load_tool()
    assert tool.main(["--truth", str(truth), "--docs", str(tmp_path / "docs.parquet"),
                      "--tools", str(shared_data.parent / "tools"), "--misses"]) == 0
    out = capsys.readouterr().out
    assert "3 pages expect images; imgR 0.667, imgOrd 0.500" in out
    listed = [line.split()[-1] for line in out.splitlines() if line.strip().endswith(("/a", "/b", "/c"))]
    assert listed == ["https://x.invalid/b", "https://x.invalid/a"]   # worst first, c not listed
    assert "missing //x.invalid/b.jpg" in " ".join(out.split())
    assert "order //x.invalid/a2.jpg" in " ".join(out.split())
