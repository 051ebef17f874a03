"""Human-readable run summaries: the stats table and a DuckDB read-back of the output."""
from __future__ import annotations

import posixpath

from operators.storage import is_uri


def format_stats(stats: list[dict]) -> str:
    """One block per operator: in / out / dropped, then its other counters, then error counts."""
    lines = ["", "stats", "-----"]
    for op in stats:
        c = dict(op["counters"])
        head = "  ".join(f"{k}={c.pop(k)}" for k in ("files", "in", "out", "dropped") if k in c)
        lines.append(f"{op['name']:<8} {head}")
        for k in sorted(c):
            lines.append(f"{'':<8}   {k:<32} {c[k]:>10}")
        for e in op["errors"][:5]:
            detail = ", ".join(f"{k}={v}" for k, v in e.items() if k != "kind")
            lines.append(f"{'':<8}   ! {e['kind']}: {detail}")
        if len(op["errors"]) > 5:
            lines.append(f"{'':<8}   ! ... {len(op['errors']) - 5} more in stats.json")
    return "\n".join(lines)


def summarize(output: str, run_id: str | None = None) -> str:
    """Documents, images, languages and drop reasons, read back from the Parquet output with DuckDB."""
    import duckdb

    if is_uri(output):
        return "(summary: read S3 output with `python -m flows.query`)"
    con = duckdb.connect()
    where = f"WHERE provenance.run_id = '{run_id}'" if run_id else ""
    out = []

    def scan(table: str) -> str | None:
        pattern = posixpath.join(output, table, "*.parquet")
        import glob
        if not glob.glob(pattern):
            return None
        return f"read_parquet('{pattern}', union_by_name=true)"

    docs = scan("documents")
    if docs:
        n, imgs, langs = con.execute(
            f"SELECT count(*), coalesce(sum(num_images), 0), count(DISTINCT html_lang) FROM {docs} {where}").fetchone()
        out.append(f"documents: {n}   images: {imgs}   declared languages: {langs}")
        rows = con.execute(
            f"SELECT coalesce(html_lang, '(none)') AS lang, count(*) AS n FROM {docs} {where} "
            "GROUP BY 1 ORDER BY n DESC, lang LIMIT 12").fetchall()
        out.append("languages (html lang): " + ", ".join(f"{lang} {k}" for lang, k in rows))
    else:
        out.append("documents: 0")
    rej = scan("rejected")
    if rej:
        rows = con.execute(f"SELECT drop_reason, count(*) FROM {rej} {where} GROUP BY 1 ORDER BY 2 DESC").fetchall()
        out.append("dropped: " + ", ".join(f"{r} {k}" for r, k in rows))
    else:
        out.append("dropped: none")
    return "\n".join(out)
