"""The compiled copies of the extractor's modules (operators/native.py): the same output as the
source, and never used once the source changed."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from operators import native

ROOT = Path(__file__).resolve().parents[1]


def _compiler_or_skip():
    try:
        import Cython  # noqa: F401
    except ImportError:
        pytest.skip("Cython is not installed: the compiled copies cannot be built here")
    if not (shutil.which("cc") or shutil.which("gcc")):
        pytest.skip("no C compiler: the compiled copies cannot be built here")


def _import_in_subprocess(pkg_root: Path, env_native: str = "1") -> dict:
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); import pkgx.m as m; "
            "print(json.dumps({'file': m.__file__, 'value': m.value(), 'name': m.__name__}))")
    env = {**os.environ, "INTERLEAF_NATIVE": env_native}
    out = subprocess.run([sys.executable, "-c", code, str(pkg_root)], capture_output=True, text=True,
                         env=env, check=True).stdout
    return json.loads(out)


def test_compiled_copy_used_only_while_it_matches_the_source(tmp_path, monkeypatch):
    _compiler_or_skip()
    monkeypatch.setenv("INTERLEAF_NATIVE", "1")
    pkg = tmp_path / "pkgx"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        "from pathlib import Path\n"
        "from operators import native\n"
        "native.install('pkgx', Path(__file__).parent, ('m',))\n")
    src = pkg / "m.py"
    src.write_text("def value():\n    return 1\n")
    assert native.status(pkg, ("m",)) == {"m": "source"}
    assert native.build("pkgx", pkg, ("m",)) == {"m": "built"}
    assert native.status(pkg, ("m",)) == {"m": "compiled"}
    assert native.build("pkgx", pkg, ("m",)) == {"m": "up to date"}

    monkeypatch.setenv("PYTHONPATH", str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    got = _import_in_subprocess(tmp_path)
    assert got["file"].endswith(native.SUFFIX) and "_native" in got["file"]
    assert (got["value"], got["name"]) == (1, "pkgx.m")
    # turned off: the source
    assert _import_in_subprocess(tmp_path, "0")["file"] == str(src)

    # the source changes: the stale copy is not loaded, the edit is what runs
    src.write_text("def value():\n    return 2\n")
    got = _import_in_subprocess(tmp_path)
    assert got["file"] == str(src) and got["value"] == 2
    assert native.status(pkg, ("m",)) == {"m": "source"}
    # a rebuild replaces the old copy (one file per module)
    assert native.build("pkgx", pkg, ("m",)) == {"m": "built"}
    assert len(list((pkg / "_native").glob("m.*"))) == 1
    got = _import_in_subprocess(tmp_path)
    assert got["file"].endswith(native.SUFFIX) and got["value"] == 2


def test_a_copy_that_does_not_load_leaves_the_module_as_python(tmp_path, monkeypatch):
    """A matching file that is no loadable library (copied from another machine, truncated):
    a warning, and the source runs."""
    monkeypatch.setenv("INTERLEAF_NATIVE", "1")
    pkg = tmp_path / "pkgz"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "m.py").write_text("def value():\n    return 3\n")
    (pkg / "_native").mkdir()
    (pkg / "_native" / f"m.{native.digest(pkg / 'm.py')}{native.SUFFIX}").write_bytes(b"not an ELF file")
    assert native.status(pkg, ("m",), "pkgz") == {"m": "compiled"}   # not imported yet: by name
    finder = native.NativeFinder("pkgz", pkg, ("m",))
    with pytest.warns(RuntimeWarning, match="does not load here"):
        assert finder.find_spec("pkgz.m") is None
    assert finder.find_spec("pkgz.other") is None and finder.find_spec("elsewhere.m") is None


def test_a_failed_build_leaves_the_module_as_python(tmp_path, monkeypatch):
    _compiler_or_skip()
    monkeypatch.setenv("INTERLEAF_NATIVE", "1")
    pkg = tmp_path / "pkgy"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "bad.py").write_text("def f(:\n")   # not Python: Cython refuses it
    res = native.build("pkgy", pkg, ("bad",))
    assert res["bad"].startswith("failed: ")
    assert native.status(pkg, ("bad",)) == {"bad": "source"}


PAGES = """
<html><body><nav><a href="/">Home</a> <a href="/x">News</a></nav>
<article><h1>Title of the story</h1><p>First paragraph with enough words to be kept by the extractor,
so that the block survives, and a comma, or two.</p>
<figure><img src="/a.jpg" width="400" height="300" alt="An  image"><figcaption>Caption text here</figcaption></figure>
<p>Second paragraph, after the figure, also long enough to matter for the extraction of the page.</p>
<table><tr><td>cell one</td><td>cell two</td></tr></table><pre>code
  block</pre></article>
<footer class="site-footer">Copyright 2026 footer text</footer></body></html>
"""


def _extract_all(pages: list[tuple[str, str]]) -> list:
    from operators.text.extract import ExtractConfig, extract_document
    cfg = ExtractConfig()
    out = []
    for html, url in pages:
        doc = extract_document(html, url, cfg)
        out.append(json.loads(json.dumps(doc, default=repr, sort_keys=True)))
    return out


def test_compiled_extractor_gives_the_sources_output(tmp_path, shared_data):
    """The compiled extractor (as `make setup` builds it) against the source, in a subprocess with
    INTERLEAF_NATIVE=0, on every 8th of the shared ground-truth pages and a built-in page."""
    state = native.status()
    if state["extract"] != "compiled":
        pytest.skip(f"the extractor is not compiled here ({state}); `python -m flows.native build`")
    import operators.text.extract as ext
    assert ext.__file__.endswith(native.SUFFIX)
    pages = [(PAGES, "https://example.com/story")]
    files = sorted(shared_data.glob("**/*.html"))[::8]
    assert len(files) > 100
    pages += [(p.read_text(errors="replace"), f"https://example.com/{i}") for i, p in enumerate(files)]
    (tmp_path / "pages.json").write_text(json.dumps(pages))
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); "
            "from tests.test_native import _extract_all; import operators.text.extract as e; "
            "assert e.__file__.endswith('.py'), e.__file__; "
            "print(json.dumps(_extract_all(json.load(open(sys.argv[2])))))")
    out = subprocess.run([sys.executable, "-c", code, str(ROOT), str(tmp_path / "pages.json")],
                         capture_output=True, text=True, check=True,
                         env={**os.environ, "INTERLEAF_NATIVE": "0"}).stdout
    assert json.loads(out) == _extract_all(pages)
