"""The project's import graph, read with ``ast`` (no module is imported): every ``import`` and ``from ... import``
anywhere in a file, at the top or inside a function, between the modules of ``zoo``, ``training``, ``bench`` and
``hubconf``. Used by ``tests/test_layers.py``."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, Iterator, List, Set

ROOT = Path(__file__).resolve().parents[2]
TREES = ("zoo", "training", "bench")


def module_files(root: Path = ROOT) -> Dict[str, Path]:
    """Dotted module name -> file, for every Python file of the trees (a package by its ``__init__``)."""
    found = {"hubconf": root / "hubconf.py"}
    for tree in TREES:
        for path in sorted((root / tree).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def _imported_modules(path: Path, module: str, files: Dict[str, Path]) -> Iterator[str]:
    """The project modules one file imports: per statement, the longest existing prefix of each name
    (``from a import b`` is the module ``a.b`` where ``b`` is a module, else ``a``)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]

    def existing(name: str) -> str:
        while name and name not in files:
            name = name.rpartition(".")[0]
        return name

    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (existing(alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                yield f"{base}.{alias.name}" if f"{base}.{alias.name}" in files else existing(base)


def imports(root: Path = ROOT) -> Dict[str, Set[str]]:
    """Module -> the project modules it imports."""
    files = module_files(root)
    return {module: {t for t in _imported_modules(path, module, files) if t and t != module}
            for module, path in files.items()}


def cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    found: List[List[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found
