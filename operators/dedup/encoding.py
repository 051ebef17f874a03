"""Encodings the key tables (operators/dedup/minhash.KEYS) and the keep rule
(operators/dedup/clusters.py) share: signatures and shingle hashes as little-endian uint32 bytes,
and the rank columns the keep rule sorts by."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

DATE_NULL = np.iinfo(np.int64).max   # nulls last


def _u32_bytes(values: np.ndarray, n_rows: int, offsets: np.ndarray) -> pa.Array:
    """Rows of uint32 values (row i = values[offsets[i]:offsets[i+1]]) as binary little-endian."""
    data = np.ascontiguousarray(values, dtype="<u4").view(np.uint8)
    return pa.BinaryArray.from_buffers(pa.binary(), n_rows,
                                       [None, pa.py_buffer((offsets * 4).astype(np.int32).tobytes()),
                                        pa.py_buffer(data.tobytes())])


def signature_bytes(sigs: np.ndarray) -> pa.Array:
    """MinHash signatures [n, num_perm] as one binary value each (uint32 little-endian)."""
    n, p = sigs.shape
    return _u32_bytes(np.asarray(sigs, np.uint32).reshape(-1), n, np.arange(n + 1) * p)


def rank_columns(table: pa.Table) -> pa.Table:
    """(id, text_chars, num_images, date) with nulls filled: sorting by -text_chars, -num_images,
    date, id ascending is the keep rule (see operators/dedup/clusters.keep_rank_key)."""
    if "provenance" in table.column_names:
        date = pc.struct_field(table["provenance"], "warc_date")
    elif "warc_date" in table.column_names:
        date = table["warc_date"]
    else:
        date = pa.nulls(table.num_rows, pa.timestamp("s", tz="UTC"))
    if pa.types.is_timestamp(date.type):
        date = pc.cast(pc.cast(date, pa.timestamp("s", tz="UTC")), pa.int64())
    date = pc.fill_null(pc.cast(date, pa.int64()), int(DATE_NULL))
    return pa.table({
        "id": table["id"].cast(pa.string()),
        "text_chars": pc.fill_null(table["text_chars"].cast(pa.int64()), 0),
        "num_images": pc.fill_null(table["num_images"].cast(pa.int64()), 0),
        "date": date,
    })
