"""DuckDB over an output store: `python -m flows.query [OUTPUT] [-c SQL] [--format table|csv|json]`.

    python -m flows.query out/local -c "SELECT language, count(*) FROM documents GROUP BY 1 ORDER BY 2 DESC"
    python -m flows.query s3://bucket/out            # interactive: SQL statements ending in `;`

`connect(output)` returns an in-memory DuckDB connection with these views (the notebook and the
tests use it):

- `documents`      the corpus: committed documents less those listed in `_index/superseded` (a
                   document a later run replaced by a newer fetch of its URL)
- `documents_all`  every committed document, superseded ones included
- `images`         one row per image of `documents`: `document_id`, `document_url`, `position` (index
                   in the aligned `texts` / `images` lists, from 0), `image_index` (from 0 among the
                   document's images), `url`, then every field of its `image_info` struct by name
                   (`alt`, `width`, ..., `status`, `sha256`, `nsfw`, and whatever later stages add;
                   a field whose name is taken gets an `image_` prefix)
- `rejected`       committed dropped documents, with `drop_reason`
- `superseded`     the committed `_index/superseded` rows (`id`, `superseded_by`, `run_id`)
- `runs`           one row per `_runs/<run_id>/`: status, start, seconds, inputs, documents written
                   and rejected (the writer's counters), config hash, whether it committed
- `ledger`         the latest `_ledger/` entry of every input WARC (state done / failed, attempts,
                   error, records, documents, rejected, unit run id; operators/io/ledger.py)
- `image_table`    the content-addressed `images/` table (`sha256`, stored copy in `data`), when the
                   output has one; any other table a run commits beside them (e.g. `image_embeddings/`)
                   gets a view of its folder's name

What is read. `operators.io.writer.commit` moves a run's parts into `documents/`, `rejected/`,
`images/` and `_index/` after writing the list of moves (`_runs/<run_id>/commit.json`), and writes
the manifest `_index/_committed/<run_id>.json` last. Only runs with a manifest are committed; their
files are the destinations of their intent (for the index tables, the manifest's own list). A part
in `documents/` that no committed run names (a commit interrupted before `recover` finished it, a
stray file) is not read. An output without any manifest has no committed run: an error.

Object stores. Parquet on `s3://` is read by DuckDB's httpfs extension, loaded from the
`duckdb-extension-httpfs` wheel (`duckdb_extension_httpfs/extensions/v<duckdb version>/
httpfs.duckdb_extension`, pinned to the installed duckdb): nothing is downloaded at run time, and
extension auto-install/auto-load are switched off. Credentials, region and endpoint come from the
standard AWS environment variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
`AWS_SESSION_TOKEN`, `AWS_REGION` / `AWS_DEFAULT_REGION`, `AWS_ENDPOINT_URL_S3` /
`AWS_ENDPOINT_URL`; a custom endpoint is addressed path-style, TLS by its scheme), else from
botocore's credential chain (profiles, instance roles) when botocore is installed; they go into
a DuckDB secret and are never printed. The small JSON records (manifests, intents, stats) and the
listings are read through `operators.io.storage.resolve` (pyarrow.fs), the project's one I/O layer.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import posixpath
import sys
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.fs as pafs

from operators.io.layout import COMMITTED_DIR, RUNS_DIR, intent_path
from operators.io.storage import is_uri, resolve

TABLES = ("documents", "rejected", "images")   # the folders commit moves a run's parts into
IMAGE_COLUMNS = ("document_id", "document_url", "position", "image_index", "url")
VIEWS = ("documents", "documents_all", "images", "rejected", "superseded", "runs", "ledger", "image_table")


class OutputError(Exception):
    """The output cannot be queried (not found, nothing committed, unsupported store)."""


def default_output() -> str:
    return os.environ.get("INTERLEAF_OUTPUT") or "out/local"


# --- reading the store -----------------------------------------------------------------------

class _Store:
    def __init__(self, output: str):
        self.output = output
        self.fs, root = resolve(output)
        self.root = root.rstrip("/")
        self.scheme = output.split("://", 1)[0] if is_uri(output) else None

    def path(self, rel: str) -> str:
        return posixpath.join(self.root, rel) if rel else self.root

    def uri(self, path: str) -> str:
        """What DuckDB opens for a filesystem path."""
        return f"{self.scheme}://{path}" if self.scheme else path

    def kind(self, rel: str) -> pafs.FileType:
        return self.fs.get_file_info(self.path(rel)).type

    def listing(self, rel: str) -> list[pafs.FileInfo]:
        return self.fs.get_file_info(pafs.FileSelector(self.path(rel), allow_not_found=True))

    def read_json(self, rel: str) -> dict | None:
        try:
            with self.fs.open_input_stream(self.path(rel)) as f:
                return json.loads(f.read().decode())
        except FileNotFoundError:
            return None
        except OSError as e:  # object stores say "not found" in their own words
            if self.kind(rel) == pafs.FileType.NotFound:
                return None
            raise OutputError(f"cannot read {self.uri(self.path(rel))}: {e}") from e


def committed_files(output: str) -> dict[str, list[str]]:
    """The committed files of an output, by table (`documents`, `rejected`, `images`,
    `superseded`), as paths DuckDB opens (s3:// URIs on S3); plus `runs` (committed run ids) and
    `ignored` (Parquet parts in the table folders that no committed run names)."""
    store = _Store(output)
    files = _committed(store)[0]
    return {k: v if k == "runs" else [store.uri(p) for p in v] for k, v in files.items()}


def _committed(store: _Store) -> tuple[dict[str, list[str]], dict[str, dict]]:
    if store.kind("") != pafs.FileType.Directory:
        # an S3 prefix with objects under it is a directory to pyarrow; an empty bucket too
        raise OutputError(f"output not found: {store.output}")
    manifests = {}
    for info in store.listing(COMMITTED_DIR):
        if info.type == pafs.FileType.File and info.path.endswith(".json"):
            m = store.read_json(posixpath.relpath(info.path, store.root))
            if m is not None:
                manifests[m.get("run_id") or posixpath.basename(info.path)[:-5]] = m
    if not manifests:
        has_parts = any(i.path.endswith(".parquet") for i in store.listing("documents"))
        raise OutputError(
            f"no committed runs in {store.output}: no manifest in {COMMITTED_DIR}/"
            + (" (documents/ has Parquet parts, but no run committed them: an interrupted commit is "
               "finished by the next run, operators.io.writer.recover)" if has_parts else ""))
    named: dict[str, set[str]] = {t: set() for t in TABLES}
    superseded: list[str] = []
    no_intent = []
    for run_id in sorted(manifests):
        superseded += [store.path(rel) for rel in manifests[run_id].get("files", {}).get("superseded", [])]
        intent = store.read_json(intent_path(run_id))
        if intent is None:
            no_intent.append(run_id)
            continue
        for _, dst in intent.get("moves", []):
            table = dst.split("/", 1)[0]
            if "/" in dst and not table.startswith("_"):   # _index/ is read through the manifests
                named.setdefault(table, set()).add(store.path(dst))
    listed = {t: {i.path for i in store.listing(t) if i.type == pafs.FileType.File and i.path.endswith(".parquet")}
              for t in named}
    for run_id in no_intent:  # no intent kept: the run's parts by their names (<table>/part-<run_id>-<part>)
        for t in named:
            named[t] |= {p for p in listed[t] if posixpath.basename(p).startswith(f"part-{run_id}-")}
    files: dict[str, list] = {t: sorted(named[t] & listed[t]) for t in named}
    missing = sorted(p for t in named for p in named[t] - listed[t])
    if missing:
        print(f"warning: {len(missing)} committed file(s) missing, e.g. {store.uri(missing[0])}", file=sys.stderr)
    files["superseded"] = sorted(superseded)
    files["ignored"] = sorted(p for t in named for p in listed[t] - named[t])
    files["runs"] = sorted(manifests)
    return files, manifests


def _runs_table(store: _Store, manifests: dict[str, dict]) -> pa.Table:
    ids = {posixpath.basename(i.path) for i in store.listing(RUNS_DIR) if i.type == pafs.FileType.Directory}
    rows = []
    for run_id in sorted(ids | set(manifests)):
        s = store.read_json(posixpath.join(RUNS_DIR, run_id, "stats.json")) or {}
        write = next((o.get("counters", {}) for o in s.get("operators", []) if o.get("name") == "write"), {})
        m = manifests.get(run_id)
        rows.append({
            "run_id": run_id,
            "status": s.get("status") or ("committed" if m else "incomplete"),
            "committed": m is not None,
            "started": s.get("started"),
            "seconds": s.get("seconds"),
            "inputs": len(s["inputs"]) if isinstance(s.get("inputs"), list) else None,
            "documents_written": write.get("rows_documents", 0 if write else None),
            "documents_rejected": write.get("rows_rejected", 0 if write else None),
            "config_hash": s.get("config_hash"),
            "pipeline_version": s.get("pipeline_version"),
            "failure": s.get("failure"),
            "committed_at": m.get("committed") if m else None,
        })
    schema = pa.schema([("run_id", pa.string()), ("status", pa.string()), ("committed", pa.bool_()),
                        ("started", pa.string()), ("seconds", pa.float64()), ("inputs", pa.int64()),
                        ("documents_written", pa.int64()), ("documents_rejected", pa.int64()),
                        ("config_hash", pa.string()), ("pipeline_version", pa.string()),
                        ("failure", pa.string()), ("committed_at", pa.string())])
    return pa.Table.from_pylist(rows, schema=schema)


# --- DuckDB ----------------------------------------------------------------------------------

def _lit(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _ident(s: str) -> str:
    return '"' + s.replace('"', '""') + '"'


def httpfs_path() -> str:
    """The httpfs extension file shipped by the `duckdb-extension-httpfs` wheel for this duckdb."""
    import importlib.util

    import duckdb

    spec = importlib.util.find_spec("duckdb_extension_httpfs")
    if spec is None or not spec.submodule_search_locations:
        raise OutputError("reading s3:// needs DuckDB's httpfs extension: "
                          f"pip install duckdb-extension-httpfs=={duckdb.__version__}")
    for base in spec.submodule_search_locations:
        path = os.path.join(base, "extensions", f"v{duckdb.__version__}", "httpfs.duckdb_extension")
        if os.path.isfile(path):
            return path
    raise OutputError(f"duckdb-extension-httpfs does not match duckdb {duckdb.__version__}: "
                      f"pip install duckdb-extension-httpfs=={duckdb.__version__}")


def _s3_credentials() -> dict[str, str | None]:
    env = os.environ
    key, secret, token = env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY"), env.get("AWS_SESSION_TOKEN")
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    if not (key and secret):
        try:  # profiles, SSO, instance roles: botocore's chain, when it is installed
            import botocore.session

            session = botocore.session.get_session()
            creds = session.get_credentials()
            if creds is not None:
                frozen = creds.get_frozen_credentials()
                key, secret, token = frozen.access_key, frozen.secret_key, frozen.token
            region = region or session.get_config_variable("region")
        except ImportError:
            pass
    return {"key": key, "secret": secret, "token": token, "region": region or "us-east-1",
            "endpoint": env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")}


def _configure_s3(con) -> None:
    import duckdb

    con.execute(f"LOAD {_lit(httpfs_path())}")
    c = _s3_credentials()
    opts = ["TYPE s3", f"REGION {_lit(c['region'])}"]
    if c["key"] and c["secret"]:
        opts += [f"KEY_ID {_lit(c['key'])}", f"SECRET {_lit(c['secret'])}"]
        if c["token"]:
            opts.append(f"SESSION_TOKEN {_lit(c['token'])}")
    if c["endpoint"]:
        u = urlparse(c["endpoint"] if "://" in c["endpoint"] else "https://" + c["endpoint"])
        opts += [f"ENDPOINT {_lit(u.netloc)}", "URL_STYLE 'path'", f"USE_SSL {str(u.scheme == 'https').lower()}"]
    try:
        con.execute(f"CREATE OR REPLACE SECRET interleaf_s3 ({', '.join(opts)})")
    except duckdb.Error as e:  # the statement holds the credentials: never show it
        raise OutputError(f"cannot configure DuckDB for S3: {type(e).__name__}") from None


def _parquet_view(con, name: str, paths: list[str], empty: pa.Schema | None) -> bool:
    """View `name` over `paths` (schemas unified by column name); over an empty table of `empty`
    when there are none (no view when `empty` is None). Returns whether a view was made."""
    if paths:
        src = f"read_parquet([{', '.join(_lit(p) for p in paths)}], union_by_name = true)"
    elif empty is not None:
        _table(con, name, empty.empty_table())
        return True
    else:
        return False
    con.execute(f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM {src}")
    return True


def _table(con, name: str, table: pa.Table) -> None:
    """An in-memory DuckDB table `name` holding `table`."""
    con.register("_interleaf_arrow", table)
    try:
        con.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM _interleaf_arrow")
    finally:
        con.unregister("_interleaf_arrow")


def connect(output: str | None = None):
    """An in-memory DuckDB connection with the views of the module docstring over `output`
    (a folder or an s3:// URI; default $INTERLEAF_OUTPUT or out/local).

    Raises OutputError when the output does not exist or has no committed run.
    """
    import duckdb

    from operators.dedup.index import SUPERSEDED
    from operators.io.schema import DOCUMENT

    output = output or default_output()
    if is_uri(output) and not output.startswith("s3://"):
        raise OutputError(f"{output}: only local folders and s3:// URIs can be queried")
    try:
        store = _Store(output)
        files, manifests = _committed(store)
    except OutputError:
        raise
    except (OSError, pa.ArrowException) as e:
        raise OutputError(f"cannot open {output}: {e}") from e
    con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
    if store.scheme:
        _configure_s3(con)
    uris = {t: [store.uri(p) for p in v] for t, v in files.items() if t not in ("runs", "ignored")}
    _parquet_view(con, "documents_all", uris["documents"], DOCUMENT)
    _parquet_view(con, "rejected", uris["rejected"], DOCUMENT)
    _parquet_view(con, "superseded", uris["superseded"], SUPERSEDED)
    _parquet_view(con, "image_table", uris["images"], None)
    for table in sorted(set(uris) - {*TABLES, "superseded"}):   # later tables (image_embeddings, ...)
        if table.isidentifier() and table not in VIEWS:
            _parquet_view(con, table, uris[table], None)
    con.execute("CREATE OR REPLACE VIEW documents AS SELECT * FROM documents_all d "
                "WHERE NOT EXISTS (SELECT 1 FROM superseded s WHERE s.id = d.id)")
    fields = [r[0] for r in con.execute(
        "DESCRIBE SELECT info.* FROM (SELECT unnest(image_info) AS info FROM documents_all)").fetchall()]
    cols = ", ".join(f"info.{_ident(f)}" + (f" AS {_ident('image_' + f)}" if f in IMAGE_COLUMNS else "")
                     for f in fields)
    # image_index: images before this position (no window function, so filters push down)
    con.execute(f"""CREATE OR REPLACE VIEW images AS
        SELECT document_id, document_url, position, image_index, url{', ' + cols if cols else ''}
        FROM (SELECT id AS document_id, url AS document_url,
                     unnest(images) AS url, unnest(image_info) AS info,
                     generate_subscripts(images, 1) - 1 AS position,
                     unnest(list_transform(images, lambda x, i:
                            len(list_filter(images[1:i], lambda y: y IS NOT NULL)) - 1)) AS image_index
              FROM documents)
        WHERE url IS NOT NULL""")
    _table(con, "runs", _runs_table(store, manifests))
    _table(con, "ledger", _ledger_table(output))
    return con


LEDGER = pa.schema([("warc", pa.string()), ("state", pa.string()), ("attempts", pa.int64()),
                    ("errors", pa.list_(pa.string())), ("error", pa.string()), ("records", pa.int64()),
                    ("documents", pa.int64()), ("rejected", pa.int64()), ("run_id", pa.string()),
                    ("invocation", pa.string()), ("at", pa.string())])


def _ledger_table(output: str) -> pa.Table:
    """The latest ledger entry of every WARC (operators/io/ledger.py), one row each."""
    from operators.io.ledger import read_ledger
    rows = [{k: e.get(k) for k in LEDGER.names} for e in read_ledger(output).values()]
    return pa.Table.from_pylist(rows, schema=LEDGER)


# --- command line ----------------------------------------------------------------------------

def _print_result(cur, fmt: str, out=sys.stdout) -> None:
    if cur.description is None:
        return
    names = [d[0] for d in cur.description]
    if fmt == "csv":
        w = csv.writer(out, lineterminator="\n")
        w.writerow(names)
        while rows := cur.fetchmany(1000):
            w.writerows([[_plain(v) for v in r] for r in rows])
    elif fmt == "json":
        out.write("[")
        first = True
        while rows := cur.fetchmany(1000):
            for r in rows:
                out.write(("\n" if first else ",\n") + json.dumps(dict(zip(names, r)), default=_plain,
                                                                  ensure_ascii=False))
                first = False
        out.write("\n]\n")
    else:
        rows = cur.fetchall()
        cells = [[_cell(v) for v in r] for r in rows]
        widths = [max([len(n)] + [len(c[i]) for c in cells]) for i, n in enumerate(names)]
        line = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
        out.write(line + "\n| " + " | ".join(n.ljust(w) for n, w in zip(names, widths)) + " |\n" + line + "\n")
        for row, cell in zip(rows, cells):
            out.write("| " + " | ".join(c.rjust(w) if isinstance(v, (int, float)) and not isinstance(v, bool)
                                        else c.ljust(w) for v, c, w in zip(row, cell, widths)) + " |\n")
        out.write(line + f"\n({len(rows)} row{'s' if len(rows) != 1 else ''})\n")
    out.flush()


def _plain(v):
    if isinstance(v, (bytes, bytearray, memoryview)):
        b = bytes(v)
        return f"<{len(b)} bytes>"
    if isinstance(v, (list, dict)):
        return json.dumps(v, default=_plain, ensure_ascii=False)
    return v if v is None or isinstance(v, (int, float, str, bool)) else str(v)


def _cell(v, limit: int = 60) -> str:
    s = "NULL" if v is None else str(_plain(v))
    s = s.replace("\n", " ")
    return s if len(s) <= limit else s[:limit - 1] + "…"


def run_sql(con, sql: str, fmt: str = "table", out=sys.stdout) -> None:
    """Run every statement of `sql`, printing the result of each that returns rows."""
    import duckdb

    for stmt in duckdb.extract_statements(sql):
        _print_result(con.execute(stmt.query), fmt, out)


def repl(con, fmt: str) -> int:
    import duckdb

    try:
        import readline  # noqa: F401  (line editing and history for input())
    except ImportError:
        pass
    tty = sys.stdin.isatty()
    if tty:
        print("interleaf query shell: SQL statements end with ';'. Views: " + ", ".join(_views(con))
              + ". .tables lists them, .quit leaves.")
    buf: list[str] = []
    while True:
        try:
            line = input(("   ...> " if buf else "interleaf> ") if tty else "")
        except EOFError:
            break
        except KeyboardInterrupt:
            buf = []
            print()
            continue
        if not buf and line.strip() in (".quit", ".exit", "\\q"):
            break
        if not buf and line.strip() == ".tables":
            print("  ".join(_views(con)))
            continue
        buf.append(line)
        if not line.rstrip().endswith(";"):
            continue
        sql, buf = "\n".join(buf), []
        try:
            run_sql(con, sql, fmt)
        except duckdb.Error as e:
            print(f"error: {e}", file=sys.stderr)
    if buf and "".join(buf).strip():
        try:
            run_sql(con, "\n".join(buf), fmt)
        except duckdb.Error as e:
            print(f"error: {e}", file=sys.stderr)
    return 0


def _views(con) -> list[str]:
    have = [r[0] for r in con.execute("SELECT table_name FROM information_schema.tables ORDER BY 1").fetchall()]
    return [v for v in VIEWS if v in have] + [v for v in have if v not in VIEWS]


def main(argv: list[str] | None = None) -> int:
    import duckdb

    p = argparse.ArgumentParser(prog="python -m flows.query", description=__doc__.split("\n\n")[0])
    p.add_argument("output", nargs="?", default=default_output(),
                   help="output folder or s3:// URI (default $INTERLEAF_OUTPUT or out/local)")
    p.add_argument("-c", "--command", help="SQL to run (several statements separated by ';'); "
                                           "without it, an interactive shell")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    args = p.parse_args(argv)
    try:
        con = connect(args.output)
    except OutputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.command is None:
        return repl(con, args.format)
    try:
        run_sql(con, args.command, args.format)
    except duckdb.Error as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
