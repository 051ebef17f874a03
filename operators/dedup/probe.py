"""The dedup index's probe parts: what a unit's keys can match, read by block, not the history.

Every committed unit writes one probe part (`_index/probe/part-<run_id>-<part>.probe`) beside its
`_index/docs` Parquet rows: its kept documents' band keys, text hashes and URL keys, each sorted
with the document's row, a fence every BLOCK keys, and the documents' payload (id, date, rank
fields, text hash, band keys, signature, URL key) in fixed-width arrays; plus the unit's image URL
counts and the earlier documents it superseded. A later unit probes each part with its own keys:
it reads the fences (8 bytes per BLOCK keys), then only the blocks its keys fall into and the
payload rows of the documents that matched, so its cost follows its own keys, not the size of the
history. `compact` merges small parts (a size-tiered log: when there are more than
2 × MERGE parts, the MERGE smallest become one), so the number of parts grows with the log of the
history. Reads go through the output's filesystem (`read_at`: local files and S3 alike).

File layout: b"ILPROBE1", the header's length (uint64 LE), the JSON header ({"rows", "bands",
"num_perm", "block", "arrays": {name: [offset, dtype, shape]}}), then the arrays, 64-byte aligned.
Strings are hashed to 64 bits (blake2b) for the lookups; the payload keeps the strings themselves.

This module is Ray-free.
"""
from __future__ import annotations

import hashlib
import json
import posixpath
import struct

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from operators.io.storage import resolve

MAGIC = b"ILPROBE1"
BLOCK = 256          # keys per block: one read per block a unit's key falls into
MERGE = 8            # compaction merges this many of the smallest parts
DATE_NULL = np.iinfo(np.int64).min
LOOKUPS = ("band", "text", "url")


def h64(values) -> np.ndarray:
    """64-bit hashes of strings (None -> 0; callers drop those)."""
    out = np.zeros(len(values), np.uint64)
    for i, v in enumerate(values):
        if v is not None:
            out[i] = int.from_bytes(hashlib.blake2b(v.encode("utf-8", "surrogatepass"), digest_size=8).digest(),
                                    "little")
    return out


# ---------------------------------------------------------------- writing

def _sorted_lookup(keys: np.ndarray, rows: np.ndarray) -> dict[str, np.ndarray]:
    order = np.argsort(keys, kind="stable")
    k = keys[order]
    return {"k": k, "r": rows[order].astype(np.uint32), "f": k[::BLOCK].copy()}


def build_arrays(docs: pa.Table, images: pa.Table | None, superseded: pa.Table | None,
                 bands: int, num_perm: int) -> dict[str, np.ndarray]:
    """The arrays of a probe part from DOCS rows (operators/dedup/index.DOCS), (url, documents)
    image counts and (id, ...) superseded rows."""
    n = docs.num_rows
    arrays: dict[str, np.ndarray] = {}
    ids = docs["id"].to_pylist()
    arrays["id"] = np.array([i.encode() for i in ids], dtype="S64") if n else np.zeros(0, "S64")
    date = pc.fill_null(docs["warc_date"], DATE_NULL).to_numpy(zero_copy_only=False).astype(np.int64)
    arrays["date"] = date
    arrays["chars"] = pc.fill_null(docs["text_chars"], 0).to_numpy(zero_copy_only=False).astype(np.int64)
    arrays["images"] = pc.fill_null(docs["num_images"], 0).to_numpy(zero_copy_only=False).astype(np.int64)
    th = docs["text_hash"].to_pylist()
    arrays["texthash"] = np.array([(t or "").encode() for t in th], dtype="S64") if n else np.zeros(0, "S64")
    has = pc.is_valid(docs["minhash_bands"]).to_numpy(zero_copy_only=False).astype(bool) if n else np.zeros(0, bool)
    band_m = np.zeros((n, bands), np.uint64)
    if has.any():
        flat = pc.list_flatten(docs["minhash_bands"].filter(pa.array(has))).to_numpy(zero_copy_only=False)
        band_m[has] = flat.astype(np.uint64).reshape(-1, bands)
    arrays["bands"], arrays["has_bands"] = band_m, has.astype(np.uint8)
    sig = np.zeros((n, num_perm), np.uint32)
    for i, s in enumerate(docs["signature"].to_pylist()):
        if s is not None and len(s) == 4 * num_perm:
            sig[i] = np.frombuffer(s, "<u4")
    arrays["sig"] = sig
    uk = [(u or "").encode("utf-8", "surrogatepass") for u in docs["url_key"].to_pylist()]
    arrays["urlkey_off"] = np.concatenate([[0], np.cumsum([len(u) for u in uk])]).astype(np.uint64)
    arrays["urlkey"] = np.frombuffer(b"".join(uk), np.uint8).copy()
    rows = np.arange(n, dtype=np.uint32)
    lookups = {
        "band": (band_m[has].reshape(-1), np.repeat(rows[has], bands)),
        "text": (h64(th), rows),
        "url": (h64(docs["url_key"].to_pylist()), rows),
    }
    for name, (k, r) in lookups.items():
        keep = k != 0
        if name == "text":
            keep &= np.array([t is not None for t in th], bool) if n else np.zeros(0, bool)
        for suffix, a in _sorted_lookup(k[keep], r[keep]).items():
            arrays[f"{name}_{suffix}"] = a
    img_k = h64(images["url"].to_pylist()) if images is not None and images.num_rows else np.zeros(0, np.uint64)
    img_n = images["documents"].to_numpy(zero_copy_only=False).astype(np.int64) if len(img_k) else np.zeros(0, np.int64)
    for suffix, a in _sorted_lookup(img_k, np.arange(len(img_k))).items():
        arrays[f"img_{suffix}"] = a
    order = np.argsort(img_k, kind="stable")
    arrays["img_n"] = img_n[order]
    sup = h64(superseded["id"].to_pylist()) if superseded is not None and superseded.num_rows else np.zeros(0, np.uint64)
    for suffix, a in _sorted_lookup(sup, np.arange(len(sup))).items():
        arrays[f"sup_{suffix}"] = a
    return arrays


def layout(specs: dict[str, tuple], rows: int, bands: int, num_perm: int) -> bytes:
    """The bytes before a part's arrays (magic, header length, header) for arrays of these
    (dtype, shape), written in this order, each padded to 64 bytes."""
    header: dict = {"rows": rows, "bands": bands, "num_perm": num_perm, "block": BLOCK, "arrays": {}}
    offset = 0
    for name, (dtype, shape) in specs.items():
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        header["arrays"][name] = [offset, np.dtype(dtype).str, list(shape)]
        offset += nbytes + (-nbytes) % 64
    head = json.dumps(header).encode()
    head += b" " * ((-(len(MAGIC) + 8 + len(head))) % 64)
    return MAGIC + struct.pack("<Q", len(head)) + head


def write_arrays(output: str, rel_path: str, arrays: dict[str, np.ndarray], rows: int, bands: int,
                 num_perm: int) -> str:
    """Write a probe part's arrays at `rel_path` (relative to the output), array by array (no
    copy of the whole part in memory); returns `rel_path`."""
    head = layout({name: (a.dtype, a.shape) for name, a in arrays.items()}, rows, bands, num_perm)
    fs, root = resolve(output)
    path = posixpath.join(root.rstrip("/"), rel_path)
    fs.create_dir(posixpath.dirname(path), recursive=True)
    with fs.open_output_stream(path) as f:
        f.write(head)
        for a in arrays.values():
            f.write(np.ascontiguousarray(a).tobytes())
            f.write(b"\0" * ((-a.nbytes) % 64))
    return rel_path


def write_part(output: str, rel_path: str, docs: pa.Table, images: pa.Table | None, superseded: pa.Table | None,
               bands: int, num_perm: int) -> str:
    """Write one probe part at `rel_path` (relative to the output); returns `rel_path`."""
    return write_arrays(output, rel_path, build_arrays(docs, images, superseded, bands, num_perm), docs.num_rows,
                        bands, num_perm)


# ---------------------------------------------------------------- reading

class Part:
    """One probe part, read by ranges (a local file: memory-mapped, the OS reads the pages the
    binary searches touch)."""

    def __init__(self, fs, path: str):
        import pyarrow.fs as pafs
        self.path = path
        self.local = isinstance(fs, pafs.LocalFileSystem)
        self.f = fs.open_input_file(path)
        head = self.f.read_at(16, 0)
        if head[:8] != MAGIC:
            raise ValueError(f"{path}: not a probe part")
        (n,) = struct.unpack("<Q", head[8:16])
        self.header = json.loads(self.f.read_at(n, 16).decode().rstrip())
        self.base = 16 + n
        self.rows = self.header["rows"]
        self.bytes_read = 16 + n

    def close(self) -> None:
        self.f.close()

    def _spec(self, name: str):
        off, dtype, shape = self.header["arrays"][name]
        dt = np.dtype(dtype)
        return self.base + off, dt, shape

    def length(self, name: str) -> int:
        return self._spec(name)[2][0]

    def read(self, name: str) -> np.ndarray:
        off, dt, shape = self._spec(name)
        n = int(np.prod(shape)) * dt.itemsize
        self.bytes_read += n
        return np.frombuffer(self.f.read_at(n, off), dt).reshape(shape) if n else np.zeros(shape, dt)

    def read_rows(self, name: str, rows: np.ndarray) -> np.ndarray:
        """Rows `rows` (sorted, unique) of an array, reading each run of consecutive rows once."""
        off, dt, shape = self._spec(name)
        width = int(np.prod(shape[1:])) * dt.itemsize if len(shape) > 1 else dt.itemsize
        out = np.zeros((len(rows),) + tuple(shape[1:]), dt)
        if not len(rows):
            return out
        breaks = np.flatnonzero(np.diff(rows) != 1) + 1
        starts = np.concatenate([[0], breaks])
        ends = np.concatenate([breaks, [len(rows)]])
        for a, b in zip(starts, ends):
            r0, count = int(rows[a]), int(b - a)
            raw = self.f.read_at(count * width, off + r0 * width)
            self.bytes_read += len(raw)
            out[a:b] = np.frombuffer(raw, dt).reshape((count,) + tuple(shape[1:]))
        return out

    def _map(self, name: str) -> np.ndarray:
        off, dt, shape = self._spec(name)
        return np.memmap(self.path, dtype=dt, mode="r", offset=off, shape=tuple(shape))

    def lookup(self, name: str, keys: np.ndarray, positions: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(key, value) pairs of lookup `name` whose key is in `keys`: a local part is binary
        searched in place; a remote one's fences say which blocks can hold the keys, and only
        those blocks are read. `positions`: the hits' positions in the key-sorted lookup instead
        of their values (for arrays stored in key order, as the image counts are)."""
        total = self.length(f"{name}_k")
        if not total or not len(keys):
            return np.zeros(0, np.uint64), np.zeros(0, np.int64)
        if self.local:
            sorted_keys = self._map(f"{name}_k")
            q = np.unique(keys)
            lo = np.searchsorted(sorted_keys, q, side="left")
            hi = np.searchsorted(sorted_keys, q, side="right")
            hit = hi > lo
            if not hit.any():
                return np.zeros(0, np.uint64), np.zeros(0, np.int64)
            pos = np.concatenate([np.arange(a, b) for a, b in zip(lo[hit].tolist(), hi[hit].tolist())])
            self.bytes_read += int(hit.sum()) * 8 * 64 + len(pos) * 12   # ~the pages a search touches
            if positions:
                return np.asarray(sorted_keys[pos]), pos.astype(np.int64)
            return np.asarray(sorted_keys[pos]), np.asarray(self._map(f"{name}_r")[pos]).astype(np.int64)
        fence = self.read(f"{name}_f")
        q = np.unique(keys)
        hi = np.searchsorted(fence, q, side="right") - 1          # the last block whose first key <= q
        lo = np.maximum(np.searchsorted(fence, q, side="left") - 1, 0)   # a run of q may start a block earlier
        ok = hi >= 0
        q, lo, hi = q[ok], lo[ok], hi[ok]
        if not len(q):
            return np.zeros(0, np.uint64), np.zeros(0, np.int64)
        blocks = np.unique(np.concatenate([np.arange(a, b + 1) for a, b in zip(lo.tolist(), hi.tolist())]))
        idx = np.concatenate([np.arange(b * BLOCK, min((b + 1) * BLOCK, total)) for b in blocks.tolist()])
        k = self.read_rows(f"{name}_k", idx)
        hit = np.isin(k, q)
        if positions:
            return k[hit], idx[hit].astype(np.int64)
        vals = self.read_rows(f"{name}_r", idx[hit])
        return k[hit], vals.astype(np.int64)

    def docs(self, rows: np.ndarray) -> pa.Table:
        """DOCS rows (operators/dedup/index.DOCS) of the payload rows `rows`."""
        from operators.dedup.index import DOCS
        rows = np.unique(rows)
        if not len(rows):
            return DOCS.empty_table()
        ids = [v.decode() for v in self.read_rows("id", rows)]
        date = self.read_rows("date", rows)
        th = [v.decode() or None for v in self.read_rows("texthash", rows)]
        has = self.read_rows("has_bands", rows).astype(bool)
        band_m = self.read_rows("bands", rows)
        sig = self.read_rows("sig", rows)
        offs = self.read_rows("urlkey_off", np.unique(np.concatenate([rows, rows + 1])))
        pos = {int(r): i for i, r in enumerate(np.unique(np.concatenate([rows, rows + 1])))}
        blob_rows = []
        for r in rows:
            a, b = int(offs[pos[int(r)]]), int(offs[pos[int(r) + 1]])
            blob_rows.append((a, b))
        off, _dt, _shape = self._spec("urlkey")
        url_keys = []
        for a, b in blob_rows:
            raw = self.f.read_at(b - a, off + a) if b > a else b""
            self.bytes_read += len(raw)
            url_keys.append(raw.decode("utf-8", "surrogatepass") or None)
        bands_col = pa.array([band_m[i].tolist() if has[i] else None for i in range(len(rows))],
                             pa.list_(pa.uint64()))
        sig_col = pa.array([sig[i].astype("<u4").tobytes() if has[i] else None for i in range(len(rows))],
                           pa.binary())
        return pa.table({"id": pa.array(ids, pa.string()), "url_key": pa.array(url_keys, pa.string()),
                         "warc_date": pa.array(np.where(date == DATE_NULL, 0, date), pa.int64(),
                                               mask=date == DATE_NULL),
                         "text_chars": pa.array(self.read_rows("chars", rows), pa.int64()),
                         "num_images": pa.array(self.read_rows("images", rows), pa.int64()),
                         "text_hash": pa.array(th, pa.string()), "minhash_bands": bands_col,
                         "signature": sig_col}, schema=DOCS)


class ProbeIndex:
    """The committed probe parts of an output (see the module docstring)."""

    def __init__(self, output: str, files: list[str]):
        fs, _ = resolve(output)
        self.parts = [Part(fs, f) for f in files]

    def close(self) -> None:
        for p in self.parts:
            p.close()

    @property
    def bytes_read(self) -> int:
        return sum(p.bytes_read for p in self.parts)

    def matching_docs(self, keys: pa.Table) -> pa.Table:
        """The earlier documents (DOCS rows, superseded ones left out) that share a band key, a
        text hash or a URL key with the KEYS rows `keys`: what the unit's dedup can match."""
        from operators.dedup.index import DOCS
        band_q = pc.list_flatten(keys["minhash_bands"]).to_numpy(zero_copy_only=False).astype(np.uint64)
        text_q = h64([t for t in keys["text_hash"].to_pylist() if t is not None])
        url_q = h64([u for u in keys["url_key"].to_pylist() if u is not None])
        found = []
        for part in self.parts:
            rows = [part.lookup(name, q)[1] for name, q in (("band", band_q), ("text", text_q), ("url", url_q))]
            rows = np.unique(np.concatenate(rows))
            if len(rows):
                found.append(part.docs(rows))
        docs = pa.concat_tables(found) if found else DOCS.empty_table()
        if docs.num_rows:
            gone = self.superseded(docs["id"].to_pylist())
            if gone:
                docs = docs.filter(pc.invert(pc.is_in(docs["id"], value_set=pa.array(sorted(gone), pa.string()))))
        return docs

    def superseded(self, ids: list[str]) -> set[str]:
        """Which of `ids` an earlier unit recorded as superseded."""
        q = h64(ids)
        hit: set[int] = set()
        for part in self.parts:
            k, _ = part.lookup("sup", q)
            hit |= set(k.tolist())
        return {i for i, h in zip(ids, q.tolist()) if h in hit}

    def image_counts(self, urls: list[str]) -> pa.Table:
        """(url, documents): earlier units' documents using each of `urls` (those any used)."""
        urls = list(dict.fromkeys(u for u in urls if u))
        q = h64(urls)
        total: dict[int, int] = {}
        for part in self.parts:
            # img_n is stored in key order (build_arrays, merge_arrays): read it at the hits'
            # positions in the sorted lookup (their row values index the unsorted input)
            k, pos = part.lookup("img", q, positions=True)
            if len(k):
                n = part.read_rows("img_n", pos)
                for key, count in zip(k.tolist(), n.tolist()):
                    total[key] = total.get(key, 0) + count
        out = [(u, total[h]) for u, h in zip(urls, q.tolist()) if h in total]
        return pa.table({"url": pa.array([u for u, _ in out], pa.string()),
                         "documents": pa.array([c for _, c in out], pa.int64())})


# ---------------------------------------------------------------- compaction

DOC_ARRAYS = ("id", "date", "chars", "images", "texthash", "bands", "has_bands", "sig")


def merge_arrays(parts: list[Part]) -> tuple[dict[str, np.ndarray], int]:
    """The arrays of one part holding every row of `parts` (read whole: compaction merges the
    small parts)."""
    out: dict[str, np.ndarray] = {}
    offsets = np.cumsum([0] + [p.rows for p in parts])
    for name in DOC_ARRAYS:
        out[name] = np.concatenate([p.read(name) for p in parts])
    blobs = [p.read("urlkey") for p in parts]
    offs = [p.read("urlkey_off") for p in parts]
    base = np.cumsum([0] + [len(b) for b in blobs])
    out["urlkey_off"] = np.concatenate([offs[0][:1]] + [o[1:] + b for o, b in zip(offs, base)]).astype(np.uint64)
    out["urlkey"] = np.concatenate(blobs)
    for name in LOOKUPS:
        keys = np.concatenate([p.read(f"{name}_k") for p in parts])
        rows = np.concatenate([p.read(f"{name}_r").astype(np.int64) + o for p, o in zip(parts, offsets)])
        for suffix, a in _sorted_lookup(keys, rows).items():
            out[f"{name}_{suffix}"] = a
    img_k = np.concatenate([p.read("img_k") for p in parts])
    img_n = np.concatenate([p.read("img_n") for p in parts])
    order = np.argsort(img_k, kind="stable")
    for suffix, a in _sorted_lookup(img_k, np.arange(len(img_k))).items():
        out[f"img_{suffix}"] = a
    out["img_n"] = img_n[order]
    sup = np.concatenate([p.read("sup_k") for p in parts])
    for suffix, a in _sorted_lookup(sup, np.arange(len(sup))).items():
        out[f"sup_{suffix}"] = a
    return out, int(offsets[-1])


def compact(output: str, merge: int = MERGE) -> str | None:
    """When the output has more than 2 × `merge` probe parts, merge the `merge` smallest into one:
    the new part is written, then a manifest (`_index/_committed/compact-*.json`) that names it and
    the parts it replaces; readers take the manifests' files less the replaced ones, so a crash
    leaves either the old parts or the new one in use. Returns the new part (relative path)."""
    import secrets
    from datetime import datetime, timezone

    from operators.dedup import index as di
    from operators.io.writer import write_text
    ms = di.manifests(output)
    files = di.committed_files(output, di.PROBE, ms)
    if len(files) <= 2 * merge:
        return None
    fs, root = resolve(output)
    root = root.rstrip("/")
    parts = [Part(fs, f) for f in files]
    try:
        picked = sorted(parts, key=lambda p: p.rows)[:merge]
        arrays, rows = merge_arrays(picked)
        head = picked[0].header
        name = "compact-" + datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)
        rel = posixpath.join(di.INDEX_DIR, di.PROBE, f"{name}.probe")
        write_arrays(output, rel, arrays, rows, head["bands"], head["num_perm"])
        old = sorted(posixpath.relpath(p.path, root) for p in picked)
    finally:
        for p in parts:
            p.close()
    manifest = {"run_id": name, "committed": datetime.now(timezone.utc).isoformat(),
                "files": {di.PROBE: [rel]}, "replaces": {di.PROBE: old}}
    write_text(output, di.manifest_path(name), json.dumps(manifest, indent=1))
    for f in old:   # no reader uses them now; a crash here leaves files nothing names
        try:
            fs.delete_file(posixpath.join(root, f))
        except (FileNotFoundError, OSError):
            pass
    return rel


# ---------------------------------------------------------------- what a unit reads and writes

def unit_index(output: str, keys: pa.Table) -> tuple[pa.Table, pa.Table, dict]:
    """What the unit whose KEYS rows are `keys` needs of the index: the earlier documents it can
    match (DOCS rows, superseded ones left out), earlier runs' counts of its image URLs, and the
    counts of what was read. Runs committed with a probe part are probed; runs from before probe
    parts existed (Parquet only) are read whole, as before."""
    import pyarrow.parquet as pq

    from operators.dedup import index as di
    fs, root = resolve(output)
    root = root.rstrip("/")
    ms = di.manifests(output)
    legacy = [m for m in ms if not m["files"].get(di.PROBE) and "replaces" not in m]

    def read(itable: str, columns=None) -> pa.Table:
        files = [posixpath.join(root, f) for m in legacy for f in m["files"].get(itable, [])]
        schema = di.TABLES[itable]
        tables = [pq.read_table(f, filesystem=fs, schema=schema, columns=columns) for f in files]
        if tables:
            return pa.concat_tables(tables)
        empty = schema.empty_table()
        return empty.select(columns) if columns else empty

    probe = ProbeIndex(output, di.committed_files(output, di.PROBE, ms))
    try:
        docs = probe.matching_docs(keys)
        old = read("docs")
        if old.num_rows:
            gone = set(read("superseded", ["id"])["id"].to_pylist()) | probe.superseded(old["id"].to_pylist())
            if gone:
                old = old.filter(pc.invert(pc.is_in(old["id"], value_set=pa.array(sorted(gone), pa.string()))))
            docs = pa.concat_tables([old, docs])
        urls = pc.list_flatten(keys["images"]).to_pylist() if keys.num_rows else []
        images = pa.concat_tables([read("images"), probe.image_counts(urls).cast(di.IMAGES)])
        counts = {"index_parts_probed": len(probe.parts), "index_bytes_read": probe.bytes_read,
                  "index_runs_read_whole": len(legacy), "index_documents_matched": docs.num_rows}
    finally:
        probe.close()
    return docs, images, counts


def image_counts_for(output: str, urls: list[str]) -> pa.Table:
    """Earlier runs' (url, documents) counts of the image keys `urls` (URLs or content keys), from
    the probe parts, and from runs committed before probe parts existed (read whole, filtered)."""
    import pyarrow.parquet as pq

    from operators.dedup import index as di
    fs, root = resolve(output)
    root = root.rstrip("/")
    ms = di.manifests(output)
    legacy = [posixpath.join(root, f) for m in ms if not m["files"].get(di.PROBE) and "replaces" not in m
              for f in m["files"].get("images", [])]
    tables = [pq.read_table(f, filesystem=fs, schema=di.IMAGES) for f in legacy]
    want = pa.array(sorted(set(u for u in urls if u)), pa.string())
    old = [t.filter(pc.is_in(t["url"], value_set=want)) for t in tables]
    probe = ProbeIndex(output, di.committed_files(output, di.PROBE, ms))
    try:
        new = probe.image_counts(urls).cast(di.IMAGES)
    finally:
        probe.close()
    return pa.concat_tables(old + [new])


def stage_unit_part(output: str, run_id: str, docs_files: list[str], images: pa.Table | None,
                    superseded: pa.Table | None, bands: int, num_perm: int) -> str:
    """Stage the unit's probe part (its kept documents from its staged `_index/docs` Parquet
    parts, its image counts, the documents it superseded) for its commit; returns its path
    relative to the output (operators/io/writer.commit moves it to `_index/probe/`)."""
    import pyarrow.parquet as pq

    from operators.dedup import index as di
    from operators.io.layout import staging_dir
    fs, root = resolve(output)
    root = root.rstrip("/")
    tables = [pq.read_table(posixpath.join(root, f), filesystem=fs, schema=di.DOCS) for f in docs_files]
    docs = pa.concat_tables(tables) if tables else di.DOCS.empty_table()
    rel = posixpath.join(posixpath.relpath(staging_dir(root, run_id), root), "index", di.PROBE, "000000.probe")
    return write_part(output, rel, docs, images, superseded, bands, num_perm)
