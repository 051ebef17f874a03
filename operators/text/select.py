"""Selection: the one step that decides which documents are kept. Scorers only add columns.

Rules run in this order, each on columns that earlier operators computed:
  http_status          HTTP status not 2xx (`require_http_ok`)
  no_text              less main text than `min_text_chars`
  language_not_allowed `language` not in the `languages` allowlist (empty list: every language)
  low_language_score   `language_score` below `min_language_score` (or its per-language override)
  min_<signal> / max_<signal>
                       a `quality` signal below / above its threshold in `quality` (a mapping
                       such as `max_dup_line_frac: 0.3`); a signal that is null for a document
                       (e.g. no stopword list for its language) does not fail the rule
A document's `drop_reasons` lists every failing rule, `drop_reason` the first. With
`enabled: false` (`--no-select`) reasons are still computed but every document is kept, so
thresholds can be retuned on a sample without recomputing anything.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from operators.base import Operator, Resources
from operators.io.schema import QUALITY, count_drop, drop_kept, put_column

SIGNALS = tuple(f.name for f in QUALITY)


@dataclass(frozen=True)
class SelectConfig:
    enabled: bool = True           # false: compute drop reasons, drop nothing (--no-select)
    require_http_ok: bool = True   # rule http_status: HTTP status must be 2xx (or absent)
    min_text_chars: int = 1        # rule no_text: documents with less main text than this
    languages: tuple[str, ...] = ()          # rule language_not_allowed: allowlist; empty = all
    min_language_score: float = 0.0          # rule low_language_score: global minimum
    min_language_score_by_language: dict[str, float] = field(default_factory=dict)  # per-language overrides
    quality: dict[str, float] = field(default_factory=dict)  # min_<signal> / max_<signal> thresholds

    def __post_init__(self):
        if self.min_text_chars < 0:
            raise ValueError("select.min_text_chars must be >= 0")
        for key, value in {"min_language_score": self.min_language_score,
                           **{f"min_language_score_by_language.{k}": v
                              for k, v in self.min_language_score_by_language.items()}}.items():
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"select.{key} must be between 0 and 1, not {value}")
        for key in self.quality:
            bound, _, signal = key.partition("_")
            if bound not in ("min", "max") or signal not in SIGNALS:
                raise ValueError(
                    f"select.quality.{key}: not a rule; write min_<signal> or max_<signal> with a signal "
                    f"of: {', '.join(SIGNALS)}")


class Select(Operator):
    name = "select"
    resources = Resources(num_cpus=1.0)  # same as its neighbours, so Ray fuses the stages into one task

    def __init__(self, config: SelectConfig):
        super().__init__()
        self.config = config

    def rules(self, table: pa.Table) -> list[tuple[str, np.ndarray]]:
        """(rule name, boolean mask of failing rows) for each active rule, in order."""
        cfg = self.config
        n = table.num_rows

        def failing(expr) -> np.ndarray:  # null (signal not computed / not applicable) passes
            return pc.fill_null(expr, False).to_numpy(zero_copy_only=False).astype(bool)

        out = []
        if cfg.require_http_ok:
            st = table["http_status"]
            out.append(("http_status", failing(pc.or_(pc.less(st, 200), pc.greater_equal(st, 300)))))
        chars = table["text_chars"].to_numpy(zero_copy_only=False)
        out.append(("no_text", chars < max(cfg.min_text_chars, 1)))
        langs = table["language"].to_pylist()
        if cfg.languages:
            allowed = set(cfg.languages)
            out.append(("language_not_allowed", np.array([lg not in allowed for lg in langs], bool)))
        if cfg.min_language_score > 0 or cfg.min_language_score_by_language:
            by_lang = cfg.min_language_score_by_language
            minimum = np.array([by_lang.get(lg, cfg.min_language_score) for lg in langs], np.float64)
            scores = table["language_score"].to_numpy(zero_copy_only=False).astype(np.float64)
            # a document without a language (no text) fails here only if a minimum is set for it
            out.append(("low_language_score", np.where(np.isnan(scores), minimum > 0, scores < minimum)))
        if cfg.quality:
            quality = table["quality"]
            for key, threshold in cfg.quality.items():
                bound, _, signal = key.partition("_")
                values = pc.struct_field(quality, signal)
                cmp = pc.less if bound == "min" else pc.greater
                out.append((key, failing(cmp(values, pa.scalar(threshold, values.type)))))
        assert all(len(m) == n for _, m in out)
        return out

    def __call__(self, table: pa.Table) -> pa.Table:
        n = table.num_rows
        self.stats.incr("in", n)
        reasons: list[list[str]] = [[] for _ in range(n)]
        for rule, mask in self.rules(table):
            hits = np.flatnonzero(mask)
            if len(hits):
                self.stats.incr(f"fails_{rule}", len(hits))  # every failing rule, not only the first
            for i in hits:
                reasons[i].append(rule)
        return record_reasons(table, reasons, self.config.enabled, self.stats)


def record_reasons(table: pa.Table, reasons: list[list[str]], enabled: bool, stats) -> pa.Table:
    """Write `drop_reason` (first) and `drop_reasons` (all) and count drops (or would-be drops)."""
    first = [r[0] if r else None for r in reasons]
    for r in first:
        if r is not None:
            count_drop(stats, r, enabled)
    stats.incr("out", sum(r is None for r in first) if enabled else len(first))
    table = put_column(table, "drop_reason", first)
    return put_column(table, "drop_reasons", [r or None for r in reasons])


class SelectDuplicates(Operator):
    """Rule `duplicate`, after clustering: a document whose `dup_cluster_id` names another document
    (the one kept for its cluster) is dropped. Runs after `Select`, on documents the other rules
    kept, so a duplicate is never dropped in favour of a document that is itself rejected."""

    name = "duplicates"
    resources = Resources(num_cpus=1.0)

    def __init__(self, config: SelectConfig):
        super().__init__()
        self.config = config

    def __call__(self, table: pa.Table) -> pa.Table:
        self.stats.incr("in", table.num_rows)
        if "dup_kept" in table.column_names:  # the clustering's flag; dup_cluster_id says the same
            table = table.drop_columns(["dup_kept"])
        why = ["duplicate" if cluster is not None and cluster != doc else None
               for doc, cluster in zip(table["id"].to_pylist(), table["dup_cluster_id"].to_pylist())]
        return drop_kept(table, why, self.config.enabled, self.stats)
