"""Compiled copies of the hottest modules (the extractor's walk), used only while they match the source.

The extractor spends most of its time in one Python loop over the lexbor tree. Compiling the
unchanged source with Cython takes ~15% off extraction (bench/RESULTS.md); nothing else in the
chain gains from it (its time is in regular expressions, numpy and fastText, already compiled).

    python -m flows.native build     # make setup does this; ~20 s on 2 cores
    python -m flows.native status    # which modules run compiled here

A compiled module is stored as `operators/text/_native/<module>.<digest>.so` (sha256 of its .py and the
compiler directives, 16 hex), and
`operators/text/__init__.py` installs a finder that loads it in place of the source *only* when the
digest of the source file next to it is the same: an edited module runs as Python until the next
build (no stale binary ever runs), and a machine without a compiler, or Cython, runs everything
as Python, with the same output (tests/test_native.py compares the two on real pages).
`INTERLEAF_NATIVE=0` turns the compiled copies off.
"""
from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import warnings
from pathlib import Path

PACKAGE = "operators.text"                                # the package of the compiled modules
PACKAGE_DIR = Path(__file__).resolve().parent / "text"
MODULES = ("boilerplate", "extract")   # operators.text.<name> that have a compiled copy
SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]   # .cpython-311-x86_64-linux-gnu.so
# Python's semantics exactly: annotations are not turned into C type checks (`html: str` must
# still accept bytes and None, as the source does). Part of the digest: new flags, new copies.
DIRECTIVES = ("annotation_typing=False",)


def enabled() -> bool:
    return os.environ.get("INTERLEAF_NATIVE", "1").strip().lower() not in ("0", "false", "no", "off")


def digest(source: Path) -> str:
    h = hashlib.sha256(source.read_bytes())
    h.update(repr(DIRECTIVES).encode())
    return h.hexdigest()[:16]


def compiled_path(package_dir: Path, name: str) -> Path | None:
    """The compiled copy of `<package_dir>/<name>.py` that matches its current source, if built."""
    source = package_dir / f"{name}.py"
    try:
        path = package_dir / "_native" / f"{name}.{digest(source)}{SUFFIX}"
    except OSError:
        return None
    return path if path.is_file() else None


class NativeFinder(importlib.abc.MetaPathFinder):
    """Serves `<package>.<name>` from its matching compiled copy; anything else, or a module whose
    source changed since the build, is left to the normal import (the .py file)."""

    def __init__(self, package: str, package_dir: Path, names):
        self.prefix = package + "."
        self.package_dir = package_dir
        self.names = frozenset(names)

    def find_spec(self, fullname, path=None, target=None):
        if not fullname.startswith(self.prefix):
            return None
        name = fullname[len(self.prefix):]
        if name not in self.names:
            return None
        so = compiled_path(self.package_dir, name)
        if so is None:
            return None
        loader = importlib.machinery.ExtensionFileLoader(fullname, str(so))
        spec = importlib.util.spec_from_file_location(fullname, str(so), loader=loader)
        try:   # a copy this machine cannot load (another libc, a broken file): the source instead
            module = loader.create_module(spec)
        except (ImportError, OSError) as e:
            warnings.warn(f"{fullname}: the compiled copy {so.name} does not load here ({e}); "
                          "running the source", RuntimeWarning, stacklevel=2)
            return None
        spec.loader = _Created(fullname, str(so), module)
        return spec


class _Created(importlib.machinery.ExtensionFileLoader):
    """An extension loader whose module object is already created (find_spec tried it)."""

    def __init__(self, name, path, module):
        super().__init__(name, path)
        self._module = module

    def create_module(self, spec):
        return self._module


def install(package: str = PACKAGE, package_dir: Path = PACKAGE_DIR, names=MODULES) -> None:
    """Put the finder first on sys.meta_path (once per package); nothing when turned off."""
    if not enabled():
        return
    if any(isinstance(f, NativeFinder) and f.prefix == package + "." for f in sys.meta_path):
        return
    sys.meta_path.insert(0, NativeFinder(package, package_dir, names))


def status(package_dir: Path = PACKAGE_DIR, names=MODULES, package: str = PACKAGE) -> dict[str, str]:
    """name -> "compiled" (a matching copy is built and on; for a module already imported: the
    copy is what runs), "source" (not built for this source, or the copy did not load), or "off"
    (INTERLEAF_NATIVE=0)."""
    if not enabled():
        return {n: "off" for n in names}
    out = {}
    for n in names:
        mod = sys.modules.get(f"{package}.{n}")
        if mod is not None and getattr(mod, "__file__", None):
            out[n] = "compiled" if mod.__file__.endswith(SUFFIX) else "source"
        else:
            out[n] = "compiled" if compiled_path(package_dir, n) else "source"
    return out


def build(package: str = PACKAGE, package_dir: Path = PACKAGE_DIR, names=MODULES) -> dict[str, str]:
    """Compiles each module whose matching copy is missing; removes copies of older sources.

    Returns name -> "built" / "up to date" / "failed: <why>". Needs Cython and a C compiler; a
    failure leaves that module running as Python."""
    out_dir = package_dir / "_native"
    out_dir.mkdir(exist_ok=True)
    result: dict[str, str] = {}
    for name in names:
        source = package_dir / f"{name}.py"
        want = out_dir / f"{name}.{digest(source)}{SUFFIX}"
        for old in out_dir.glob(f"{name}.*{SUFFIX}"):
            if old != want:
                old.unlink()
        if want.is_file():
            result[name] = "up to date"
            continue
        try:
            result[name] = _compile(package, source, want)
        except Exception as e:  # noqa: BLE001 - any failure: that module stays Python
            result[name] = f"failed: {e}"
    return result


def _compile(package: str, source: Path, want: Path) -> str:
    import shutil
    import subprocess
    import tempfile
    try:
        import Cython  # noqa: F401
    except ImportError:
        return "failed: Cython is not installed (pip install cython)"
    name = source.stem
    with tempfile.TemporaryDirectory(prefix="interleaf-native-") as tmp:
        # the module keeps its dotted name (PyInit_<name>, __name__ = package.name): the same
        # package folders, each with an __init__.py
        pkg = Path(tmp)
        for part in package.split("."):
            pkg = pkg / part
            pkg.mkdir()
            (pkg / "__init__.py").write_text("")
        shutil.copyfile(source, pkg / f"{name}.py")
        rel = "/".join(package.split("."))
        cmd = [sys.executable, "-m", "Cython.Build.Cythonize", "-i", "-3", "-q",
               *(a for d in DIRECTIVES for a in ("-X", d)), f"{rel}/{name}.py"]
        proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True)
        built = list(pkg.glob(f"{name}.*.so")) + list(pkg.glob(f"{name}.*.pyd"))
        if proc.returncode != 0 or not built:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            return "failed: " + (" | ".join(tail) or f"cythonize exited {proc.returncode}")
        part = want.with_name(want.name + ".part")
        shutil.copyfile(built[0], part)
        os.replace(part, want)
    return "built"
