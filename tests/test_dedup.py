"""Duplicate clustering: the keep rule, union-find/components, star edges, the block functions,
and the distributed Ray Data version against the reference on a planted graph."""
from __future__ import annotations

import random
from datetime import datetime, timezone

import pyarrow as pa
import pytest

from operators.dedup import clusters as dedup
from operators.dedup import verify as verification
from tests.dedup_reference import UnionFind, choose_kept, components, keep_rank_key, star_edges
from operators.stats import Stats

UTC = timezone.utc


def row(id, text_chars=100, num_images=0, warc_date=None):
    return {"id": id, "text_chars": text_chars, "num_images": num_images,
            "provenance": {"warc_date": warc_date}}


# ---------------------------------------------------------------- keep rule, each tie-break

def test_keep_most_text_first():
    rows = [row("a", 100, 9, datetime(2020, 1, 1, tzinfo=UTC)), row("b", 200)]
    assert choose_kept(rows)["id"] == "b"


def test_keep_then_most_images():
    rows = [row("a", 100, 1), row("b", 100, 3), row("c", 100, 2)]
    assert choose_kept(rows)["id"] == "b"


def test_keep_then_earliest_date_nulls_last():
    d1, d2 = datetime(2021, 1, 1, tzinfo=UTC), datetime(2020, 6, 1, tzinfo=UTC)
    assert choose_kept([row("a", 1, 0, d1), row("b", 1, 0, d2)])["id"] == "b"
    assert choose_kept([row("a", 1, 0, None), row("z", 1, 0, d1)])["id"] == "z"
    # a plain warc_date column works as well as the provenance struct
    assert choose_kept([{"id": "a", "text_chars": 1, "num_images": 0, "warc_date": None},
                        {"id": "b", "text_chars": 1, "num_images": 0, "warc_date": d1}])["id"] == "b"


def test_keep_then_smallest_id():
    d = datetime(2021, 1, 1, tzinfo=UTC)
    assert choose_kept([row("b", 1, 0, d), row("a", 1, 0, d), row("c", 1, 0, d)])["id"] == "a"
    assert choose_kept([row("b"), row("a")])["id"] == "a"
    assert keep_rank_key(row("a")) < keep_rank_key(row("b"))


def test_vectorised_rank_matches_keep_rank_key():
    rng = random.Random(3)
    rows = [row(f"id{i:03d}", rng.choice([0, 5, 10]), rng.choice([0, 1, None]),
                rng.choice([None, datetime(2020, 1, 1, tzinfo=UTC), datetime(2019, 1, 1, tzinfo=UTC)]))
            for i in range(60)]
    table = pa.Table.from_pylist(rows, schema=pa.schema([
        ("id", pa.string()), ("text_chars", pa.int64()), ("num_images", pa.int32()),
        ("provenance", pa.struct([("warc_date", pa.timestamp("s", tz="UTC"))]))]))
    block = pa.table({"root": ["r"] * len(rows), "id": table["id"],
                      "rank": dedup.pack_rank(dedup.rank_columns(table))})
    out = dedup.kept_in_components(block).to_pylist()
    kept = [r["id"] for r in out if r["dup_kept"]]
    assert kept == [choose_kept(rows)["id"]]
    assert {r["dup_cluster_id"] for r in out} == set(kept)
    order = [r["id"] for r in out]
    assert order == [r["id"] for r in sorted(rows, key=keep_rank_key)]


# ---------------------------------------------------------------- union-find / components

def test_components_chain_star_cycle_disjoint():
    chain = [("c", "d"), ("b", "c"), ("a", "b")]
    star = [("s", "x1"), ("s", "x2"), ("x3", "s")]
    cycle = [("p", "q"), ("q", "r"), ("r", "p")]
    got = components(chain + star + cycle, nodes=["lonely"])
    assert {got[n] for n in "abcd"} == {"a"}
    assert {got[n] for n in ("s", "x1", "x2", "x3")} == {"s"}
    assert {got[n] for n in "pqr"} == {"p"}
    assert got["lonely"] == "lonely"
    assert len(set(got.values())) == 4


def test_union_find_root_is_minimum():
    uf = UnionFind()
    uf.union(5, 9)
    uf.union(9, 2)
    uf.union(7, 7)
    assert uf.find(9) == 2 and uf.find(5) == 2 and uf.find(7) == 7
    assert uf.labels() == {5: 2, 9: 2, 2: 2, 7: 7}


def test_star_edges():
    assert star_edges(["c", "a", "b", "a"]) == [("a", "b"), ("a", "c")]
    assert star_edges(["x"]) == []
    assert star_edges([]) == []


# ---------------------------------------------------------------- block functions, without Ray

def test_band_pairs_positions_and_text_hash():
    t = pa.table({"id": ["a", "b", "c", "d"], "text_chars": [10, 10, 0, 10],
                  "minhash_bands": pa.array([[1, 2], [2, 1], [1, 2], None], pa.list_(pa.uint64())),
                  "text_hash": ["h", None, "h", "h"]})
    stats = Stats("x")
    pairs = dedup.band_pairs(t, stats=stats)
    by_key: dict = {}
    for r in pairs.to_pylist():
        by_key.setdefault(r["key"], set()).add(r["id"])
    # same value in another band position is another key; "c" has no text; "d" has no bands
    assert by_key[b"\x00\x00" + (1).to_bytes(8, "big")] == {"a"}
    assert by_key[b"\x00\x01" + (1).to_bytes(8, "big")] == {"b"}
    assert by_key[b"\xff\xffh"] == {"a", "d"}
    assert stats.counters["pairs"] == 6 and stats.counters["docs_in"] == 3


def test_bucket_edges_star_and_cap():
    big = [(b"\x00\x00big", f"m{i:02d}") for i in range(12)]
    text_big = [(b"\xff\xffT", f"t{i:02d}") for i in range(12)]
    small = [(b"\x00\x01k", "z"), (b"\x00\x01k", "y"), (b"\x00\x01k", "x"), (b"\x00\x01k", "x")]
    single = [(b"\x00\x02s", "q")]
    rows = big + text_big + small + single
    t = pa.table({"key": pa.array([k for k, _ in rows], pa.binary()), "id": [i for _, i in rows]})
    stats = Stats("b")
    edges = set(map(tuple, (r.values() for r in dedup.bucket_edges(t, max_bucket=10, stats=stats).to_pylist())))
    # a small band bucket gives every pair (unverified), an exact-text bucket a verified star
    assert edges == {("x", "y", False), ("x", "z", False), ("y", "z", False)} | {
        ("t00", f"t{i:02d}", True) for i in range(1, 12)}
    assert stats.counters["capped_buckets"] == 1 and stats.counters["buckets"] == 3
    assert stats.errors[0]["size"] == 12
    # above all_pairs_max a band bucket gives a star; pairs of two old (index) documents are left out
    mid = [(b"\x00\x03m", f"n{i}") for i in range(6)]
    t2 = pa.table({"key": pa.array([k for k, _ in mid], pa.binary()), "id": [i for _, i in mid],
                   "old": [True, True, True, False, False, False]})
    stats = Stats("b")
    got = {(r["src"], r["dst"]) for r in dedup.bucket_edges(t2, max_bucket=10, stats=stats,
                                                           all_pairs_max=4).to_pylist()}
    assert got == {("n0", "n3"), ("n0", "n4"), ("n0", "n5")} and stats.counters["star_buckets"] == 1
    got = {(r["src"], r["dst"]) for r in dedup.bucket_edges(t2, max_bucket=10).to_pylist()}
    assert len(got) == 15 - 3 and ("n0", "n1") not in got and ("n3", "n4") in got


def _local_components(edges: list[tuple[str, str]], nodes: list[str]) -> dict:
    """The distributed algorithm run on one block: hook, jump, relabel until no edge is left."""
    e = pa.table({"src": [min(a, b) for a, b in edges], "dst": [max(a, b) for a, b in edges]})
    forest = pa.table({"node": pa.array([], pa.string()), "parent": pa.array([], pa.string())})
    rounds = 0
    while e.num_rows:
        rounds += 1
        forest = pa.concat_tables([forest, dedup.hook(e)])
        while True:
            j = dedup.jumped(dedup.resolve(dedup.jump_views(forest)))
            forest = j.select(["node", "parent"])
            if not any(j["changed"].to_pylist()):
                break
        for end in ("src", "dst"):
            block = pa.concat_tables([dedup.relabel_views(e, end), dedup.forest_map(forest)])
            e = dedup.relabeled(dedup.resolve(block), end)
    labels = dict(zip(forest["node"].to_pylist(), forest["parent"].to_pylist()))
    return {n: labels.get(n, n) for n in nodes}, rounds


@pytest.mark.parametrize("seed", range(5))
def test_block_algorithm_matches_union_find(seed):
    rng = random.Random(seed)
    nodes = [f"n{i:03d}" for i in range(120)]
    edges = [(rng.choice(nodes), rng.choice(nodes)) for _ in range(80)]
    chain = [(f"n{i:03d}", f"n{i + 1:03d}") for i in range(100, 119)][::-1]  # a long path
    edges = [(a, b) for a, b in edges + chain if a != b]
    got, rounds = _local_components(edges, nodes)
    assert got == components(edges, nodes)
    assert rounds <= 8


# ---------------------------------------------------------------- distributed, on a local Ray

def _hash(s: str) -> int:
    import hashlib
    return int.from_bytes(hashlib.sha1(s.encode()).digest()[:8], "big")


def _planted_rows() -> list[dict]:
    """~200 rows with planted band keys: a chain, exact copies, a huge bucket, singletons."""
    rng = random.Random(7)
    rows = []

    def add(id, bands, text_hash=None, text_chars=500, num_images=0, date=None):
        bands = bands + [_hash(f"own-{id}-{b}") for b in range(len(bands), 4)]  # 4 bands each
        rows.append({"id": id, "text_chars": text_chars, "num_images": num_images,
                     "provenance": {"warc_date": date}, "minhash_bands": bands,
                     "text_hash": text_hash or f"th-{id}"})

    # chain: A-B share band 0, B-C share band 1, A and C share nothing -> one component of 3
    add("chainA", [_hash("ab")], text_chars=300)
    add("chainB", [_hash("ab"), _hash("bc")], text_chars=300, num_images=2)
    add("chainC", [_hash("xx"), _hash("bc")], text_chars=400)
    # a value equal in another band position is no collision
    add("posX", [_hash("pos"), _hash("p1")])
    add("posY", [_hash("p1"), _hash("pos2")])
    # exact copies through text_hash only, tie-broken by date then id
    d = [datetime(2023, 5, 1, tzinfo=UTC), datetime(2022, 1, 1, tzinfo=UTC), None]
    for i in range(3):
        add(f"copy{i}", [], text_hash="same-text", date=d[i])
    for i in range(4):
        add(f"twin{i}", [], text_hash="twin-text", date=None)
    # a huge bucket above the cap (band 3 shared by 40 documents) glues nothing
    for i in range(40):
        add(f"huge{i:02d}", [_hash(f"h{i}a"), _hash(f"h{i}b"), _hash(f"h{i}c"), _hash("huge")])
    # 8 near-duplicate groups of 2-5 members, sharing a random band with a group "centre"
    for g in range(8):
        size = rng.randint(2, 5)
        for m in range(size):
            band = rng.randrange(4)
            bands = [_hash(f"g{g}-m{m}-{b}") for b in range(4)]
            bands[band] = _hash(f"group{g}-band{band}") if m else bands[band]
            if m == 0:
                bands = [_hash(f"group{g}-band{b}") for b in range(4)]
            add(f"g{g}m{m}", bands, text_chars=rng.choice([100, 200]), num_images=rng.choice([0, 1]),
                date=rng.choice([None, datetime(2021, 1, 1, tzinfo=UTC)]))
    # documents without text share everything and are never clustered
    for i in range(3):
        add(f"empty{i}", [_hash("e")] * 4, text_hash="", text_chars=0)
    # singletons
    while len(rows) < 200:
        add(f"single{len(rows):03d}", [])
    rng.shuffle(rows)
    return rows


SCHEMA = pa.schema([
    ("id", pa.string()), ("text_chars", pa.int64()), ("num_images", pa.int32()),
    ("provenance", pa.struct([("warc_date", pa.timestamp("s", tz="UTC"))])),
    ("minhash_bands", pa.list_(pa.uint64())), ("text_hash", pa.string())])
MAX_BUCKET = 20


def _reference(rows: list[dict]) -> dict[str, tuple[str, bool]]:
    buckets: dict = {}
    for r in rows:
        if r["text_chars"] <= 0:
            continue
        for pos, b in enumerate(r["minhash_bands"] or []):
            buckets.setdefault(("band", pos, b), []).append(r["id"])
        if r["text_hash"] is not None:
            buckets.setdefault(("text", r["text_hash"]), []).append(r["id"])
    edges = [e for key, ids in buckets.items()
             if key[0] == "text" or len(set(ids)) <= MAX_BUCKET for e in star_edges(ids)]
    label = components(edges, [r["id"] for r in rows])
    by_comp: dict = {}
    for r in rows:
        by_comp.setdefault(label[r["id"]], []).append(r)
    out = {}
    for members in by_comp.values():
        kept = choose_kept(members)["id"]
        for m in members:
            out[m["id"]] = (kept, m["id"] == kept)
    return out


def _run(rows, blocks):
    import ray
    from flows.ray_ops import cluster_duplicates
    ds = ray.data.from_arrow(pa.Table.from_pylist(rows, schema=SCHEMA), override_num_blocks=blocks)
    out, counts = cluster_duplicates(ds, max_bucket=MAX_BUCKET, num_partitions=4)
    got = {r["id"]: (r["dup_cluster_id"], r["dup_kept"]) for r in out.take_all()}
    return got, counts, out


@pytest.mark.slow
def test_cluster_duplicates_on_ray(ray_local):
    rows = _planted_rows()
    want = _reference(rows)
    got, counts, out = _run(rows, blocks=3)
    assert len(got) == len(rows) == 200
    assert got == want
    # the planted facts, spelled out
    assert got["chainC"] == ("chainC", True) and got["chainA"][0] == got["chainB"][0] == "chainC"
    assert got["posX"] == ("posX", True) and got["posY"] == ("posY", True)
    assert got["copy1"] == ("copy1", True) and got["copy0"] == got["copy2"] == ("copy1", False)
    assert got["twin0"] == ("twin0", True) and got["twin3"] == ("twin0", False)
    assert all(got[f"huge{i:02d}"] == (f"huge{i:02d}", True) for i in range(40))
    assert all(got[f"empty{i}"] == (f"empty{i}", True) for i in range(3))
    # every input column survives, plus the two new ones
    assert sorted(out.schema().names) == sorted(SCHEMA.names + ["dup_cluster_id", "dup_kept"])
    clustered = [i for i, (c, _) in want.items() if sum(1 for v in want.values() if v[0] == c) > 1]
    assert counts["documents_in_clusters"] == len(clustered)
    assert counts["clusters"] == len({want[i][0] for i in clustered})
    assert counts["capped_buckets"] == 1 and counts["capped_examples"][0]["size"] == 40
    assert counts["rounds"] >= 1 and counts["edges"] > 0
    # the narrow table holds clustered documents only
    import ray
    from flows.ray_ops import duplicate_clusters
    ds = ray.data.from_arrow(pa.Table.from_pylist(rows, schema=SCHEMA))
    assigned, _ = duplicate_clusters(ds, max_bucket=MAX_BUCKET, num_partitions=2)
    narrow = {r["id"]: (r["dup_cluster_id"], r["dup_kept"]) for r in assigned.take_all()}
    assert narrow == {i: want[i] for i in clustered}


@pytest.mark.slow
def test_cluster_duplicates_deterministic_across_block_counts(ray_local):
    rows = _planted_rows()
    a, counts_a, _ = _run(rows, blocks=1)
    b, counts_b, _ = _run(list(reversed(rows)), blocks=7)
    assert a == b == _reference(rows)
    assert {k: v for k, v in counts_a.items()} == {k: v for k, v in counts_b.items()}


@pytest.mark.slow
def test_cluster_duplicates_long_chain_and_no_duplicates(ray_local):
    import ray
    from flows.ray_ops import cluster_duplicates
    # a path of 16 documents, each sharing band (i % 2) with the next: one component
    rows = []
    for i in range(16):
        bands = [_hash(f"own{i}-{b}") for b in range(2)]
        if i > 0:
            bands[(i - 1) % 2] = _hash(f"link{i - 1}")
        if i < 15:
            bands[i % 2] = _hash(f"link{i}")
        rows.append({"id": f"p{(i * 7) % 16:02d}", "text_chars": 10, "num_images": 0,
                     "provenance": {"warc_date": None}, "minhash_bands": bands, "text_hash": None})
    ds = ray.data.from_arrow(pa.Table.from_pylist(rows, schema=SCHEMA), override_num_blocks=5)
    out, counts = cluster_duplicates(ds, num_partitions=3)
    got = {r["id"]: (r["dup_cluster_id"], r["dup_kept"]) for r in out.take_all()}
    assert got == _reference(rows)
    assert 1 <= counts["rounds"] <= 4
    assert len({c for c, _ in got.values()}) == 1 and counts["documents_in_clusters"] == 16
    # nothing in common: every document is its own cluster, no shuffle of the documents
    solo = [dict(r, minhash_bands=[_hash(r["id"])], text_hash=r["id"]) for r in rows]
    out, counts = cluster_duplicates(ray.data.from_arrow(pa.Table.from_pylist(solo, schema=SCHEMA)),
                                     num_partitions=3)
    assert all(r["dup_cluster_id"] == r["id"] and r["dup_kept"] for r in out.take_all())
    assert counts["edges"] == 0 and counts["clusters"] == 0 and counts["rounds"] == 0


# ---------------------------------------------------------------- verification, URL duplicates, index rows

def _words(n, seed):
    rng = random.Random(seed)
    return [f"w{rng.randrange(100000)}" for _ in range(n)]


def _doc_table(texts: dict[str, str], dates=None, urls=None) -> pa.Table:
    ids = list(texts)
    return pa.table({
        "id": ids, "url": [(urls or {}).get(i, f"https://example.com/{i}") for i in ids],
        "texts": [[texts[i]] for i in ids], "text_chars": [len(texts[i]) for i in ids],
        "num_images": [0] * len(ids),
        "provenance": pa.array([{"warc_date": (dates or {}).get(i)} for i in ids],
                               pa.struct([("warc_date", pa.timestamp("s", tz="UTC"))])),
        "minhash_bands": pa.array([[1]] * len(ids), pa.list_(pa.uint64())),
        "text_hash": [f"th-{i}" for i in ids], "drop_reason": pa.nulls(len(ids), pa.string())})


def _verify_locally(cands: pa.Table, docs: pa.Table, threshold: float, index_docs: pa.Table | None = None):
    from operators.dedup.minhash import MinHashConfig
    rows = verification.document_rows(docs, MinHashConfig())
    if index_docs is not None:
        rows = pa.concat_tables([rows, verification.index_rows(index_docs)])
    v1 = verification.attach_src(pa.concat_tables([verification.candidate_rows(cands), rows]))
    stats = Stats("v")
    edges = verification.verify_pairs(pa.concat_tables([v1, rows]), threshold, stats)
    # the one-task form (operators/dedup/unit.py): pairs without the src values, looked up in `rows`
    alone = Stats("v")
    v1_alone = verification.attach(verification.candidate_rows(cands), rows, carry=False)
    assert v1_alone["sh"].null_count == v1_alone.num_rows
    edges_alone = verification.verify(v1_alone, rows, threshold, alone, src=rows)
    order = [("src", "ascending"), ("dst", "ascending")]
    assert edges_alone.sort_by(order).equals(edges.sort_by(order)) and alone.counters == stats.counters
    return {(r["src"], r["dst"]) for r in edges.to_pylist()}, stats.counters


def test_verification_keeps_pairs_at_or_above_the_threshold():
    from operators.dedup.minhash import MinHashConfig, document_text, hashed_batch
    base = _words(400, 1)
    near = base[:380] + _words(20, 2)            # 20 words replaced at the end: J ~ 0.88
    far = base[:250] + _words(150, 3)            # J ~ 0.45
    texts = {"a": " ".join(base), "b": " ".join(near), "c": " ".join(far), "d": " ".join(_words(50, 4))}
    docs = _doc_table(texts)
    cands = pa.table({"src": ["a", "a", "a", "b", "a"], "dst": ["b", "c", "b", "c", "d"],
                      "verified": [False, False, False, False, True]}, schema=dedup.CANDIDATES)
    edges, counters = _verify_locally(cands, docs, 0.8)
    # (a, b) reached the threshold (listed twice: checked once); (a, d) is an exact-text pair
    assert edges == {("a", "b"), ("a", "d")}
    assert counters["pairs_checked_exact"] == 3 and counters["pairs_below_threshold"] == 2
    assert counters["pairs_exact_text"] == 1 and counters["candidate_pairs"] == 4
    # the exact value agrees with a plain set computation on the same shingle hashes
    h, c = hashed_batch([texts["a"], texts["b"]], MinHashConfig())
    sa, sb = set(h[:c[0]].tolist()), set(h[c[0]:].tolist())
    rows = verification.document_rows(docs, MinHashConfig()).to_pylist()
    sh = {r["k"]: r["sh"] for r in rows}
    assert verification.jaccard(sh["a"], sh["b"]) == pytest.approx(len(sa & sb) / len(sa | sb))
    assert document_text(docs["texts"][0].as_py()) == texts["a"]


def test_verification_against_the_index_uses_the_signature():
    from operators.dedup.minhash import MinHashConfig
    base = _words(400, 5)
    old = _doc_table({"old": " ".join(base)})
    index = dedup.index_doc_rows(old, MinHashConfig())
    assert index.num_rows == 1 and len(index["signature"][0].as_py()) == 4 * 160
    new = _doc_table({"new": " ".join(base[:390] + _words(10, 6)), "other": " ".join(_words(400, 7))})
    cands = pa.table({"src": ["new", "old"], "dst": ["old", "other"], "verified": [False, False]},
                     schema=dedup.CANDIDATES)
    edges, counters = _verify_locally(cands, new, 0.8, index)
    assert edges == {("new", "old")} and counters["pairs_checked_estimate"] == 2


def test_kept_in_components_prefers_an_earlier_runs_document():
    block = pa.table({"root": ["a", "a", "a"], "id": ["a", "b", "old"],
                      "rank": [b"\x01" * 24, b"\x02" * 24, dedup.OLD_RANK]})
    out = {r["id"]: r for r in dedup.kept_in_components(block).to_pylist()}
    assert set(out) == {"a", "b"}   # the earlier run's document gets no row
    assert all(r["dup_cluster_id"] == "old" and not r["dup_kept"] and r["kept_old"] for r in out.values())


def test_url_losers_keep_the_most_recent_fetch():
    d = lambda y: datetime(y, 1, 1, tzinfo=UTC)  # noqa: E731
    docs = _doc_table({"x1": "one", "x2": "two", "y1": "three", "z1": "four"},
                      dates={"x1": d(2020), "x2": d(2023), "y1": d(2021), "z1": None},
                      urls={"x1": "http://Site.example/a#top", "x2": "https://site.example:443/a",
                            "y1": "https://site.example/b", "z1": "https://site.example/c"})
    index = pa.table({"url_key": ["site.example/b", "site.example/c"], "id": ["oldb", "oldc"],
                      "warc_date": pa.array([int(d(2020).timestamp()), int(d(2024).timestamp())], pa.int64())})
    block = pa.concat_tables([dedup.url_views(docs), dedup.index_url_views(index)])
    stats = Stats("u")
    got = {r["id"]: (r["winner"], r["old"]) for r in dedup.url_losers(block, stats).to_pylist()}
    # x2 is newer than x1 (scheme, port and fragment do not matter); y1 supersedes an older
    # indexed fetch; z1 has no date and loses to the indexed one
    assert got == {"x1": ("x2", False), "oldb": ("y1", True), "z1": ("oldc", False)}
    assert stats.counters["duplicate_url"] == 2 and stats.counters["superseded"] == 1
