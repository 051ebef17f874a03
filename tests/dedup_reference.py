"""Reference forms of the dedup algorithms, row by row and obviously correct: the keep rule
(`keep_rank_key`, `choose_kept`), union-find components and star edges. The production code
(operators/dedup/clusters.py, operators/dedup/unit.py) is vectorised; tests and
bench/dedup_benchmark.py check it against these."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Hashable, Iterable, Mapping

from operators.dedup.encoding import DATE_NULL

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _warc_date(row: Mapping[str, Any]):
    prov = row.get("provenance")
    if isinstance(prov, Mapping) and "warc_date" in prov:
        return prov["warc_date"]
    return row.get("warc_date")


def _date_seconds(value) -> int:
    if value is None:
        return int(DATE_NULL)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return int((value - _EPOCH).total_seconds())
    return int(value)


def keep_rank_key(row: Mapping[str, Any]) -> tuple:
    """Sort key of the keep rule: the smallest key in a component is the kept document.
    Most text, then most images, then earliest warc_date (nulls last), then smallest id."""
    return (-(row.get("text_chars") or 0), -(row.get("num_images") or 0),
            _date_seconds(_warc_date(row)), row["id"])


def choose_kept(rows: Iterable[Mapping[str, Any]]) -> Mapping[str, Any]:
    """The kept row of one component (the rows of a duplicate cluster)."""
    return min(rows, key=keep_rank_key)


class UnionFind:
    """Union-find whose root is always the smallest member (deterministic labels)."""

    def __init__(self) -> None:
        self.parent: dict[Hashable, Hashable] = {}

    def add(self, x: Hashable) -> None:
        self.parent.setdefault(x, x)

    def find(self, x: Hashable) -> Hashable:
        self.add(x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]   # path halving
            x = self.parent[x]
        return x

    def union(self, a: Hashable, b: Hashable) -> Hashable:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return ra
        lo, hi = (ra, rb) if ra < rb else (rb, ra)
        self.parent[hi] = lo
        return lo

    def labels(self) -> dict:
        return {x: self.find(x) for x in list(self.parent)}


def components(edges: Iterable[tuple[Hashable, Hashable]], nodes: Iterable[Hashable] = ()) -> dict:
    """Reference: node -> smallest node of its connected component (nodes of `edges` and `nodes`)."""
    uf = UnionFind()
    for n in nodes:
        uf.add(n)
    for a, b in edges:
        uf.union(a, b)
    return uf.labels()


def star_edges(bucket_ids: Iterable[Hashable]) -> list[tuple[Hashable, Hashable]]:
    """Edges from the smallest id of a bucket to each other distinct id (n - 1 edges)."""
    ids = sorted(set(bucket_ids))
    return [(ids[0], other) for other in ids[1:]]
