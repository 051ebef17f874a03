"""Look at documents: `python -m flows.show OUTPUT (--id ID | --url URL | --sample N [--where SQL])
[--html DIR]`.

    python -m flows.show out/local --sample 3
    python -m flows.show out/local --id 3f2a...                        # one document, as Markdown
    python -m flows.show out/local --sample 5 --where "language = 'de' AND num_images > 0" --html /tmp/docs

Markdown (printed): the title, a line of what the document is (URL, language and who decided it,
counts, drop reason if any), then the document in reading order: each text block a paragraph,
each image `![alt](url)` at its position followed by its status and scores in italics. `--html DIR`
writes one self-contained page per document (`<id>.html`, and `index.html` linking them): images
are the stored copies from the output's `images/` table where there is one (embedded as data URIs,
so the page needs no network), else the original URL. The notebook uses the same renderer.
Documents come from the `documents` view, or `rejected` with `--rejected`.
"""
from __future__ import annotations

import argparse
import base64
import html
import sys
from pathlib import Path

COLUMNS = ("id, url, title, language, language_source, num_texts, num_images, texts, images, image_info, "
           "drop_reason")


def image_note(info: dict | None) -> str:
    """`status`, then what is known of the image: measured size, format, NSFW and CLIP scores."""
    info = info or {}
    parts = [info.get("status") or "not resolved"]
    if info.get("http_status") and info.get("status") != "ok":
        parts.append(f"HTTP {info['http_status']}")
    if info.get("fetched_width") and info.get("fetched_height"):
        parts.append(f"{info['fetched_width']}×{info['fetched_height']}")
    elif info.get("width") and info.get("height"):
        parts.append(f"declared {info['width']}×{info['height']}")
    if info.get("format"):
        parts.append(info["format"])
    if info.get("nsfw") is not None:
        parts.append(f"nsfw {info['nsfw']:.2f}")
    if info.get("clip") is not None:
        parts.append(f"clip {info['clip']:.2f}")
    return ", ".join(parts)


def _header(doc: dict) -> str:
    lang = doc.get("language") or "no language"
    if doc.get("language_source"):
        lang += f" ({doc['language_source']})"
    line = f"{doc['url']} · {lang} · {doc.get('num_texts') or 0} text blocks, {doc.get('num_images') or 0} images"
    if doc.get("drop_reason"):
        line += f" · dropped: {doc['drop_reason']}"
    return f"{line} · id {doc['id']}"


def _md_alt(alt: str | None) -> str:
    return " ".join((alt or "").split()).replace("[", "(").replace("]", ")")


def _md_url(url: str) -> str:
    return url.replace(" ", "%20").replace("(", "%28").replace(")", "%29")


def to_markdown(doc: dict) -> str:
    """The document as Markdown, in reading order (see the module docstring)."""
    out = [f"# {' '.join((doc.get('title') or doc['url']).split())}", "", _header(doc), ""]
    infos = doc.get("image_info") or [None] * len(doc["texts"])
    for text, image, info in zip(doc["texts"], doc["images"], infos):
        if text is not None:
            out += [text, ""]
        elif image is not None:
            out += [f"![{_md_alt((info or {}).get('alt'))}]({_md_url(image)})", f"*image: {image_note(info)}*", ""]
    return "\n".join(out).rstrip() + "\n"


def _mime(data: bytes) -> str:
    for magic, kind in ((b"\xff\xd8", "jpeg"), (b"\x89PNG", "png"), (b"GIF8", "gif"), (b"RIFF", "webp")):
        if data.startswith(magic):
            return "image/" + kind
    return "application/octet-stream"


def to_html(doc: dict, stored: dict[str, bytes] | None = None) -> str:
    """A self-contained HTML page of the document; `stored`: sha256 -> the stored copy's bytes."""
    stored = stored or {}
    esc = html.escape
    title = " ".join((doc.get("title") or doc["url"]).split())
    body = [f"<h1>{esc(title)}</h1>", f"<p class=meta>{esc(_header(doc))}</p>"]
    infos = doc.get("image_info") or [None] * len(doc["texts"])
    for text, image, info in zip(doc["texts"], doc["images"], infos):
        if text is not None:
            body.append(f"<p>{esc(text)}</p>")
        elif image is not None:
            info = info or {}
            data = stored.get(info.get("sha256"))
            src = f"data:{_mime(data)};base64,{base64.b64encode(data).decode()}" if data else esc(image, quote=True)
            alt = esc(info.get("alt") or "", quote=True)
            where = "stored copy" if data else "original URL"
            body.append(f'<figure><img src="{src}" alt="{alt}"><figcaption>{esc(info.get("alt") or "")}'
                        f'<br><small>{esc(image_note(info))} · {where} · <a href="{esc(image, quote=True)}">'
                        f"{esc(image)}</a></small></figcaption></figure>")
    style = ("body{font:16px/1.5 sans-serif;max-width:46em;margin:2em auto;padding:0 1em;color:#222}"
             ".meta{color:#666;font-size:13px}figure{margin:1.5em 0}img{max-width:100%;height:auto;"
             "border:1px solid #ddd}figcaption{color:#555;font-size:14px}")
    return (f"<!DOCTYPE html>\n<html><head><meta charset=utf-8><title>{esc(title)}</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def stored_copies(con, docs: list[dict], views: list[str] | None = None) -> dict[str, bytes]:
    """sha256 -> stored copy (the `image_table` view's `data`) of the images of `docs`."""
    shas = sorted({i["sha256"] for d in docs for i in (d.get("image_info") or []) if i and i.get("sha256")})
    if not shas:
        return {}
    names = views if views is not None else [r[0] for r in con.sql("SELECT view_name FROM duckdb_views()").fetchall()]
    if "image_table" not in names:
        return {}
    rows = con.execute("SELECT sha256, any_value(data) FROM image_table WHERE list_contains(?, sha256) "
                       "AND data IS NOT NULL GROUP BY 1", [shas]).fetchall()
    return {sha: bytes(data) for sha, data in rows}


def select(con, *, ids=(), urls=(), sample: int | None = None, where: str | None = None,
           rejected: bool = False) -> list[dict]:
    view = "rejected" if rejected else "documents"
    if ids:
        rel = con.execute(f"SELECT {COLUMNS} FROM {view} WHERE list_contains(?, id) ORDER BY id", [list(ids)])
    elif urls:
        rel = con.execute(f"SELECT {COLUMNS} FROM {view} WHERE list_contains(?, url) ORDER BY url, id", [list(urls)])
    else:
        cond = f"WHERE {where}" if where else ""
        rel = con.execute(f"SELECT {COLUMNS} FROM {view} {cond} ORDER BY hash(id) LIMIT ?", [sample or 1])
    names = [d[0] for d in rel.description]
    return [dict(zip(names, row)) for row in rel.fetchall()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m flows.show", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("output", nargs="?", default=None, help="output folder or s3:// URI (default: out/local)")
    pick = ap.add_mutually_exclusive_group()
    pick.add_argument("--id", action="append", default=[], help="document id (repeatable)")
    pick.add_argument("--url", action="append", default=[], help="page URL (repeatable)")
    pick.add_argument("--sample", type=int, default=None, help="N documents (a stable sample: ordered by hash of id)")
    ap.add_argument("--where", default=None, help="SQL condition on the documents view, with --sample")
    ap.add_argument("--rejected", action="store_true", help="from the rejected documents")
    ap.add_argument("--html", metavar="DIR", default=None, help="also write a self-contained HTML page per document")
    args = ap.parse_args(argv)
    if args.where and (args.id or args.url):
        ap.error("--where goes with --sample")
    from flows.query import OutputError, connect
    try:
        con = connect(args.output)
    except OutputError as e:
        print(f"flows.show: {e}", file=sys.stderr)
        return 2
    try:
        docs = select(con, ids=args.id, urls=args.url, sample=args.sample, where=args.where, rejected=args.rejected)
    except Exception as e:  # noqa: BLE001 - a bad --where: DuckDB says why
        print(f"flows.show: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    if not docs:
        print("flows.show: no document matches", file=sys.stderr)
        return 1
    print("\n---\n\n".join(to_markdown(d) for d in docs), end="")
    if args.html:
        folder = Path(args.html)
        folder.mkdir(parents=True, exist_ok=True)
        stored = stored_copies(con, docs)
        for d in docs:
            (folder / f"{d['id']}.html").write_text(to_html(d, stored), encoding="utf-8")
        links = "\n".join(f'<li><a href="{html.escape(d["id"])}.html">{html.escape(d.get("title") or d["url"])}</a>'
                          for d in docs)
        (folder / "index.html").write_text(f"<!DOCTYPE html>\n<meta charset=utf-8><ul>\n{links}\n</ul>\n",
                                           encoding="utf-8")
        print(f"\n{len(docs)} HTML page(s) in {folder}/", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
