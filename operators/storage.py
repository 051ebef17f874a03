"""Local paths and object-store URIs (s3://, gs://, ...) behind one interface (pyarrow.fs)."""
from __future__ import annotations

import glob
import os
import posixpath
import re
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
    """Expand globs and folders (local or object store) into a sorted, de-duplicated list of WARC files.

    A pattern that matches nothing is an error naming it (a typo must not make an empty run).
    """
    out: list[str] = []
    for pat in patterns:
        if is_uri(pat):
            hits = _expand_uri(pat)
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


def _expand_uri(pat: str) -> list[str]:
    """Object-store counterpart of the local branch: a glob (with local `glob` semantics: `*`, `?`
    and `[...]` stay within one path segment, `**` spans any number), a folder (every WARC below it)
    or one object."""
    scheme, rest = pat.split("://", 1)
    if not any(c in rest for c in _GLOB_CHARS):
        fs, p = resolve(pat)
        info = fs.get_file_info(p)
        if info.type == pafs.FileType.File:
            return [pat]
        if info.type != pafs.FileType.Directory:
            return []
        infos = fs.get_file_info(pafs.FileSelector(p, recursive=True))
        return [f"{scheme}://{i.path}" for i in infos if i.type == pafs.FileType.File and _is_warc(i.path)]
    # `?` and `[` are not valid in a URI path (pyarrow reads `?` as the query string and rejects
    # `[`), so only the bucket goes through URI parsing; the key pattern is matched here.
    bucket, _, key_pat = rest.partition("/")
    if any(c in bucket for c in _GLOB_CHARS):
        raise FileNotFoundError(f"input {pat!r}: a bucket name cannot be a pattern")
    parts = key_pat.split("/")
    fixed = next(n for n, part in enumerate(parts) if any(c in part for c in _GLOB_CHARS))
    fs, root = resolve(f"{scheme}://{bucket}")
    base = posixpath.join(root, *parts[:fixed])
    rx = _glob_regex(posixpath.join(root, key_pat))
    try:
        infos = fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
    except OSError as e:  # e.g. the bucket does not exist
        raise FileNotFoundError(f"input {pat!r} matches no file: {e}") from e
    return [f"{scheme}://{i.path}" for i in infos
            if i.type == pafs.FileType.File and rx.fullmatch(i.path)]


_GLOB_CHARS = "*?["


def _glob_regex(pattern: str) -> re.Pattern:
    """A regex for `pattern` with the semantics of `glob.glob(pattern, recursive=True)`:
    `*`, `?` and `[...]` match within one segment, a `**` segment matches any number of them."""
    out = []
    parts = pattern.split("/")
    for n, part in enumerate(parts):
        last = n == len(parts) - 1
        if part == "**":
            out.append(".*" if last else "(?:[^/]*/)*")
            continue
        i = 0
        while i < len(part):
            c = part[i]
            i += 1
            if c == "*":
                out.append("[^/]*")
            elif c == "?":
                out.append("[^/]")
            elif c == "[":
                j = i + (part[i:i + 1] == "!")
                j += part[j:j + 1] == "]"
                j = part.find("]", j)
                if j < 0:
                    out.append(re.escape(c))
                    continue
                body, i = part[i:j], j + 1
                neg = body.startswith("!")
                body = (body[1:] if neg else body).replace("\\", "\\\\").replace("[", "\\[")
                if body.startswith("^"):
                    body = "\\" + body
                out.append("[^" + body + "/]" if neg else "[" + body + "]")
            else:
                out.append(re.escape(c))
        if not last:
            out.append("/")
    return re.compile("".join(out))


def _is_warc(name: str) -> bool:
    return name.endswith((".warc", ".warc.gz", ".arc", ".arc.gz"))
