"""The package's shape (README "Layout"): the import graph of operators/ and flows/ has no cycles,
not even through imports inside functions; the layers point one way (io <- text <- dedup <-
images <- flows); no production module imports test code."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# a layer may import the ones before it, never one after it
LAYERS = ["operators.stats", "operators.base", "operators.native", "operators.io", "operators.text",
          "operators.dedup", "operators.images", "flows"]


def modules() -> dict[str, Path]:
    out = {}
    for pkg in ("operators", "flows"):
        for path in (ROOT / pkg).rglob("*.py"):
            if "_native" in path.parts:
                continue
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            out[name.removesuffix(".__init__")] = path
    return out


def imports(path: Path) -> set[str]:
    """Every module named by an import anywhere in the file (function bodies included)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
    return out


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: {m for m in imports(path) if m in mods and m != name} for name, path in mods.items()}


def layer(module: str) -> int:
    for i, prefix in enumerate(LAYERS):
        if module == prefix or module.startswith(prefix + "."):
            return i
    return -1   # the `operators` package itself


def find_cycle(g: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph (its modules, the first repeated at the end), or None."""
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        path.append(m)
        for d in sorted(g.get(m, ())):
            if state.get(d) == 1:
                return path[path.index(d):] + [d]
            if d not in state and (found := visit(d)):
                return found
        path.pop()
        state[m] = 2
        return None

    for m in sorted(g):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_the_import_graph_has_no_cycles():
    g = graph()
    assert len(g) > 40 and "operators.text.extract" in g and "flows.pipeline" in g
    cycle = find_cycle(g)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_check_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_layers_import_only_the_layers_before_them():
    bad = [f"{m} imports {d}" for m, deps in graph().items() for d in deps
           if layer(m) >= 0 and layer(d) > layer(m)]
    assert not bad, "\n".join(sorted(bad))


def test_no_production_module_imports_tests():
    bad = [name for name, path in modules().items()
           if any(m == "tests" or m.startswith("tests.") for m in imports(path))]
    assert not bad, bad


def test_the_run_configuration_loads_no_fetcher_decoder_or_model_library():
    """`flows.config` (and so the small CLIs: flows.ledger, flows.lock) reads every config
    section without importing what the steps run on (aiohttp, Pillow, pandas, torch, onnxruntime)."""
    import subprocess
    import sys
    code = ("import sys, flows.ledger, flows.config; "
            "print(','.join(m for m in ('aiohttp', 'PIL', 'pandas', 'torch', 'onnxruntime', 'ray') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", out.stdout
