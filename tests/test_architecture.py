"""The domain never depends on the adapters: ``pki/`` imports nothing from ``web`` or DRF."""

from __future__ import annotations

import ast
from pathlib import Path

PKI = Path(__file__).resolve().parents[1] / "pki"
FORBIDDEN = ("web", "rest_framework")


def forbidden_imports(source: str, filename: str = "<src>") -> list[str]:
    """Return ``line: module`` for every import of a forbidden package in ``source``."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module]
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in {
            "import_module",
            "__import__",
            "import_string",
        }:
            modules = [
                a.value for a in node.args[:1] if isinstance(a, ast.Constant) and isinstance(a.value, str)
            ]
        else:
            continue
        for module in modules:
            if module.split(".")[0] in FORBIDDEN:
                found.append(f"{node.lineno}: {module}")
    return found


def test_pki_imports_nothing_from_web_or_rest_framework():
    modules = sorted(PKI.rglob("*.py"))
    assert len(modules) > 30  # the scan really walks the package
    violations = {
        str(path.relative_to(PKI.parent)): hits
        for path in modules
        if (hits := forbidden_imports(path.read_text(encoding="utf-8"), str(path)))
    }
    assert violations == {}


def test_the_scan_catches_every_form_of_import():
    source = "\n".join(
        [
            "import web",
            "import os, web.api.views as views",
            "from rest_framework import serializers",
            "from web.settings import KMI",
            "def f():",
            "    import rest_framework.exceptions",
            "    return importlib.import_module('web.ui')",
            "from webauthn import x  # a different package",
            "from .web import y  # pki's own submodule",
        ]
    )
    assert forbidden_imports(source) == [
        "1: web",
        "2: web.api.views",
        "3: rest_framework",
        "4: web.settings",
        "6: rest_framework.exceptions",
        "7: web.ui",
    ]


# --- no import cycles between pki modules ------------------------------------------------------

# Edges left out of the cycle contract, each with the cycle it closes and who removes it.
KNOWN_CYCLE_EDGES: set[tuple[str, str]] = set()


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PKI.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_only(tree: ast.AST) -> set[ast.AST]:
    """Import nodes under ``if TYPE_CHECKING:`` (never run, so no cycle at run time)."""
    skipped: set[ast.AST] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                skipped.update(ast.walk(child))
    return skipped


def imported_modules(source: str, name: str, *, is_package: bool, known: set[str]) -> set[str]:
    """The modules of ``known`` that module ``name`` imports, at module level or inside functions."""
    tree = ast.parse(source)
    skipped = _type_checking_only(tree)
    found: set[str] = set()
    for node in ast.walk(tree):
        if node in skipped:
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            targets = [f"{module}.{a.name}" if f"{module}.{a.name}" in known else module for a in node.names]
        else:
            continue
        for target in targets:
            hit = target
            while hit and hit not in known:
                hit = hit.rpartition(".")[0]
            if hit and hit != name:
                found.add(hit)
    return found


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
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
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(cycles)


def pki_import_graph() -> dict[str, set[str]]:
    paths = {_module_name(p): p for p in PKI.rglob("*.py") if "migrations" not in p.parts}
    known = set(paths)
    return {
        name: imported_modules(
            path.read_text(encoding="utf-8"), name, is_package=path.name == "__init__.py", known=known
        )
        for name, path in paths.items()
    }


def test_no_import_cycles_between_pki_modules():
    graph = pki_import_graph()
    assert len(graph) > 60
    assert "pki.signing" in graph["pki.enrollment"]  # the scan sees the real imports
    for a, b in KNOWN_CYCLE_EDGES:
        assert b in graph[a], f"{a} no longer imports {b}: remove it from KNOWN_CYCLE_EDGES"
        graph[a].discard(b)
    assert import_cycles(graph) == []


def test_the_cycle_scan_counts_function_level_and_relative_imports_but_not_type_checking_ones():
    known = {"pki.a", "pki.b", "pki.c", "pki.pkg", "pki.pkg.d"}
    source = "\n".join(
        [
            "from typing import TYPE_CHECKING",
            "from pki import a",
            "if TYPE_CHECKING:",
            "    from pki.c import Thing",
            "def f():",
            "    from .pkg.d import g",
            "    import pki.b.sub",
        ]
    )
    assert imported_modules(source, "pki.x", is_package=False, known=known) == {"pki.a", "pki.b", "pki.pkg.d"}
    graph = {"pki.a": {"pki.b"}, "pki.b": {"pki.c"}, "pki.c": {"pki.a"}, "pki.d": {"pki.a"}}
    assert import_cycles(graph) == [["pki.a", "pki.b", "pki.c"]]
