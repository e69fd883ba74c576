"""Print which core package imports which, and fail on an import cycle (docs/ARCHITECTURE.md).

Module level: imports run when a module loads (top level, outside functions) must form no
cycle between modules. Package level: every import, also those inside functions, gives an edge
from the importing package to the imported one; the edges are printed, and a cycle between
packages is reported. Usage: ``python scripts/import_graph.py`` (exit status 1 on a cycle).
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def module_name(path: Path) -> str:
    """Dotted module name of a file under the repository root."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, modules: set[str]) -> tuple[set[str], set[str]]:
    """Core modules a file imports at load time, and those it imports inside functions."""
    tree = ast.parse(path.read_text())
    top: set[str] = set()
    lazy: set[str] = set()

    def targets(node: ast.Import | ast.ImportFrom) -> set[str]:
        """The core modules one import statement loads."""
        found = set()
        if isinstance(node, ast.Import):
            found = {a.name for a in node.names}
        elif node.module == "core":  # from core import x: the package x (or core.__version__)
            found = {f"core.{a.name}" for a in node.names} or {"core"}
        elif node.module:
            found = {node.module} | {f"{node.module}.{a.name}" for a in node.names}
        return {m for m in found if m in modules}

    def visit(node: ast.AST, in_function: bool) -> None:
        """Walk the tree, noting whether an import sits inside a function."""
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import | ast.ImportFrom):
                (lazy if in_function else top).update(targets(child))
            elif isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                lazy.update(t for c in child.body if isinstance(c, ast.Import | ast.ImportFrom) for t in targets(c))
            else:
                visit(child, in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef))

    visit(tree, False)
    return top, lazy


def package(module: str) -> str:
    """The core package a module belongs to (core.__main__ is the command line)."""
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else module


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(v: str) -> None:
        """One depth-first step of Tarjan's algorithm."""
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return found


def main() -> int:
    """Print the package edges and any cycle; 1 when there is a cycle."""
    sys.setrecursionlimit(10_000)
    files = sorted((ROOT / "core").rglob("*.py"))
    modules = {module_name(f) for f in files}
    module_graph: dict[str, set[str]] = {}
    package_graph: dict[str, set[str]] = defaultdict(set)
    top_edges: set[tuple[str, str]] = set()
    for f in files:
        name = module_name(f)
        top, lazy = imports(f, modules)
        # A package's __init__ runs before its modules: importing core.x.y loads core.x too.
        module_graph[name] = {m for m in top if m != name and not name.startswith(m + ".")}
        for m in top | lazy:
            if package(m) != package(name):
                package_graph[package(name)].add(package(m))
                if m in top:
                    top_edges.add((package(name), package(m)))
    for src in sorted(package_graph):
        marked = [d + ("" if (src, d) in top_edges else "*") for d in sorted(package_graph[src])]
        print(f"{src} -> {', '.join(marked)}")
    print("(* only inside functions)")
    bad = cycles(module_graph)
    for group in bad:
        print("module import cycle:", " <-> ".join(group))
    for group in cycles(package_graph):
        print("package cycle (also counting imports inside functions):", " <-> ".join(group))
    print("no module import cycle" if not bad else f"{len(bad)} module import cycle(s)")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
