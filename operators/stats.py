"""Counters every operator keeps: rows in, out, dropped by reason, and recorded errors.

An operator owns one `Stats` (named after the operator). The Ray adapter ships each operator's
counts to the driver after every batch (`drain()`), so a worker never accumulates them and the
driver sums them into the run's stats table. Without Ray, read `op.stats` directly.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

# A run keeps at most this many error records per operator in memory; the rest are only counted.
MAX_ERRORS_KEPT = 1000


@dataclass
class Stats:
    name: str
    counters: Counter = field(default_factory=Counter)
    errors: list[dict[str, Any]] = field(default_factory=list)

    def incr(self, key: str, n: int = 1) -> None:
        self.counters[key] += n

    def drop(self, reason: str, n: int = 1) -> None:
        """Count `n` rows dropped for `reason` (also adds to the `dropped` total)."""
        self.counters["dropped"] += n
        self.counters[f"dropped_{reason}"] += n

    def error(self, kind: str, **details: Any) -> None:
        """Record an error (kept up to MAX_ERRORS_KEPT, always counted as `errors_<kind>`)."""
        self.counters[f"errors_{kind}"] += 1
        if len(self.errors) < MAX_ERRORS_KEPT:
            self.errors.append({"kind": kind, **details})

    def error_kinds(self) -> set[str]:
        """The kinds of the errors counted so far."""
        return {k[len("errors_"):] for k in self.counters if k.startswith("errors_")}

    def merge(self, other: "Stats | dict") -> None:
        if isinstance(other, Stats):
            other = other.to_dict()
        self.counters.update(other.get("counters", {}))
        room = MAX_ERRORS_KEPT - len(self.errors)
        if room > 0:
            self.errors.extend(other.get("errors", [])[:room])

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "counters": dict(self.counters), "errors": list(self.errors)}

    def drain(self) -> dict[str, Any]:
        """Return the counts so far and reset them (for shipping deltas off a worker)."""
        out = self.to_dict()
        self.counters = Counter()
        self.errors = []
        return out

    def __bool__(self) -> bool:  # an empty Stats is still a Stats
        return True


class Counts:
    """Stats entries (`Stats.to_dict()`) merged by operator name, in the order operators first
    report: task results in the flow, units of an invocation, deltas of the Ray Data stages."""

    def __init__(self) -> None:
        self.stats: dict[str, Stats] = {}

    def add(self, entries: list[dict]) -> None:
        for e in entries:
            self.stats.setdefault(e["name"], Stats(e["name"])).merge(e)

    def table(self) -> list[dict]:
        return [s.to_dict() for s in self.stats.values()]
