"""The dedup index's probe parts (operators/dedup/probe.py), without Ray: lookups read by block
find exactly what a full scan finds, a unit's dedup against probed parts equals its dedup against
the whole index, compaction changes nothing but the number of parts, and runs from before probe
parts are still read whole."""
from __future__ import annotations

import json
import random

import numpy as np
import pyarrow as pa
import pytest

from operators.dedup import index as di
from operators.dedup import probe as dp
from operators.dedup.clusters import DedupConfig
from operators.dedup.unit import deduplicate
from operators.io.writer import commit

BANDS, PERM = 4, 8


def docs_table(n: int, seed: int, prefix: str, shared: list[int] | None = None,
               urls_from: list[str] | None = None) -> pa.Table:
    """DOCS rows with band keys drawn from a small pool (so that keys repeat, in runs longer than
    a block) and text hashes that sometimes repeat; URL keys are the run's own (an index never
    holds two live documents of one URL), or for a unit, some of `urls_from`."""
    rng = random.Random(seed)
    pool = shared or [rng.getrandbits(64) for _ in range(300)]
    rows = []
    for i in range(n):
        url = rng.choice(urls_from) if urls_from and rng.random() < 0.3 else f"http://{prefix}{i}.example/"
        rows.append({"id": f"{prefix}{i:06d}", "url_key": url,
                     "warc_date": rng.choice([None, 1_700_000_000 + i]), "text_chars": rng.randrange(1, 900),
                     "num_images": rng.randrange(3), "text_hash": rng.choice([None, f"t{rng.randrange(n // 2 + 1)}"]),
                     "minhash_bands": None if rng.random() < 0.05 else [rng.choice(pool) for _ in range(BANDS)],
                     "signature": np.array([rng.getrandbits(32) for _ in range(PERM)], "<u4").tobytes()})
    t = pa.Table.from_pylist(rows, schema=di.DOCS)
    return t.set_column(t.schema.get_field_index("signature"), "signature", pa.array(
        [r["signature"] if r["minhash_bands"] is not None else None for r in rows], pa.binary()))


def write(out, name, docs, images=None, superseded=None) -> str:
    return str(out / dp.write_part(str(out), f"_index/probe/{name}.probe", docs, images, superseded, BANDS, PERM))


@pytest.mark.parametrize("local", [True, False])
def test_lookup_equals_a_full_scan(tmp_path, local):
    """Both ways of reading a part: memory-mapped (a local output) and by fenced blocks (object
    stores), which reads only the blocks the keys fall into."""
    import pyarrow.fs as pafs
    docs = docs_table(3000, 1, "a")   # 12,000 band keys from a pool of 300: runs of ~40 equal keys
    part = dp.Part(pafs.LocalFileSystem(), write(tmp_path, "p", docs))
    part.local = local
    keys = np.array(pa.compute.list_flatten(docs["minhash_bands"]).to_pylist(), np.uint64)
    rng = np.random.default_rng(2)
    q = np.concatenate([rng.choice(keys, 20), rng.integers(0, 2**63, 50, dtype=np.int64).astype(np.uint64)])
    k, rows = part.lookup("band", q)
    got = sorted(zip(k.tolist(), rows.tolist()))
    want = sorted((int(v), i) for i, b in enumerate(docs["minhash_bands"].to_pylist()) if b for v in b
                  if int(v) in set(q.tolist()))
    assert got == want and len(got) > 20
    assert part.bytes_read < 0.5 * (tmp_path / "_index/probe/p.probe").stat().st_size   # not the whole part
    part.close()


@pytest.mark.parametrize("local", [True, False])
def test_image_counts_are_each_keys_own_across_parts(tmp_path, local):
    """Each key's count, whatever the order the keys came in (the counts are stored in key order:
    they used to be read at the key's input row, scrambling every count but a uniform one)."""
    import pyarrow.fs as pafs
    rng = random.Random(3)
    runs = []
    for r in range(3):
        urls = [f"http://img.example/{rng.randrange(10_000)}.png" for _ in range(2_000)] + ["sha256:logo"]
        urls = list(dict.fromkeys(urls))
        counts = [rng.randrange(1, 50) for _ in urls]
        runs.append(dict(zip(urls, counts)))
        write(tmp_path, f"p{r}", docs_table(10, r, f"r{r}"),
              pa.table({"url": urls, "documents": pa.array(counts, pa.int64())}))
    parts = [dp.Part(pafs.LocalFileSystem(), str(tmp_path / f"_index/probe/p{r}.probe")) for r in range(3)]
    for part in parts:
        part.local = local
    probe = dp.ProbeIndex.__new__(dp.ProbeIndex)
    probe.parts = parts
    ask = list(runs[0])[:300] + ["sha256:logo", "http://img.example/never.png"]
    got = dict(zip(*[c.to_pylist() for c in probe.image_counts(ask).columns]))
    want = {u: sum(run.get(u, 0) for run in runs) for u in ask if any(u in run for run in runs)}
    assert got == want and got["sha256:logo"] == sum(run["sha256:logo"] for run in runs)
    for part in parts:
        part.close()


def _keys(docs: pa.Table) -> pa.Table:
    """KEYS-like rows of a unit (what unit_index and deduplicate read)."""
    n = docs.num_rows
    return pa.table({"id": docs["id"], "url_key": docs["url_key"], "warc_date": docs["warc_date"],
                     "text_chars": docs["text_chars"], "num_images": docs["num_images"],
                     "text_hash": docs["text_hash"], "minhash_bands": docs["minhash_bands"],
                     "signature": docs["signature"], "shingles": pa.nulls(n, pa.binary()),
                     "images": pa.array([[f"http://img{i % 7}.example/x.png"] for i in range(n)],
                                        pa.list_(pa.string()))})


def _commit_part(out, run_id, docs, images=None, superseded=None, probe=True):
    """Stage and commit one run's index rows, as the flow does (with or without a probe part)."""
    staged = [di.stage_part(str(out), run_id, "docs", "000000", docs)]
    if images is not None:
        staged.append(di.stage_part(str(out), run_id, "images", "000000", images))
    if superseded is not None:
        staged.append(di.stage_part(str(out), run_id, "superseded", "000000", superseded))
    if probe:
        staged.append(dp.stage_unit_part(str(out), run_id, [s for s in staged if "/index/docs/" in s], images,
                                         superseded, BANDS, PERM))
    commit(str(out), run_id, [s for s in staged if s])


@pytest.mark.parametrize("probe", [True, False])
def test_unit_dedup_against_probed_parts_equals_the_whole_index(tmp_path, probe):
    cfg = DedupConfig(bands=BANDS, rows=2, num_perm=PERM, threshold=None, max_image_repeats=3)
    history = [docs_table(800, s, f"r{s}-") for s in range(3)]
    sup = pa.table({"id": [history[0]["id"][5].as_py()], "superseded_by": ["x"], "run_id": ["r1"]})
    for i, docs in enumerate(history):
        _commit_part(tmp_path, f"r{i}", docs, pa.table({"url": ["http://img1.example/x.png"], "documents": [2]}),
                     sup if i == 1 else None, probe=probe)
    unit = _keys(docs_table(200, 9, "new-", shared=[b for b in history[0]["minhash_bands"][0].as_py()],
                            urls_from=history[2]["url_key"].to_pylist()))
    docs, images, counts = dp.unit_index(str(tmp_path), unit)
    whole = pa.concat_tables(history)
    whole = whole.filter(pa.compute.invert(pa.compute.is_in(whole["id"], value_set=sup["id"])))
    a = deduplicate(unit, cfg, docs, images)
    b = deduplicate(unit, cfg, whole, pa.table({"url": ["http://img1.example/x.png"] * 3, "documents": [2] * 3}))
    assert a.docs.sort_by("id").to_pylist() == b.docs.sort_by("id").to_pylist()
    assert a.repeated.sort_by([("id", "ascending"), ("url", "ascending")]).to_pylist() == \
        b.repeated.sort_by([("id", "ascending"), ("url", "ascending")]).to_pylist()
    assert a.counts["duplicates_of_earlier_runs"] > 0 and a.counts["superseded"] > 0
    assert history[0]["id"][5].as_py() not in set(docs["id"].to_pylist())   # superseded: never matched
    if probe:
        assert counts["index_parts_probed"] == 3 and counts["index_runs_read_whole"] == 0
        assert docs.num_rows < whole.num_rows   # only what the unit's keys can match
    else:
        assert counts["index_runs_read_whole"] == 3 and docs.num_rows == whole.num_rows


def test_compaction_merges_the_smallest_parts_and_changes_no_answer(tmp_path):
    cfg = DedupConfig(bands=BANDS, rows=2, num_perm=PERM, threshold=None)
    history = [docs_table(60 + 10 * i, 20 + i, f"c{i}-") for i in range(2 * dp.MERGE + 1)]
    for i, docs in enumerate(history):
        _commit_part(tmp_path, f"r{i:02d}", docs, pa.table({"url": [f"http://img{i % 3}.example/x.png"],
                                                             "documents": [1]}))
    unit = _keys(docs_table(100, 77, "u-", shared=[b for d in history for b in (d["minhash_bands"][0].as_py() or [])]))
    before = dp.unit_index(str(tmp_path), unit)
    merged = dp.compact(str(tmp_path))
    assert merged is not None
    files = di.committed_files(str(tmp_path), di.PROBE)
    assert len(files) == len(history) - dp.MERGE + 1
    after = dp.unit_index(str(tmp_path), unit)
    assert before[0].sort_by("id").to_pylist() == after[0].sort_by("id").to_pylist()
    assert before[1].sort_by("url").to_pylist() == after[1].sort_by("url").to_pylist()
    assert deduplicate(unit, cfg, *before[:2]).docs.sort_by("id").to_pylist() == \
        deduplicate(unit, cfg, *after[:2]).docs.sort_by("id").to_pylist()
    manifest = json.loads((tmp_path / di.manifest_path(merged.split("/")[-1][:-len(".probe")])).read_text())
    assert len(manifest["replaces"][di.PROBE]) == dp.MERGE
    assert not any((tmp_path / f).exists() for f in manifest["replaces"][di.PROBE])
    assert dp.compact(str(tmp_path)) is None   # 2 x MERGE parts or fewer: nothing to do
