"""Selection: the one step that decides which documents are kept. Scorers only add columns.

Each rule looks at existing columns; a document's `drop_reasons` lists every failing rule and
`drop_reason` the first one (rules run in the order below). With `enabled: false` (`--no-select`)
the reasons are still computed but every document is kept, so thresholds can be retuned on a sample.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from operators.base import Operator, Resources


@dataclass(frozen=True)
class SelectConfig:
    enabled: bool = True           # false: compute drop reasons, drop nothing (--no-select)
    require_http_ok: bool = True   # rule http_status: HTTP status must be 2xx (or absent)
    min_text_chars: int = 1        # rule no_text: documents with less main text than this

    def __post_init__(self):
        if self.min_text_chars < 0:
            raise ValueError("select.min_text_chars must be >= 0")


class Select(Operator):
    name = "select"
    resources = Resources(num_cpus=1.0)  # same as its neighbours, so Ray fuses the stages into one task

    def __init__(self, config: SelectConfig):
        super().__init__()
        self.config = config

    def rules(self, table: pa.Table) -> list[tuple[str, np.ndarray]]:
        """(rule name, boolean mask of failing rows) for each active rule, in order."""
        out = []
        if self.config.require_http_ok:
            st = table["http_status"]
            ok = pc.or_(pc.is_null(st), pc.and_(pc.greater_equal(st, 200), pc.less(st, 300)))
            out.append(("http_status", ~pc.fill_null(ok, True).to_numpy(zero_copy_only=False)))
        chars = table["text_chars"].to_numpy(zero_copy_only=False)
        out.append(("no_text", chars < max(self.config.min_text_chars, 1)))
        return out

    def __call__(self, table: pa.Table) -> pa.Table:
        n = table.num_rows
        self.stats.incr("in", n)
        reasons: list[list[str]] = [[] for _ in range(n)]
        for rule, failing in self.rules(table):
            for i in np.flatnonzero(failing):
                reasons[i].append(rule)
        first = [r[0] if r else None for r in reasons]
        for r in first:
            if r is not None:
                self.stats.drop(r)
        kept = sum(r is None for r in first)
        self.stats.incr("out", kept if self.config.enabled else n)
        table = table.set_column(table.schema.get_field_index("drop_reason"), "drop_reason",
                                 pa.array(first, pa.string()))
        table = table.set_column(table.schema.get_field_index("drop_reasons"), "drop_reasons",
                                 pa.array([r or None for r in reasons], pa.list_(pa.string())))
        return table
