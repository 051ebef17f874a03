"""Human-readable run summaries: the stats table and a DuckDB read-back of the output."""
from __future__ import annotations

import posixpath

import pyarrow.dataset as pads
import pyarrow.fs as pafs

from operators.storage import resolve


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


def table_dataset(output: str, table: str) -> pads.Dataset | None:
    """A pyarrow dataset over `<output>/<table>/*.parquet` (local or object store), or None if empty."""
    fs, root = resolve(output)
    path = posixpath.join(root.rstrip("/"), table)
    if fs.get_file_info(path).type != pafs.FileType.Directory:
        return None
    files = [i.path for i in fs.get_file_info(pafs.FileSelector(path)) if i.path.endswith(".parquet")]
    if not files:
        return None
    return pads.dataset(sorted(files), filesystem=fs, format="parquet")


def summarize(output: str, run_id: str | None = None) -> str:
    """Documents, images, languages and drop reasons of a run, read back from its Parquet with DuckDB."""
    import duckdb

    con = duckdb.connect()
    where = "WHERE provenance.run_id = $run" if run_id else ""
    params = {"run": run_id} if run_id else {}
    out = []
    docs = table_dataset(output, "documents")
    if docs is not None:
        con.register("docs", docs)
        lang = "coalesce(language, '(none)')"  # identified by fastText (operators/langid.py)
        n, imgs, langs = con.execute(
            f"SELECT count(*), coalesce(sum(num_images), 0), count(DISTINCT language) FROM docs {where}",
            params).fetchone()
        out.append(f"documents: {n}   images: {imgs}   languages: {langs}")
        rows = con.execute(f"SELECT {lang} AS lang, count(*) AS n FROM docs {where} "
                           "GROUP BY 1 ORDER BY n DESC, lang LIMIT 12", params).fetchall()
        if rows:
            out.append("languages seen: " + ", ".join(f"{lg} {k}" for lg, k in rows))
    else:
        out.append("documents: 0")
    rej = table_dataset(output, "rejected")
    rows = []
    if rej is not None:
        con.register("rej", rej)
        rows = con.execute(f"SELECT drop_reason, count(*) FROM rej {where} GROUP BY 1 ORDER BY 2 DESC",
                           params).fetchall()
    out.append("dropped: " + (", ".join(f"{r} {k}" for r, k in rows) if rows else "none"))
    return "\n".join(out)
