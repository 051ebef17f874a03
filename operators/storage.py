"""Local paths and object-store URIs (s3://, gs://, ...) behind one interface (pyarrow.fs)."""
from __future__ import annotations

import glob
import os
from typing import Iterable

import pyarrow.fs as pafs


def is_uri(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def resolve(path: str) -> tuple[pafs.FileSystem, str]:
    """The filesystem and the path within it, for a local path or a URI."""
    if path.startswith("file://"):
        path = path[len("file://"):]
    if is_uri(path):
        return pafs.FileSystem.from_uri(path)
    return pafs.LocalFileSystem(), os.path.abspath(path)


def open_input(path: str):
    """A seekable binary file for reading (local or object store)."""
    fs, p = resolve(path)
    return fs.open_input_file(p)


def expand_inputs(patterns: Iterable[str]) -> list[str]:
    """Expand local globs and folders into a sorted, de-duplicated list of WARC files.

    A pattern that matches nothing is an error naming it (a typo must not make an empty run).
    """
    out: list[str] = []
    for pat in patterns:
        if is_uri(pat):
            fs, p = resolve(pat)
            scheme = pat.split("://", 1)[0]
            if any(c in p for c in "*?["):
                base = p.split("*", 1)[0].rsplit("/", 1)[0]
                infos = fs.get_file_info(pafs.FileSelector(base, recursive=True))
                import fnmatch
                hits = [f"{scheme}://{i.path}" for i in infos
                        if i.type == pafs.FileType.File and fnmatch.fnmatch(i.path, p)]
            else:
                info = fs.get_file_info(p)
                if info.type == pafs.FileType.Directory:
                    infos = fs.get_file_info(pafs.FileSelector(p, recursive=True))
                    hits = [f"{scheme}://{i.path}" for i in infos
                            if i.type == pafs.FileType.File and _is_warc(i.path)]
                elif info.type == pafs.FileType.File:
                    hits = [pat]
                else:
                    hits = []
        else:
            if os.path.isdir(pat):
                hits = [os.path.join(dp, f) for dp, _, fs_ in os.walk(pat) for f in fs_ if _is_warc(f)]
            else:
                hits = [h for h in glob.glob(pat, recursive=True) if os.path.isfile(h)]
            hits = [os.path.abspath(h) for h in hits]
        if not hits:
            raise FileNotFoundError(f"input {pat!r} matches no file")
        out.extend(hits)
    return sorted(dict.fromkeys(out))


def _is_warc(name: str) -> bool:
    return name.endswith((".warc", ".warc.gz", ".arc", ".arc.gz"))
