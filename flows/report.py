"""Human-readable run summaries: the stats table and a DuckDB read-back of the output."""
from __future__ import annotations

import posixpath
import re

import pyarrow.dataset as pads
import pyarrow.fs as pafs

from operators.io.storage import resolve


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
    # a run, or an invocation of several commit units (runs <run_id>-u0001, ...)
    where = "WHERE (provenance.run_id = $run OR starts_with(provenance.run_id, $run || '-u'))" if run_id else ""
    params = {"run": run_id} if run_id else {}
    out = []
    docs = table_dataset(output, "documents")
    if docs is not None:
        con.register("docs", docs)
        lang = "coalesce(language, '(none)')"  # identified by fastText (operators/text/langid.py)
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


# ---------------------------------------------------------------- the run report (_runs/<run_id>/report.md)

FUNNEL = (("read", "records", "WARC records"), ("read", "out", "HTML pages"),
          ("extract", "out", "documents extracted"), ("select", "out", "kept after selection"),
          ("duplicates", "out", "kept after dedup"),
          ("write", "rows_documents", "written"))
IMAGE_OPS = ("fetch", "prepare_images", "score_images", "nsfw", "clip")
NOT_DOCUMENT_OPS = ("read_images", "prepare_images", "score_images", "nsfw", "fetch", "write",
                    "url_duplicates", "dedup")  # count images, records or pairs, not documents
MAX_INPUTS = 20
MAX_ROWS = 12       # table rows and chart bars of the top-N sections


def write_report(output: str, run_id: str, record: dict) -> str:
    """Write `_runs/<run_id>/report.md` and its PNG charts for a run record (stats.json); returns
    the report's path. The charts are written first, so the report never links a missing one."""
    from operators.io.writer import run_dir, write_bytes, write_text

    langs = None
    if record.get("kind") != "retry_images":
        try:
            langs = run_languages(output, run_id)
        except Exception as e:  # an unreadable output must not cost the rest of the report
            langs = f"languages unavailable: {type(e).__name__}: {e}"
    text, charts = render_report({**record, "run_id": record.get("run_id") or run_id}, langs)
    for name, png in charts.items():
        write_bytes(output, f"_runs/{run_id}/{name}", png)
    write_text(output, f"_runs/{run_id}/report.md", text)
    return posixpath.join(run_dir(output, run_id), "report.md")


def run_languages(output: str, run_id: str) -> dict[str, int]:
    """Documents per language in the run's committed files (documents/part-<run_id>-*.parquet)."""
    from collections import Counter

    import pyarrow.parquet as pq

    fs, root = resolve(output)
    folder = posixpath.join(root.rstrip("/"), "documents")
    infos = fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True))
    counts: Counter = Counter()
    for info in sorted(infos, key=lambda i: i.path):
        name = posixpath.basename(info.path)
        if info.type == pafs.FileType.File and name.startswith(f"part-{run_id}-") and name.endswith(".parquet"):
            for lang in pq.read_table(info.path, filesystem=fs, columns=["language"])["language"].to_pylist():
                counts[lang or "(none)"] += 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def render_report(record: dict, languages: dict[str, int] | str | None = None) -> tuple[str, dict[str, bytes]]:
    """The report's markdown and its charts ({file name: PNG bytes}) for a run record.
    `languages`: documents per language, or a line saying why they are unavailable."""
    ops = _ops(record)
    charts: dict[str, bytes] = {}
    if record.get("kind") == "retry_images":
        md = _header(record, ops, "Retry of failed images") + _retry(record) + _failures(record, ops)
        md += _documents(ops, charts, chart=False) + _images(ops)
        return "\n".join(md).rstrip() + "\n", charts
    md = _header(record, ops, "Run") + _inputs(record, ops) + _failures(record, ops)
    md += _documents(ops, charts) + _languages(languages, charts) + _images(ops) + _throughput(record, ops, charts)
    return "\n".join(md).rstrip() + "\n", charts


def _ops(record: dict) -> dict[str, dict]:
    """Operator name -> {"counters", "errors"}; entries of the same name are summed."""
    out: dict[str, dict] = {}
    for op in record.get("operators") or []:
        o = out.setdefault(op["name"], {"counters": {}, "errors": []})
        for k, v in (op.get("counters") or {}).items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                o["counters"][k] = o["counters"].get(k, 0) + v
        o["errors"].extend(op.get("errors") or [])
    return out


def _c(ops: dict, op: str, key: str, default=None):
    return ops.get(op, {}).get("counters", {}).get(key, default)


def _n(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, float) and not v.is_integer():
        return f"{v:,.2f}" if abs(v) < 100 else f"{v:,.0f}"
    return f"{int(v):,}"


def _rate(v) -> str:
    """A rate: 2 significant decimals under 1, 1 decimal under 100, none above."""
    if v is None:
        return "–"
    return f"{v:,.2f}" if v < 1 else f"{v:,.1f}" if v < 100 else f"{v:,.0f}"


def _cell(v) -> str:
    return str(v).replace("|", "\\|").replace("\n", " ")


def _table(head: list[str], rows: list[list]) -> list[str]:
    """A markdown table; columns of numbers are right-aligned."""
    def numeric(i: int) -> bool:
        return all(re.fullmatch(r"[-–0-9.,%]+", str(r[i])) for r in rows)
    align = ["--:" if numeric(i) else "---" for i in range(len(head))]
    out = ["| " + " | ".join(head) + " |", "|" + "|".join(align) + "|"]
    out += ["| " + " | ".join(_cell(c) for c in r) + " |" for r in rows]
    return out + [""]


def _duration(seconds) -> str:
    if seconds is None:
        return "–"
    s = float(seconds)
    if s < 60:
        return f"{s:.1f} s"
    m, s = divmod(round(s), 60)
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min" if h else f"{m} min {s:02d} s"


def _header(record: dict, ops: dict, title: str) -> list[str]:
    status = record.get("status") or "unknown"
    md = [f"# {title} {record.get('run_id', '')}", ""]
    if status == "ok":
        md.append("**Status: ok**")
    else:
        md.append(f"**Status: {status.upper()}**" + (f": {_cell(record['failure'])}" if record.get("failure") else ""))
    md += ["", f"- started: {record.get('started', '–')}, duration {_duration(record.get('seconds'))}",
           f"- pipeline version {record.get('pipeline_version', '–')}, "
           f"config hash `{record.get('config_hash', '–')}`"]
    if "read" in ops:
        failed = _c(ops, "read", "files_failed", 0)
        md.append(f"- WARC files read: {_n(_c(ops, 'read', 'files', 0))}, failed (damaged or unreadable): "
                  + (f"**{_n(failed)}**" if failed else "0"))
    rolled, removed = _c(ops, "housekeeping", "commits_rolled_forward", 0), \
        _c(ops, "housekeeping", "abandoned_staging_removed", 0)
    if rolled or removed:
        mib = _c(ops, "housekeeping", "abandoned_staging_bytes", 0) / 2**20
        md.append(f"- before the run: {_n(rolled)} interrupted commit(s) rolled forward; the staging folders of "
                  f"{_n(removed)} crashed run(s) removed ({_n(_c(ops, 'housekeeping', 'abandoned_staging_files', 0))} "
                  f"files, {mib:,.1f} MiB)")
    return md + [""]


def _inputs(record: dict, ops: dict) -> list[str]:
    inputs = record.get("inputs") or []
    md = ["## Inputs", "", f"{len(inputs):,} WARC file{'s' if len(inputs) != 1 else ''}:", ""]
    md += [f"- `{p}`" for p in inputs[:MAX_INPUTS]]
    if len(inputs) > MAX_INPUTS:
        md.append(f"- ... and {len(inputs) - MAX_INPUTS:,} more (stats.json lists them all)")
    return md + [""]


def _error_kinds(ops: dict) -> list[tuple[str, str, int, list[dict]]]:
    """(operator, kind, count, examples) of the errors operators recorded; `errors_<kind>` counters
    hold the full counts (the lists are capped). clip_off is not an error (see Images)."""
    out = []
    for name, op in ops.items():
        kinds: dict[str, list[dict]] = {}
        for e in op["errors"]:
            if isinstance(e, dict) and e.get("kind") != "clip_off":
                kinds.setdefault(str(e.get("kind", "error")), []).append(e)
        for k in op["counters"]:
            if k.startswith("errors_"):
                kinds.setdefault(k[len("errors_"):], [])
        for kind, examples in kinds.items():
            out.append((name, kind, max(op["counters"].get(f"errors_{kind}", 0), len(examples)), examples))
    return sorted(out, key=lambda t: -t[2])


def _failures(record: dict, ops: dict) -> list[str]:
    md = ["## Failures", ""]
    if record.get("status") not in (None, "ok"):
        md += [f"The run **{record.get('status')}**: {record.get('failure') or 'no reason recorded'}", ""]
    errors = [e for e in _error_kinds(ops) if e[2]]
    if not errors:
        return md + ["No errors recorded by the operators.", ""]
    md += _table(["operator", "error", "count"], [[op, kind, _n(n)] for op, kind, n, _ in errors[:MAX_ROWS]])
    if len(errors) > MAX_ROWS:
        md += [f"... and {len(errors) - MAX_ROWS} more kinds in stats.json", ""]
    examples: list[str] = []
    for op, kind, _, ex in errors[:5]:
        lines = []
        for e in ex:
            detail = ", ".join(f"{k}={v}" for k, v in e.items() if k != "kind")
            line = f"- `{op}` {kind}: {_cell(detail[:200] + ('...' if len(detail) > 200 else ''))}"
            if line not in lines:
                lines.append(line)
            if len(lines) == 2:
                break
        examples += lines
    if examples:
        md += ["Examples:", *examples, ""]
    return md


def _drop_reasons(ops: dict) -> list[tuple[str, str, int]]:
    """(stage, reason, documents) from `dropped_<reason>` counters (`would_drop_<reason>` when selection was off)."""
    out = []
    for name, op in ops.items():
        if name in NOT_DOCUMENT_OPS:
            continue
        for k, v in op["counters"].items():
            if k.startswith("dropped_") and v:
                out.append((name, k[len("dropped_"):], v))
            elif k.startswith("would_drop_") and v:
                out.append((name, k[len("would_drop_"):] + " (would drop; selection off)", v))
    return sorted(out, key=lambda t: -t[2])


def _documents(ops: dict, charts: dict, chart: bool = True) -> list[str]:
    md = ["## Documents kept and dropped", ""]
    funnel = [(label, _c(ops, op, key)) for op, key, label in FUNNEL if _c(ops, op, key) is not None]
    if chart and len(funnel) >= 2:
        charts["funnel.png"] = _barh([lb for lb, _ in funnel], [v for _, v in funnel], "From records to documents",
                                     "count")
        md += ["![funnel: records to written documents](funnel.png)", ""]
    rows = []
    for name, op in ops.items():
        c = op["counters"]
        if name in NOT_DOCUMENT_OPS or not any(k in c for k in ("in", "out", "dropped")):
            continue
        label = "read (WARC records)" if name == "read" else name
        rows.append([label, _n(c.get("records") if name == "read" else c.get("in")), _n(c.get("out")),
                     _n(c.get("dropped", 0))])
    if rows:
        md += _table(["stage", "in", "out", "dropped"], rows)
    if "write" in ops:
        md += [f"Written: {_n(_c(ops, 'write', 'rows_documents', 0))} documents (documents/), "
               f"{_n(_c(ops, 'write', 'rows_rejected', 0))} rejected rows (rejected/), "
               f"{_n(_c(ops, 'write', 'files', 0))} files.", ""]
    reasons = _drop_reasons(ops)
    if not reasons:
        return md + ["No documents dropped.", ""]
    md += ["Dropped, by stage and reason:", ""]
    md += _table(["stage", "reason", "dropped"], [[s, r, _n(n)] for s, r, n in reasons[:MAX_ROWS]])
    if len(reasons) > MAX_ROWS:
        md += [f"... and {len(reasons) - MAX_ROWS} more reasons in stats.json", ""]
    top = [t for t in reasons if t[:2] != ("read", "not_response")][:MAX_ROWS]  # requests would dwarf the rest
    if chart and top:
        charts["drops.png"] = _barh([f"{s}: {r.split(' (')[0]}" for s, r, _ in top], [n for *_, n in top],
                                    "Dropped by stage and reason", "records / documents")
        md += ["![drop reasons](drops.png)", ""]
    return md


def _languages(languages, charts: dict) -> list[str]:
    md = ["## Languages", ""]
    if isinstance(languages, str):
        return md + [languages, ""]
    if not languages:
        return md + ["The output holds no documents of this run.", ""]
    total = sum(languages.values())
    items = list(languages.items())
    top = items[:MAX_ROWS]
    rest = sum(n for _, n in items[MAX_ROWS:])
    rows = [[lang, _n(n), f"{100 * n / total:.0f}%"] for lang, n in top]
    if rest:
        rows.append([f"{len(items) - MAX_ROWS} others", _n(rest), f"{100 * rest / total:.0f}%"])
    md += [f"{total:,} documents in {len(items)} language{'s' if len(items) != 1 else ''} "
           "(fastText, read back from the committed documents):", ""]
    md += _table(["language", "documents", "share"], rows)
    charts["languages.png"] = _barh([lg for lg, _ in top], [n for _, n in top], "Documents by language",
                                    "documents")
    return md + ["![languages](languages.png)", ""]


def _images(ops: dict) -> list[str]:
    if not any(name in ops for name in IMAGE_OPS):
        return []
    md = ["## Images", ""]
    fetch = ops.get("fetch", {}).get("counters", {})
    statuses = {k[len("status_"):]: v for k, v in fetch.items() if k.startswith("status_") and v}
    sources = {k[len("source_"):]: v for k, v in fetch.items() if k.startswith("source_") and v}
    if fetch:
        md.append(f"- image URLs resolved: {_n(fetch.get('urls', sum(statuses.values())))} "
                  f"({_n(fetch.get('references'))} references)")
    if statuses:
        md.append("- status: " + ", ".join(f"{s} {_n(n)}" for s, n in sorted(statuses.items(), key=lambda kv: -kv[1])))
    if sources:
        md.append("- source: " + ", ".join(f"{s} {_n(n)}" for s, n in sorted(sources.items(), key=lambda kv: -kv[1])))
    scored = _c(ops, "score_images", "nsfw_scored", _c(ops, "nsfw", "scored"))
    over = _c(ops, "score_images", "nsfw_over_threshold", _c(ops, "nsfw", "over_threshold"))
    if scored is not None:
        md.append(f"- NSFW: {_n(scored)} images scored, {_n(over or 0)} over the threshold; "
                  f"{_n(_c(ops, 'images', 'dropped_nsfw', 0))} documents dropped as nsfw")
    removed = _c(ops, "images", "images_removed_failed")
    if removed:
        md.append(f"- image references removed because the image failed: {_n(removed)}")
    clip = ops.get("clip")
    off = clip and any(isinstance(e, dict) and e.get("kind") == "clip_off" for e in clip["errors"])
    if off:
        reason = next(e.get("reason") for e in clip["errors"] if isinstance(e, dict) and e.get("kind") == "clip_off")
        md.append(f"- **CLIP: off.** {reason or 'images.clip.enabled is false'}")
    elif clip:
        c = clip["counters"]
        md.append(f"- CLIP: on; {_n(c.get('images_scored', 0))} images scored against their text, "
                  f"{_n(c.get('images_removed_clip', 0))} removed under the similarity threshold, "
                  f"{_n(c.get('dropped_too_few_images', 0))} documents dropped as too_few_images")
    else:
        md.append("- CLIP: not recorded in this run")
    return md + [""]


def _throughput(record: dict, ops: dict, charts: dict) -> list[str]:
    md = ["## Throughput", ""]
    seconds = record.get("seconds")
    phases = [p for p in record.get("phases") or [] if isinstance(p, dict) and p.get("name")]
    if phases:
        rows, labels, rates = [], [], []
        cpus = record.get("cpus")
        for p in phases:
            s, d, busy = p.get("seconds"), p.get("documents"), p.get("cpu_seconds")
            rate = d / s if s and d is not None else None
            share = f"{busy / (s * cpus):.0%}" if busy is not None and s and cpus else "–"
            rows.append([p["name"], f"{s:.1f}" if s is not None else "–", _n(d), _rate(rate),
                         f"{busy:.1f}" if busy is not None else "–", share])
            if rate is not None:
                labels.append(p["name"])
                rates.append(rate)
        md += _table(["phase", "seconds", "documents", "documents/s", "CPU busy (s)",
                      f"of {cpus} CPUs" if cpus else "CPU share"], rows)
        md.append("CPU busy: the CPU time the phase's tasks spent (their process time), summed; the share is "
                  "that over the phase's wall time times the CPUs of the cluster.")
        md.append("")
        if rates:
            charts["throughput.png"] = _barh(labels, rates, "Throughput per phase", "documents / s", fmt=_rate)
            md += ["![throughput per phase](throughput.png)", ""]
    records, pages = _c(ops, "read", "records"), _c(ops, "read", "out")
    if seconds and pages is not None:
        line = f"Overall: {_n(pages)} HTML pages"
        if records is not None:
            line += f" ({_n(records)} WARC records)"
        line += f" in {_duration(seconds)}: {_rate(pages / seconds)} pages/s"
        files = _c(ops, "read", "files")
        if files:
            line += f", {_rate(files * 3600 / seconds)} WARC files/h"
        md.append(line + ".")
    elif not phases:
        md.append("No timings recorded.")
    return md + [""]


def _retry(record: dict) -> list[str]:
    runs = record.get("retried_runs")
    rewritten = record.get("document_files_rewritten") or []
    md = ["## Retry", "",
          f"- runs retried: {', '.join(runs) if isinstance(runs, list) else runs or 'all'}",
          f"- statuses retried: {', '.join(record.get('statuses') or []) or '–'}",
          f"- document files checked: {_n(record.get('document_files_checked'))}",
          f"- retryable images: {_n(record.get('retryable_images'))}, now ok: {_n(record.get('now_ok'))}",
          f"- document files rewritten: {len(rewritten):,}"]
    md += [f"  - `{f}`" for f in rewritten[:MAX_INPUTS]]
    if len(rewritten) > MAX_INPUTS:
        md.append(f"  - ... and {len(rewritten) - MAX_INPUTS:,} more")
    return md + [""]


def _barh(labels: list[str], values: list[float], title: str, xlabel: str, fmt=None) -> bytes:
    """A small horizontal bar chart as PNG bytes (Agg canvas; pyplot's global state is not touched)."""
    import io
    import textwrap

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    y = list(range(len(labels)))
    ax.barh(y, values, color="#4C72B0")
    ax.set_yticks(y, [textwrap.fill(textwrap.shorten(lb, 60, placeholder="…"), 26) for lb in labels], fontsize=8)
    ax.invert_yaxis()
    top = max(values, default=0) or 1
    for i, v in enumerate(values):
        ax.text(v + top * 0.01, i, (fmt or _n)(v), va="center", fontsize=8)
    ax.set_xlim(0, top * 1.15)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.tick_params(axis="x", labelsize=8)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


