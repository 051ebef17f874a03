"""What a flow's tasks share in a worker process: operators built once per process and config
(`cached`), and the run's staged Parquet files (`write_staged`, `read_staged`): flows/pipeline.py
(the streaming pass and the final pass) and flows/image_tasks.py (the image stage) both use them."""
from __future__ import annotations

import posixpath
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from operators.io.layout import staging_dir
from operators.io.storage import resolve

_CHAINS: dict[tuple, Any] = {}


def cached(key: tuple, build):
    """`build()` once per key in this process (the newest 8 kept)."""
    if key not in _CHAINS:
        while len(_CHAINS) >= 8:   # a long-lived worker serves many runs: keep the newest
            _CHAINS.pop(next(iter(_CHAINS)))
        _CHAINS[key] = build()
    return _CHAINS[key]


def write_staged(output: str, run_id: str, folder: str, name: str, table: pa.Table) -> str:
    """One Parquet file under the run's staging folder; returns its path relative to the output."""
    fs, root = resolve(output)
    root = root.rstrip("/")
    path = posixpath.join(staging_dir(root, run_id), folder, f"{name}.parquet")
    fs.create_dir(posixpath.dirname(path), recursive=True)
    pq.write_table(table, path, filesystem=fs, compression="lz4")   # temporary: cheap to write and read
    return posixpath.relpath(path, root)


def read_staged(output: str, rel: str) -> pa.Table:
    fs, root = resolve(output)
    return pq.read_table(posixpath.join(root.rstrip("/"), rel), filesystem=fs)
