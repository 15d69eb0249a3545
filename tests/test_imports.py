"""The package's import graph has no cycle, lazy (function-level) imports included: modules read
top-down, and no module runs half-initialised. ``if TYPE_CHECKING:`` imports do not count (they
never run), nor does a module's import of its own parent packages (initialised before it)."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "python" / "compactcortex"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(name: str, path: Path, modules: set[str]) -> set[str]:
    """The package's modules that ``name`` imports (with each package on the way)."""
    tree = ast.parse(path.read_text())
    hidden = {id(n) for node in ast.walk(tree)
              if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
              for n in ast.walk(node)}
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in hidden:
            continue
        if isinstance(node, ast.ImportFrom):
            base = ".".join(package[:len(package) - node.level + 1] + ([node.module] if node.module else [])) \
                if node.level else (node.module or "")
            found |= {f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    targets = set()
    for t in found:
        parts = t.split(".")
        targets |= {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
    return {t for t in targets if t in modules and t != name and not name.startswith(t + ".")}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_import_graph_has_no_cycle():
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {name: _imports(name, path, set(files)) for name, path in files.items()}
    assert len(graph) > 50 and graph["compactcortex.compress.run"]  # the walk found the package
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_command_line_parses_without_torch():
    """Building every command's parser (its defaults read from the configs) imports no torch: a
    user error or --help answers at once."""
    code = ("import sys\nfrom compactcortex.cli import build_parser\nbuild_parser()\n"
            "import compactcortex.fit, compactcortex.compress\n"
            "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('compactcortex'))\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_public_name_is_not_hidden_by_its_submodule():
    """``compactcortex.fit.distill`` is the function even after the module of that name was
    imported (the import system binds submodules on their package), in every lazy package."""
    code = """
import importlib, types
for package in ("compactcortex", "compactcortex.fit", "compactcortex.compress"):
    pkg = importlib.import_module(package)
    for name, where in pkg._LAZY.items():
        if where == name:
            importlib.import_module(f"{package}.{name}")
            got = getattr(pkg, name)
            assert not isinstance(got, types.ModuleType), (package, name)
            assert got is getattr(importlib.import_module(f"{package}.{name}"), name)
from compactcortex.fit import distill
assert callable(distill) and not isinstance(distill, types.ModuleType)
"""
    subprocess.run([sys.executable, "-c", code], check=True)
