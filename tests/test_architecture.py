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
